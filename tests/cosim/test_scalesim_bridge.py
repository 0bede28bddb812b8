"""The SCALE-Sim bridge: config and topology writers, report parsers, the subprocess run."""

from __future__ import annotations

import configparser
import math

import pytest

from cosim.scalesim_bridge import (
    ComputeReportRow,
    DetailedAccessRow,
    ScaleSimConfig,
    ScaleSimError,
    ScaleSimLayer,
    config_text,
    parse_compute_report,
    parse_detailed_access_report,
    parse_reports,
    run_scalesim,
    scalesim_available,
    topology_text,
)

needs_scalesim = pytest.mark.skipif(not scalesim_available(), reason="scalesim not installed")


def test_config_has_every_key_scalesim_reads(tmp_path):
    cfg = ScaleSimConfig(4, 6, "ws", 1, 2, 3, "USER", 5, 7, 9, run_name="r1")
    path = tmp_path / "s.cfg"
    path.write_text(config_text(cfg))
    cp = configparser.ConfigParser()
    cp.read(path)
    assert cp.get("architecture_presets", "ArrayHeight") == "4"
    assert cp.get("architecture_presets", "ArrayWidth") == "6"
    assert cp.get("architecture_presets", "Bandwidth") == "9"  # ofmap drain rate
    assert cp.get("layout", "IfmapSRAMBankBandwidth") == "5"  # ifmap DRAM rate
    assert cp.get("layout", "FilterSRAMBankBandwidth") == "7"  # filter DRAM rate
    assert cp.get("run_presets", "InterfaceBandwidth") == "USER"
    assert not cp.has_section("network_presets")  # SCALE-Sim 3.0.0 misreads that section


@needs_scalesim
def test_config_round_trips_through_scalesims_own_parser(tmp_path):
    from scalesim.scale_config import scale_config

    cfg = ScaleSimConfig(4, 6, "is", 1, 2, 3, "USER", 5, 7, 9)
    path = tmp_path / "s.cfg"
    path.write_text(config_text(cfg))
    sc = scale_config()
    sc.read_conf_file(str(path))
    assert (sc.array_rows, sc.array_cols, sc.df) == (4, 6, "is")
    assert sc.get_mem_sizes() == (1, 2, 3)
    assert sc.use_user_dram_bandwidth()
    # what single_layer_sim passes to the read buffers and the write buffer in USER mode
    assert sc.ifmap_sram_bank_bandwidth == 5
    assert sc.filter_sram_bank_bandwidth == 7
    assert sc.get_bandwidths_as_list()[0] == 9
    assert sc.ifmap_sram_bank_num == sc.filter_sram_bank_num == 1


def test_topology_rows_end_with_a_comma_and_forms():
    conv = [ScaleSimLayer("c1", 10, 10, 3, 3, 4, 8, 2), ScaleSimLayer.gemm("g", 5, 6, 7)]
    text, form = topology_text(conv)
    assert form == "conv"
    lines = text.strip().splitlines()
    assert all(line.endswith(",") for line in lines)
    assert lines[1] == "c1, 10, 10, 3, 3, 4, 8, 2,"
    assert lines[2] == "g, 5, 7, 1, 7, 1, 6, 1,"  # a GEMM in conv form: H=M, W=K, Fw=K, N
    text, form = topology_text([ScaleSimLayer.gemm("g", 5, 6, 7)])
    assert form == "gemm"
    assert text.splitlines()[1] == "g, 5, 6, 7,"


def test_topology_rules_are_enforced():
    with pytest.raises(ScaleSimError, match="DP"):
        ScaleSimLayer("DPconv", 8, 8, 3, 3, 4, 4)  # would silently become depthwise
    with pytest.raises(ScaleSimError, match="DP"):
        ScaleSimLayer("dw", 8, 8, 3, 3, 4, 4, depthwise=True)
    with pytest.raises(ScaleSimError, match="filter_h"):
        ScaleSimLayer("c", 8, 8, 0, 3, 4, 4)
    with pytest.raises(ScaleSimError, match="larger than the ifmap"):
        ScaleSimLayer("c", 2, 8, 3, 3, 4, 4)
    with pytest.raises(ScaleSimError, match="commas"):
        ScaleSimLayer("a,b", 8, 8, 3, 3, 4, 4)
    with pytest.raises(ScaleSimError, match="duplicate"):
        topology_text([ScaleSimLayer("c", 8, 8, 3, 3, 4, 4)] * 2)
    with pytest.raises(ScaleSimError, match="are convolutions"):
        topology_text([ScaleSimLayer("c", 8, 8, 3, 3, 4, 4)], form="gemm")
    with pytest.raises(ScaleSimError, match="dataflow"):
        ScaleSimConfig(4, 4, "rs", 1, 1, 1)
    with pytest.raises(ScaleSimError, match="ofmap_sram_kib"):
        ScaleSimConfig(4, 4, "os", 1, 1, 0)


@pytest.mark.parametrize("in_hw, f, s, p", [(32, 3, 1, 1), (32, 3, 2, 1), (7, 7, 2, 3),
                                            (224, 7, 2, 3), (13, 1, 1, 0), (15, 5, 3, 2)])
def test_from_conv_matches_torch_output_size(in_hw, f, s, p):
    la = ScaleSimLayer.from_conv("c", in_hw, in_hw, f, f, 3, 8, stride=s, padding=p)
    torch_out = (in_hw + 2 * p - f) // s + 1
    scalesim_out = math.ceil((la.ifmap_h - f + s) / s)
    assert scalesim_out == torch_out
    assert la.shapes()[0].ofmap_h == torch_out


def test_depthwise_rows_are_one_channel_each():
    la = ScaleSimLayer("DPc", 8, 8, 3, 3, 4, 1, depthwise=True)
    assert la.report_names() == [f"DPcChannel_{i}" for i in range(4)]
    assert [s.channels for s in la.shapes()] == [1] * 4


def _write_reports(d, compute_rows, detail_rows=None):
    d.mkdir()
    (d / "COMPUTE_REPORT.csv").write_text(
        "LayerID, Total Cycles (incl. prefetch), Total Cycles, Stall Cycles, Overall Util %, "
        "Mapping Efficiency %, Compute Util %,\n" + compute_rows)
    (d / "BANDWIDTH_REPORT.csv").write_text(
        "LayerID, Avg IFMAP SRAM BW, Avg FILTER SRAM BW, Avg OFMAP SRAM BW, Avg IFMAP DRAM BW, "
        "Avg FILTER DRAM BW, Avg OFMAP DRAM BW,\n0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0,\n")
    (d / "DETAILED_ACCESS_REPORT.csv").write_text(
        "LayerID, a,\n" + (detail_rows or "0, " + ", ".join(["1.0"] * 18) + ",\n"))


def test_parsers_read_reports_and_name_bad_fields(tmp_path):
    d = tmp_path / "ok"
    _write_reports(d, "0, 2900, 2725, 576, 46.2, 69.99999999999993, 58.6,\n")
    rows = parse_compute_report(d / "COMPUTE_REPORT.csv")
    assert rows == [ComputeReportRow(0, 2900, 2725, 576, 46.2, 69.99999999999993, 58.6)]
    acc = parse_detailed_access_report(d / "DETAILED_ACCESS_REPORT.csv")
    assert acc == [DetailedAccessRow(0, *([1] * 18))]
    res = parse_reports(d, ["conv1"])
    assert res[0].name == "conv1" and res[0].bandwidth.avg_ofmap_dram_bw == 6.0

    bad = tmp_path / "bad"
    _write_reports(bad, "0, 2900, 27x25, 576, 46.2, 70.0, 58.6,\n")
    with pytest.raises(ScaleSimError, match=r"COMPUTE_REPORT\.csv.*'total_cycles'.*27x25"):
        parse_compute_report(bad / "COMPUTE_REPORT.csv")
    short = tmp_path / "short"
    _write_reports(short, "0, 2900, 2725,\n")
    with pytest.raises(ScaleSimError, match="expected 7 fields"):
        parse_compute_report(short / "COMPUTE_REPORT.csv")
    with pytest.raises(ScaleSimError, match="report file missing"):
        parse_compute_report(tmp_path / "nowhere" / "COMPUTE_REPORT.csv")
    with pytest.raises(ScaleSimError, match="expected 2 report rows"):
        parse_reports(d, ["a", "b"])


@needs_scalesim
def test_run_scalesim_end_to_end_and_keep_dir(tmp_path):
    cfg = ScaleSimConfig(4, 5, "os", 1, 1, 1, "USER", 4, 4, 4)
    layer = ScaleSimLayer("conv1", 12, 12, 3, 3, 4, 7, 1)
    run = run_scalesim([layer], cfg, keep_dir=tmp_path / "kept")
    (r,) = run.results
    assert r.name == "conv1"
    # figures read off SCALE-Sim 3.0.0 for this layer (all 19 detailed fields were checked)
    assert (r.compute.total_cycles_incl_prefetch, r.compute.total_cycles,
            r.compute.stall_cycles) == (2900, 2725, 576)
    assert (r.access.ifmap_dram_reads, r.access.filter_dram_reads,
            r.access.ofmap_dram_writes) == (10752, 360, 703)
    assert (run.run_dir / "scale.cfg").exists()
    assert (run.run_dir / "out" / "cosim_run" / "COMPUTE_REPORT.csv").exists()
    assert not list((run.run_dir / "out" / "cosim_run").glob("layer*"))  # no traces written
    with pytest.raises(ScaleSimError, match="already exists"):
        run_scalesim([layer], cfg, keep_dir=tmp_path / "kept")
