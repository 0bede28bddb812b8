"""FLASH: cell space, NN-Degree both ways, torch trace, hardware tables vs the analytical model, predictor,
hierarchical SHGO with repair, the sample cache and `cosim flash` (digits, tiny spaces and budgets)."""

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mapping.hardware import PRESETS
from nas import flash as F

SMALL = F.FlashSpace(width=(2, 9), depth=(1, 6), skip=(0, 12), input_shape=(1, 8, 8))


@pytest.fixture(scope="module")
def mult():
    from rtl_models.library import MultiplierLibrary

    return MultiplierLibrary.default().get("mul8u_array")


@pytest.fixture(scope="module")
def tables():
    return F.HardwareTables(SMALL, PRESETS["edge_16x16"])


def synthetic_predictor(a=-6.0, b=2.5):
    """logit(acc) = a + b log(degree), as a fitted predictor would store it."""
    return F.AccuracyPredictor(("log_degree",), (0.0,), (1.0,), (b,), a)


def archs(space):
    c = space.cells
    ints = lambda lo, hi: st.lists(st.integers(lo, hi), min_size=c, max_size=c).map(tuple)  # noqa: E731
    return st.builds(F.FlashArch, ints(*space.width), ints(*space.depth), ints(*space.skip))


# --- space and NN-Degree ----------------------------------------------------------------------------------------

@given(st.integers(1, 40), st.integers(1, 12), st.integers(0, 80))
def test_long_range_links_spend_the_budget_on_earlier_layers(w, d, t):
    links = F.long_range_links(w, d, t)
    assert len(links) == d
    for i, layer_links in enumerate(links, start=1):
        want = min(t, (i - 2) * w) if i >= 3 else 0
        assert sum(k for _, k in layer_links) == want
        srcs = [j for j, _ in layer_links]
        assert len(set(srcs)) == len(srcs) and all(1 <= j <= i - 2 for j in srcs)
        assert all(0 < k <= w for _, k in layer_links)
    assert F.skip_links(w, d, t) == sum(k for ll in links for _, k in ll)


@settings(max_examples=60, deadline=None)
@given(archs(SMALL))
def test_nn_degree_closed_form_equals_graph(arch):
    net = F.build_network(arch, SMALL)
    assert F.cell_degrees_from_network(net) == pytest.approx(F.cell_degrees(arch), rel=1e-12)
    assert F.nn_degree_from_network(net) == pytest.approx(F.nn_degree(arch), rel=1e-12)
    # the formula itself: Σ_c (w_c + L_c / d_c)
    assert F.nn_degree(arch) == pytest.approx(sum(
        w + sum(min(t, (i - 2) * w) for i in range(3, d + 1)) / d
        for w, d, t in zip(arch.widths, arch.depths, arch.skips)))


def test_torch_model_traces_to_the_same_network():
    import torch

    from mapping.torch_import import from_torch

    rng = np.random.default_rng(3)
    cases = [F.FlashArch((9, 2, 9), (6, 1, 6), (12, 0, 12)), F.FlashArch((2, 2, 2), (1, 1, 1), (0, 0, 0))]
    cases += [SMALL.sample(rng) for _ in range(2)]
    for arch in cases:
        net = F.build_network(arch, SMALL)
        model = F.build_model(arch, SMALL)
        traced = from_torch(model, torch.zeros(1, *SMALL.input_shape), name=net.name)
        assert [l.to_dict() for l in traced.layers] == [l.to_dict() for l in net.layers], arch.key
        assert sorted(traced.graph.edges) == sorted(net.graph.edges)
        assert F.nn_degree_from_network(traced) == pytest.approx(F.nn_degree(arch))
        assert model(torch.zeros(2, *SMALL.input_shape)).shape == (2, SMALL.classes)


def test_space_size_bounds_and_errors():
    space = F.FlashSpace()
    assert space.size() == (29 * 6 * 33) ** 3 > 63e9  # FLASH's "more than 63 billion"
    assert F.FlashSpace(width=(4, 4), depth=(2, 3), skip=(0, 1), cells=2).size() == (1 * 2 * 2) ** 2
    with pytest.raises(F.FlashError, match=r"widths\[1\] = 40 outside"):
        space.check(F.FlashArch((8, 40, 8), (2, 2, 2), (0, 0, 0)))
    with pytest.raises(F.FlashError, match="one entry per cell"):
        F.FlashArch((8, 8), (2, 2, 2), (0, 0, 0))
    with pytest.raises(F.FlashError, match="skips"):
        F.FlashArch((8,), (2,), (-1,))
    with pytest.raises(F.FlashError, match=r"width = \(9, 3\)"):
        F.FlashSpace(width=(9, 3))
    a = F.FlashArch((8, 9, 10), (2, 3, 4), (5, 30, 7))
    assert F.FlashArch.from_dict(a.to_dict()) == a and F.FlashArch.from_vector(a.vector(), 3) == a
    c = a.canonical()
    assert c.skips == (0, 9, 7)  # unusable budget trimmed: same network
    assert F.build_network(c, space).layers == F.build_network(a, space).layers


def test_builtin_shapes_match_nas_data():
    from nas.data import dataset_info

    for name, (shape, classes) in F._BUILTIN_SHAPES.items():
        info = dataset_info(name)
        assert (info.shape, info.classes) == (shape, classes)


def test_sampling_is_seeded_disjoint_and_spread():
    tr, ho = F.sample_architectures(SMALL, 8, seed=5, holdout=4)
    tr2, ho2 = F.sample_architectures(SMALL, 8, seed=5, holdout=4)
    assert tr == tr2 and ho == ho2 and len(tr) == 8 and len(ho) == 4
    assert not {a.key for a in tr} & {a.key for a in ho}
    deg = sorted(F.nn_degree(a) for a in tr)
    pool = [F.nn_degree(SMALL.sample(np.random.default_rng(i))) for i in range(400)]
    assert deg[0] <= np.percentile(pool, 15) and deg[-1] >= np.percentile(pool, 85)


# --- hardware tables against the analytical model --------------------------------------------------------------

def _check_against_estimate(arch, space, tabs, mult):
    from cosim.analytical import estimate

    net = F.build_network(arch, space)
    tot = estimate(net, tabs.hw, multipliers=mult, timing=tabs.timing).total()
    pb = F.FlashProblem(space, tabs, synthetic_predictor(), mult)
    fig = pb.figures(arch)
    assert fig["total_cycles"] == tot["total_cycles"]
    assert fig["macs"] == tot["macs"] and fig["params"] == tot["params"] == net.params
    assert fig["sram_footprint_bytes"] == tot["sram_footprint_bytes"]
    assert fig["energy_pj"] == pytest.approx(tot["total_energy_pj"], rel=1e-12)
    assert fig["mac_energy_pj"] == pytest.approx(tot["mac_energy_pj"], rel=1e-12)
    assert fig["latency_s"] == pytest.approx(tot["latency_s"], rel=1e-12)
    assert fig["nn_degree"] == pytest.approx(F.nn_degree(arch), rel=1e-12)
    ana = F.analytical_figures(arch, pb)
    assert ana["total_cycles"] == fig["total_cycles"] and ana["area_um2"] == pytest.approx(fig["area_um2"])


@settings(max_examples=15, deadline=None)
@given(arch=archs(SMALL))
def test_tables_equal_the_analytical_model(arch, tables, mult):
    _check_against_estimate(arch, SMALL, tables, mult)


def test_tables_equal_the_analytical_model_multipod_pipelined(mult):
    space = F.FlashSpace(width=(3, 7), depth=(1, 4), skip=(0, 6), cells=2, input_shape=(3, 12, 12), classes=4)
    hw = PRESETS["edge_16x16"].with_(name="quad", pods=4, rows=4, cols=4, dataflow="os")
    tabs = F.HardwareTables(space, hw, timing="pipelined")
    rng = np.random.default_rng(0)
    for arch in [space.sample(rng) for _ in range(12)] + [F.FlashArch((7, 7), (4, 4), (6, 6))]:
        _check_against_estimate(arch, space, tabs, mult)


def test_relaxation_is_exact_at_integers_and_linear_in_depth(tables):
    a = np.array([6, 5, 4, 3, 4, 2, 7, 3, 0], dtype=np.float64)
    b = a.copy()
    b[3] += 1  # one more layer in cell 1
    mid = (a + b) / 2
    Ka, Kb, Km = tables.evaluate(np.stack([a, b, mid]))
    for col in (F.K_CYCLES, F.K_EFIX, F.K_MACS, F.K_PARAMS):
        assert Km[col] == pytest.approx((Ka[col] + Kb[col]) / 2, rel=1e-12)
    # continuity in width: a tiny step moves every figure a tiny amount
    eps = a.copy()
    eps[1] += 1e-6
    Ke = tables.evaluate(eps)[0]
    assert np.allclose(Ke[:3], Ka[:3], rtol=1e-5)


# --- predictor ----------------------------------------------------------------------------------------------------

def _samples(archs_, fn):
    out = []
    for a in archs_:
        net = F.build_network(a, SMALL)
        out.append(F.SampleResult(a, F.nn_degree(a), net.params, net.macs, fn(a, net), 0.0, 0.0))
    return out


def test_predictor_recovers_a_logit_log_degree_law():
    tr, ho = F.sample_architectures(SMALL, 12, seed=1, holdout=6)
    law = lambda a, net: 1 / (1 + math.exp(-(-5.0 + 2.0 * math.log(F.nn_degree(a)))))  # noqa: E731
    p = F.fit_predictor(_samples(tr, law), _samples(ho, law))
    assert p.features[0] == "log_degree"
    assert p.stats["train_r2"] > 0.999 and p.stats["holdout_r2"] > 0.999
    assert p.stats["holdout_kendall_tau"] == pytest.approx(1.0)
    a = ho[0]
    assert p.predict(F.nn_degree(a), 1.0, 1.0) == pytest.approx(law(a, None), abs=1e-4)
    with pytest.raises(F.FlashError, match="at least 3"):
        F.fit_predictor(_samples(tr[:2], law))


def test_predictor_kendall_tau_against_reference():
    from scipy.stats import kendalltau

    rng = np.random.default_rng(0)
    x, y = rng.random(20), rng.random(20)
    assert F._kendall(x, y) == pytest.approx(kendalltau(x, y).statistic)


# --- optimizer ----------------------------------------------------------------------------------------------------

def _feasible_random_best(pb, n=30_000, seed=0):
    rng = np.random.default_rng(seed)
    lo, hi = pb.space.lower(), pb.space.upper()
    X = rng.integers(lo, hi + 1, size=(n, len(lo))).astype(np.float64)
    K, obj, mar = pb.evaluate_vectors(X)
    ok = (mar >= 0).all(axis=1)
    return pb.objective_value(K[ok]), obj[ok]


def test_flash_finds_a_feasible_architecture_at_least_as_good_as_random_search(tables, mult):
    from cosim.analytical import estimate

    cons = F.Constraints(latency_max_s=40e-6, energy_max_pj=15e6)
    pb = F.FlashProblem(SMALL, tables, synthetic_predictor(), mult, cons, "accuracy")
    res = F.flash_optimize(pb)
    assert res.feasible and res.optimizer_s < 10
    tot = estimate(F.build_network(res.arch, SMALL), tables.hw, multipliers=mult).total()
    assert tot["latency_s"] <= cons.latency_max_s and tot["total_energy_pj"] <= cons.energy_max_pj
    vals, _ = _feasible_random_best(pb)
    assert res.objective_value >= vals.max() - 2e-3  # predicted accuracy
    assert json.loads(json.dumps(res.to_dict()))["arch"]["key"] == res.arch.key

    # minimize energy under an accuracy floor
    pb2 = F.FlashProblem(SMALL, tables, synthetic_predictor(), mult,
                         F.Constraints(latency_max_s=40e-6, accuracy_min=0.9), "energy")
    res2 = F.flash_optimize(pb2)
    assert res2.feasible and res2.figures["accuracy"] >= 0.9 and res2.figures["latency_s"] <= 40e-6
    vals2, _ = _feasible_random_best(pb2)
    assert res2.objective_value <= vals2.min() * 1.02


def test_scalar_score_equals_vectorized(tables, mult):
    rng = np.random.default_rng(7)
    lo, hi = SMALL.lower(), SMALL.upper()
    X = lo + rng.random((40, len(lo))) * (hi - lo)  # fractional points of the relaxation too
    cons = F.Constraints(latency_max_s=40e-6, energy_max_pj=15e6, area_max_um2=0.6e6, sram_max_bytes=4000,
                         accuracy_min=0.8)
    pred = F.AccuracyPredictor(("log_degree", "log_macs"), (3.0, 12.0), (0.5, 1.5), (1.2, -0.3), 1.0)
    for objective in F.OBJECTIVES:
        pb = F.FlashProblem(SMALL, tables, pred, mult, cons, objective)
        K = tables.evaluate(X)
        obj, mar = pb.score(K)
        for i in range(len(X)):
            o, m = pb.score_one(K[i])
            assert o == pytest.approx(obj[i], rel=1e-12, abs=1e-12)
            assert m == pytest.approx(list(mar[i]), rel=1e-12, abs=1e-12)


def test_infeasible_limits_give_the_least_violating_architecture(tables, mult):
    pb = F.FlashProblem(SMALL, tables, synthetic_predictor(), mult, F.Constraints(latency_max_s=1e-9), "accuracy")
    res = F.flash_optimize(pb)
    assert not res.feasible
    smallest = pb.figures(F.FlashArch((2, 2, 2), (1, 1, 1), (0, 0, 0)))["latency_s"]
    assert res.figures["latency_s"] == pytest.approx(smallest)


def test_repair_reaches_feasibility_from_an_infeasible_rounding(tables, mult):
    pb = F.FlashProblem(SMALL, tables, synthetic_predictor(), mult, F.Constraints(latency_max_s=30e-6), "accuracy")
    top = SMALL.upper()
    z, ok, info = F._repair(pb, top)
    assert ok and info["descent_steps"] > 0
    assert pb.figures(F.FlashArch.from_vector(z, 3))["latency_s"] <= 30e-6
    z2, steps = F._block_polish(pb, z)
    (o1, o2), mar = pb.score(tables.evaluate(np.stack([z, z2])))
    assert o2 <= o1 and (mar[1] >= -1e-12).all()


def test_constraints_validate():
    with pytest.raises(F.FlashError, match="latency_max_s = -1"):
        F.Constraints(latency_max_s=-1)
    with pytest.raises(F.FlashError, match="accuracy_min = 1.5"):
        F.Constraints(accuracy_min=1.5)
    assert F.Constraints(energy_max_pj=1.0, accuracy_min=0.5).active() == [("energy_pj", 1.0), ("accuracy", 0.5)]


def test_engine_figures_agree_with_the_analytical_model_on_compute(tables, mult):
    """The engine and the analytical model see the same MACs and MAC energy; the engine never beats
    the analytical compute time (it adds memory stalls the closed form does not see)."""
    pb = F.FlashProblem(SMALL, tables, synthetic_predictor(), mult)
    arch = F.FlashArch((4, 5, 6), (3, 2, 4), (2, 0, 5))
    eng, ana = F.engine_figures(arch, pb), F.analytical_figures(arch, pb)
    assert set(eng) == set(ana)
    assert eng["macs"] == ana["macs"] and eng["params"] == ana["params"]
    assert eng["mac_energy_pj"] == pytest.approx(ana["mac_energy_pj"], rel=1e-12)
    assert eng["total_cycles"] > 0 and eng["latency_s"] > 0 and eng["area_um2"] > 0


# --- trained samples, cache and the command ---------------------------------------------------------------------

TINY = dict(width=(2, 6), depth=(1, 3), skip=(0, 4))


def test_predictor_samples_are_cached(tmp_path):
    space = F.FlashSpace.for_dataset("digits", **TINY)
    kw = dict(samples=3, holdout=1, seed=0, epochs=1, max_train=300, cache=tmp_path)
    seen = []
    p1, tr1, ho1, info1 = F.build_predictor(space, "digits", progress=lambda i, n, a, hit: seen.append(hit), **kw)
    assert not info1["from_cache"] and seen == [False] * 4
    files = list(tmp_path.glob("samples-digits-*.json"))
    assert len(files) == 1
    seen.clear()
    p2, tr2, ho2, info2 = F.build_predictor(space, "digits", progress=lambda i, n, a, hit: seen.append(hit), **kw)
    assert info2["from_cache"] and seen == [True] * 4
    assert tr1 == tr2 and ho1 == ho2 and p1 == p2
    assert all(0.0 <= s.val_accuracy <= 1.0 for s in tr1 + ho1)
    F.build_predictor(space, "digits", **{**kw, "seed": 1})  # other settings: another file
    assert len(list(tmp_path.glob("samples-digits-*.json"))) == 2


def test_cli_flash_json_and_table(tmp_path):
    from typer.testing import CliRunner

    from nas.cli import app

    args = ["flash", "--dataset", "digits", "--samples", "3", "--holdout", "1", "--epochs", "1", "--width", "2:6",
            "--depth", "1:3", "--skip", "0:4", "--latency-max", "0.02", "--energy-max", "8", "--cache", str(tmp_path),
            "--quiet"]
    r = CliRunner().invoke(app, args + ["--json", "--train"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["feasible"] and doc["analytical"]["latency_s"] <= 0.02e-3
    assert doc["analytical"]["total_energy_pj"] <= 8e6
    assert doc["optimizer"]["optimizer_s"] == doc["timings"]["optimizer_s"] > 0
    assert doc["engine"]["total_cycles"] > 0 and doc["engine"]["macs"] == doc["analytical"]["macs"]
    assert 0 <= doc["measured"]["test_accuracy"] <= 1 and 0 < doc["predicted_accuracy"] < 1
    assert doc["architecture"]["nn_degree"] == pytest.approx(sum(doc["architecture"]["cell_degrees"]))
    assert not doc["predictor"]["from_cache"]
    r2 = CliRunner().invoke(app, args)
    assert r2.exit_code == 0, r2.output
    assert "predicted accuracy" in r2.stdout and "optimizer" in r2.stdout and "from cache" in r2.stdout
    bad = CliRunner().invoke(app, ["flash", "--objective", "speed", "--quiet"])
    assert bad.exit_code == 2 and "--objective 'speed'" in bad.output
