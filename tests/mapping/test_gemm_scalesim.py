"""The `scalesim` convention against SCALE-Sim 3.0.0's own reports, and the closed forms by hand."""

import numpy as np
import pytest

from mapping.gemm import compute_cycles, fold_counts, operand_dims, pod_costs
from mapping.hardware import HardwareConfig
from mapping.layer import Layer
from mapping.network import Network
from mapping.tiler import plan

# Issue figures (SCALE-Sim 3.0.0 total cycles).
ISSUE = [
    # (M, N, K, dataflow, R, C, total)
    (32 * 32, 32, 3 * 3 * 16, "ws", 32, 32, 5589),
    (32 * 32, 32, 3 * 3 * 16, "os", 8, 8, 80895),
    (32 * 32, 32, 3 * 3 * 16, "is", 128, 128, 6623),
    (200, 300, 150, "is", 8, 8, 152949),
    (1, 10, 512, "os", 128, 128, 765),
]


@pytest.mark.parametrize("m,n,k,df,R,C,total", ISSUE)
def test_issue_totals(m, n, k, df, R, C, total):
    sr, sc, t = operand_dims(m, n, k, df)
    assert int(compute_cycles(1, sr, sc, t, R, C, df, "scalesim")) == total


# Measured with scalesim 3.0.0 (CALC mode, 6 MiB / 6 MiB / 2 MiB SRAM) on this machine:
# COMPUTE_REPORT (total cycles, overall util %, mapping efficiency %, compute util %) and
# DETAILED_ACCESS_REPORT (SRAM ifmap reads, filter reads, ofmap writes). The DP row is per channel.
CONV = [Layer("conv1", "conv2d", 34, 34, 16, 32, 3, 3, ceil_mode=True),
        Layer("convs2", "conv2d", 35, 33, 8, 20, 3, 3, 2, 2, ceil_mode=True),
        Layer("DPconv", "depthwise", 10, 10, 4, 4, 3, 3, groups=4, ceil_mode=True)]
GEMM = [Layer("g1", "linear", 200, 1, 150, 300), Layer("g2", "linear", 37, 1, 45, 19)]
MEASURED = {
    ("conv", "is", 5, 7): [(200360, 67.28733993098137, 98.82778727254501, 59.66960740984061, 147456, 677376, 950272),
                           (20474, 54.6588704838192, 95.64835164835166, 46.65773251139138, 19584, 56160, 81600),
                           (319, 5.158978952082401, 82.28571428571429, 3.74025974025974, 576, 90, 128)],
    ("conv", "is", 8, 8): [(124415, 59.25973556243218, 100.0, 52.459016393443534, 147456, 589824, 589824),
                           (12851, 47.6227530931445, 100.0, 40.81632653061255, 19584, 48960, 48960),
                           (367, 2.4523160762942777, 56.25, 1.875, 576, 72, 128)],
    ("conv", "os", 5, 7): [(157849, 85.4087857925703, 91.33937282229932, 85.40824471695537, 737280, 944640, 45068),
                           (13529, 82.71754854650855, 94.19913419913435, 82.71143490655669, 58752, 79200, 7420),
                           (246, 6.689895470383275, 14.065934065934064, 6.662810873337191, 576, 117, 220)],
    ("conv", "os", 8, 8): [(80895, 91.14036714259225, 100.0, 91.13924050632849, 589824, 589824, 40960),
                           (8771, 69.77539619199635, 83.33333333333334, 69.76744186046521, 58752, 48960, 7072),
                           (183, 4.918032786885246, 12.5, 4.891304347826087, 576, 72, 192)],
    ("conv", "ws", 5, 7): [(150654, 89.48777615311528, 90.79802955665026, 88.97338015886103, 737280, 4608, 950272),
                           (12914, 86.65678444213367, 91.42857142857136, 84.87567040468065, 58752, 1440, 81600),
                           (157, 10.482256596906279, 12.857142857142856, 9.680672268907564, 576, 9, 128)],
    ("conv", "ws", 8, 8): [(75311, 97.89804942173122, 100.0, 97.24596391263056, 589824, 4608, 589824),
                           (7937, 77.10721935240015, 83.33333333333334, 75.3045404208195, 58752, 1440, 48960),
                           (171, 5.2631578947368425, 7.03125, 4.838709677419355, 576, 9, 128)],
    ("gemm", "is", 8, 8): [(152949, 91.94241217660789, 98.68421052631578, 89.98560230363077, 30000, 1125000, 1140000),
                           (1229, 40.21943653376729, 86.71875, 34.32617187500001, 1665, 4275, 4218)],
    ("gemm", "os", 8, 8): [(155799, 90.26052798798452, 98.68421052631578, 90.25994865211736, 1140000, 1125000, 75200),
                           (884, 55.91593608597285, 73.22916666666667, 55.852754237288124, 4995, 4275, 943)],
    ("gemm", "ws", 8, 8): [(160283, 87.73544293530817, 97.38573407202216, 85.05304285766077, 1140000, 45000, 1140000),
                           (1061, 46.58782987747408, 74.21875, 41.607481060606055, 4995, 855, 4218)],
}


def _hw(df, R, C):
    return HardwareConfig(name="ss", pods=1, rows=R, cols=C, dataflow=df, ifmap_sram_bytes=6144 * 1024,
                          filter_sram_bytes=6144 * 1024, ofmap_sram_bytes=2048 * 1024, dram_bytes_per_cycle=1e9,
                          clock_mhz=100.0)


@pytest.mark.parametrize("key", sorted(MEASURED))
def test_against_scalesim_reports(key):
    from cosim.analytical import estimate

    form, df, R, C = key
    net = Network.chain("t", CONV if form == "conv" else GEMM)
    rep = estimate(net, _hw(df, R, C), timing="scalesim")
    for layer, want in zip(rep.layers, MEASURED[key]):
        groups = layer.groups if layer.kind == "depthwise" else 1  # SCALE-Sim reports one DP channel
        cyc, overall, meff, cutil, ird, frd, owr = want
        assert layer.compute_cycles == cyc * groups
        assert layer.total_cycles == cyc * groups  # unlimited bandwidth: no stalls
        assert layer.ifmap_sram_reads == ird * groups
        assert layer.filter_sram_reads == frd * groups
        assert layer.ofmap_sram_writes == owr * groups
        assert 100 * layer.mapping_efficiency == pytest.approx(meff, rel=1e-9)
        assert 100 * layer.compute_utilization == pytest.approx(cutil, rel=1e-9)
        if groups == 1:
            assert 100 * layer.utilization == pytest.approx(overall, rel=1e-9)


def test_fold_counts_and_dims():
    assert operand_dims(10, 20, 30, "os") == (10, 20, 30)
    assert operand_dims(10, 20, 30, "ws") == (30, 20, 10)
    assert operand_dims(10, 20, 30, "is") == (30, 10, 20)
    assert fold_counts(144, 32, 32, 32) == (5, 1)
    with pytest.raises(ValueError):
        operand_dims(1, 1, 1, "rs")


def test_pipelined_by_hand():
    # WS, R=C=4, T=10, 3 folds: preload 4, then folds every max(10, 4) = 10, last fold 10+4+4-2.
    sr, sc, t = 12, 4, 10
    assert int(compute_cycles(1, sr, sc, t, 4, 4, "ws", "pipelined")) == 4 + 2 * 10 + (10 + 4 + 4 - 2)
    # T < R: the preload (R) bounds the interval.
    assert int(compute_cycles(1, 12, 4, 2, 4, 4, "ws", "pipelined")) == 4 + 2 * 4 + (2 + 4 + 4 - 2)
    # OS has no preload.
    assert int(compute_cycles(1, 8, 4, 10, 4, 4, "os", "pipelined")) == 10 + (10 + 4 + 4 - 2)
    # one fold: SCALE-Sim's P, counted (not SCALE-Sim's last-index P - 1)
    for df in ("os", "ws", "is"):
        one = int(compute_cycles(1, 4, 4, 7, 4, 4, df, "pipelined"))
        assert one == int(compute_cycles(1, 4, 4, 7, 4, 4, df, "scalesim")) + 1


def test_pipelined_never_slower():
    rng = np.random.default_rng(0)
    g = rng.integers(1, 4, 500)
    sr, sc, t = (rng.integers(1, 400, 500) for _ in range(3))
    for df in ("os", "ws", "is"):
        for R, C in ((4, 4), (8, 16), (32, 8)):
            p = compute_cycles(g, sr, sc, t, R, C, df, "pipelined")
            s = compute_cycles(g, sr, sc, t, R, C, df, "scalesim")
            assert (p <= s + g).all()


def test_zero_work_costs_nothing():
    out = pod_costs(0, 10, 10, 10, 10, 100, rows=4, cols=4, dataflow="ws", timing="scalesim",
                    sram_bytes=(1024, 1024, 1024), word_bytes=1, psum_bytes=4)
    assert int(out["compute_cycles"]) == 0 and int(out["ifmap_dram_bytes"]) == 0


def test_dram_reuse_by_hand():
    # WS, M=8, K=8, N=8 on 4x4: ifmap (8x8 = 64 B) fits half of 1 KiB: fetched once; 2 column folds.
    kw = dict(rows=4, cols=4, dataflow="ws", timing="scalesim", word_bytes=1, psum_bytes=4)
    big = pod_costs(1, 8, 8, 8, 64, 64, sram_bytes=(1024, 1024, 1024), **kw)
    small = pod_costs(1, 8, 8, 8, 64, 64, sram_bytes=(64, 1024, 1024), **kw)
    assert int(big["ifmap_dram_bytes"]) == 64
    assert int(small["ifmap_dram_bytes"]) == 128  # re-streamed for each of the 2 column folds
    assert int(big["filter_dram_bytes"]) == 64
    # scalesim writes partial sums every row fold: 2 row folds x 64 outputs
    assert int(big["ofmap_dram_bytes"]) == 128
    pip = pod_costs(1, 8, 8, 8, 64, 64, sram_bytes=(1024, 1024, 1024), **{**kw, "timing": "pipelined"})
    assert int(pip["ofmap_dram_bytes"]) == 64  # accumulated on chip, written once
    spill = pod_costs(1, 8, 8, 8, 64, 64, sram_bytes=(1024, 1024, 16), **{**kw, "timing": "pipelined"})
    # spill: psums (4 B) written after row fold 0 and read back before row fold 1, final words written
    assert int(spill["ofmap_dram_bytes"]) == 64 * 4 + 64
    assert int(spill["psum_dram_read_bytes"]) == 64 * 4


def test_plan_uses_the_same_closed_forms():
    net = Network.chain("t", CONV)
    p = plan(net, _hw("ws", 8, 8))
    assert p.layer["compute_cycles"].tolist() == [75311, 7937, 171 * 4]
