"""`cosim simulate` and `cosim validate` end to end (small topologies, temporary directories)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from nas.cli import app
from cosim.scalesim_bridge import scalesim_available
from traces.utilization import UtilizationTrace

needs_scalesim = pytest.mark.skipif(not scalesim_available(), reason="scalesim not installed")
runner = CliRunner()

HW_TOML = """preset = "edge_16x16"
name = "tiny2"
pods = 2
rows = 4
cols = 6
dataflow = "ws"
ifmap_sram_bytes = 1024
filter_sram_bytes = 1024
ofmap_sram_bytes = 1024
dram_bytes_per_cycle = 2.0
"""
TOPOLOGY = """Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,
c1, 10, 10, 3, 3, 3, 7, 1,
c2, 9, 9, 3, 3, 7, 5, 2,
DPc3, 6, 6, 3, 3, 5, 1, 1,
"""


@pytest.fixture()
def inputs(tmp_path):
    hw = tmp_path / "tiny.toml"
    hw.write_text(HW_TOML)
    topo = tmp_path / "topo.csv"
    topo.write_text(TOPOLOGY)
    return hw, topo


def run(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_simulate_writes_reports_and_traces(tmp_path, inputs):
    hw, topo = inputs
    out = tmp_path / "out"
    r = run("simulate", "--topology", topo, "--hw", hw, "--out", out, "--window", "16", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["source"] == "engine" and len(doc["layers"]) == 3 and doc["total"]["total_cycles"] > 0
    names = {Path(f).name for f in doc["files"]}
    assert names == {"report.json", "report.csv", "utilization.json", "utilization.npz", "trace.json", "timeline.png",
                     "mapping_trace.json", "mapping_trace.npz"}
    ut = UtilizationTrace.read(out / "utilization")
    assert ut.pods == 2 and ut.window_cycles == 16 and ut.meta["total_cycles"] > 0
    chrome = json.loads((out / "trace.json").read_text())
    assert any(e.get("cat") == "fold" for e in chrome["traceEvents"])
    rep = json.loads((out / "report.json").read_text())
    assert rep["total"]["total_cycles"] == doc["total"]["total_cycles"]
    assert (out / "report.csv").read_text().count("\n") == 5  # header, 3 layers, total
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]  # no temporary directory left


def test_simulate_never_half_overwrites(tmp_path, inputs):
    hw, topo = inputs
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    r = run("simulate", "--topology", topo, "--hw", hw, "--out", out, "--quiet")
    assert r.exit_code == 2 and "use --force" in r.output
    # a run that fails after starting leaves the old directory untouched
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    r = run("simulate", "--topology", topo, "--hw", hw, "--out", out, "--force", "--multipliers", bad, "--quiet")
    assert r.exit_code == 2 and "not valid JSON" in r.output
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    r = run("simulate", "--topology", topo, "--hw", hw, "--out", out, "--force", "--quiet", "--timing", "pipelined")
    assert r.exit_code == 0, r.output
    assert not (out / "keep.txt").exists() and (out / "report.json").exists()
    assert json.loads((out / "report.json").read_text())["timing"] == "pipelined"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_simulate_address_traces_print_a_size_estimate_first(tmp_path, inputs):
    hw, topo = inputs
    out = tmp_path / "out"
    r = run("simulate", "--topology", topo, "--hw", hw, "--out", out, "--address-traces", "--max-trace-mb", "0.001")
    assert r.exit_code == 2 and re.search(r"estimated size up to [\d.,]+ MiB", r.output)
    assert not out.exists()
    r = run("simulate", "--topology", topo, "--hw", hw, "--out", out, "--address-traces", "--quiet")
    assert r.exit_code == 0, r.output
    assert r.output.index("estimated size") < r.output.index("wrote")
    files = sorted((out / "address_traces").rglob("*.csv"))
    # 3 layers, 2 pods; the DP layer runs its 5 groups (SCALE-Sim: one layer per channel) split over pods
    assert {f.name for f in files} == {"IFMAP_SRAM_TRACE.csv", "FILTER_SRAM_TRACE.csv", "OFMAP_SRAM_TRACE.csv",
                                       "IFMAP_DRAM_TRACE.csv", "FILTER_DRAM_TRACE.csv", "OFMAP_DRAM_TRACE.csv"}
    ofmap = next(f for f in files if f.name == "OFMAP_SRAM_TRACE.csv")
    sram = np.loadtxt(ofmap, delimiter=",", dtype=np.int64, ndmin=2)
    assert sram.shape[1] == 1 + 6 and (np.diff(sram[:, 0]) >= 1).all()


def test_validate_without_scalesim_exits_zero_and_prints_tables(tmp_path, inputs):
    hw, topo = inputs
    r = run("validate", "--topology", topo, "--hw", hw, "--no-scalesim", "--quiet")
    assert r.exit_code == 0, r.output
    assert r.output.count("compute cycles") == 3 and "all within tolerance" in r.output
    r = run("validate", "--topology", topo, "--hw", hw, "--no-scalesim", "--json", "--layers", "1")
    doc = json.loads(r.stdout)
    assert [la["name"] for la in doc["layers"]] == ["c2"] and doc["ok"]
    cc = doc["layers"][0]["values"]["compute_cycles"]
    assert cc["analytical"] == cc["engine"]


@needs_scalesim
def test_validate_against_scalesim_is_exact(tmp_path, inputs):
    hw, topo = inputs
    r = run("validate", "--topology", topo, "--hw", hw, "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert all(la["fields_equal"] for la in doc["layers"])
    assert doc["machine"]["pods"] == 1 and doc["machine"]["ifmap_sram_bytes"] == 1024


def test_validate_flags_differences_beyond_tolerance(tmp_path, inputs, monkeypatch):
    """A register-level model that disagrees makes validate exit 1."""
    import cosim.validation as v

    hw, topo = inputs
    monkeypatch.setattr(v, "REGISTER_LEVEL", lambda shape, spec, groups=1: {"total_cycles": 1})
    r = run("validate", "--topology", topo, "--hw", hw, "--no-scalesim", "--quiet")
    assert r.exit_code == 1 and "register-level" in r.output and "beyond tolerance" in r.output


@pytest.mark.parametrize("dataflow", ["os", "ws", "is"])
@pytest.mark.parametrize("timing", ["scalesim", "pipelined"])
def test_register_level_column_equals_the_engine(inputs, dataflow, timing):
    """The register-level array, stepped cycle by cycle, takes the engine's compute cycles."""
    hw, topo = inputs
    r = run("validate", "--topology", topo, "--hw", hw, "--no-scalesim", "--json", "--quiet",
            "--dataflow", dataflow, "--timing", timing)
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["register_level"] and doc["ok"]
    got = [la["values"]["compute_cycles"] for la in doc["layers"]]
    assert got[0]["register_level"] == got[0]["engine"] > 0 and got[1]["register_level"] == got[1]["engine"] > 0
    assert got[2]["register_level"] is None  # depthwise: grouped, the array runs one GEMM


@needs_scalesim
def test_validate_ci_suite_writes_its_table(tmp_path):
    stem = tmp_path / "vci"
    r = run("validate", "--suite", "ci", "--out", stem, "--quiet")
    assert r.exit_code == 0, r.output
    doc = json.loads((tmp_path / "vci.json").read_text())
    s = doc["summary"]
    assert s["all_equal"] and s["dataflows"] == ["is", "os", "ws"] and s["modes"] == ["CALC", "USER"]
    assert {"conv", "gemm"} <= set(s["kinds"]) and 2 in s["strides"]
    assert (tmp_path / "vci.csv").read_text().splitlines()[0].startswith("case,dataflow,rows,cols")


@needs_scalesim
def test_address_sram_traces_equal_scalesims(tmp_path):
    """The SRAM traces of one layer on one pod are SCALE-Sim 3.0.0's, value for value."""
    from cosim.analytical import mapping_trace
    from cosim.address_traces import write_address_traces
    from cosim.engine import simulate_network
    from cosim.scalesim_bridge import ScaleSimConfig, ScaleSimLayer, config_text, topology_text
    from cosim.validation import _hw_of, _network_of

    L, C = ScaleSimLayer, ScaleSimConfig
    cases = ((C(4, 6, "os", 1, 1, 1, "USER", 2, 2, 2, run_name="a"), L("c", 9, 9, 3, 3, 3, 7, 2)),  # clipped
             (C(5, 4, "is", 1, 1, 1, "CALC", run_name="b"), L("c", 8, 8, 3, 3, 2, 6, 1)),
             (C(4, 4, "ws", 1, 1, 1, "USER", 1, 1, 1, run_name="c"), L("c", 7, 7, 1, 1, 9, 5, 1)))
    for i, (cfg, layer) in enumerate(cases):
        d = tmp_path / f"s{i}"
        d.mkdir()
        (d / "s.cfg").write_text(config_text(cfg))
        (d / "t.csv").write_text(topology_text([layer])[0])
        (d / "l.csv").write_text("Layer name,\n")
        code = ("from scalesim.scale_sim import scalesim; s = scalesim(save_disk_space=False, verbose=False, "
                "config='s.cfg', topology='t.csv', layout='l.csv'); s.run_scale(top_path='out')")
        subprocess.run([sys.executable, "-c", code], cwd=d, check=True, capture_output=True, timeout=300)
        net = _network_of((layer,))
        hw, mem = _hw_of(cfg)
        run_ = simulate_network(net, hw, memory=mem)
        write_address_traces(run_, mapping_trace(net, hw), d / "ours")
        ours = d / "ours" / "layer000_c" / "pod0"
        theirs = d / "out" / cfg.run_name / "layer0"
        for name in ("IFMAP_SRAM_TRACE.csv", "FILTER_SRAM_TRACE.csv", "OFMAP_SRAM_TRACE.csv"):
            a = np.loadtxt(ours / name, delimiter=",", dtype=np.int64, ndmin=2)
            b = np.loadtxt(theirs / name, delimiter=",", ndmin=2).astype(np.int64)
            assert a.shape == b.shape and (a == b).all(), (cfg.run_name, name)
