"""The multi-pod engine held to the single-pod engine, SCALE-Sim and the analytical model."""

from __future__ import annotations

import math
import random
from dataclasses import replace

import numpy as np
import pytest

from cosim import engine_core as ec
from cosim.analytical import estimate, mapping_trace
from cosim.engine import (
    MemoryConfig,
    layer_shape,
    pod_spec,
    replay_pod,
    simulate_layer,
    simulate_network,
    simulate_trace,
)
from cosim.engine_core import ConvShape, EngineError, PodEngine, PodSpec
from cosim.scalesim_bridge import scalesim_available
from mapping.gemm import compute_cycles
from mapping.hardware import HardwareConfig
from mapping.layer import Layer
from mapping.network import Network
from traces.mapping_trace import MappingTrace

needs_scalesim = pytest.mark.skipif(not scalesim_available(), reason="scalesim not installed")
UNLIMITED = MemoryConfig(shared_words_per_cycle=math.inf)


def machine(pods=1, R=4, C=6, df="ws", kib=(1, 1, 1), bw=2.0, spp=1, word=1):
    """A small test machine (SRAM sizes per pod in KiB, DRAM bytes/cycle)."""
    return HardwareConfig(name="t", pods=pods, rows=R, cols=C, dataflow=df, ifmap_sram_bytes=kib[0] * 1024 * spp,
                          filter_sram_bytes=kib[1] * 1024 * spp, ofmap_sram_bytes=kib[2] * 1024 * spp,
                          dram_bytes_per_cycle=bw, clock_mhz=100.0, sram_pods_per_group=spp, word_bytes=word)


def small_net(name="n"):
    """Conv, strided conv, depthwise, pool, residual add and FC."""
    net = Network(name)
    net.add(Layer("c1", "conv2d", 10, 10, 3, 8, 3, 3, 1, 1, 1, 1))
    net.add(Layer("c2", "conv2d", 10, 10, 8, 12, 3, 3, 2, 2, 1, 1), ["c1"])
    net.add(Layer("dw", "depthwise", 5, 5, 12, 12, 3, 3, 1, 1, 1, 1, groups=12), ["c2"])
    net.add(Layer("pw", "conv2d", 5, 5, 12, 12, 1, 1), ["dw"])
    net.add(Layer("add", "add", 5, 5, 12, 12, n_inputs=2), ["pw", "c2"])
    net.add(Layer("pool", "pool", 5, 5, 12, 12, 5, 5, 5, 5, pool_op="avg"), ["add"])
    net.add(Layer("fc", "linear", 1, 1, 12, 10), ["pool"])
    return net


def random_net(rng: random.Random, name: str) -> Network:
    layers = []
    for j in range(3):
        u = rng.random()
        if u < 0.2:
            layers.append(Layer(f"fc{j}", "linear", rng.randint(1, 20), 1, rng.randint(1, 40), rng.randint(1, 30)))
        elif u < 0.35:
            c = rng.randint(2, 4)
            layers.append(Layer(f"dw{j}", "depthwise", rng.randint(5, 10), rng.randint(5, 10), c, c, 3, 3, 1, 1, 1, 1,
                                groups=c))
        else:
            k, s = rng.choice([1, 3]), rng.choice([1, 2])
            layers.append(Layer(f"c{j}", "conv2d", rng.randint(k, 12), rng.randint(k, 12), rng.randint(1, 8),
                                rng.randint(1, 12), k, k, s, s, k // 2, k // 2))
    net = Network(name)
    for la in layers:
        net.add(la)
    return net


def random_machine(rng: random.Random, pods=None) -> HardwareConfig:
    return machine(pods or rng.choice([1, 2, 3, 4]), rng.choice([2, 4, 8]), rng.choice([2, 4, 8]),
                   rng.choice(["os", "ws", "is"]), (rng.choice([1, 2, 4]),) * 3, float(rng.choice([1, 2, 4, 8, 64])))


# ---------------------------------------------------------------------------------------------
# one pod in SCALE-Sim's conventions is the single-pod engine (and so SCALE-Sim)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("df", ["os", "ws", "is"])
@pytest.mark.parametrize("mode", ["user", "calc"])
@pytest.mark.parametrize("mm", ["scalesim-3.0.0", "ideal-fixed"])
def test_one_pod_equals_engine_core(df, mode, mm):
    net, hw = small_net(), machine(1, 4, 6, df)
    mem = MemoryConfig(bandwidth_mode=mode, memory_model=mm)
    run = simulate_network(net, hw, memory=mem)
    trace = mapping_trace(net, hw)
    spec = pod_spec(hw, "scalesim", mem)
    assert spec.ifmap_dram_bw_words == 2 and spec.ifmap_sram_words == 1024
    for li, rec in enumerate(trace.layers):
        if not rec["pods"]:
            assert run.pods[li] == []
            continue
        shape = layer_shape(rec)
        ref = ec.simulate_layer(shape, spec)
        (pod,) = run.pods[li]
        assert len(pod.runs) == rec["gemm"]["groups"]  # SCALE-Sim runs a grouped layer group by group
        for r in pod.runs:
            assert r == ref
        lr = run.report.layers[li]
        assert lr.total_cycles == rec["gemm"]["groups"] * ref.total_cycles
        assert lr.ifmap_dram_bytes == rec["gemm"]["groups"] * ref.ifmap_dram_reads
        assert lr.source == "engine"


@needs_scalesim
@pytest.mark.parametrize("case", [0, 3])
def test_one_pod_network_engine_equals_scalesim(case):
    """Through the whole engine (network -> tiler -> trace -> engine), every field, exactly."""
    from cosim.validation import run_case, suite_cases

    rows = run_case(suite_cases("ci")[case], timeout_s=300)
    assert rows and all(r["equal"] for r in rows), [r["differences"] for r in rows if not r["equal"]]


# ---------------------------------------------------------------------------------------------
# multi-pod: unlimited shared bandwidth = slowest pod alone; finite never faster
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("split", ["n", "m", "k", "grid"])
@pytest.mark.parametrize("df", ["os", "ws", "is"])
def test_unlimited_bandwidth_layer_is_its_slowest_pod_alone(split, df):
    layer = Layer("c", "conv2d", 12, 12, 8, 16, 3, 3, 1, 1, 1, 1)
    hw = machine(4, 4, 4, df, bw=2.0)
    run = simulate_layer(layer, hw, split=split, memory=UNLIMITED)
    trace = mapping_trace(Network.chain("c", [layer]), hw, "scalesim", split)
    rec = trace.layers[0]
    shape = layer_shape(rec)
    spec = pod_spec(hw, "scalesim", UNLIMITED)
    alone = []
    for pr in rec["pods"]:
        if pr["folds"]:
            tile = (*pr["m"], *pr["n"], *pr["k"])
            alone.append(ec.simulate_layer(shape, spec, tile=tile).total_cycles)
    assert len(alone) > 1
    lr = run.report.layers[0]
    assert lr.total_cycles - lr.reduction_cycles == max(alone)
    assert sorted(p.total_cycles for p in run.pods[0]) == sorted(alone)


def test_finite_shared_bandwidth_never_beats_unlimited_and_contends():
    rng = random.Random(7)
    strictly = 0
    for it in range(14):
        net, hw = random_net(rng, f"r{it}"), random_machine(rng, pods=rng.choice([2, 3, 4]))
        for timing in ("scalesim", "pipelined"):
            for mm in ("scalesim-3.0.0", "ideal-fixed"):
                unl = simulate_network(net, hw, timing=timing, memory=replace(UNLIMITED, memory_model=mm))
                fin = simulate_network(net, hw, timing=timing,
                                       memory=MemoryConfig(memory_model=mm, quantum_cycles=rng.choice([1, 16, 256])))
                for u, f in zip(unl.report.layers, fin.report.layers):
                    assert f.total_cycles >= u.total_cycles, (it, timing, mm, f.name)
                    strictly += f.total_cycles > u.total_cycles
    assert strictly >= 5  # contention stalls do appear


def test_fair_share_divides_the_channel():
    from cosim.engine import _shares

    assert _shares(3, 10, 100, 0) == [4, 3, 3] and _shares(3, 10, 100, 1) == [3, 4, 3]
    assert sum(_shares(8, 1142, 1142, 5)) == 1142
    assert _shares(4, 2, 8, 0) == [1, 1, 1, 1]  # at least one word per cycle each
    assert _shares(2, 100, 8, 0) == [8, 8]  # capped at the port


def test_contention_slows_pods_and_shows_in_the_windows():
    layer = Layer("c", "conv2d", 16, 16, 8, 16, 3, 3, 1, 1, 1, 1)
    hw = machine(4, 4, 4, "ws", bw=4.0)
    unl = simulate_layer(layer, hw, memory=UNLIMITED, windows=64)
    fin = simulate_layer(layer, hw, windows=64)
    assert fin.report.layers[0].total_cycles > unl.report.layers[0].total_cycles
    assert fin.utilization["stall"].sum() > unl.utilization["stall"].sum()
    assert fin.quanta > 0 and unl.quanta == 0


def test_replay_reproduces_a_contended_run_exactly():
    layer = Layer("c", "conv2d", 16, 16, 8, 16, 3, 3, 1, 1, 1, 1)
    hw = machine(4, 4, 4, "os", bw=10.0)  # 10 words over 4 pods: the remainder rotates
    run = simulate_layer(layer, hw, memory=MemoryConfig(quantum_cycles=32))
    assert any(p.replay["schedule"] for p in run.pods[0])
    for p in run.pods[0]:
        engines = replay_pod(p, hw, "scalesim", run.memory, trace=False)
        assert [e.result() for _, e in engines] == p.runs


# ---------------------------------------------------------------------------------------------
# against the analytical model: compute cycles equal, stalls within the stated bound
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(6))
def test_compute_cycles_equal_analytical_and_stalls_bounded(seed):
    rng = random.Random(100 + seed)
    net, hw = random_net(rng, f"a{seed}"), random_machine(rng)
    for timing in ("scalesim", "pipelined"):
        split = rng.choice(["auto", "n", "m", "k"])
        ana = estimate(net, hw, timing=timing, split=split)
        for mem in (MemoryConfig(memory_model=rng.choice(["scalesim-3.0.0", "ideal-fixed"])),
                    MemoryConfig(bandwidth_mode="calc")):
            run = simulate_network(net, hw, timing=timing, split=split, memory=mem)
            for a, e, pods in zip(ana.layers, run.report.layers, run.pods):
                assert e.compute_cycles == a.compute_cycles, (timing, e.name)
                assert e.pod_compute_cycles == a.pod_compute_cycles
                assert e.total_cycles >= e.compute_cycles
                assert e.reduction_cycles <= a.reduction_cycles
                for p in pods:
                    assert p.stall_cycles <= p.stall_bound
                    if mem.bandwidth_mode == "calc":
                        assert p.stall_cycles == 0
                if mem.bandwidth_mode == "calc":
                    assert e.total_cycles == max(e.compute_cycles, e.vector_cycles) + e.reduction_cycles


@pytest.mark.parametrize("df", ["os", "ws", "is"])
def test_pipelined_compute_is_the_closed_form(df):
    for shape in (ConvShape(9, 9, 3, 3, 5, 7, 1), ConvShape.gemm(1, 40, 30), ConvShape.gemm(50, 3, 4)):
        for R, C in ((4, 4), (3, 8), (8, 2)):
            spec = PodSpec(df, R, C, 1024, 1024, 1024, "calc", timing="pipelined")
            for G in (1, 3):
                res = ec.simulate_layer(shape, spec, groups=G)
                sr, sc, t = shape.operand_dims(df)
                want = int(compute_cycles(G, sr, sc, t, R, C, df, "pipelined"))
                assert res.compute_cycles == want == res.total_cycles  # CALC: no stalls
                assert res.macs == G * shape.macs
                scal = ec.simulate_layer(shape, replace(spec, timing="scalesim"))
                assert res.total_cycles <= G * (scal.total_cycles + 1)


def test_windows_and_fold_records_add_up():
    net, hw = small_net(), machine(3, 4, 4, "is", bw=2.0)
    for timing in ("scalesim", "pipelined"):
        run = simulate_network(net, hw, timing=timing, windows=37, record_folds=True)
        ut = run.utilization_trace()  # validates busy + stall + idle == window lengths
        assert ut.meta["total_cycles"] == run.timeline_cycles
        assert ut["macs"].sum() == net.macs
        for q in range(hw.pods):
            runs = [r for pods in run.pods for p in pods if p.pod == q for r in p.runs]
            assert ut["stall"][q].sum() == sum(r.stall_cycles for r in runs)
        f = run.folds
        assert len(f["start"]) == sum(r.folds for pods in run.pods for p in pods for r in p.runs)
        assert (f["end"] > f["start"]).all() and (f["stall"] >= 0).all()
        for li, (a, b) in enumerate(run.layer_spans):
            sel = f["layer"] == li
            if sel.any():
                assert f["start"][sel].min() == a and f["end"][sel].max() <= b


def test_engine_rejects_a_trace_whose_folds_it_would_not_run():
    net, hw = small_net(), machine(2, 4, 4, "os")
    tr = mapping_trace(net, hw)
    arrays = dict(tr.arrays)
    arrays["fold_m_stop"] = arrays["fold_m_stop"].copy()
    i = tr.layers[0]["pods"][0]["fold_start"]
    arrays["fold_m_start"] = arrays["fold_m_start"].copy()
    arrays["fold_m_start"][i], arrays["fold_m_stop"][i] = arrays["fold_m_start"][i + 1], arrays["fold_m_stop"][i + 1]
    bad = MappingTrace(tr.meta, arrays)
    with pytest.raises(EngineError, match="fold 0 has m_start"):
        simulate_trace(bad)


def test_report_schema_roundtrips_and_energy_is_filled():
    from cosim.report import NetworkReport

    run = simulate_network(small_net(), machine(2, 4, 4, "ws"))
    rep = run.report
    assert rep.source == "engine" and all(lr.source == "engine" for lr in rep.layers)
    back = NetworkReport.from_json(rep.to_json())
    assert back.total()["total_cycles"] == rep.total()["total_cycles"]
    tot = rep.total()
    assert tot["total_energy_pj"] > tot["mac_energy_pj"] > 0
    assert tot["dram_bytes"] == sum(lr.ifmap_dram_bytes + lr.filter_dram_bytes + lr.ofmap_dram_bytes
                                    for lr in rep.layers)


def test_memory_config_and_layer_errors_name_the_field():
    with pytest.raises(EngineError, match="bandwidth_mode = 'fast'"):
        MemoryConfig(bandwidth_mode="fast")
    with pytest.raises(EngineError, match="shared_words_per_cycle = 0"):
        MemoryConfig(shared_words_per_cycle=0)
    with pytest.raises(EngineError, match="quantum_cycles"):
        MemoryConfig(quantum_cycles=0)
    with pytest.raises(EngineError, match="strides 2x1 differ"):
        simulate_layer(Layer("s", "conv2d", 8, 8, 2, 2, 3, 3, 2, 1), machine())
    with pytest.raises(EngineError, match="needs at least 100"):
        simulate_layer(Layer("s", "conv2d", 8, 8, 2, 2, 3, 3), machine(kib=(1, 1, 1), word=16))


# ---------------------------------------------------------------------------------------------
# the engine core's new pieces: tiles, groups, rate changes, the fast prefetch order
# ---------------------------------------------------------------------------------------------
def test_whole_tile_is_the_untiled_layer_and_tiles_use_layer_addresses():
    shape = ConvShape(11, 11, 3, 3, 4, 9, 2)
    spec = PodSpec("os", 4, 6, 1024, 1024, 1024, "user", 2, 1, 2)
    assert ec.simulate_layer(shape, spec, tile=(0, shape.m, 0, shape.n, 0, shape.k)) == ec.simulate_layer(shape, spec)
    # a filter-only split is the same conv with fewer filters (addresses shift uniformly)
    a = ec.simulate_layer(shape, spec, tile=(0, shape.m, 3, 9, 0, shape.k))
    b = ec.simulate_layer(replace(shape, num_filters=6), spec)
    assert a == b


def test_prefetch_sequence_is_the_reference_walk():
    """`_prefetch_sequence` (incremental) against `_build_occurrences` (`_pf_elem` per entry)."""
    for df, shape, tile, G in (("os", ConvShape(9, 9, 3, 3, 3, 7, 2), None, 1),
                               ("ws", ConvShape(10, 10, 3, 3, 4, 5, 1), (5, 60, 1, 5, 3, 30), 2),
                               ("is", ConvShape(8, 9, 3, 2, 2, 6, 1), (0, 30, 0, 6, 2, 11), 3)):
        eng = PodEngine(shape, PodSpec(df, 4, 3, 200, 200, 200, "user", 1, 1, 1), tile=tile, groups=G)
        n_addr = int(eng.prm[ec.P_G]) * (int(eng.prm[ec.P_NIFG]) + int(eng.prm[ec.P_NFG]))
        for o in range(2):
            pb = ec.P_RD + o * ec.P_RD_STRIDE
            seq = np.empty(G * int(eng.prm[pb + ec.RD_PFR]) * int(eng.prm[pb + ec.RD_PFC]), dtype=np.int32)
            v = ec._prefetch_sequence(eng.prm, eng.tab, o, seq)
            ptr = np.zeros(n_addr + 1, dtype=np.int64)
            nv = ec._build_occurrences(eng.prm, eng.tab, o, ptr, np.zeros(0, np.int32), False)
            assert v == nv
            assert (np.bincount(seq[:v], minlength=n_addr) == ptr[1:]).all()
            # the CSR the engine built holds, per address, the lines j // eps in order
            eps = int(eng.prm[pb + ec.RD_EPS])
            lines = np.arange(v) // eps
            a = int(seq[v // 2])
            got = eng.occ_line[eng.occ_ptr[a]: eng.occ_ptr[a + 1]]
            if len(got):
                assert set(lines[seq[:v] == a]) <= set(got.tolist())


def test_setting_the_same_bandwidth_changes_nothing_and_a_lower_one_slows():
    shape = ConvShape(12, 12, 3, 3, 4, 7, 1)
    spec = PodSpec("ws", 4, 6, 1024, 1024, 1024, "user", 4, 4, 4)
    ref = ec.simulate_layer(shape, spec)
    eng = PodEngine(shape, spec)
    for lim in range(50, 5000, 50):
        eng.step(lim)
        eng.set_bandwidth(4, 4, 4)
    eng.step()
    assert eng.result() == ref
    slow = PodEngine(shape, spec)
    slow.step(100)
    slow.set_bandwidth(1, 1, 1)
    slow.step()
    assert slow.result().total_cycles > ref.total_cycles
    with pytest.raises(EngineError, match="only USER mode"):
        PodEngine(shape, replace(spec, bandwidth_mode="calc")).set_bandwidth(1, 1, 1)
