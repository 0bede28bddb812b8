"""Partial-product (truncated, BAM, perforation) and dynamic-range (DRUM, SSM, Kulkarni, ETM) designs."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest

from rtl_models.designs import load_all, operand_grid
from rtl_models.designs.partial_product import truncation_correction
from rtl_models.metrics import error_metrics
from rtl_models.simulate import simulate

FAMILIES = {"truncated", "broken_array", "perforated", "drum", "ssm", "kulkarni", "etm"}
DESIGNS = load_all()
OURS = sorted(n for n, s in DESIGNS.items() if s.family in FAMILIES)

EXPECTED = {
    "mul8u_trunc_t4", "mul8u_trunc_t4_c", "mul8u_trunc_t6", "mul8u_trunc_t6_c",
    "mul8u_trunc_t8", "mul8u_trunc_t8_c",
    "mul8s_trunc_t4", "mul8s_trunc_t4_c", "mul8s_trunc_t6", "mul8s_trunc_t6_c",
    "mul8u_bam_h0_v6", "mul8u_bam_h0_v8", "mul8u_bam_h1_v6", "mul8u_bam_h2_v7",
    "mul8u_perf_j0_k1", "mul8u_perf_j0_k2", "mul8u_perf_j1_k2", "mul8u_perf_j2_k2",
    "mul8s_perf_j0_k1", "mul8s_perf_j0_k2", "mul8s_perf_j1_k2", "mul8s_perf_j2_k2",
    "mul8u_drum_k3", "mul8u_drum_k4", "mul8u_drum_k5", "mul8u_drum_k6",
    "mul8u_ssm_m4", "mul8u_ssm_m5", "mul8u_ssm_m6",
    "mul8u_kulkarni", "mul8u_etm_s3", "mul8u_etm_s4",
}


@lru_cache(maxsize=None)
def built(name: str):
    """(netlist, simulated table) of a design, built once per test session."""
    spec = DESIGNS[name]
    nl = spec.build()
    return nl, simulate(nl, signed=spec.signed).table


def metrics(name: str):
    return error_metrics(built(name)[1], DESIGNS[name].signed)


def n_cells(name: str) -> int:
    return len(built(name)[0].cells)


def test_registered_configurations():
    assert set(OURS) == EXPECTED


@pytest.mark.parametrize("name", OURS)
def test_netlist_equals_reference(name):
    spec = DESIGNS[name]
    table = built(name)[1]
    ref = spec.reference_table()
    bad = np.argwhere(table != ref)
    assert bad.size == 0, f"{name}: {len(bad)} mismatches, first at codes (A, B) = {tuple(bad[0])}"


def test_known_figures():
    drum6 = metrics("mul8u_drum_k6")
    assert drum6.mre_pct == pytest.approx(1.3, abs=0.05)
    kul = metrics("mul8u_kulkarni")
    assert kul.wcre_pct == pytest.approx(200 / 9, abs=1e-9)  # 3*3 -> 7
    assert kul.bias < 0  # the block only ever under-estimates


def test_correction_constants():
    assert [truncation_correction(t) for t in (4, 6, 8)] == [12, 80, 448]


@pytest.mark.parametrize("prefix,ts", [("mul8u_trunc", (4, 6, 8)), ("mul8s_trunc", (4, 6))])
def test_truncation_sanity(prefix, ts):
    for t in ts:
        plain, corr = metrics(f"{prefix}_t{t}"), metrics(f"{prefix}_t{t}_c")
        assert abs(corr.bias) < abs(plain.bias)
        assert plain.bias < 0  # dropping products only lowers the result
    for suffix in ("", "_c"):
        cells = [n_cells(f"{prefix}_t{t}{suffix}") for t in ts]
        assert cells == sorted(cells, reverse=True) and len(set(cells)) == len(cells)
        errs = [metrics(f"{prefix}_t{t}{suffix}").mae for t in ts]
        assert errs == sorted(errs)


def test_more_removal_fewer_cells():
    exact = len(DESIGNS["mul8u_dadda"].build().cells)
    assert n_cells("mul8u_bam_h0_v8") < n_cells("mul8u_bam_h0_v6") < len(DESIGNS["mul8u_array"].build().cells)
    assert n_cells("mul8u_bam_h2_v7") < n_cells("mul8u_bam_h1_v6") < n_cells("mul8u_bam_h0_v6")
    assert n_cells("mul8u_perf_j0_k2") < n_cells("mul8u_perf_j0_k1") < exact
    assert n_cells("mul8s_perf_j0_k2") < n_cells("mul8s_perf_j0_k1") < len(DESIGNS["mul8s_bw_dadda"].build().cells)
    assert n_cells("mul8u_ssm_m4") < n_cells("mul8u_ssm_m5") < n_cells("mul8u_ssm_m6") < exact
    assert n_cells("mul8u_etm_s4") < n_cells("mul8u_etm_s3") < exact


def test_bam_without_horizontal_break_is_truncation():
    for v in (6, 8):
        assert np.array_equal(built(f"mul8u_bam_h0_v{v}")[1], built(f"mul8u_trunc_t{v}")[1])


def test_perforation_clears_weight_bits():
    a, b = operand_grid(False)
    t = built("mul8u_perf_j1_k2")[1].astype(np.int64)
    assert np.array_equal(t, a * (b & ~0b110))
    # A is not touched: with B's perforated bits zero the product is exact
    keep = (b & 0b110) == 0
    assert np.array_equal(t[keep], (a * b)[keep])
    s = built("mul8s_perf_j0_k2")[1].astype(np.int64)
    sa, sb = operand_grid(True)
    assert np.array_equal(s, sa * (sb & ~0b11))


def test_exact_regions():
    a, b = operand_grid(False)
    exact = a * b
    for k in (3, 4, 5, 6):
        t = built(f"mul8u_drum_k{k}")[1].astype(np.int64)
        small = (a < 2**k) & (b < 2**k)
        assert np.array_equal(t[small], exact[small])
        # each unbiased segment is within a factor 1 +- 2^(1-k) of its operand
        assert metrics(f"mul8u_drum_k{k}").wcre_pct <= 100 * ((1 + 2.0 ** (1 - k)) ** 2 - 1) + 1e-9
    for m in (4, 5, 6):
        t = built(f"mul8u_ssm_m{m}")[1].astype(np.int64)
        small = (a < 2**m) & (b < 2**m)
        assert np.array_equal(t[small], exact[small])
        assert (t <= exact).all()  # truncating segments never over-estimate
    for s in (3, 4):
        t = built(f"mul8u_etm_s{s}")[1].astype(np.int64)
        small = (a < 2**s) & (b < 2**s)
        assert np.array_equal(t[small], exact[small])
    # accuracy grows with the segment / split
    assert metrics("mul8u_drum_k6").mre_pct < metrics("mul8u_drum_k5").mre_pct < metrics("mul8u_drum_k4").mre_pct
    assert metrics("mul8u_ssm_m6").mre_pct < metrics("mul8u_ssm_m5").mre_pct < metrics("mul8u_ssm_m4").mre_pct
    assert metrics("mul8u_etm_s3").mre_pct < metrics("mul8u_etm_s4").mre_pct


def test_kulkarni_block_only_errs_on_three_times_three():
    a, b = operand_grid(False)
    t = built("mul8u_kulkarni")[1].astype(np.int64)
    small = (a < 4) & (b < 4)
    expect = np.where((a == 3) & (b == 3), 7, a * b)
    assert np.array_equal(t[small], expect[small])
