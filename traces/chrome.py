"""Chrome trace-event JSON (opens in Perfetto and chrome://tracing) from a utilization trace.

Layout: one process per pod ("pod q"), so each pod is one group of tracks:

* track "layers / folds" (tid 0): one slice per layer the pod worked on (its own span inside
  the layer) and, nested in it, one slice per fold (args: fold index, stall cycles in the fold);
  folds that overlap in time (the pipelined convention) go to extra lanes, tids 1, 2, ...;
* track "stalls" (tid 100): one slice per run of consecutive windows with stall cycles,
  starting at the run's first window and lasting the run's stall cycles (the trace keeps
  stalls per window, not their exact position inside it; args give the run's window span);
* counter "utilization %" per pod: busy, stall and PE utilization per window (percent).

Timestamps are microseconds (cycles / clock MHz); every slice carries its cycles in `args`.
Only plain arrays and dicts come in (`UtilizationTrace` and a folds dict of equal-length
integer arrays layer, pod, seq, start, end, stall in global cycles), so this module depends on
nothing outside `traces`. Large runs are capped: beyond `max_fold_slices` folds the fold
slices are left out (layer slices stay), and beyond `max_counter_events` counter samples the
windows are merged by a whole factor; the document's ``otherData`` says what was done.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .atomic import atomic_write
from .utilization import UtilizationTrace

STALL_TID = 100


def _lanes(start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Greedy lane per interval (sorted by start) so that intervals in one lane never overlap."""
    lane = np.zeros(len(start), dtype=np.int64)
    ends: list[int] = []
    for i in np.argsort(start, kind="stable"):
        for j, e in enumerate(ends):
            if e <= start[i]:
                lane[i] = j
                ends[j] = int(end[i])
                break
        else:
            lane[i] = len(ends)
            ends.append(int(end[i]))
    return lane


def chrome_trace(util: UtilizationTrace, folds: dict | None = None, *, max_fold_slices: int = 200_000,
                 max_counter_events: int = 200_000) -> dict:
    """The trace-event document (a dict ready for json.dump)."""
    m = util.meta
    us = 1.0 / float(m["clock_mhz"])  # microseconds per cycle
    pods = util.pods
    ev: list[dict] = []
    other = {"network": m["network"], "hardware": m["hardware"], "dataflow": m["dataflow"], "timing": m["timing"],
             "window_cycles": util.window_cycles, "total_cycles": m["total_cycles"], "clock_mhz": m["clock_mhz"],
             "memory": m.get("memory", ""), "time_unit": "microseconds (cycles / clock_mhz)"}
    for q in range(pods):
        pid = q + 1
        ev.append({"name": "process_name", "ph": "M", "pid": pid, "tid": 0, "args": {"name": f"pod {q}"}})
        ev.append({"name": "process_sort_index", "ph": "M", "pid": pid, "tid": 0, "args": {"sort_index": q}})
        ev.append({"name": "thread_name", "ph": "M", "pid": pid, "tid": 0, "args": {"name": "layers / folds"}})
        ev.append({"name": "thread_name", "ph": "M", "pid": pid, "tid": STALL_TID, "args": {"name": "stalls"}})

    # layer slices per pod: from the layer's start to the pod's last fold end in it
    f = folds if folds is not None else None
    n_f = len(f["start"]) if f is not None else 0
    include_folds = f is not None and n_f <= max_fold_slices
    other["fold_slices"] = "included" if include_folds else (
        f"left out: {n_f} folds > max_fold_slices = {max_fold_slices}" if f is not None else "no fold records")
    for rec in m["layers"]:
        li = rec.get("index", 0)
        for q in range(pods):
            if f is not None and n_f:
                sel = (f["layer"] == li) & (f["pod"] == q)
                if not sel.any():
                    continue
                s0, s1 = int(rec["start_cycle"]), int(f["end"][sel].max())
            else:
                s0, s1 = int(rec["start_cycle"]), int(rec["end_cycle"])
            if s1 <= s0:
                continue
            ev.append({"name": rec["name"], "cat": "layer", "ph": "X", "pid": q + 1, "tid": 0, "ts": s0 * us,
                       "dur": (s1 - s0) * us, "args": {"layer": li, "start_cycle": s0, "end_cycle": s1}})
    if include_folds and n_f:
        for q in range(pods):
            sel = np.nonzero(f["pod"] == q)[0]
            if not len(sel):
                continue
            st, en = f["start"][sel], f["end"][sel]
            lane = _lanes(st, en)
            for i, ln in zip(sel.tolist(), lane.tolist()):
                s0, s1 = int(f["start"][i]), int(f["end"][i])
                ev.append({"name": f"fold {int(f['seq'][i])}", "cat": "fold", "ph": "X", "pid": q + 1, "tid": ln,
                           "ts": s0 * us, "dur": (s1 - s0) * us,
                           "args": {"layer": int(f["layer"][i]), "fold": int(f["seq"][i]), "start_cycle": s0,
                                    "end_cycle": s1, "stall_cycles": int(f["stall"][i])}})
            for ln in range(1, int(lane.max()) + 1 if len(lane) else 1):
                ev.append({"name": "thread_name", "ph": "M", "pid": q + 1, "tid": ln,
                           "args": {"name": f"folds (overlap lane {ln})"}})

    # stall slices: runs of windows with stalls
    n = util.window_cycles
    stall = util["stall"]
    for q in range(pods):
        has = stall[q] > 0
        if not has.any():
            continue
        edges = np.diff(np.concatenate([[0], has.astype(np.int8), [0]]))
        for a, b in zip(np.nonzero(edges == 1)[0].tolist(), np.nonzero(edges == -1)[0].tolist()):
            cyc = int(stall[q, a:b].sum())
            ev.append({"name": "stall", "cat": "stall", "ph": "X", "pid": q + 1, "tid": STALL_TID, "ts": a * n * us,
                       "dur": cyc * us, "args": {"stall_cycles": cyc, "first_window": a, "last_window": b - 1,
                                                 "window_cycles": n}})

    # counters, merged by a whole factor when there would be too many samples
    nw = util.n_windows
    factor = max(1, -(-pods * nw // max_counter_events))
    other["counter_windows_merged"] = factor
    lens = util["window_lengths"]
    pad = (-nw) % factor

    def merge(a):
        return np.pad(a, [(0, 0)] * (a.ndim - 1) + [(0, pad)]).reshape(*a.shape[:-1], -1, factor).sum(axis=-1)

    L = merge(lens)
    B, S, M = merge(util["busy"]), merge(util["stall"]), merge(util["macs"])
    pes = int(m["rows"]) * int(m["cols"])
    for q in range(pods):
        for w in range(len(L)):
            if L[w] == 0:
                continue
            ev.append({"name": "utilization %", "ph": "C", "pid": q + 1, "ts": w * factor * n * us,
                       "args": {"busy": round(100.0 * B[q, w] / L[w], 3), "stall": round(100.0 * S[q, w] / L[w], 3),
                                "pe": round(100.0 * M[q, w] / (L[w] * pes), 3)}})
    return {"traceEvents": ev, "displayTimeUnit": "ns", "otherData": other}


def write_chrome_trace(path: str | Path, util: UtilizationTrace, folds: dict | None = None, **kw) -> Path:
    """Write the trace-event JSON atomically; returns the path."""
    doc = chrome_trace(util, folds, **kw)
    path = Path(path)
    atomic_write(path, json.dumps(doc, separators=(",", ":")).encode("utf-8"))
    return path
