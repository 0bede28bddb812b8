"""The GEMM view of a layer on one systolic array, and its closed-form costs.

SCALE-Sim's conventions (scalesim 3.0.0, `topology_utils` and `compute/systolic_compute_*`):
M = output pixels, K = Fh*Fw*Cin (per group), N = filters (per group), and per dataflow the
spatial rows Sr, spatial columns Sc and temporal extent T are

    OS: (Sr, Sc, T) = (M, N, K)    WS: (K, N, M)    IS: (K, M, N)

An R x C array covers them in ceil(Sr/R) row folds times ceil(Sc/C) column folds, visited
column fold outer, row fold inner. A grouped layer (depthwise) is `groups` such GEMMs back to
back, as SCALE-Sim runs a ``DP`` layer one channel at a time.

Timing conventions (cycles of one pod):

* ``scalesim``: SCALE-Sim 3.0.0's schedule. Each fold takes P = R + C + T - 2 cycles (OS) or
  2R + C + T - 2 (WS, IS: R extra cycles to preload the stationary operand), folds are
  strictly serial, and a layer of F folds reports F*P - 1 (SCALE-Sim reports the index of the
  last cycle). A grouped layer is `groups` SCALE-Sim layers: groups * (F*P - 1).
* ``pipelined``: a TPU-like array. The stationary operand is double-buffered (shadow weight
  registers for WS, the same for IS), so fold f+1's preload of R cycles overlaps fold f's
  streaming of T cycles; partial sums of fold f drain through the array while fold f+1's
  wavefront enters behind them, and OS outputs drain from double-buffered accumulators during
  the next fold. Fold f+1 can therefore start max(T, R) cycles after fold f (T to stream, R to
  preload or drain), and only the first preload (R for WS/IS, 0 for OS) and the last fold's fill
  and drain (T + R + C - 2) are exposed:

      cycles = L0 + (G*F - 1) * max(T, R) + (T + R + C - 2),   L0 = R (WS, IS), 0 (OS)

  One fold costs exactly SCALE-Sim's P (it counts cycles, not the last cycle's index), and the
  pipelined count never exceeds the scalesim one by more than that 1 per group.

Access counts follow SCALE-Sim's bookkeeping (words): OS reads ifmap T*Sr*cf and filter
T*Sc*rf and writes Sr*Sc ofmap words (plus SCALE-Sim's own (R + C) per fold in the ``scalesim``
convention, a quirk of its counter); WS reads ifmap T*Sr*cf, filter Sr*Sc, writes ofmap T*Sc*rf
(partial sums every row fold); IS reads ifmap Sr*Sc, filter T*Sr*cf, writes ofmap T*Sc*rf.

DRAM traffic (bytes) is a first-order reuse model that the tiler's per-fold transfer sizes
sum to exactly; see `pod_costs`. All functions take NumPy arrays (broadcast together) or ints.
"""

from __future__ import annotations

import numpy as np

from .hardware import DATAFLOWS

TIMINGS = ("scalesim", "pipelined")


def ceil_div(a, b):
    """Ceiling division for non-negative integers (arrays or ints)."""
    return -(-a // b)


def operand_dims(m, n, k, dataflow: str):
    """(Sr, Sc, T) of a GEMM (M x K) @ (K x N) under `dataflow` (SCALE-Sim's convention)."""
    if dataflow == "os":
        return m, n, k
    if dataflow == "ws":
        return k, n, m
    if dataflow == "is":
        return k, m, n
    raise ValueError(f"dataflow {dataflow!r}: expected one of {', '.join(DATAFLOWS)}")


def fold_counts(sr, sc, rows: int, cols: int):
    """(row folds, column folds) = (ceil(Sr/R), ceil(Sc/C))."""
    return ceil_div(sr, rows), ceil_div(sc, cols)


def fold_period(t, rows: int, cols: int, dataflow: str):
    """SCALE-Sim's cycles per fold P: R + C + T - 2 (OS), 2R + C + T - 2 (WS, IS)."""
    extra = 0 if dataflow == "os" else rows
    return extra + rows + cols + t - 2


def compute_cycles(groups, sr, sc, t, rows: int, cols: int, dataflow: str, timing: str):
    """Compute cycles of one pod running `groups` GEMMs of (Sr, Sc, T); 0 where there is no work."""
    groups, sr, sc, t = (np.asarray(x, dtype=np.int64) for x in (groups, sr, sc, t))
    rf, cf = fold_counts(sr, sc, rows, cols)
    folds = rf * cf
    work = (groups > 0) & (sr > 0) & (sc > 0) & (t > 0)
    if timing == "scalesim":
        cyc = groups * (folds * fold_period(t, rows, cols, dataflow) - 1)
    elif timing == "pipelined":
        lead = 0 if dataflow == "os" else rows
        cyc = lead + (groups * folds - 1) * np.maximum(t, rows) + t + rows + cols - 2
    else:
        raise ValueError(f"timing {timing!r}: expected one of {', '.join(TIMINGS)}")
    return np.where(work, cyc, 0)


def _chunks(total, size):
    """(number of full chunks, remainder) of `total` cut into pieces of `size`."""
    return total // size, total % size


def _uniq(elems, u, mk):
    """Unique ifmap elements in an im2col slice of `elems` entries (u unique of mk entries)."""
    return ceil_div(elems * u, np.maximum(mk, 1))


def pod_costs(groups, m, n, k, a_unique, a_entries, *, rows: int, cols: int, dataflow: str,
              timing: str, sram_bytes: tuple[int, int, int], word_bytes: int, psum_bytes: int,
              keep_output_on_chip=False) -> dict:
    """Closed-form costs of one pod computing `groups` GEMMs of its (m, n, k) tile.

    `a_unique` / `a_entries` is the layer's ratio of unique ifmap elements to im2col entries
    (per group), so an im2col slice of e entries moves ceil(e * a_unique / a_entries) elements
    from DRAM. `sram_bytes` is the pod's (ifmap, filter, ofmap) SRAM; an operand is *resident*
    when it fits in half of its SRAM (the other half double-buffers), and then it is fetched
    once per group instead of once per outer fold. `keep_output_on_chip` (K-split pods other
    than the root) sends the output over the interconnect instead of to DRAM.

    The DRAM rules, per group, folds visited column fold (fc) outer, row fold (fr) inner:

    * OS: ifmap rows (Sr chunk x T) are fetched each fold, or only while fc == 0 if the whole
      ifmap tile is resident; filter columns (T x Sc chunk) are fetched at fr == 0 if a column
      chunk fits, else each fold; each fold writes its (Sr chunk x Sc chunk) outputs.
    * WS: each fold fetches its (Sr x Sc chunk) filter tile; ifmap columns (T x Sr chunk) as OS's
      ifmap rows; outputs (T x Sc chunk) are partial sums over the row folds.
    * IS: each fold fetches its (Sr x Sc chunk) ifmap tile; filter rows (Sr chunk x T) are
      fetched each fold, or only while fc == 0 if the whole filter tile is resident; outputs
      (Sc chunk x T) are partial sums over the row folds.
    * Partial sums (WS, IS): ``scalesim`` writes every fold's partial sums out in words, as
      SCALE-Sim 3.0.0 does; ``pipelined`` accumulates them on chip when one column chunk of
      partial sums fits in half the ofmap SRAM (written once, in words), and otherwise spills
      (psum_bytes written after every fold but the last, read back before every fold but the
      first, the final fold writing words).

    Returns a dict of int64 arrays (words for SRAM counts, bytes for DRAM and footprints).
    """
    g, m, n, k = (np.asarray(x, dtype=np.int64) for x in (groups, m, n, k))
    u = np.asarray(a_unique, dtype=np.int64)
    mk = np.asarray(a_entries, dtype=np.int64)
    R, C = rows, cols
    wb, pb = word_bytes, psum_bytes
    half_i, half_f, half_o = (s // 2 for s in sram_bytes)
    sr, sc, t = operand_dims(m, n, k, dataflow)
    rf, cf = fold_counts(sr, sc, R, C)
    folds = rf * cf
    work = (g > 0) & (m > 0) & (n > 0) & (k > 0)
    g = np.where(work, g, 0)
    r_full, r_rem = _chunks(sr, R)
    c_full, c_rem = _chunks(sc, C)
    r_max = np.minimum(sr, R)
    c_max = np.minimum(sc, C)
    a_tile_unique = _uniq(m * k, u, mk)  # the pod's whole ifmap tile, unique elements

    out = {}
    quirk = timing == "scalesim"
    if dataflow == "os":
        # ifmap rows: r x T entries each
        a_once = r_full * _uniq(R * t, u, mk) + (r_rem > 0) * _uniq(r_rem * t, u, mk)
        a_res = a_tile_unique * wb <= half_i
        a_dram = np.where(a_res, a_once, a_once * cf) * wb
        b_fits = t * c_max * wb <= half_f
        b_dram = np.where(b_fits, sc * t, sc * t * rf) * wb
        c_dram = sr * sc * wb
        psum_rd = np.zeros_like(sr)
        sram_i = t * sr * cf
        sram_f = t * sc * rf
        sram_o = sr * sc + (folds * (R + C) if quirk else 0)
        sram_o_rd = np.zeros_like(sr)
        fp_i = np.where(a_res, a_tile_unique * wb, 2 * _uniq(r_max * t, u, mk) * wb)
        fp_f = 2 * t * c_max * wb
        fp_o = 2 * r_max * c_max * wb
    else:
        if dataflow == "ws":
            # stationary filter tiles (r x c), streamed ifmap columns (T x r), outputs T x c
            stat_once = sr * sc  # filter tiles sum to K x N
            stat_dram = stat_once * wb
            s_once = r_full * _uniq(t * R, u, mk) + (r_rem > 0) * _uniq(t * r_rem, u, mk)
            s_res = a_tile_unique * wb <= half_i
            s_dram = np.where(s_res, s_once, s_once * cf) * wb
            a_dram, b_dram = s_dram, stat_dram
            fp_i = np.where(s_res, a_tile_unique * wb, 2 * _uniq(t * r_max, u, mk) * wb)
            fp_f = 2 * r_max * c_max * wb
            sram_i = t * sr * cf
            sram_f = sr * sc
        else:  # "is": stationary ifmap tiles (r x c), streamed filter rows (r x T), outputs c x T
            stat_once = (r_full * c_full * _uniq(R * C, u, mk) + r_full * (c_rem > 0) * _uniq(R * c_rem, u, mk)
                         + (r_rem > 0) * c_full * _uniq(r_rem * C, u, mk)
                         + (r_rem > 0) * (c_rem > 0) * _uniq(r_rem * c_rem, u, mk))
            a_dram = stat_once * wb
            b_res = sr * t * wb <= half_f
            b_dram = np.where(b_res, sr * t, sr * t * cf) * wb
            fp_i = 2 * _uniq(r_max * c_max, u, mk) * wb
            fp_f = np.where(b_res, sr * t * wb, 2 * r_max * t * wb)
            sram_i = sr * sc
            sram_f = t * sr * cf
        # partial sums over row folds: output chunk (T x c) per column fold
        sram_o = t * sc * rf
        if quirk:
            c_dram = t * sc * rf * wb
            psum_rd = np.zeros_like(sr)
            sram_o_rd = np.zeros_like(sr)
            fp_o = 2 * t * c_max * wb
        else:
            acc = t * c_max * pb <= half_o
            spill_w = t * sc * (rf - 1) * pb
            c_dram = np.where(acc, t * sc * wb, spill_w + t * sc * wb)
            psum_rd = np.where(acc, 0, spill_w)
            sram_o_rd = t * sc * (rf - 1)  # read-modify-write of partial sums
            fp_o = np.where(acc, t * c_max * pb, 2 * t * c_max * pb)

    keep = np.asarray(keep_output_on_chip, dtype=bool)
    c_dram = np.where(keep, 0, c_dram)
    psum_rd = np.where(keep, 0, psum_rd)
    cap_i, cap_f, cap_o = sram_bytes
    out["sr"], out["sc"], out["t"] = sr, sc, t
    out["row_folds"], out["col_folds"] = rf, cf
    out["folds"] = g * folds
    out["compute_cycles"] = compute_cycles(g, sr, sc, t, R, C, dataflow, timing)
    out["ifmap_sram_reads"] = g * sram_i
    out["filter_sram_reads"] = g * sram_f
    out["ofmap_sram_writes"] = g * sram_o
    out["ofmap_sram_reads"] = g * sram_o_rd
    out["ifmap_dram_bytes"] = g * a_dram
    out["filter_dram_bytes"] = g * b_dram
    out["ofmap_dram_bytes"] = g * c_dram
    out["psum_dram_read_bytes"] = g * psum_rd
    out["output_bytes"] = g * m * n * wb
    out["ifmap_footprint_bytes"] = np.where(work, np.minimum(fp_i, cap_i), 0)
    out["filter_footprint_bytes"] = np.where(work, np.minimum(fp_f, cap_f), 0)
    out["ofmap_footprint_bytes"] = np.where(work, np.minimum(fp_o, cap_o), 0)
    # SCALE-Sim's utilization bookkeeping: sum over folds of PEs used, and of PEs*T/cycles
    out["pe_fold_sum"] = g * sr * sc
    out["pe_fold_capacity"] = g * folds * R * C
    per_fold = fold_period(t, R, C, dataflow) + (0 if dataflow == "os" else C - 1)
    out["util_fold_sum"] = np.where(work, g * sr * sc * t / np.maximum(per_fold, 1), 0.0) / (R * C)
    return out
