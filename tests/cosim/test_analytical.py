"""The analytical model: issue figures, energy by hand, multipliers, batches, the report schema, RoHNAS."""

import json
from dataclasses import dataclass

import numpy as np
import pytest

from cosim.analytical import estimate, estimate_arrays, estimate_batch, mapping_trace
from cosim.report import LAYER_FIELDS, NetworkReport
from cosim.rohnas import RohnasConfig, rohnas_layer, rohnas_network
from mapping.hardware import PRESETS, HardwareConfig
from mapping.layer import Layer, MappingError
from mapping.network import Network


@dataclass(frozen=True)
class StandIn:
    """Stand-in for rtl_models.multiplier.Multiplier: the hook only needs .name and .energy_pj."""

    name: str
    energy_pj: float


def _hw(**kw):
    base = dict(name="t", pods=1, rows=32, cols=32, dataflow="ws", ifmap_sram_bytes=6 << 20,
                filter_sram_bytes=6 << 20, ofmap_sram_bytes=2 << 20, dram_bytes_per_cycle=1e9, clock_mhz=1000.0)
    base.update(kw)
    return HardwareConfig(**base)


ISSUE_CONV = Layer("conv", "conv2d", 34, 34, 16, 32, 3, 3, ceil_mode=True)


@pytest.mark.parametrize("df,R,C,total", [("ws", 32, 32, 5589), ("os", 8, 8, 80895), ("is", 128, 128, 6623)])
def test_issue_conv_through_estimate(df, R, C, total):
    rep = estimate(Network.chain("c", [ISSUE_CONV]), _hw(dataflow=df, rows=R, cols=C))
    assert rep.layers[0].total_cycles == total and rep.layers[0].stall_cycles == 0


def test_issue_gemm_and_fc():
    g = estimate(Network.chain("g", [Layer("g", "linear", 200, 1, 150, 300)]), _hw(dataflow="is", rows=8, cols=8))
    assert g.total()["total_cycles"] == 152949
    f = estimate(Network.chain("f", [Layer("fc", "linear", 1, 1, 512, 10)]), _hw(dataflow="os", rows=128, cols=128))
    assert f.total()["total_cycles"] == 765


def test_memory_bound_and_energy_by_hand():
    # FC 1x1x64 -> 16 on one 4x4 OS array, 1 B/cycle DRAM: traffic dominates.
    hw = _hw(dataflow="os", rows=4, cols=4, dram_bytes_per_cycle=1.0, clock_mhz=100.0,
             ifmap_sram_bytes=1024, filter_sram_bytes=4096, ofmap_sram_bytes=1024)
    net = Network.chain("f", [Layer("fc", "linear", 1, 1, 64, 16)])
    r = estimate(net, hw, multipliers=StandIn("approx", 0.05)).layers[0]
    assert r.compute_cycles == 4 * (4 + 4 + 64 - 2) - 1  # 4 column folds
    assert r.ifmap_dram_bytes == 64 and r.filter_dram_bytes == 64 * 16 and r.ofmap_dram_bytes == 16
    assert r.memory_cycles == 64 + 1024 + 16
    assert r.total_cycles == r.memory_cycles and r.stall_cycles == r.memory_cycles - r.compute_cycles
    assert r.latency_s == pytest.approx(r.total_cycles / 100e6)
    e = hw.energy
    assert r.mac_energy_pj == pytest.approx(1024 * 0.05)
    assert r.accumulate_energy_pj == pytest.approx(1024 * e.accumulate_pj)
    assert r.dram_energy_pj == pytest.approx((64 + 1024 + 16) * e.dram_pj_per_byte)
    si, sf, so = (e.sram_energy_pj_per_byte(s) for s in hw.pod_sram_bytes())
    sram = (r.ifmap_sram_reads + 64) * si + (r.filter_sram_reads + 1024) * sf + (r.ofmap_sram_writes + 16) * so
    assert r.sram_energy_pj == pytest.approx(sram)
    assert r.static_energy_pj == pytest.approx(hw.leakage_mw() * r.latency_s * 1e9)
    parts = (r.mac_energy_pj + r.accumulate_energy_pj + r.sram_energy_pj + r.dram_energy_pj
             + r.interconnect_energy_pj + r.static_energy_pj)
    assert r.total_energy_pj == pytest.approx(parts)
    assert r.multiplier == "approx"


def test_per_layer_multipliers_and_errors():
    net = Network.chain("n", [Layer("a", "conv2d", 8, 8, 4, 8, 3, 3), Layer("b", "linear", 1, 1, 288, 10)])
    hw = _hw()
    base = estimate(net, hw)
    rep = estimate(net, hw, multipliers={"b": StandIn("cheap", 0.01)})
    assert [l.multiplier for l in rep.layers] == ["default", "cheap"]
    assert rep.layers[0].mac_energy_pj == base.layers[0].mac_energy_pj
    assert rep.layers[1].mac_energy_pj == pytest.approx(2880 * 0.01)
    assert rep.layers[1].total_cycles == base.layers[1].total_cycles  # multipliers change energy only
    with pytest.raises(MappingError, match="unknown layers: 'zz'"):
        estimate(net, hw, multipliers={"zz": StandIn("x", 0.1)})
    with pytest.raises(MappingError, match="energy_pj"):
        estimate(net, hw, multipliers=object())


def test_resnet18_tpu_report_schema(tmp_path):
    from mapping import zoo

    net = zoo.network("resnet18")
    hw = PRESETS["tpu_v4_like"]
    rep = estimate(net, hw, timing="pipelined")
    tot = rep.total()
    assert tot["macs"] == net.macs
    for key in ("macs", "total_cycles", "latency_s", "mac_energy_pj", "total_energy_pj", "memory_footprint_bytes"):
        assert key in tot
    assert tot["total_energy_pj"] > tot["mac_energy_pj"] > 0
    assert tot["memory_footprint_bytes"] == (net.params + net.peak_activation_elems()) * hw.word_bytes
    assert all(l.compute_cycles == max(l.pod_compute_cycles) for l in rep.layers)
    assert all(0 <= l.utilization <= 1 and 0 <= l.mapping_efficiency <= 1 for l in rep.layers)
    sram_pod = sum(hw.pod_sram_bytes())
    assert all(l.sram_footprint_bytes <= sram_pod for l in rep.layers)
    df = rep.to_dataframe(include_total=True)
    assert list(df.columns) == list(LAYER_FIELDS) and len(df) == len(net) + 1
    rep.to_csv(tmp_path / "r.csv")
    assert (tmp_path / "r.csv").read_text().count("\n") == len(net) + 2
    back = NetworkReport.from_json(rep.to_json(tmp_path / "r.json"))
    assert back == rep
    assert json.loads((tmp_path / "r.json").read_text())["total"]["macs"] == net.macs
    # pipelined never slower than scalesim's schedule on compute
    ss = estimate(net, hw, timing="scalesim")
    assert sum(l.compute_cycles for l in rep.layers) <= sum(l.compute_cycles for l in ss.layers)


def test_dataflow_override_and_trace():
    net = Network.chain("c", [ISSUE_CONV])
    rep = estimate(net, _hw(dataflow="ws"), dataflow="os")
    assert rep.dataflow == "os"
    tr = mapping_trace(net, _hw(pods=2), "scalesim", "m")
    assert tr.meta["layers"][0]["split"] == "m" and tr.n_folds == sum(l["folds"] for l in tr.meta["layers"][0]["pods"])


def test_batch_equals_single_estimates():
    from mapping import zoo

    nets = [zoo.network("lenet5"), zoo.network("resnet20"), Network.chain("c", [ISSUE_CONV])]
    hw = PRESETS["edge_16x16"]
    rng = np.random.default_rng(1)
    idx = np.array([0, 1, 2, 1, 0])
    pj = [rng.uniform(0.01, 0.3, len(nets[i])) for i in idx]
    b = estimate_batch(nets, hw, pj, network_index=idx, timing="pipelined")
    for j, i in enumerate(idx):
        mults = {l.name: StandIn("m", float(e)) for l, e in zip(nets[i].layers, pj[j])}
        tot = estimate(nets[i], hw, multipliers=mults, timing="pipelined").total()
        assert b.total_cycles[j] == tot["total_cycles"]
        assert b.mac_energy_pj[j] == pytest.approx(tot["mac_energy_pj"], rel=1e-12)
        assert b.total_energy_pj[j] == pytest.approx(tot["total_energy_pj"], rel=1e-12)
        assert b.memory_footprint_bytes[j] == tot["memory_footprint_bytes"]
    with pytest.raises(MappingError, match="layer energies"):
        estimate_batch(nets, hw, [np.ones(3)] * 3)


def test_estimate_arrays_is_the_core():
    from mapping import zoo

    net = zoo.network("resnet18")
    hw = PRESETS["tpu_v4_like"]
    p, v = estimate_arrays(net.arrays(), hw)
    rep = estimate(net, hw)
    assert v["total_cycles"].tolist() == [l.total_cycles for l in rep.layers]


def test_rohnas_by_hand():
    cfg = RohnasConfig()
    layer = Layer("c", "conv2d", 32, 32, 3, 16, 3, 3, pad_h=1, pad_w=1)
    r = rohnas_layer(layer, cfg)
    weights = (3 * 9 + 1) * 16
    cycles = (16 + cfg.stages - 1) * -(-weights // (16 * min(16, 10 * 3))) + 32 * 32 * 3
    assert r["weights"] == weights and r["cycles"] == cycles
    power = 0.4815 * 256 + 16 * 0.2303
    assert r["power_mw"] == pytest.approx(power)
    assert r["energy_pj"] == pytest.approx(power * cycles * 3e-9 * 1e9)
    tot = rohnas_network(Network.chain("n", [layer, Layer("p", "pool", 32, 32, 16, 16, 2, 2, 2, 2, pool_op="max")]))
    assert tot["total"]["cycles"] == cycles
