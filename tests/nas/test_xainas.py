"""XAI-NAS end to end on digits: outputs, determinism, resume after a kill, SHAP pinning, Dask, the CLI."""

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from nas import xainas as X
from nas.space import Genome

# Tiny: 2 generations of 4 on digits, one epoch, small validation and attack sets.
CFG = X.SearchConfig(dataset="digits", generations=2, pop_size=4, epochs=1, batch_size=64, val_samples=80,
                     robust_samples=30, pgd_steps=2, test_samples=80, test_robust_samples=20, max_stages=2,
                     max_layers=2, channels=(4, 8), xai_every=1, xai_min_samples=4, xai_min_r2=-math.inf, seed=3)


def _search(cfg, out, runner=None, explain=None):
    return X.XaiNasSearch(cfg, out, runner=runner or X.SerialRunner(), explain=explain)


def _front_summary(res):
    return [(r["key"], r["val_acc"], r["val_robust_acc"], r["test_acc"], r["test_fgsm_acc"], r["test_pgd_acc"],
             r["energy_pj"], r["latency_s"], r["memory_bytes"]) for r in res.front]


def _archive_summary(out):
    """Every evaluated candidate of the search in `out` (from its archive files), in a fixed order."""
    recs = [json.loads(p.read_text()) for p in (Path(out) / "archive").glob("*.json")]
    return sorted((r["generation"], r["key"], r["train_key"], r["seed"], r["float_acc"], r["acc"], r["robust_acc"])
                  for r in recs)


def _assert_same_search(got_out, got_res, want_out, want_res):
    """Same candidates with the same scores, generation by generation, then the same front and hypervolumes.

    The archives are compared first so that a failure names the first candidate that differs (its generation tells
    a sampling/pinning difference from an evaluation one) instead of only "the fronts differ".
    """
    got, want = _archive_summary(got_out), _archive_summary(want_out)
    for a, b in zip(got, want):
        assert a == b, f"first differing candidate:\n got  {a}\n want {b}"
    assert len(got) == len(want)
    assert _front_summary(got_res) == _front_summary(want_res)
    assert [h["hypervolume"] for h in got_res.history] == [h["hypervolume"] for h in want_res.history]
    assert [e.get("pinned") for e in got_res.xai_events] == [e.get("pinned") for e in want_res.xai_events]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    out = tmp_path_factory.mktemp("xainas") / "base"
    s = _search(CFG, out)
    return s, s.run()


class _FakeCriticality:
    """Stands in for nas.xai's result: S1L1 and FC critical."""

    def __init__(self, X):
        self.scores = {"S1L1": 0.6, "FC": 0.3, "S1L2": 0.1}
        self.critical = ("S1L1", "FC")
        self.r2_holdout = 0.9
        self.columns = list(X.columns)

    def summary_plot(self, path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(b"png")
        return Path(path)


def fake_explain(X, y, *, share=0.8, seed=0):
    return _FakeCriticality(X)


# --- end to end -------------------------------------------------------------------------------------------------

def test_tiny_search_writes_every_output(base):
    s, res = base
    out = s.out
    assert res.evaluations == len(list((out / "archive").glob("*.json"))) >= 6
    assert 1 <= len(res.front) <= CFG.pop_size
    for f in ("front.csv", "front.json", "summary.md", "search.log", "plots/pairwise.png", "plots/hypervolume.png",
              "checkpoint/algorithm.pkl", "checkpoint/state.json"):
        assert (out / f).is_file(), f
    doc = json.loads((out / "front.json").read_text())
    assert doc["objectives"] == list(X.OBJECTIVES) and len(doc["front"]) == len(res.front)
    assert len(doc["history"]) == CFG.generations and doc["history"][-1]["evaluated"] == res.evaluations
    csv = (out / "front.csv").read_text().splitlines()
    assert csv[0].startswith("rank,key") and len(csv) == len(res.front) + 1
    for r in res.front:
        assert 0 <= r["test_acc"] <= 1 and r["energy_pj"] > 0 and r["latency_s"] > 0 and r["memory_bytes"] > 0
        assert Path(r["model_file"]).is_file() and Path(r["hardware_files"]["analytical"]).is_file()
        assert set(r["assignment"]) == set(Genome.from_dict(json.loads(
            (out / "archive" / f"{r['hash']}.json").read_text())["genome"]).active_positions())
    # the cycle-level engine re-scores every member of the front, with the analytical model's MAC energy
    assert res.engine == "available"
    for r in res.front:
        assert r["engine"]["total_cycles"] > 0 and Path(r["hardware_files"]["engine"]).is_file()
        assert r["engine"]["mac_energy_pj"] == pytest.approx(r["mac_energy_pj"], rel=1e-12)
    md = (out / "summary.md").read_text()
    assert "Pareto front" in md and "cycle-level engine" in md
    # the front is non-dominated among everything evaluated
    recs = list(s.archive.values())
    F = np.array([s.objectives(r) for r in recs])
    for r in res.front:
        f = np.array(s.objectives(s.archive[r["key"]]))
        assert not np.any(np.all(F <= f, axis=1) & np.any(F < f, axis=1))


def test_real_shap_runs_over_positions_and_is_logged(base):
    s, res = base
    ev = res.xai_events
    assert len(ev) == 1 and ev[0]["generation"] == 1 and ev[0]["samples"] == CFG.pop_size
    assert set(ev[0]["scores"]) <= set(s.space.positions)
    assert "XAI gen 1: SHAP over 4 candidates" in (s.out / "search.log").read_text()


def test_front_model_file_reproduces_its_test_accuracy(base):
    from cosim.axtorch import approximate
    from nas.data import load_dataset
    from nas.train import evaluate
    from rtl_models.library import MultiplierLibrary

    s, res = base
    r = res.front[0]
    saved = torch.load(r["model_file"], weights_only=True)
    space = s.space
    model = space.build_model(Genome.from_dict(saved["genome"]))
    model.load_state_dict(saved["state_dict"])
    lib = MultiplierLibrary.default()
    ds = load_dataset("digits", seed=CFG.seed)
    ax = approximate(model, {k: lib.get(v) for k, v in saved["assignment"].items()}, calibration=ds.train.x[:256])
    assert evaluate(ax, ds.test.x[:CFG.test_samples], ds.test.y[:CFG.test_samples]) == r["test_acc"]


def test_same_seed_same_front(base, tmp_path):
    s, res = base
    again = _search(CFG, tmp_path / "again").run()
    _assert_same_search(tmp_path / "again", again, s.out, res)


def test_one_candidate_evaluates_identically_twice(base):
    """Evaluation alone (build, seeded training, int8 + multipliers, attacks) is a function of the task.

    If this fails, a same-seed search cannot be reproducible either, and the cause is in the evaluation stack
    (training, the functional kernels, the attacks), not in the search.
    """
    s, _ = base
    rec = sorted(s.archive.values(), key=lambda r: r["key"])[0]
    g = Genome.from_dict(rec["genome"])
    task = {"kind": "search", "space": s.space.to_dict(), "genome": rec["genome"], "cfg": CFG.to_dict(),
            "seed": rec["seed"], "train_key": "probe", "float_state": None, "parent_state": None,
            "assignments": [(rec["key"], s.space.assignment(g)), ("exact", {p: s.space.exact for p in
                                                                              g.active_positions()})]}
    a, b = X.evaluate_task(task), X.evaluate_task(task)
    strip = ("eval_s",)
    assert [{k: v for k, v in r.items() if k not in strip} for r in a["results"]] == \
           [{k: v for k, v in r.items() if k not in strip} for r in b["results"]]
    assert a["float_state"].keys() == b["float_state"].keys()
    assert all(torch.equal(a["float_state"][k], b["float_state"][k]) for k in a["float_state"])


class _CountingRunner(X.SerialRunner):
    """Serial runner that records every candidate key it is asked to evaluate."""

    def __init__(self):
        super().__init__()
        self.keys = []

    def __call__(self, f, tasks):
        for t in tasks:
            if t["kind"] == "search":
                self.keys += [k for k, _ in t["assignments"]]
        return super().__call__(f, tasks)


def test_resume_after_a_kill_loses_nothing(base, tmp_path):
    _, res = base
    out = tmp_path / "killed"
    s = _search(CFG, out)
    s._fail_after = CFG.pop_size + 2  # dies in generation 2, two candidates in
    with pytest.raises(KeyboardInterrupt):
        s.run()
    archived = {json.loads(p.read_text())["key"] for p in (out / "archive").glob("*.json")}
    assert len(archived) >= CFG.pop_size + 2
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    assert state["generation"] == 1
    with pytest.raises(X.SearchError, match="holds a search already"):
        _search(CFG, out).run()
    runner = _CountingRunner()
    resumed = _search(X.XaiNasSearch.load_config(out), out, runner=runner).run(resume=True)
    assert runner.keys and not set(runner.keys) & archived  # nothing evaluated twice
    _assert_same_search(out, resumed, base[0].out, res)
    assert "resumed at generation 2" in (out / "search.log").read_text()


def test_resume_during_the_first_generation(tmp_path):
    cfg = replace(CFG, generations=1, xai=False)
    out = tmp_path / "first"
    s = _search(cfg, out)
    s._fail_after = 2
    with pytest.raises(KeyboardInterrupt):
        s.run()
    assert not (out / "checkpoint" / "state.json").exists()
    runner = _CountingRunner()
    res = _search(cfg, out, runner=runner).run(resume=True)
    assert len(runner.keys) == res.evaluations - 2


def test_pinning_is_applied_and_logged(tmp_path):
    s = _search(CFG, tmp_path / "pin", explain=fake_explain)
    res = s.run()
    ev = res.xai_events[0]
    assert ev["pinned"] == ["S1L1", "FC"] and ev["allowed"] == [s.space.exact]
    assert res.pins == {"S1L1": [s.space.exact], "FC": [s.space.exact]}
    log = (tmp_path / "pin" / "search.log").read_text()
    assert "pinned multiplier genes S1L1, FC to {mul8u_wallace}" in log and "S1L1 0.60" in log
    assert s.problem.vars["m_S1L1"].options == [s.space.exact]
    second = [r for r in s.archive.values() if r["generation"] == 1]
    assert second and all(r["assignment"]["S1L1"] == s.space.exact and r["assignment"]["FC"] == s.space.exact
                          for r in second)
    first = [r for r in s.archive.values() if r["generation"] == 0]
    assert any(r["assignment"]["S1L1"] != s.space.exact for r in first)  # before pinning: free


def test_low_r2_pins_nothing(tmp_path):
    class Low(_FakeCriticality):
        def __init__(self, X):
            super().__init__(X)
            self.r2_holdout = -0.5

    cfg = replace(CFG, xai_min_r2=0.0)
    s = _search(cfg, tmp_path / "low", explain=lambda X_, y, **kw: Low(X_))
    s.run(finalize=False)
    assert s.xai_events[0]["pinned"] == [] and not s.problem.pins
    assert "not trusted, nothing pinned" in (tmp_path / "low" / "search.log").read_text()


def test_dask_local_cluster_gives_the_same_front(base, tmp_path):
    s, res = base
    runner = X.make_runner("dask", workers=1, processes=False)
    try:
        got = _search(CFG, tmp_path / "dask", runner=runner).run()
    finally:
        runner.close()
    _assert_same_search(tmp_path / "dask", got, s.out, res)


def test_process_pool_gives_the_same_front(base, tmp_path):
    # two spawned workers: other processes (other hash seeds, fresh caches), results arriving in any order
    s, res = base
    got = X.run_search(CFG, tmp_path / "pool", runner="pool", workers=2)
    _assert_same_search(tmp_path / "pool", got, s.out, res)


def test_pool_fails_fast_when_a_worker_dies():
    import os

    runner = X.make_runner("pool", workers=1)
    try:
        with pytest.raises(X.SearchError, match="a pool worker died"):
            runner(os._exit, [3])  # multiprocessing.Pool would respawn the worker and wait forever
    finally:
        runner.close()


# --- pieces ---------------------------------------------------------------------------------------------------

def test_position_features_columns_and_absent_positions():
    from rtl_models.library import MultiplierLibrary

    space = X.build_space(CFG)
    lib = {m: MultiplierLibrary.default().get(m) for m in space.multipliers}
    rng = np.random.default_rng(0)
    genomes = [space.sample(rng) for _ in range(20)]
    F = X.position_features(space, genomes, lib)
    assert len(F) == 20 and all(c.split(".", 1)[0] in space.positions for c in F.columns)
    for i, g in enumerate(genomes):
        active = set(g.active_positions())
        for p in space.positions:
            assert math.isnan(F.loc[i, f"{p}.macs"]) == (p not in active)
        assert F.loc[i, "FC.mult_mre_pct"] == lib[space.assignment(g)["FC"]].metrics.mre_pct
    assert np.allclose(F.filter(like=".mac_share").sum(axis=1, skipna=True), 1.0)


def test_hypervolume_and_fronts():
    assert X.hypervolume(np.array([[0.5, 0.5]]), ref=1.0) == pytest.approx(0.25)
    assert X.hypervolume(np.array([[0.5, 0.5], [0.25, 0.75], [0.6, 0.6]]), ref=1.0) == pytest.approx(0.3125)
    assert X.hypervolume(np.zeros((0, 2))) == 0.0 and X.hypervolume(np.array([[2.0, 0.0]]), ref=1.0) == 0.0
    assert list(X.non_dominated(np.array([[1, 2], [2, 1], [2, 2], [1, 2]]))) == [0, 1, 3]
    d = X.crowding_distance(np.array([[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]]))
    assert d[0] == d[2] == np.inf and d[1] == pytest.approx(2.0)


def test_config_checks_and_round_trip():
    assert X.SearchConfig.from_dict(json.loads(json.dumps(CFG.to_dict()))) == CFG
    with pytest.raises(X.SearchError, match="attack='cw'"):
        X.SearchConfig(attack="cw")
    with pytest.raises(X.SearchError, match="pop_size=1"):
        X.SearchConfig(pop_size=1)
    with pytest.raises(X.SearchError, match="unknown keys"):
        X.SearchConfig.from_dict({"bogus": 1})
    with pytest.raises(X.SearchError, match="runner kind='mpi'"):
        X.make_runner("mpi")


def test_pin_repair_maps_children_into_the_allowed_set():
    space = X.build_space(CFG)
    prob = X.SearchProblem(space, 0)
    prob.pins = {"S1L1": ("mul8u_wallace",)}
    rng = np.random.default_rng(0)
    Xs = np.array([space.encode(space.sample(rng)) for _ in range(10)], dtype=object)
    out = X.PinRepair()._do(prob, Xs)
    assert all(x["m_S1L1"] == "mul8u_wallace" for x in out)


# --- the command line -----------------------------------------------------------------------------------------

def test_cli_search(tmp_path):
    from typer.testing import CliRunner

    from nas.cli import app

    r = CliRunner().invoke(app, ["search", "--help"])
    assert r.exit_code == 0 and all(o in r.output for o in ("--resume", "--dask-scheduler", "--no-xai", "--seed"))
    out = tmp_path / "cli"
    args = ["search", "--dataset", "digits", "--generations", "1", "--pop-size", "3", "--epochs", "1",
            "--max-stages", "1", "--max-layers", "2", "--processes", "0", "--no-xai", "--seed", "1", "--val-samples",
            "60", "--robust-samples", "20", "--test-samples", "60", "--out", str(out)]
    r = CliRunner().invoke(app, args + ["--json", "--quiet"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["front"] and doc["config"]["xai"] is False and doc["evaluations"] == 3
    assert Path(doc["files"]["front_csv"]).is_file()
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 2 and "holds a search already" in r.output
    r = CliRunner().invoke(app, ["search", "--resume", str(out), "--processes", "0"])
    assert r.exit_code == 0, r.output
    assert "Pareto front" in r.stdout and "files in" in r.stdout
    r = CliRunner().invoke(app, ["search", "--workers", "1", "--dask-scheduler", "tcp://x:1", "--out", str(out)])
    assert r.exit_code == 2 and "give one of them" in r.output


def test_format_front_is_a_readable_table(base):
    _, res = base
    text = X.format_front(res)
    lines = text.splitlines()
    assert lines[0].startswith(f"XAI-NAS Pareto front ({len(res.front)} networks")
    assert "architecture" in lines[1] and "test acc" in lines[1] and "memory KiB" in lines[1] and "engine us" in lines[1]
    rows = lines[3:3 + len(res.front)]
    assert [r.split()[1] for r in rows] == [f["arch"] for f in res.front]
    assert len({len(r) for r in rows + [lines[1]]}) == 1  # aligned columns
    assert f"{100 * res.front[0]['test_acc']:.1f}%" in rows[0] and "files: " in lines[-1]
