"""The tiler: splits cover the work exactly, the compiled plan equals the NumPy reference, and
the per-fold mapping trace sums to the closed form."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from mapping.hardware import HardwareConfig, PRESETS
from mapping.layer import Layer, MappingError
from mapping.network import Network
from mapping.tiler import candidates, fold_schedule, plan, plan_reference, split_ranges, tile_ranges


def _hw(**kw):
    base = dict(name="t", pods=4, rows=8, cols=8, dataflow="ws", ifmap_sram_bytes=4096, filter_sram_bytes=4096,
                ofmap_sram_bytes=4096, dram_bytes_per_cycle=16.0, clock_mhz=100.0, interconnect_bytes_per_cycle=32.0)
    base.update(kw)
    return HardwareConfig(**base)


@given(total=st.integers(0, 5000), parts=st.integers(1, 9), gran=st.integers(1, 130))
def test_split_ranges_cover(total, parts, gran):
    s, e = split_ranges(np.array([total]), parts, np.array([gran]))
    s, e = s[0], e[0]
    assert s[0] == 0 and e[-1] == total
    assert (s[1:] == e[:-1]).all() and (e >= s).all()
    sizes = e - s
    if -(-total // gran) >= parts:  # coarse: every cut on a granule boundary, units dealt evenly
        assert (s % gran == 0).all()
        units = -(-sizes // gran)
        assert units.max() - units.min() <= 1
    else:
        assert sizes.max() - sizes.min() <= 1


layer_st = st.builds(
    lambda kind, h, c, oc, kk, s, g_dw, b: (
        Layer("x", "depthwise", h, h, c, c * g_dw, kk, kk, s, s, kk // 2, kk // 2, groups=c)
        if kind == "dw" and c > 1 else
        Layer("x", "linear", h, 1, c, oc, batch=b) if kind == "fc" else
        Layer("x", "conv2d", h, h, c, oc, kk, kk, s, s, kk // 2, kk // 2)),
    st.sampled_from(["conv", "dw", "fc"]), st.integers(3, 40), st.integers(1, 70), st.integers(1, 90),
    st.sampled_from([1, 3, 5]), st.integers(1, 2), st.integers(1, 2), st.integers(1, 3))
hw_st = st.builds(
    lambda pods, R, C, df, si, sf, so, bw: _hw(pods=pods, rows=R, cols=C, dataflow=df, ifmap_sram_bytes=si,
                                               filter_sram_bytes=sf, ofmap_sram_bytes=so, dram_bytes_per_cycle=bw),
    st.sampled_from([1, 2, 4, 6, 8]), st.integers(1, 20), st.integers(1, 20), st.sampled_from(["os", "ws", "is"]),
    st.sampled_from([64, 1024, 65536]), st.sampled_from([64, 1024, 65536]), st.sampled_from([64, 4096, 65536]),
    st.sampled_from([1.0, 7.5, 64.0]))


@settings(max_examples=60, deadline=None)
@given(layers=st.lists(layer_st, min_size=1, max_size=4), hw=hw_st, timing=st.sampled_from(["scalesim", "pipelined"]))
def test_compiled_plan_equals_reference(layers, hw, timing):
    layers = [Layer(**{**l.__dict__, "name": f"l{i}"}) for i, l in enumerate(layers)]
    layers.append(Layer("pool", "pool", 4, 4, 3, 3, 2, 2, 2, 2, pool_op="max"))
    net = Network.chain("t", layers)
    a, b = plan(net, hw, timing), plan_reference(net, hw, timing)
    assert a.labels == b.labels
    for k, v in b.layer.items():
        if k == "util_fold_sum":
            np.testing.assert_allclose(a.layer[k], v, rtol=1e-12)
        else:
            np.testing.assert_array_equal(a.layer[k], v, err_msg=k)
    for k, v in b.pod.items():
        np.testing.assert_array_equal(a.pod[k], v, err_msg=k)
    np.testing.assert_array_equal(a.ranges, b.ranges)


@settings(max_examples=40, deadline=None)
@given(layer=layer_st, hw=hw_st, timing=st.sampled_from(["scalesim", "pipelined"]),
       split=st.sampled_from(["auto", "n", "m", "k"]))
def test_trace_sums_to_closed_form(layer, hw, timing, split):
    net = Network.chain("t", [layer])
    p = plan(net, hw, timing, split)
    meta, arr = fold_schedule(net, hw, timing, split, the_plan=p)
    for name in ("ifmap_dram_bytes", "filter_dram_bytes", "ofmap_dram_bytes", "psum_dram_read_bytes"):
        assert int(arr[f"fold_{name}"].sum()) == int(p.layer[name][0]), name
    assert len(arr["fold_layer"]) == int(p.layer["folds"][0])
    # the folds tile each pod's box exactly: MACs add up
    g, m, n, k = layer.gemm
    macs = ((arr["fold_m_stop"] - arr["fold_m_start"]) * (arr["fold_n_stop"] - arr["fold_n_start"])
            * (arr["fold_k_stop"] - arr["fold_k_start"])).sum()
    assert int(macs) == layer.macs
    # K split: every non-root working pod ships its partial sums
    if meta["layers"][0]["split"] == "k":
        assert int(arr["reduction_bytes"].sum()) == int(p.layer["interconnect_bytes"][0])


@pytest.mark.parametrize("label", ["none", "n", "m", "k", "grid2x2"])
def test_tiles_partition_the_work(label):
    hw = _hw(pods=4)
    G, M, N, K = np.array([1, 16]), np.array([100, 49]), np.array([30, 1]), np.array([72, 9])
    r = np.stack(tile_ranges(label, G, M, N, K, hw), axis=-1)
    ext = r[..., 1::2] - r[..., 0::2]
    vol = np.where((ext > 0).all(-1), ext.prod(-1), 0).sum(-1)
    assert vol.tolist() == (G * M * N * K).tolist()


def test_candidates():
    assert candidates(1) == ["none"]
    assert candidates(8) == ["n", "m", "grid2x4", "grid4x2", "k"]
    assert candidates(8, "grid") == ["grid2x4", "grid4x2"]
    with pytest.raises(MappingError, match="grid"):
        candidates(7, "grid")
    with pytest.raises(MappingError, match="split"):
        candidates(4, "z")


def test_auto_is_the_fastest_and_pods_bound_the_layer():
    net = Network.chain("t", [Layer("c", "conv2d", 28, 28, 64, 128, 3, 3, pad_h=1, pad_w=1),
                              Layer("f", "linear", 1, 1, 4096, 1000)])
    hw = PRESETS["tpu_v4_like"]
    auto = plan(net, hw, "pipelined")
    for s in ("n", "m", "grid", "k"):
        fixed = plan(net, hw, "pipelined", s)
        assert (auto.layer["total_cycles"] <= fixed.layer["total_cycles"]).all()
    assert (auto.layer["compute_cycles"] == auto.pod["compute_cycles"].max(axis=1)).all()


def test_multi_pod_pod_equals_single_pod_run_of_its_tile():
    # A layer split over pods: each pod's cycles are the single-pod cycles of its tile.
    hw = _hw(pods=4, dataflow="os")
    layer = Layer("c", "conv2d", 20, 20, 16, 40, 3, 3)
    p = plan(Network.chain("t", [layer]), hw, "scalesim", "m")
    one = _hw(pods=1, dataflow="os")
    for q in range(4):
        g0, g1, m0, m1, n0, n1, k0, k1 = p.ranges[0, q]
        sub = Layer("s", "linear", int(m1 - m0), 1, int(k1 - k0), int(n1 - n0))
        assert int(plan(Network.chain("s", [sub]), one).layer["compute_cycles"][0]) == p.pod["compute_cycles"][0, q]
