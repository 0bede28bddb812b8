"""Logarithmic and rounding-based multipliers: netlists bit-exact to their references, known figures."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import pytest

from rtl_models.designs import load_all, operand_grid
from rtl_models.designs import logarithmic as lg
from rtl_models.metrics import error_metrics, exact_table
from rtl_models.simulate import simulate

NAMES = [
    "mul8u_mitchell",
    "mul8u_mitchell_t4",
    "mul8u_mbm",
    "mul8u_ilm_c0",
    "mul8u_ilm_c1",
    "mul8u_ilm_c2",
    "mul8u_roba",
    "mul8s_roba",
]


@lru_cache(maxsize=None)
def _simulated(name: str) -> np.ndarray:
    spec = load_all()[name]
    return simulate(spec.build(), signed=spec.signed).table


@lru_cache(maxsize=None)
def _metrics(name: str):
    spec = load_all()[name]
    return error_metrics(spec.reference_table(), spec.signed)


def test_all_registered():
    designs = load_all()
    for name in NAMES:
        assert name in designs, name
        assert designs[name].signed == name.startswith("mul8s")


@pytest.mark.parametrize("name", NAMES)
def test_netlist_equals_reference(name):
    spec = load_all()[name]
    table = _simulated(name)
    ref = spec.reference_table()
    bad = np.argwhere(table != ref)
    assert bad.size == 0, f"{name}: {len(bad)} mismatches, first at codes {tuple(bad[0])}: " \
                          f"netlist {table[tuple(bad[0])]} reference {ref[tuple(bad[0])]}"


@pytest.mark.parametrize("name", NAMES)
def test_symmetric_and_zero(name):
    spec = load_all()[name]
    ref = spec.reference_table()
    assert np.array_equal(ref, ref.T), f"{name} is documented as symmetric in A and B"
    assert not ref[0, :].any() and not ref[:, 0].any(), f"{name}: a zero operand must give 0"


def test_mitchell_known_figures():
    m = _metrics("mul8u_mitchell")
    assert m.mre_pct == pytest.approx(3.79, abs=0.01)
    assert m.wcre_pct == pytest.approx(100 / 9, abs=0.01)
    assert m.bias < 0  # Mitchell never overestimates
    assert np.all(load_all()["mul8u_mitchell"].reference_table() <= exact_table(False))


def test_mitchell_reference_is_real_valued_mitchell():
    """With 7 fraction bits the integer reference equals Mitchell's formula in real arithmetic."""
    a, b = operand_grid(False)
    ref = lg.mitchell_reference(a, b)
    for x, y in [(1, 1), (3, 3), (5, 200), (255, 255), (128, 129), (97, 45), (6, 6)]:
        k1, k2 = int(math.log2(x)), int(math.log2(y))
        f1, f2 = x / 2**k1 - 1, y / 2**k2 - 1
        real = 2 ** (k1 + k2) * (1 + f1 + f2) if f1 + f2 < 1 else 2 ** (k1 + k2 + 1) * (f1 + f2)
        assert ref[x, y] == real, (x, y)


def test_mitchell_truncated_is_worse_but_cheaper():
    full, trunc = _metrics("mul8u_mitchell"), _metrics("mul8u_mitchell_t4")
    assert trunc.mre_pct > full.mre_pct
    designs = load_all()
    assert len(designs["mul8u_mitchell_t4"].build().cells) < len(designs["mul8u_mitchell"].build().cells)
    # operands below 2^5 keep all their fraction bits
    small = designs["mul8u_mitchell"].reference_table()[:32, :32]
    assert np.array_equal(designs["mul8u_mitchell_t4"].reference_table()[:32, :32], small)


def test_mbm_bias_much_smaller_than_mitchell():
    mit, mbm = _metrics("mul8u_mitchell"), _metrics("mul8u_mbm")
    assert abs(mbm.bias) < abs(mit.bias) / 10
    assert mbm.mre_pct < mit.mre_pct
    assert mbm.wcre_pct <= mit.wcre_pct + 1e-9


def test_mbm_overflow_corner_case():
    # 255 * 255: carry case where frac + C/2 overflows -> the correction is dropped (fits 16 bits)
    assert lg.mitchell_reference(np.array([255]), np.array([255]), mbm=True)[0] == 65024
    # no carry: 1.5 * 1.25 (f = 0.5 + 0.25) gets + C = 10/128 -> 2^(k1+k2) * (1.75 + 0.078125)
    assert lg.mitchell_reference(np.array([96]), np.array([80]), mbm=True)[0] == (128 + 96 + 10) << 12 >> 7


def test_ilm_known_figures():
    assert _metrics("mul8u_ilm_c0").wcre_pct < 25.0
    assert _metrics("mul8u_ilm_c1").wcre_pct <= 6.25
    assert _metrics("mul8u_ilm_c2").wcre_pct <= 100 / 64
    exact = exact_table(False)
    for c in (0, 1, 2):
        assert np.all(load_all()[f"mul8u_ilm_c{c}"].reference_table() <= exact)  # ILM underestimates
    a, b = operand_grid(False)
    assert np.array_equal(lg.ilm_reference(a, b, corrections=7), a * b)  # enough corrections: exact


def test_roba_rounding_and_error_term():
    x = np.array([0, 1, 2, 3, 5, 6, 7, 11, 12, 13, 95, 96, 191, 192, 255])
    assert lg.round_pow2(x).tolist() == [0, 1, 2, 4, 4, 8, 8, 8, 16, 16, 64, 128, 128, 256, 256]
    a, b = operand_grid(False)
    ar, br = lg.round_pow2(a), lg.round_pow2(b)
    # RoBA drops exactly the term (A - Ar)(B - Br)
    assert np.array_equal(lg.roba_reference(a, b), a * b - (a - ar) * (b - br))
    m = _metrics("mul8u_roba")
    assert m.wcre_pct == pytest.approx(100 / 9, abs=0.01)
    assert abs(m.bias) < 1.0


def test_roba_signed_is_sign_magnitude():
    a, b = operand_grid(True)
    signed = load_all()["mul8s_roba"].reference_table().astype(np.int64)
    unsigned = lg.roba_reference(np.abs(a), np.abs(b))
    assert np.array_equal(signed, np.sign(a) * np.sign(b) * unsigned)
    assert _metrics("mul8s_roba").wcre_pct == pytest.approx(100 / 9, abs=0.01)
