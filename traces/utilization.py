"""Utilization traces: busy / stalled / idle cycles per pod per window of N cycles (schema v1).

Written by the cycle-level engine (`cosim simulate`), read by anyone. Two files side by side,
written atomically (temporary name, then rename):

* ``NAME.json`` — the sidecar (JSON object)::

    schema         "cosim.utilization-trace"
    version        1
    created_by     producer, e.g. "cosim.engine"
    network        network name
    hardware       hardware name
    dataflow       "os" | "ws" | "is"
    timing         "scalesim" | "pipelined"
    pods, rows, cols   the machine (PEs per pod = rows x cols)
    clock_mhz      array clock, to turn cycles into time
    window_cycles  N, cycles per window; window w covers cycles [w*N, (w+1)*N) of the timeline
    total_cycles   length of the timeline (the last window may be short)
    memory         free-form description of the memory model the run used
    layers         list, execution order: {index, name, start_cycle, end_cycle}; layers run
                   one after another and layer i occupies [start_cycle, end_cycle)
    arrays         {array name: one-line description}

* ``NAME.npz`` — int64 arrays (uncompressed NumPy ``.npz``), shape (pods, windows) unless noted:

    busy           cycles in the window in which the pod's array did at least one MAC
    stall          cycles in which the pod's array waited for memory
    idle           the rest: neither busy nor stalled (filling, draining, waiting for the
                   other pods, pool/add layers, or done)
    macs           MACs the pod did in the window
    window_lengths (windows,) cycles in each window (N, the last one possibly shorter)

Invariants (checked on construction): busy + stall + idle == window_lengths for every pod and
window; all counts >= 0; macs <= busy * rows * cols; sum(window_lengths) == total_cycles.

Bump `VERSION` on any incompatible change; readers reject other versions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .sidecar import read_pair, write_pair

SCHEMA = "cosim.utilization-trace"
VERSION = 1

ARRAYS = {
    "busy": "(pods, windows) cycles with at least one MAC on the pod's array",
    "stall": "(pods, windows) cycles the pod's array waited for memory",
    "idle": "(pods, windows) cycles neither busy nor stalled",
    "macs": "(pods, windows) MACs done",
    "window_lengths": "(windows,) cycles in each window",
}
_REQUIRED_META = {"network": str, "hardware": str, "dataflow": str, "timing": str, "pods": int, "rows": int,
                  "cols": int, "clock_mhz": (int, float), "window_cycles": int, "total_cycles": int,
                  "layers": list}


class UtilizationTraceError(ValueError):
    """A utilization trace that breaks the schema; names the file, the field and the value."""






class UtilizationTrace:
    """Sidecar metadata plus the (pods x windows) arrays, validated on construction."""

    def __init__(self, meta: dict, arrays: dict, source: str = "<memory>", created_by: str = "cosim.engine"):
        self.source = source
        meta = dict(meta)
        meta.setdefault("schema", SCHEMA)
        meta.setdefault("version", VERSION)
        meta.setdefault("created_by", created_by)
        meta.setdefault("arrays", dict(ARRAYS))
        meta.setdefault("memory", "")
        self.meta = meta
        self.arrays = {k: np.asarray(v) for k, v in arrays.items()}
        self.validate()

    # --- access ---------------------------------------------------------------------------
    @property
    def pods(self) -> int:
        """Number of pods (rows of the arrays)."""
        return int(self.meta["pods"])

    @property
    def window_cycles(self) -> int:
        """Cycles per window."""
        return int(self.meta["window_cycles"])

    @property
    def n_windows(self) -> int:
        """Number of windows."""
        return int(len(self.arrays["window_lengths"]))

    @property
    def layers(self) -> list[dict]:
        """Per-layer spans {index, name, start_cycle, end_cycle}."""
        return self.meta["layers"]

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]

    def window_starts(self) -> np.ndarray:
        """First cycle of each window."""
        return np.arange(self.n_windows, dtype=np.int64) * self.window_cycles

    def busy_fraction(self) -> np.ndarray:
        """(pods, windows) share of each window's cycles that were busy."""
        n = self.arrays["window_lengths"][None, :]
        return np.divide(self.arrays["busy"], n, out=np.zeros(self.arrays["busy"].shape), where=n > 0)

    def stall_fraction(self) -> np.ndarray:
        """(pods, windows) share of each window's cycles that were stalled."""
        n = self.arrays["window_lengths"][None, :]
        return np.divide(self.arrays["stall"], n, out=np.zeros(self.arrays["stall"].shape), where=n > 0)

    def pe_utilization(self) -> np.ndarray:
        """(pods, windows) MACs / (window cycles x rows x cols)."""
        n = self.arrays["window_lengths"][None, :] * int(self.meta["rows"]) * int(self.meta["cols"])
        return np.divide(self.arrays["macs"], n, out=np.zeros(self.arrays["macs"].shape), where=n > 0)

    def totals(self) -> dict:
        """Per-pod totals of busy, stall, idle cycles and MACs (lists)."""
        return {k: self.arrays[k].sum(axis=1).tolist() for k in ("busy", "stall", "idle", "macs")}

    # --- validation -----------------------------------------------------------------------
    def _fail(self, field: str, value, expected: str) -> UtilizationTraceError:
        return UtilizationTraceError(f"{self.source}: {field} = {value!r}: expected {expected}")

    def validate(self) -> None:
        """Check the schema and invariants; raise UtilizationTraceError naming the first problem."""
        m = self.meta
        if m.get("schema") != SCHEMA:
            raise self._fail("schema", m.get("schema"), repr(SCHEMA))
        if m.get("version") != VERSION:
            raise self._fail("version", m.get("version"), f"{VERSION} (this reader's version)")
        for key, typ in _REQUIRED_META.items():
            v = m.get(key)
            if not isinstance(v, typ) or isinstance(v, bool):
                raise self._fail(key, v, f"a {typ.__name__ if isinstance(typ, type) else 'number'}")
        for key in ("pods", "rows", "cols", "window_cycles"):
            if m[key] < 1:
                raise self._fail(key, m[key], "a positive integer")
        if m["total_cycles"] < 0:
            raise self._fail("total_cycles", m["total_cycles"], "a non-negative integer")
        for name in ARRAYS:
            if name not in self.arrays:
                raise self._fail(f"array {name}", None, "present")
            a = self.arrays[name]
            if a.dtype.kind not in "iu":
                raise self._fail(f"array {name}", str(a.dtype), "an integer array")
            if a.size and a.min() < 0:
                idx = np.unravel_index(int(np.argmin(a)), a.shape)
                raise self._fail(f"{name}[{', '.join(map(str, idx))}]", int(a[idx]), "a non-negative count")
        extra = set(self.arrays) - set(ARRAYS)
        if extra:
            raise self._fail("arrays", sorted(extra), "only the schema's arrays")
        lens = self.arrays["window_lengths"]
        nw = len(lens)
        if lens.ndim != 1:
            raise self._fail("window_lengths.shape", list(lens.shape), "one dimension")
        for name in ("busy", "stall", "idle", "macs"):
            if self.arrays[name].shape != (m["pods"], nw):
                raise self._fail(f"{name}.shape", list(self.arrays[name].shape), f"[{m['pods']}, {nw}] (pods, windows)")
        n = m["window_cycles"]
        if nw and ((lens[:-1] != n).any() or not 0 <= lens[-1] <= n):
            raise self._fail("window_lengths", lens[:4].tolist(), f"{n} for every window but the last, which is <= {n}")
        if int(lens.sum()) != m["total_cycles"]:
            raise self._fail("sum(window_lengths)", int(lens.sum()), f"total_cycles = {m['total_cycles']}")
        a = self.arrays
        bad = np.argwhere(a["busy"] + a["stall"] + a["idle"] != lens[None, :])
        if len(bad):
            q, w = (int(x) for x in bad[0])
            got = int(a["busy"][q, w] + a["stall"][q, w] + a["idle"][q, w])
            raise self._fail(f"busy + stall + idle [pod {q}, window {w}]", got, f"the window's {int(lens[w])} cycles")
        pes = m["rows"] * m["cols"]
        bad = np.argwhere(a["macs"] > a["busy"] * pes)
        if len(bad):
            q, w = (int(x) for x in bad[0])
            raise self._fail(f"macs[{q}, {w}]", int(a["macs"][q, w]),
                             f"at most busy x {pes} PEs = {int(a['busy'][q, w]) * pes}")
        for i, rec in enumerate(m["layers"]):
            if not (isinstance(rec, dict) and isinstance(rec.get("name"), str)
                    and isinstance(rec.get("start_cycle"), int) and isinstance(rec.get("end_cycle"), int)
                    and 0 <= rec["start_cycle"] <= rec["end_cycle"] <= m["total_cycles"]):
                raise self._fail(f"layers[{i}]", rec, "{index, name, start_cycle, end_cycle} within the timeline")

    # --- files ----------------------------------------------------------------------------
    def write(self, path: str | Path) -> tuple[Path, Path]:
        """Write NAME.json and NAME.npz atomically (suffix of `path` optional); returns both paths."""
        return write_pair(path, self.meta, self.arrays)

    @classmethod
    def read(cls, path: str | Path) -> "UtilizationTrace":
        """Read and validate NAME.json + NAME.npz."""
        meta, arrays, js = read_pair(path, "utilization-trace", UtilizationTraceError)
        return cls(meta, arrays, source=str(js), created_by=meta.get("created_by", "?"))
