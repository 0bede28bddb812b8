"""The tiler: split each layer over pods, cost every split in closed form, fold each pod's tile.

Splits (a pod gets a box of the layer's GEMM index space: group, M, N and K ranges):

* ``n``: by output channels (for a grouped layer, by whole groups),
* ``m``: by output pixels,
* ``grid``: a pr x pc grid, M over pr and N (or groups) over pc, for every factorization of
  the pod count with pr, pc >= 2,
* ``k``: by the reduction. Each pod then produces partial sums of the whole output; the pods
  other than the root (pod 0) keep them on chip and send them (psum_bytes per element) to the
  root over the interconnect, which adds them and writes the result. The transfer is costed
  as serial interconnect time after the slowest pod: reduction_cycles = ceil(bytes / bw).

A split axis is cut in units of the array dimension it maps to under the dataflow (M: R for
OS, C for IS; N: C for OS and WS; K: R for WS and IS; temporal axes in single elements), as
evenly as the units allow, so no pod gets an extra partial fold; an axis with fewer units than
pods is cut element-wise. ``auto`` picks, per layer, the split with the fewest layer cycles,
ties going to n, m, grid, k in that order.

Layer cycles (one layer, all pods): every pod runs its folds (`mapping.gemm.compute_cycles`);
all pods share the DRAM channel, so the memory-bound time is all pods' DRAM bytes over
`dram_bytes_per_cycle`; with double buffering the layer takes the larger of the slowest pod's
compute and that memory time, plus the K-split reduction. Pool and add layers do not use the
array: they stream their inputs and outputs through DRAM and reduce on a vector unit of `cols`
lanes per pod, taking the larger of the two.

`plan` costs a whole network (or many, stacked in `LayerArrays`) with NumPy over layers, pods
and candidate splits at once. `fold_schedule` expands one network's chosen plan into the
per-fold mapping-trace arrays (`traces.mapping_trace` documents the schema); the per-fold
DRAM transfer sizes sum exactly to the closed form's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .gemm import TIMINGS, ceil_div, operand_dims, pod_costs
from .hardware import HardwareConfig
from .layer import KIND_CODE, MappingError
from .network import LayerArrays, Network

SPLITS = ("auto", "n", "m", "grid", "k")

# pod_costs outputs summed over pods for the layer totals
_SUMMED = ("folds", "ifmap_sram_reads", "filter_sram_reads", "ofmap_sram_writes", "ofmap_sram_reads",
           "ifmap_dram_bytes", "filter_dram_bytes", "ofmap_dram_bytes", "psum_dram_read_bytes",
           "pe_fold_sum", "pe_fold_capacity", "util_fold_sum")
_MAXED = ("ifmap_footprint_bytes", "filter_footprint_bytes", "ofmap_footprint_bytes")


def granules(dataflow: str, rows: int, cols: int) -> tuple[int, int, int]:
    """Split units (M, N, K) under `dataflow`: the array dimension each axis maps to, else 1."""
    return {"os": (rows, cols, 1), "ws": (1, cols, rows), "is": (cols, 1, rows)}[dataflow]


def split_ranges(total, parts: int, granule):
    """Cut each `total` into `parts` contiguous [start, stop) ranges, in units of `granule`.

    Units are dealt as evenly as possible (the first `units % parts` ranges get one more);
    when there are fewer units than parts the cut is element-wise. Shapes: (..., parts).
    """
    total = np.asarray(total, dtype=np.int64)[..., None]
    granule = np.asarray(granule, dtype=np.int64)[..., None]
    units = ceil_div(total, granule)
    coarse = units >= parts
    gran = np.where(coarse, granule, 1)
    units = np.where(coarse, units, total)
    p = np.arange(parts, dtype=np.int64)
    base, extra = units // parts, units % parts
    first = p * base + np.minimum(p, extra)
    count = base + (p < extra)
    start = np.minimum(first * gran, total)
    stop = np.minimum((first + count) * gran, total)
    return start, stop


def _full(x, pods):
    x = np.asarray(x, dtype=np.int64)[..., None]
    return np.zeros(x.shape[:-1] + (pods,), dtype=np.int64), np.broadcast_to(x, x.shape[:-1] + (pods,)).copy()


def candidates(pods: int, split: str = "auto") -> list[str]:
    """Split labels to evaluate for `pods` pods under the requested `split`."""
    if split not in SPLITS:
        raise MappingError(f"split {split!r}: expected one of {', '.join(SPLITS)}")
    if pods == 1:
        return ["none"]
    grids = [f"grid{pr}x{pods // pr}" for pr in range(2, pods // 2 + 1) if pods % pr == 0 and pods // pr >= 2]
    if split == "auto":
        return ["n", "m"] + grids + ["k"]
    if split == "grid":
        if not grids:
            raise MappingError(f"split 'grid' needs a pod count with a factorization pr x pc (pr, pc >= 2), got pods = {pods}")
        return grids
    return [split]


def tile_ranges(label: str, G, M, N, K, hw: HardwareConfig):
    """Per-pod [start, stop) of (group, m, n, k) for split `label`: 8 arrays of shape (L, pods)."""
    P = hw.pods
    gM, gN, gK = granules(hw.dataflow, hw.rows, hw.cols)
    G, M, N, K = (np.asarray(x, dtype=np.int64) for x in (G, M, N, K))
    g0, g1 = _full(G, P)
    m0, m1 = _full(M, P)
    n0, n1 = _full(N, P)
    k0, k1 = _full(K, P)
    idle = np.zeros(G.shape + (P,), dtype=bool)
    if label == "none":
        idle[..., 1:] = True
    elif label == "m":
        m0, m1 = split_ranges(M, P, gM)
    elif label == "k":
        k0, k1 = split_ranges(K, P, gK)
    elif label == "n":
        grouped = (G > 1)[..., None]
        s, e = split_ranges(G, P, 1)
        g0, g1 = np.where(grouped, s, g0), np.where(grouped, e, g1)
        s, e = split_ranges(N, P, gN)
        n0, n1 = np.where(grouped, n0, s), np.where(grouped, n1, e)
    elif label.startswith("grid"):
        pr, pc = (int(x) for x in label[4:].split("x"))
        ms, me = split_ranges(M, pr, gM)  # (L, pr)
        gs, ge = split_ranges(G, pc, 1)
        ns, ne = split_ranges(N, pc, gN)
        grouped = (G > 1)[..., None]
        rows_i = np.repeat(np.arange(pr), pc)
        cols_i = np.tile(np.arange(pc), pr)
        m0, m1 = ms[..., rows_i], me[..., rows_i]
        g0 = np.where(grouped, gs[..., cols_i], 0)
        g1 = np.where(grouped, ge[..., cols_i], G[..., None])
        n0 = np.where(grouped, 0, ns[..., cols_i])
        n1 = np.where(grouped, N[..., None], ne[..., cols_i])
    else:
        raise MappingError(f"unknown split label {label!r}")
    if idle.any():
        g1 = np.where(idle, g0, g1)
    return g0, g1, m0, m1, n0, n1, k0, k1


@dataclass(frozen=True)
class Plan:
    """Costed mapping of stacked layers: the chosen split per layer and every cost, per pod and total.

    Per-pod arrays have shape (L, pods); per-layer arrays shape (L,). Bytes and words are int64.
    """

    hw: HardwareConfig
    timing: str
    split: str
    arrays: LayerArrays
    labels: tuple[str, ...]  # chosen split per layer ("none" for one pod and for pool/add)
    ranges: np.ndarray  # (L, pods, 8): g0, g1, m0, m1, n0, n1, k0, k1
    pod: dict  # per-pod pod_costs outputs, (L, pods)
    layer: dict  # per-layer totals, (L,)


def _layer_totals(pc: dict, hw: HardwareConfig, kind, vec_ops, in_elems, out_elems, ksplit) -> dict:
    """Sum / max over pods, reduction, memory time and layer cycles (arrays shaped (..., L))."""
    tot = {k: pc[k].sum(axis=-1) for k in _SUMMED}
    for k in _MAXED:
        tot[k] = pc[k].max(axis=-1)
    tot["sram_footprint_bytes"] = (pc["ifmap_footprint_bytes"] + pc["filter_footprint_bytes"]
                                   + pc["ofmap_footprint_bytes"]).max(axis=-1)
    busy = pc["compute_cycles"]
    tot["compute_cycles"] = busy.max(axis=-1)
    tot["pods_used"] = (busy > 0).sum(axis=-1)
    # K split: every working pod but the root ships its partial sums to the root.
    working = busy > 0
    nonroot = working & (np.cumsum(working, axis=-1) > 1)
    red = np.where(ksplit[..., None] & nonroot, pc["output_bytes"] // hw.word_bytes * hw.psum_bytes, 0).sum(axis=-1)
    tot["interconnect_bytes"] = red
    tot["reduction_cycles"] = np.ceil(red / hw.interconnect_bytes_per_cycle).astype(np.int64)
    # Pool / add: stream through DRAM, reduce on the vector unit.
    vec = kind >= KIND_CODE["pool"]
    wb = hw.word_bytes
    tot["ifmap_dram_bytes"] = np.where(vec, in_elems * wb, tot["ifmap_dram_bytes"])
    tot["ofmap_dram_bytes"] = np.where(vec, out_elems * wb, tot["ofmap_dram_bytes"])
    tot["ifmap_sram_reads"] = np.where(vec, in_elems, tot["ifmap_sram_reads"])
    tot["ofmap_sram_writes"] = np.where(vec, out_elems, tot["ofmap_sram_writes"])
    tot["vector_cycles"] = np.where(vec, ceil_div(vec_ops, hw.cols * hw.pods), 0)
    dram = tot["ifmap_dram_bytes"] + tot["filter_dram_bytes"] + tot["ofmap_dram_bytes"] + tot["psum_dram_read_bytes"]
    tot["dram_bytes"] = dram
    tot["memory_cycles"] = np.ceil(dram / hw.dram_bytes_per_cycle).astype(np.int64)
    busy_max = np.maximum(tot["compute_cycles"], tot["vector_cycles"])
    tot["total_cycles"] = np.maximum(busy_max, tot["memory_cycles"]) + tot["reduction_cycles"]
    tot["stall_cycles"] = tot["total_cycles"] - busy_max
    return tot


def _prepare(arrays, hw: HardwareConfig, timing: str, split: str):
    if isinstance(arrays, Network):
        arrays = arrays.arrays()
    if timing not in TIMINGS:
        raise MappingError(f"timing {timing!r}: expected one of {', '.join(TIMINGS)}")
    return arrays, candidates(hw.pods, split)


def plan_reference(arrays: LayerArrays | Network, hw: HardwareConfig, timing: str = "scalesim",
                   split: str = "auto") -> Plan:
    """`plan` in plain NumPy over (candidates, layers, pods): the readable reference."""
    a, labels = _prepare(arrays, hw, timing, split)
    G, M, N, K = a.groups, a.m, a.n, a.k
    sram = hw.pod_sram_bytes()
    S = len(labels)
    # Stack all candidates along a leading axis: (S, L, P).
    rng = np.stack([np.stack(tile_ranges(lab, G, M, N, K, hw), axis=-1) for lab in labels])
    ext = rng[..., 1::2] - rng[..., 0::2]  # (S, L, P, 4): g, m, n, k extents
    ksplit = np.array([lab == "k" for lab in labels])[:, None] & np.ones(len(a), dtype=bool)[None, :]
    working = (ext > 0).all(axis=-1)
    nonroot = working & (np.cumsum(working, axis=-1) > 1)
    keep = ksplit[..., None] & nonroot
    pc = pod_costs(ext[..., 0], ext[..., 1], ext[..., 2], ext[..., 3],
                   a.ifmap_elems[:, None], (M * K)[:, None],
                   rows=hw.rows, cols=hw.cols, dataflow=hw.dataflow, timing=timing, sram_bytes=sram,
                   word_bytes=hw.word_bytes, psum_bytes=hw.psum_bytes, keep_output_on_chip=keep)
    tot = _layer_totals(pc, hw, a.kind, a.vector_ops, a.in_elems, a.out_elems, ksplit)
    best = np.argmin(tot["total_cycles"], axis=0) if S > 1 else np.zeros(len(a), dtype=np.int64)
    idx = np.arange(len(a))
    vec = a.kind >= KIND_CODE["pool"]
    best = np.where(vec, 0, best)
    chosen = tuple("none" if vec[i] else labels[b] for i, b in enumerate(best))
    pc["dram_bytes"] = pc["ifmap_dram_bytes"] + pc["filter_dram_bytes"] + pc["ofmap_dram_bytes"] + pc["psum_dram_read_bytes"]
    pod = {k: pc[k][best, idx] for k in ("compute_cycles", "folds", "dram_bytes", "output_bytes")}
    layer = {k: np.broadcast_to(v, (S, len(a)))[best, idx] for k, v in tot.items()}
    ranges = np.where(vec[:, None, None], 0, rng[best, idx])
    return Plan(hw=hw, timing=timing, split=split, arrays=a, labels=chosen, ranges=ranges, pod=pod, layer=layer)


def _cand_codes(labels: list[str]):
    kinds, prs, pcs = [], [], []
    for lab in labels:
        if lab.startswith("grid"):
            pr, pc = (int(x) for x in lab[4:].split("x"))
            kinds.append(3), prs.append(pr), pcs.append(pc)
        else:
            kinds.append({"none": 0, "n": 1, "m": 2, "k": 4}[lab]), prs.append(1), pcs.append(1)
    return (np.array(kinds, dtype=np.int64), np.array(prs, dtype=np.int64), np.array(pcs, dtype=np.int64))


def plan(arrays: LayerArrays | Network, hw: HardwareConfig, timing: str = "scalesim", split: str = "auto") -> Plan:
    """Choose and cost a split for every layer (compiled loop; equal to `plan_reference`)."""
    from . import fastplan as fp

    a, labels = _prepare(arrays, hw, timing, split)
    kinds, prs, pcs = _cand_codes(labels)
    gM, gN, gK = granules(hw.dataflow, hw.rows, hw.cols)
    sram = hw.pod_sram_bytes()
    vec = a.kind >= KIND_CODE["pool"]
    best, tot, util, pod_out, ranges = fp.plan_kernel(
        a.groups, a.m, a.n, a.k, a.ifmap_elems, vec, a.vector_ops, a.in_elems, a.out_elems, kinds, prs, pcs,
        hw.pods, hw.rows, hw.cols, fp.DF_CODE[hw.dataflow], timing == "scalesim", gM, gN, gK,
        sram[0] // 2, sram[1] // 2, sram[2] // 2, sram[0], sram[1], sram[2], hw.word_bytes, hw.psum_bytes,
        float(hw.dram_bytes_per_cycle), float(hw.interconnect_bytes_per_cycle))
    layer = {name: tot[:, i] for i, name in enumerate(fp.TOTALS)}
    layer["util_fold_sum"] = util
    pod = {"compute_cycles": pod_out[..., 0], "folds": pod_out[..., 1], "dram_bytes": pod_out[..., 2],
           "output_bytes": pod_out[..., 3]}
    chosen = tuple("none" if v else labels[b] for v, b in zip(vec.tolist(), best.tolist()))
    return Plan(hw=hw, timing=timing, split=split, arrays=a, labels=chosen, ranges=ranges, pod=pod, layer=layer)


# --- per-fold expansion (the mapping trace) ---------------------------------------------------

FOLD_FIELDS = ("layer", "pod", "seq", "group", "m_start", "m_stop", "n_start", "n_stop", "k_start", "k_stop",
               "ifmap_dram_bytes", "filter_dram_bytes", "ofmap_dram_bytes", "psum_dram_read_bytes",
               "ifmap_tile_bytes", "filter_tile_bytes", "ofmap_tile_bytes")
REDUCTION_FIELDS = ("layer", "src_pod", "dst_pod", "bytes")


def _pod_folds(rng, a_unique, a_entries, hw: HardwareConfig, timing: str, keep: bool) -> dict:
    """The ordered folds of one pod's tile: ranges, DRAM transfers and tile bytes (arrays)."""
    g0, g1, m0, m1, n0, n1, k0, k1 = (int(x) for x in rng)
    R, C, df = hw.rows, hw.cols, hw.dataflow
    wb, pb = hw.word_bytes, hw.psum_bytes
    half_i, half_f, half_o = (s // 2 for s in hw.pod_sram_bytes())
    m, n, k = m1 - m0, n1 - n0, k1 - k0
    if min(g1 - g0, m, n, k) <= 0:
        return {f: np.zeros(0, dtype=np.int64) for f in FOLD_FIELDS}
    sr, sc, t = operand_dims(m, n, k, df)
    rf, cf = ceil_div(sr, R), ceil_div(sc, C)
    # fold order: group, then column fold (outer), then row fold (inner)
    gi, fc, fr = (x.ravel() for x in np.meshgrid(np.arange(g0, g1), np.arange(cf), np.arange(rf), indexing="ij"))
    r = np.minimum(R, sr - fr * R)
    c = np.minimum(C, sc - fc * C)
    u, mk = int(a_unique), max(int(a_entries), 1)

    def uniq(e):
        return -(-(e * u) // mk)

    zeros = np.zeros_like(r)
    a_res = uniq(m * k) * wb <= half_i
    out: dict[str, np.ndarray] = {"group": gi}
    if df == "os":
        out["m_start"], out["m_stop"] = m0 + fr * R, m0 + fr * R + r
        out["n_start"], out["n_stop"] = n0 + fc * C, n0 + fc * C + c
        out["k_start"], out["k_stop"] = np.full_like(r, k0), np.full_like(r, k1)
        b_fits = t * min(sc, C) * wb <= half_f
        out["ifmap_dram_bytes"] = np.where(a_res & (fc > 0), 0, uniq(r * t) * wb)
        out["filter_dram_bytes"] = np.where(b_fits & (fr > 0), 0, t * c * wb)
        out["ofmap_dram_bytes"] = r * c * wb
        out["psum_dram_read_bytes"] = zeros
        out["ifmap_tile_bytes"], out["filter_tile_bytes"], out["ofmap_tile_bytes"] = uniq(r * t) * wb, t * c * wb, r * c * wb
    else:
        out["k_start"], out["k_stop"] = k0 + fr * R, k0 + fr * R + r
        if df == "ws":
            out["n_start"], out["n_stop"] = n0 + fc * C, n0 + fc * C + c
            out["m_start"], out["m_stop"] = np.full_like(r, m0), np.full_like(r, m1)
            out["filter_dram_bytes"] = r * c * wb
            out["ifmap_dram_bytes"] = np.where(a_res & (fc > 0), 0, uniq(t * r) * wb)
            out["ifmap_tile_bytes"], out["filter_tile_bytes"] = uniq(t * r) * wb, r * c * wb
        else:
            out["m_start"], out["m_stop"] = m0 + fc * C, m0 + fc * C + c
            out["n_start"], out["n_stop"] = np.full_like(r, n0), np.full_like(r, n1)
            b_res = sr * t * wb <= half_f
            out["ifmap_dram_bytes"] = uniq(r * c) * wb
            out["filter_dram_bytes"] = np.where(b_res & (fc > 0), 0, r * t * wb)
            out["ifmap_tile_bytes"], out["filter_tile_bytes"] = uniq(r * c) * wb, r * t * wb
        last = fr == rf - 1
        if timing == "scalesim":
            out["ofmap_dram_bytes"] = t * c * wb
            out["psum_dram_read_bytes"] = zeros
            out["ofmap_tile_bytes"] = t * c * wb
        else:
            acc = t * min(sc, C) * pb <= half_o
            out["ofmap_dram_bytes"] = np.where(last, t * c * wb, 0 if acc else t * c * pb)
            out["psum_dram_read_bytes"] = np.where((fr > 0) & (not acc), t * c * pb, 0)
            out["ofmap_tile_bytes"] = t * c * pb
    if keep:
        out["ofmap_dram_bytes"] = zeros.copy()
        out["psum_dram_read_bytes"] = zeros.copy()
    out["seq"] = np.arange(len(r), dtype=np.int64)
    return {f: np.asarray(out[f], dtype=np.int64) for f in FOLD_FIELDS if f in out}


def fold_schedule(network: Network, hw: HardwareConfig, timing: str = "scalesim", split: str = "auto",
                  the_plan: Plan | None = None) -> tuple[dict, dict]:
    """Expand a network's plan into mapping-trace content: (sidecar metadata, arrays).

    The metadata and arrays follow `traces.mapping_trace` (schema version 1); wrap them in
    `traces.mapping_trace.MappingTrace(meta, arrays)` to validate and write them.
    """
    p = the_plan if the_plan is not None else plan(network, hw, timing, split)
    layers = network.layers
    folds: dict[str, list] = {f: [] for f in FOLD_FIELDS}
    reds: dict[str, list] = {f: [] for f in REDUCTION_FIELDS}
    meta_layers = []
    offset = 0
    a = p.arrays
    for li, layer in enumerate(layers):
        label = p.labels[li]
        entry = layer.to_dict()
        entry.update(index=li, inputs=network.inputs_of(layer.name), split=label,
                     gemm={"groups": int(a.groups[li]), "m": int(a.m[li]), "n": int(a.n[li]), "k": int(a.k[li])},
                     ifmap_unique_elems=int(a.ifmap_elems[li]))
        pods = []
        if layer.is_gemm:
            working = [(p.ranges[li, q, 1::2] - p.ranges[li, q, 0::2] > 0).all() for q in range(hw.pods)]
            root = working.index(True) if any(working) else 0
            for q in range(hw.pods):
                rng = p.ranges[li, q]
                keep = label == "k" and working[q] and q != root
                f = _pod_folds(rng, a.ifmap_elems[li], a.m[li] * a.k[li], hw, p.timing, keep)
                nf = len(f["seq"])
                f["layer"] = np.full(nf, li, dtype=np.int64)
                f["pod"] = np.full(nf, q, dtype=np.int64)
                for name in FOLD_FIELDS:
                    folds[name].append(f[name])
                pods.append({"pod": q, "group": [int(rng[0]), int(rng[1])], "m": [int(rng[2]), int(rng[3])],
                             "n": [int(rng[4]), int(rng[5])], "k": [int(rng[6]), int(rng[7])],
                             "fold_start": offset, "folds": nf,
                             "compute_cycles": int(p.pod["compute_cycles"][li, q])})
                offset += nf
                if keep:
                    out_bytes = int(p.pod["output_bytes"][li, q]) // hw.word_bytes * hw.psum_bytes
                    for name, v in zip(REDUCTION_FIELDS, (li, q, root, out_bytes)):
                        reds[name].append(np.array([v], dtype=np.int64))
        else:
            entry["dram_read_bytes"] = int(p.layer["ifmap_dram_bytes"][li])
            entry["dram_write_bytes"] = int(p.layer["ofmap_dram_bytes"][li])
            entry["vector_ops"] = int(a.vector_ops[li])
        entry["pods"] = pods
        entry["cycles"] = {k: int(p.layer[k][li]) for k in ("compute_cycles", "memory_cycles", "reduction_cycles",
                                                              "vector_cycles", "total_cycles")}
        meta_layers.append(entry)
    arrays = {f"fold_{k}": (np.concatenate(v) if v else np.zeros(0, dtype=np.int64)) for k, v in folds.items()}
    arrays.update({f"reduction_{k}": (np.concatenate(v) if v else np.zeros(0, dtype=np.int64)) for k, v in reds.items()})
    meta = {
        "network": network.name,
        "hardware": hw.to_dict(),
        "dataflow": hw.dataflow,
        "timing": p.timing,
        "split": p.split,
        "layers": meta_layers,
    }
    return meta, arrays
