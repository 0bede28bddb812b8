"""Mapping traces: the tiler's plan, fold by fold, for the cycle-level engine (schema v1).

A mapping trace is two files side by side, written atomically:

* ``NAME.json`` — the sidecar: schema, version, network, hardware, conventions and one record
  per layer (shape, GEMM view, split, per-pod tile boxes, offsets into the fold arrays);
* ``NAME.npz`` — the fold and reduction arrays (int64, uncompressed NumPy ``.npz``).

Sidecar (JSON object)::

    schema        "cosim.mapping-trace"
    version       1
    created_by    producer, e.g. "mapping.tiler"
    network       network name
    hardware      mapping.HardwareConfig.to_dict(): pods, rows, cols, dataflow, SRAM bytes (per
                  group of sram_pods_per_group pods), word_bytes, psum_bytes, bandwidths in
                  bytes/cycle, clock_mhz, energy table, sources
    dataflow      "os" | "ws" | "is"
    timing        "scalesim" | "pipelined": the convention the split was chosen under
    split         requested split: "auto" | "n" | "m" | "grid" | "k"
    address_convention
                  how operand indices become SCALE-Sim 3.0.0 addresses (see below)
    arrays        {array name: one-line description} for every array in the npz
    layers        list, execution order, one object per layer:
        index, name, kind, inputs (names of the layers it reads; [] = network input),
        in_h, in_w, in_c, out_c, out_h, out_w, kernel_h, kernel_w, stride_h, stride_w, pad_h,
        pad_w, groups, batch, bias, ceil_mode, pool_op, n_inputs, macs, params,
        gemm {groups, m, n, k}   per-group GEMM (M x K) @ (K x N)
        ifmap_unique_elems        unique ifmap elements per group
        split                     chosen split: "none" | "n" | "m" | "k" | "gridRxC"
        pods  (GEMM layers)       one object per pod, pod order:
              pod, group [g0, g1), m [m0, m1), n [n0, n1), k [k0, k1)  (the pod's tile),
              fold_start, folds    slice of the fold arrays holding this pod's folds, in order
              compute_cycles      the analytical compute cycles of this pod (the convention
                                  in `timing`); the engine must reproduce these exactly
        dram_read_bytes, dram_write_bytes, vector_ops   (pool / add layers: no folds)
        cycles {compute_cycles, memory_cycles, reduction_cycles, vector_cycles, total_cycles}
                                  the analytical model's layer figures

Fold arrays (``fold_*``, one entry per fold; grouped by layer, then pod, then schedule order):

    fold_layer, fold_pod, fold_seq     layer index, pod, position in that pod's schedule (0..)
    fold_group                         group index (0 for ungrouped layers)
    fold_m_start, fold_m_stop          output-pixel range [start, stop) of this fold
    fold_n_start, fold_n_stop          filter range
    fold_k_start, fold_k_stop          reduction range (within the group)
    fold_ifmap_dram_bytes              bytes fetched from DRAM for this fold's ifmap operand
    fold_filter_dram_bytes             ... filter operand
    fold_ofmap_dram_bytes              bytes written back to DRAM after this fold
    fold_psum_dram_read_bytes          partial sums read back from DRAM before this fold
    fold_ifmap_tile_bytes, fold_filter_tile_bytes, fold_ofmap_tile_bytes
                                       SRAM bytes of this fold's operand slices

Under dataflow D the fold's (Sr, Sc, T) slice is (M, N, K) for OS, (K, N, M) for WS and
(K, M, N) for IS: the rows of the array hold the Sr range, its columns the Sc range, and the
T range streams through. A pod's folds run strictly in `fold_seq` order; pods run in parallel
and share DRAM. Zero DRAM bytes means the operand is already resident (fetched by an earlier
fold of the same pod and group).

Reduction arrays (``reduction_*``, K splits only): ``reduction_layer``, ``reduction_src_pod``,
``reduction_dst_pod``, ``reduction_bytes``: after its last fold, the source pod sends its
partial sums (psum_bytes each) to the destination (root) pod over the interconnect; the root
writes the final outputs (its own folds' ``ofmap_dram_bytes``).

Address convention (``scalesim-3.0.0``, as `scalesim/compute/operand_matrix.py`): SCALE-Sim
has no padding, so addresses refer to the layer as `mapping.topology` exports it, an input of
H' = stride_h * (out_h - 1) + kernel_h by W' = stride_w * (out_w - 1) + kernel_w (the padded
input, cropped to what the outputs read) with Cg = in_c / groups channels per group. Within
one group: ifmap element (m, k) is ``ifmap_offset + ((oh * stride_h + fh) * W' + ow * stride_w
+ fw) * Cg + c`` with (oh, ow) = divmod(m, out_w) and (fh, fw, c) = k unravelled over
(kernel_h, kernel_w, Cg); filter element (k, n) is ``filter_offset + n * K + k``; ofmap element
(m, n) is ``ofmap_offset + m * N + n``; offsets 0, 10,000,000 and 20,000,000. A grouped layer
is `groups` such layers one after another (SCALE-Sim's ``DP`` rows, one channel each).

Bump `VERSION` on any incompatible change; readers reject other versions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .sidecar import read_pair, write_pair

SCHEMA = "cosim.mapping-trace"
VERSION = 1

FOLD_ARRAYS = {
    "fold_layer": "layer index",
    "fold_pod": "pod index",
    "fold_seq": "position in the pod's schedule for this layer (0, 1, ...)",
    "fold_group": "group index",
    "fold_m_start": "first output pixel (M index)",
    "fold_m_stop": "one past the last output pixel",
    "fold_n_start": "first filter (N index, within the group)",
    "fold_n_stop": "one past the last filter",
    "fold_k_start": "first reduction index (K, within the group)",
    "fold_k_stop": "one past the last reduction index",
    "fold_ifmap_dram_bytes": "ifmap bytes fetched from DRAM for this fold",
    "fold_filter_dram_bytes": "filter bytes fetched from DRAM for this fold",
    "fold_ofmap_dram_bytes": "output / partial-sum bytes written to DRAM after this fold",
    "fold_psum_dram_read_bytes": "partial-sum bytes read back from DRAM before this fold",
    "fold_ifmap_tile_bytes": "SRAM bytes of this fold's ifmap slice",
    "fold_filter_tile_bytes": "SRAM bytes of this fold's filter slice",
    "fold_ofmap_tile_bytes": "SRAM bytes of this fold's output / partial-sum slice",
}
REDUCTION_ARRAYS = {
    "reduction_layer": "layer index of a K-split partial-sum transfer",
    "reduction_src_pod": "pod sending its partial sums",
    "reduction_dst_pod": "root pod receiving and adding them",
    "reduction_bytes": "bytes sent over the interconnect",
}
ARRAYS = {**FOLD_ARRAYS, **REDUCTION_ARRAYS}
ADDRESS_CONVENTION = {"name": "scalesim-3.0.0", "ifmap_offset": 0, "filter_offset": 10_000_000,
                      "ofmap_offset": 20_000_000}


class MappingTraceError(ValueError):
    """A mapping trace that breaks the schema; the message names the file, field, index and value."""




class MappingTrace:
    """Sidecar metadata plus fold / reduction arrays, validated on construction."""

    def __init__(self, meta: dict, arrays: dict, source: str = "<memory>", created_by: str = "mapping.tiler"):
        self.source = source
        meta = dict(meta)
        meta.setdefault("schema", SCHEMA)
        meta.setdefault("version", VERSION)
        meta.setdefault("created_by", created_by)
        meta.setdefault("address_convention", ADDRESS_CONVENTION)
        meta.setdefault("arrays", dict(ARRAYS))
        self.meta = meta
        self.arrays = {k: np.asarray(v) for k, v in arrays.items()}
        self.validate()

    # --- access ---------------------------------------------------------------------------
    @property
    def layers(self) -> list[dict]:
        """Per-layer sidecar records."""
        return self.meta["layers"]

    @property
    def n_folds(self) -> int:
        """Number of folds over all layers and pods."""
        return int(len(self.arrays["fold_layer"]))

    def folds(self, layer: int, pod: int) -> dict[str, np.ndarray]:
        """The fold arrays (names without the ``fold_`` prefix) of one layer on one pod, in order."""
        rec = self.layers[layer]["pods"][pod]
        s = slice(rec["fold_start"], rec["fold_start"] + rec["folds"])
        return {k[5:]: v[s] for k, v in self.arrays.items() if k.startswith("fold_")}

    def reductions(self, layer: int) -> dict[str, np.ndarray]:
        """The K-split partial-sum transfers of one layer."""
        sel = self.arrays["reduction_layer"] == layer
        return {k[10:]: v[sel] for k, v in self.arrays.items() if k.startswith("reduction_")}

    # --- validation -----------------------------------------------------------------------
    def _fail(self, field: str, value, expected: str) -> MappingTraceError:
        return MappingTraceError(f"{self.source}: {field} = {value!r}: expected {expected}")

    def validate(self) -> None:
        """Check the schema; raise MappingTraceError naming the first problem."""
        m = self.meta
        if m.get("schema") != SCHEMA:
            raise self._fail("schema", m.get("schema"), repr(SCHEMA))
        if m.get("version") != VERSION:
            raise self._fail("version", m.get("version"), f"{VERSION} (this reader's version)")
        for key, typ in (("network", str), ("hardware", dict), ("layers", list), ("created_by", str)):
            if not isinstance(m.get(key), typ):
                raise self._fail(key, m.get(key), f"a {typ.__name__}")
        if m.get("dataflow") not in ("os", "ws", "is"):
            raise self._fail("dataflow", m.get("dataflow"), "'os', 'ws' or 'is'")
        if m.get("timing") not in ("scalesim", "pipelined"):
            raise self._fail("timing", m.get("timing"), "'scalesim' or 'pipelined'")
        hw = m["hardware"]
        for key in ("pods", "rows", "cols", "word_bytes", "psum_bytes"):
            if not isinstance(hw.get(key), int) or hw.get(key) < 1:
                raise self._fail(f"hardware.{key}", hw.get(key), "a positive integer")
        if hw.get("dataflow") != m["dataflow"]:
            raise self._fail("hardware.dataflow", hw.get("dataflow"), f"the trace's dataflow {m['dataflow']!r}")
        pods = hw["pods"]
        for group in (FOLD_ARRAYS, REDUCTION_ARRAYS):
            length = None
            for name in group:
                if name not in self.arrays:
                    raise self._fail(f"array {name}", None, "present")
                a = self.arrays[name]
                if a.ndim != 1 or a.dtype.kind not in "iu":
                    raise self._fail(f"array {name}", f"{a.dtype}{list(a.shape)}", "a 1-D integer array")
                if length is None:
                    length = len(a)
                elif len(a) != length:
                    raise self._fail(f"len({name})", len(a), f"{length}, the length of the other {name.split('_')[0]} arrays")
                if len(a) and a.min() < 0:
                    i = int(np.argmin(a))
                    raise self._fail(f"{name}[{i}]", int(a[i]), "a non-negative integer")
        extra = set(self.arrays) - set(ARRAYS)
        if extra:
            raise self._fail("arrays", sorted(extra), "only the schema's arrays")
        A = self.arrays
        n_folds = len(A["fold_layer"])
        covered = np.zeros(n_folds, dtype=bool)
        for li, rec in enumerate(m["layers"]):
            where = f"layers[{li}]"
            if not isinstance(rec, dict):
                raise self._fail(where, rec, "an object")
            if rec.get("index") != li:
                raise self._fail(f"{where}.index", rec.get("index"), str(li))
            gemm = rec.get("gemm")
            if not isinstance(gemm, dict) or not all(isinstance(gemm.get(k), int) for k in ("groups", "m", "n", "k")):
                raise self._fail(f"{where}.gemm", gemm, "{groups, m, n, k} integers")
            prs = rec.get("pods")
            if not isinstance(prs, list):
                raise self._fail(f"{where}.pods", prs, "a list")
            if prs and len(prs) != pods:
                raise self._fail(f"len({where}.pods)", len(prs), f"{pods} (hardware.pods) or 0")
            dims = {"group": gemm["groups"], "m": gemm["m"], "n": gemm["n"], "k": gemm["k"]}
            for q, pr in enumerate(prs):
                pw = f"{where}.pods[{q}]"
                if pr.get("pod") != q:
                    raise self._fail(f"{pw}.pod", pr.get("pod"), str(q))
                for ax, hi in dims.items():
                    box = pr.get(ax)
                    if not (isinstance(box, list) and len(box) == 2 and 0 <= box[0] <= box[1] <= hi):
                        raise self._fail(f"{pw}.{ax}", box, f"[start, stop] within [0, {hi}]")
                s, n = pr.get("fold_start"), pr.get("folds")
                if not (isinstance(s, int) and isinstance(n, int) and 0 <= s and n >= 0 and s + n <= n_folds):
                    raise self._fail(f"{pw}.fold_start/folds", (s, n), f"a slice within the {n_folds} folds")
                sl = slice(s, s + n)
                if covered[sl].any():
                    raise self._fail(f"{pw}.fold_start", s, "a slice no other pod or layer claims")
                covered[sl] = True
                if n == 0:
                    continue
                for name, want in (("fold_layer", li), ("fold_pod", q)):
                    bad = np.nonzero(A[name][sl] != want)[0]
                    if len(bad):
                        i = s + int(bad[0])
                        raise self._fail(f"{name}[{i}]", int(A[name][i]), str(want))
                bad = np.nonzero(A["fold_seq"][sl] != np.arange(n))[0]
                if len(bad):
                    i = s + int(bad[0])
                    raise self._fail(f"fold_seq[{i}]", int(A["fold_seq"][i]), str(int(bad[0])))
                g = A["fold_group"][sl]
                if g.min() < pr["group"][0] or g.max() >= pr["group"][1]:
                    i = s + int(np.argmax((g < pr["group"][0]) | (g >= pr["group"][1])))
                    raise self._fail(f"fold_group[{i}]", int(A["fold_group"][i]), f"within the pod's groups {pr['group']}")
                for ax in ("m", "n", "k"):
                    lo, hi = A[f"fold_{ax}_start"][sl], A[f"fold_{ax}_stop"][sl]
                    bad = np.nonzero((lo < pr[ax][0]) | (hi > pr[ax][1]) | (lo >= hi))[0]
                    if len(bad):
                        i = s + int(bad[0])
                        raise self._fail(f"fold_{ax}_start/stop[{i}]", (int(A[f'fold_{ax}_start'][i]), int(A[f'fold_{ax}_stop'][i])),
                                         f"a non-empty range within the pod's {ax} range {pr[ax]}")
        if not covered.all():
            i = int(np.argmin(covered))
            raise self._fail(f"fold_layer[{i}]", int(A["fold_layer"][i]), "a fold claimed by some layers[].pods[] slice")
        nl = len(m["layers"])
        for name, hi in (("reduction_layer", nl), ("reduction_src_pod", pods), ("reduction_dst_pod", pods)):
            a = A[name]
            if len(a) and a.max() >= hi:
                i = int(np.argmax(a))
                raise self._fail(f"{name}[{i}]", int(a[i]), f"below {hi}")

    # --- files ----------------------------------------------------------------------------
    def write(self, path: str | Path) -> tuple[Path, Path]:
        """Write NAME.json and NAME.npz atomically (suffix of `path` optional); returns both paths."""
        return write_pair(path, self.meta, self.arrays)

    @classmethod
    def read(cls, path: str | Path) -> "MappingTrace":
        """Read and validate NAME.json + NAME.npz."""
        meta, arrays, js = read_pair(path, "mapping-trace", MappingTraceError)
        return cls(meta, arrays, source=str(js), created_by=meta.get("created_by", "?"))


