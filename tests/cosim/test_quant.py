"""Quantization schemes: parameters, the fast per-tensor kernel against the reference, calibration."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from cosim import quant

finite = st.floats(-1e6, 1e6, allow_nan=False, width=32)
wild = st.one_of(finite, st.just(float("nan")), st.just(float("inf")), st.just(float("-inf")),
                 st.floats(width=32, allow_nan=False))


@settings(max_examples=60, deadline=None)
@given(x=arrays(np.float32, st.integers(1, 300), elements=wild),
       lo=st.floats(-50, 0), hi=st.floats(0, 50), scheme=st.sampled_from(quant.SCHEMES))
def test_fast_quantize_equals_reference(x, lo, hi, scheme):
    qp = quant.params_from_range(lo, hi, scheme)
    ref = quant.quantize_reference(x, qp)
    assert np.array_equal(quant.quantize(x, qp), ref)
    t = torch.from_numpy(x.copy())
    assert np.array_equal(quant.quantize(t, qp).numpy(), ref)
    assert np.array_equal(quant.quantize_reference(t, qp).numpy(), ref)


@pytest.mark.parametrize("scheme", quant.SCHEMES)
def test_zero_is_exact_and_roundtrip_within_half_step(scheme):
    rng = np.random.default_rng(0)
    x = rng.normal(size=1000).astype(np.float32) * 3
    qp = quant.params_from_range(x.min(), x.max(), scheme)
    assert quant.dequantize(quant.quantize(np.zeros(3, np.float32), qp), qp).tolist() == [0.0, 0.0, 0.0]
    err = np.abs(quant.dequantize(quant.quantize(x, qp), qp) - x)
    assert err.max() <= float(qp.scale) * 0.5 + 1e-6


def test_symmetric_codes_are_int8_patterns():
    qp = quant.params_from_range(-1.0, 1.0, "symmetric")
    q = quant.quantize(np.array([-1.0, -0.5, 0.0, 1.0], np.float32), qp)
    assert q.dtype == np.uint8
    assert quant.code_values(q, True).tolist() == [-127, -64, 0, 127]  # -63.5 rounds to even
    assert qp.qrange == (-127, 127) and qp.signed


def test_affine_zero_point_and_codes():
    qp = quant.params_from_range(-1.0, 3.0, "affine")
    assert int(qp.zero_point) == 64 and quant.zero_code(qp) == 64
    q = quant.quantize(np.array([-1.0, 0.0, 3.0, 100.0, -100.0], np.float32), qp)
    assert q.tolist() == [0, 64, 255, 255, 0]


def test_per_channel_weights_hit_full_range():
    rng = np.random.default_rng(1)
    w = rng.normal(size=(8, 3, 3, 3)).astype(np.float32) * np.arange(1, 9, dtype=np.float32)[:, None, None, None]
    qp = quant.weight_params(w, "symmetric")
    assert qp.per_channel and qp.axis == 0 and qp.scale.shape == (8,)
    v = quant.code_values(quant.quantize(w, qp), True).reshape(8, -1)
    assert np.all(np.abs(v).max(axis=1) == 127)
    aff = quant.weight_params(w, "affine")  # TFApprox: per tensor by default
    assert not aff.per_channel
    aff_c = quant.weight_params(torch.from_numpy(w), "affine", per_channel=True)
    assert aff_c.scale.shape == (8,)


def test_cross_terms_recover_exact_product():
    rng = np.random.default_rng(2)
    qa = quant.params_from_range(-0.5, 2.0, "affine")
    qw = quant.params_from_range(-1.0, 0.7, "affine")
    a = rng.integers(0, 256, (5, 7))
    w = rng.integers(0, 256, (7, 3))
    raw = a @ w
    got = quant.cross_terms(raw, a.sum(axis=1), w.sum(axis=0), 7, qa, qw)
    want = (a - int(qa.zero_point)) @ (w - int(qw.zero_point))
    assert np.array_equal(got, want)


def test_range_observer_and_errors():
    obs = quant.RangeObserver()
    with pytest.raises(ValueError, match="no batch"):
        obs.params("affine")
    obs.update(np.array([0.5, 2.0]))
    obs.update(torch.tensor([-1.0, 0.0]))
    qp = obs.params("affine")
    assert qp.meta["min"] == -1.0 and qp.meta["max"] == 2.0
    with pytest.raises(ValueError, match="scheme"):
        quant.params_from_range(0, 1, "int4")
    with pytest.raises(ValueError, match="scale"):
        quant.QuantParams("affine", np.float32(-1.0), np.int64(0))
    with pytest.raises(ValueError, match="zero_point"):
        quant.QuantParams("symmetric", np.float32(1.0), np.int64(5))
