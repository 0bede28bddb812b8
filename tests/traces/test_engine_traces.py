"""Utilization traces, Chrome trace-event JSON, PNG timelines and address-trace files."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest

from traces.address import TraceWriter, estimate_bytes, format_rows
from traces.chrome import STALL_TID, chrome_trace, write_chrome_trace
from traces.plot import plot_timeline
from traces.utilization import UtilizationTrace, UtilizationTraceError

TRACES = Path(__file__).resolve().parents[2] / "traces"


def make_trace(pods=2, n=10, total=47, seed=0) -> UtilizationTrace:
    rng = np.random.default_rng(seed)
    nw = -(-total // n)
    lens = np.full(nw, n)
    lens[-1] = total - (nw - 1) * n
    busy = np.minimum(rng.integers(0, n + 1, (pods, nw)), lens)
    stall = np.minimum(rng.integers(0, 4, (pods, nw)), lens - busy)
    idle = lens - busy - stall
    macs = busy * rng.integers(0, 4 * 6 + 1, (pods, nw))
    meta = {"network": "net", "hardware": "hw", "dataflow": "ws", "timing": "scalesim", "pods": pods, "rows": 4,
            "cols": 6, "clock_mhz": 500.0, "window_cycles": n, "total_cycles": total,
            "layers": [{"index": 0, "name": "a", "start_cycle": 0, "end_cycle": 20},
                       {"index": 1, "name": "b", "start_cycle": 20, "end_cycle": total}]}
    return UtilizationTrace(meta, {"busy": busy, "stall": stall, "idle": idle, "macs": macs, "window_lengths": lens})


def test_utilization_trace_roundtrip_and_views(tmp_path):
    ut = make_trace()
    js, npz = ut.write(tmp_path / "u")
    assert js.name == "u.json" and npz.name == "u.npz"
    back = UtilizationTrace.read(tmp_path / "u.json")
    for k in ("busy", "stall", "idle", "macs", "window_lengths"):
        assert (back[k] == ut[k]).all()
    assert back.meta["schema"] == "cosim.utilization-trace" and back.meta["version"] == 1
    assert back.n_windows == 5 and (back.window_starts() == np.arange(5) * 10).all()
    assert np.allclose(back.busy_fraction() + back.stall_fraction() + back["idle"] / back["window_lengths"], 1.0)
    assert (back.pe_utilization() <= 1).all()
    assert back.totals()["busy"] == ut["busy"].sum(axis=1).tolist()
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def test_utilization_trace_errors_name_the_field(tmp_path):
    ut = make_trace()
    arrays = {k: v.copy() for k, v in ut.arrays.items()}
    arrays["idle"][1, 2] += 1
    with pytest.raises(UtilizationTraceError, match=r"busy \+ stall \+ idle \[pod 1, window 2\]"):
        UtilizationTrace(ut.meta, arrays)
    with pytest.raises(UtilizationTraceError, match="version = 2"):
        UtilizationTrace({**ut.meta, "version": 2}, ut.arrays)
    arrays = {k: v.copy() for k, v in ut.arrays.items()}
    arrays["macs"][0, 0] = arrays["busy"][0, 0] * 24 + 1
    with pytest.raises(UtilizationTraceError, match=r"macs\[0, 0\]"):
        UtilizationTrace(ut.meta, arrays)
    with pytest.raises(UtilizationTraceError, match="sum\\(window_lengths\\)"):
        UtilizationTrace({**ut.meta, "total_cycles": 48}, ut.arrays)
    (tmp_path / "x.json").write_text("{")
    with pytest.raises(UtilizationTraceError, match="x.json: not valid JSON"):
        UtilizationTrace.read(tmp_path / "x")


def _check_nesting(events):
    """Complete events on one (pid, tid) must nest: no partial overlaps."""
    by = {}
    for e in events:
        if e.get("ph") == "X":
            by.setdefault((e["pid"], e["tid"]), []).append((e["ts"], e["ts"] + e["dur"]))
    for spans in by.values():
        spans.sort(key=lambda s: (s[0], -s[1]))
        stack = []
        for a, b in spans:
            while stack and stack[-1] <= a + 1e-9:
                stack.pop()
            assert not stack or b <= stack[-1] + 1e-9, "overlapping slices on one track"
            stack.append(b)


def test_chrome_trace_tracks_slices_and_counters(tmp_path):
    ut = make_trace()
    folds = {"layer": np.array([0, 0, 1, 1, 1]), "pod": np.array([0, 0, 0, 1, 1]), "seq": np.array([0, 1, 0, 0, 1]),
             "start": np.array([0, 8, 20, 20, 26]), "end": np.array([10, 18, 40, 30, 45]),
             "stall": np.array([1, 0, 2, 0, 3])}
    doc = chrome_trace(ut, folds)
    ev = doc["traceEvents"]
    names = {(e["pid"], e["args"]["name"]) for e in ev if e.get("name") == "process_name"}
    assert names == {(1, "pod 0"), (2, "pod 1")}
    folds_ev = [e for e in ev if e.get("cat") == "fold"]
    assert len(folds_ev) == 5
    assert {e["tid"] for e in folds_ev if e["pid"] == 1} == {0, 1}  # folds 0 and 1 overlap: two lanes
    assert any(e.get("cat") == "stall" and e["tid"] == STALL_TID for e in ev)
    counters = [e for e in ev if e.get("ph") == "C"]
    assert len(counters) == 2 * ut.n_windows and set(counters[0]["args"]) == {"busy", "stall", "pe"}
    assert folds_ev[0]["ts"] == pytest.approx(0.0) and folds_ev[0]["dur"] == pytest.approx(10 / 500.0)
    _check_nesting(ev)
    path = write_chrome_trace(tmp_path / "t.json", ut, folds, max_fold_slices=2)
    doc2 = json.loads(path.read_text())
    assert not [e for e in doc2["traceEvents"] if e.get("cat") == "fold"]
    assert "left out" in doc2["otherData"]["fold_slices"]
    doc3 = chrome_trace(ut, None, max_counter_events=4)
    assert doc3["otherData"]["counter_windows_merged"] == 3


def test_plot_timeline_writes_a_png(tmp_path):
    path = plot_timeline(make_trace(pods=3, n=5, total=203), tmp_path / "t.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000


def test_address_trace_writer_is_atomic_and_scalesim_formatted(tmp_path):
    rows = np.array([[0, 5, -1, 7], [3, -1, -1, 10000000]])
    assert format_rows(rows) == b"0,5,-1,7\n3,-1,-1,10000000\n"
    with TraceWriter(tmp_path / "A.csv") as w:
        w.write(rows)
        w.write(rows[:0])
        assert not (tmp_path / "A.csv").exists()  # only a temporary file while writing
    assert (tmp_path / "A.csv").read_text() == "0,5,-1,7\n3,-1,-1,10000000\n" and w.rows == 2
    with pytest.raises(RuntimeError):
        with TraceWriter(tmp_path / "B.csv") as w:
            w.write(rows)
            raise RuntimeError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["A.csv"]
    assert estimate_bytes(2, 3, 10000000, 3) >= len(format_rows(rows))


def test_traces_package_imports_no_other_package():
    """traces is a leaf: it must not import cosim, mapping, rtl_models or nas."""
    for path in TRACES.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            mods = []
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                mods = [node.module or ""]
            for m in mods:
                assert m.split(".")[0] not in ("cosim", "mapping", "rtl_models", "nas"), f"{path.name} imports {m}"
