"""SHAP layer criticality: planted critical layer, NaN handling, determinism, validation; XAI-Gen feature builders."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from nas.xai import (
    LAYER_FEATURES,
    MULTIPLIER_FEATURES,
    AssignmentEvaluator,
    CriticalityResult,
    activation_stats,
    explain_layers,
    feature_frame,
    layer_features,
    multiplier_features,
    sample_assignments,
)

MRE_LEVELS = np.array([0.0, 0.4, 1.3, 2.6, 3.6, 6.0, 9.8, 12.1])


def synthetic(n=120, seed=1, planted="conv2", nan_layer=None):
    """Four layers with mre / mae / static columns; y depends on the planted layer's mre only."""
    rng = np.random.default_rng(seed)
    d = {}
    for i, layer in enumerate(("conv1", "conv2", "fc1", "fc2")):
        mre = rng.choice(MRE_LEVELS, n)
        d[f"{layer}.mult_mre_pct"] = mre
        d[f"{layer}.mult_mae_pct"] = 0.1 * mre + rng.normal(0, 0.01, n)
        d[f"{layer}.macs"] = np.full(n, 1000.0 * (i + 1))  # static: never attributed
    X = pd.DataFrame(d)
    y = 0.02 * X[f"{planted}.mult_mre_pct"].to_numpy() ** 1.5
    if nan_layer is not None:
        absent = rng.random(n) < 0.4
        for c in X.columns:
            if c.startswith(nan_layer + "."):
                X.loc[absent, c] = np.nan
    return X, y


def test_planted_critical_layer_is_recovered_with_high_r2():
    X, y = synthetic()
    r = explain_layers(X, y, seed=0)
    assert isinstance(r, CriticalityResult)
    assert r.critical == ("conv2",)
    assert next(iter(r.scores)) == "conv2" and r.scores["conv2"] > 0.95
    assert list(r.scores.values()) == sorted(r.scores.values(), reverse=True)
    assert abs(sum(r.scores.values()) - 1.0) < 1e-9
    assert r.r2_holdout > 0.9
    assert r.shap_values.shape == (len(X), X.shape[1])
    assert r.feature_names == tuple(X.columns)
    # SHAP additivity: base value + row sums reproduce the surrogate, which fits y closely.
    assert np.corrcoef(r.expected_value + r.shap_values.sum(axis=1), y)[0, 1] > 0.99
    imp = r.feature_importance()
    assert imp["conv1.macs"] == 0.0  # a constant column carries no attribution


def test_share_controls_the_critical_set():
    X, _ = synthetic()
    y = 0.03 * X["conv1.mult_mre_pct"] + 0.01 * X["fc1.mult_mre_pct"]
    r = explain_layers(X, y, share=0.6, seed=0)
    assert r.critical == ("conv1",)
    r = explain_layers(X, y, share=0.95, seed=0)
    assert r.critical[:2] == ("conv1", "fc1")
    assert r.scores["conv1"] > r.scores["fc1"] > r.scores["conv2"]


def test_nan_columns_are_handled():
    X, y = synthetic(nan_layer="fc2")
    r = explain_layers(X, y, seed=0)
    assert r.critical == ("conv2",)
    assert np.isfinite(r.shap_values).all()
    # a planted layer that is sometimes absent: absence is a value the surrogate can split on
    X, y = synthetic(planted="fc2", nan_layer="fc2")
    y = np.where(X["fc2.mult_mre_pct"].isna(), 0.0, y)
    r = explain_layers(X, y, seed=0)
    assert r.critical == ("fc2",) and r.r2_holdout > 0.8


def test_deterministic_and_seeded():
    X, y = synthetic(n=80)
    y = y + np.random.default_rng(5).normal(0, 0.02, len(y))
    a, b = explain_layers(X, y, seed=3), explain_layers(X, y, seed=3)
    assert np.array_equal(a.shap_values, b.shap_values)
    assert a.scores == b.scores and a.critical == b.critical and a.r2_holdout == b.r2_holdout
    c = explain_layers(X, y, seed=4)  # another holdout split
    assert c.r2_holdout != a.r2_holdout


def test_constant_drop_has_no_critical_layer():
    X, _ = synthetic(n=40)
    r = explain_layers(X, np.zeros(len(X)), seed=0)
    assert r.critical == () and all(v == 0.0 for v in r.scores.values())
    assert np.isnan(r.r2_holdout)


def test_categorical_columns_are_encoded():
    X, y = synthetic(n=60)
    X["conv1.kind"] = "conv2d"
    X["fc1.flag"] = True
    r = explain_layers(X, y, seed=0)
    assert r.X["conv1.kind"].dtype == np.float64 and r.critical == ("conv2",)


@pytest.mark.parametrize("bad, match", [
    (lambda X, y: (X.rename(columns={"conv1.macs": "macs"}), y), "<layer>.<feature>"),
    (lambda X, y: (X, y[:-1]), "rows but y has"),
    (lambda X, y: (X, np.where(np.arange(len(y)) == 3, np.nan, y)), r"y\[3\]"),
    (lambda X, y: (X.iloc[:3], y[:3]), "at least 4"),
    (lambda X, y: (X.to_numpy(), y), "DataFrame"),
    (lambda X, y: (X.assign(**{"fc1.macs": np.inf}), y), "infinite"),
])
def test_bad_input_is_named(bad, match):
    X, y = synthetic(n=20)
    Xb, yb = bad(X, y)
    with pytest.raises((ValueError, TypeError), match=match):
        explain_layers(Xb, yb)
    with pytest.raises(ValueError, match="share"):
        explain_layers(X, y, share=0.0)


def test_summary_plot_and_json(tmp_path):
    X, y = synthetic(n=60)
    r = explain_layers(X, y, seed=0)
    p = r.summary_plot(tmp_path / "sub" / "shap.png")
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [q.name for q in p.parent.iterdir()] == ["shap.png"]  # no temporary left behind
    d = json.loads(json.dumps(r.to_dict(), allow_nan=False))
    assert d["critical"] == ["conv2"] and set(d["scores"]) == {"conv1", "conv2", "fc1", "fc2"}
    assert d["n_samples"] == 60 and d["n_train"] + d["n_holdout"] == 60


# --- XAI-Gen side: features, sampling, evaluator ----------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny():
    """An untrained digits_cnn, a few digits and the unsigned multipliers."""
    from mapping import zoo
    from nas.data import load_dataset
    from nas.xaigen import select_multipliers

    ds = load_dataset("digits", seed=0)
    torch.manual_seed(0)
    model = zoo.model("digits_cnn").eval()
    exact, cands = select_multipliers()
    return model, zoo.network("digits_cnn"), ds, exact, cands


def test_layer_features_and_activation_stats(tiny):
    from cosim.analytical import estimate
    from mapping.hardware import preset

    model, net, ds, exact, _ = tiny
    rep = estimate(net, preset("edge_16x16"), multipliers=exact)
    acts = activation_stats(model, ds.train.x[:64])
    assert list(acts) == ["conv1", "conv2", "fc"]
    assert acts["conv1"]["act_sparsity"] > 0 and acts["conv2"]["act_absmax"] >= acts["conv2"]["act_mean"] >= 0
    f = layer_features(net, report=rep, act_stats=acts)
    assert list(f) == ["conv1", "conv2", "fc"] and all(tuple(v) == LAYER_FEATURES for v in f.values())
    assert f["conv2"]["macs"] == 16 * 32 * 9 * 64 and f["conv2"]["kernel"] == 3 and f["fc"]["kind"] == 2
    assert f["conv1"]["index"] == 0 and f["fc"]["index"] == 2 and f["fc"]["out_size"] == 1
    assert f["conv2"]["weights"] == 16 * 32 * 9 and f["conv2"]["in_channels"] == 16 and f["conv2"]["stride"] == 1
    shares = [v["energy_share"] for v in f.values()]
    assert all(0 < s < 1 for s in shares) and sum(shares) <= 1.0 + 1e-9  # pool layers take the rest
    bare = layer_features(net, ["fc"])
    assert list(bare) == ["fc"] and np.isnan(bare["fc"]["energy_share"]) and np.isnan(bare["fc"]["act_mean"])
    with pytest.raises(KeyError, match="no layer"):
        layer_features(net, ["conv9"])


def test_sampling_and_feature_frame(tiny):
    model, net, _, exact, cands = tiny
    layers = ["conv1", "conv2", "fc"]
    a = sample_assignments(layers, cands, 30, exact=exact, seed=4)
    assert a == sample_assignments(layers, cands, 30, exact=exact, seed=4)
    assert a != sample_assignments(layers, cands, 30, exact=exact, seed=5)
    assert all(any(m is not exact for m in s.values()) for s in a)  # at least one layer approximated
    assert any(all(m is not exact for m in s.values()) for s in a) and any(s["conv1"] is exact for s in a)
    X = feature_frame(layer_features(net), a)
    assert X.shape == (30, 3 * (len(LAYER_FEATURES) + len(MULTIPLIER_FEATURES)))
    assert X.columns[0] == "conv1.index" and "fc.mult_mre_pct" in X.columns
    for i, s in enumerate(a):
        assert X.loc[i, "conv2.mult_mre_pct"] == s["conv2"].metrics.mre_pct
        assert X.loc[i, "fc.mult_energy_pj"] == s["fc"].energy_pj
    assert multiplier_features(exact) == {"mult_mae_pct": 0.0, "mult_mre_pct": 0.0, "mult_wce_pct": 0.0,
                                          "mult_bias": 0.0, "mult_energy_pj": exact.energy_pj}
    with pytest.raises(KeyError, match="no multiplier for layer"):
        feature_frame(layer_features(net), [{"conv1": exact}])
    with pytest.raises(ValueError, match="no candidate"):
        sample_assignments(layers, [], 3, exact=exact)


def test_assignment_evaluator(tiny):
    from cosim.axtorch import approximate
    from nas.train import evaluate

    model, _, ds, exact, cands = tiny
    x, y = ds.val.x[:80], ds.val.y[:80]
    ev = AssignmentEvaluator(model, x, y, calibration=ds.train.x[:64], exact=exact, robust_eps=0.05,
                             robust_samples=20, threads=1)
    base = ev.baseline
    assert base.accuracy_drop == 0.0 and base.robust_drop == 0.0 and 0 <= base.robust_accuracy <= 1
    assert ev.evaluate({}) is base and ev.evaluate({"conv1": exact}) is base  # same assignment, cached
    worst = cands[0]
    e = ev.evaluate({"conv2": worst})
    assert ev.evaluations == 2 and ev.evaluate({"conv2": worst}) is e
    ref = approximate(model, {"conv1": exact, "conv2": worst, "fc": exact}, calibration=ds.train.x[:64])
    assert e.accuracy == evaluate(ref, x, y)  # the functional kernels, nothing else
    assert e.accuracy_drop == pytest.approx(base.accuracy - e.accuracy)
    with pytest.raises(KeyError, match="conv7"):
        ev.evaluate({"conv7": worst})
