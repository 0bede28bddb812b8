"""XAI-Gen end to end on digits with the zoo's tiny CNN: budget, critical layers, outputs, model files, CLI."""

import json

import pytest
import torch

from nas.xaigen import (
    XaiGenConfig,
    XaiGenError,
    load_model_file,
    report_markdown,
    run_xaigen,
    save_model_file,
    select_multipliers,
    write_outputs,
)

# Small but complete: train 5 epochs, 16 SHAP samples, FGSM/PGD on 60 images.
CFG = dict(model="digits_cnn", dataset="digits", epochs=5, lr=3e-3, samples=16, robust_samples=60,
           robust_eps=(0.05,), pgd_steps=3, seed=0)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("xaigen")
    stages = []
    res = run_xaigen(XaiGenConfig(**CFG), progress=lambda s, d, t, i: stages.append(s))
    files = write_outputs(res, out)
    return res, files, out, stages


def test_end_to_end_respects_budget_and_keeps_critical_layers_exact(run):
    res, files, out, stages = run
    doc = res.report
    a = doc["accuracy"]
    assert a["float"]["val"] > 0.85  # the tiny CNN learned digits
    assert a["within_budget"] and a["loss"]["val"] <= 0.01 + 1e-9  # the budget holds on the evaluation set
    assert a["approximate"]["val"] == pytest.approx(a["exact_int8"]["val"] - a["loss"]["val"])
    layers = ["conv1", "conv2", "fc"]
    assert list(res.assignment) == layers
    exact = doc["multipliers"]["exact"]
    assert exact == "mul8u_wallace" and doc["multipliers"]["scheme"] == "affine uint8"
    assert doc["critical_layers"] and set(doc["critical_layers"]) <= set(layers)
    for layer in doc["critical_layers"]:
        assert res.assignment[layer] == exact
    assert doc["critical_layers"] == [l for l in layers if l in res.criticality.critical]
    # the cheaper assignment really is cheaper (MAC energy), and nothing else changes in the analytical model
    h = doc["hardware"]
    assert h["approximate"]["mac_energy_pj"] <= h["exact_int8"]["mac_energy_pj"]
    assert h["mac_energy_reduction_x"] >= 1.0 and h["total_energy_reduction_x"] >= 1.0
    assert h["latency_ratio"] == 1.0 and h["memory_ratio"] == 1.0
    assert h["mac_energy_reduction_x"] >= h["total_energy_reduction_x"]
    # every greedy step that was accepted was measured within the budget
    assert all(s["combined_drop"] <= 0.01 + 1e-9 for s in doc["search"]["steps"] if s["accepted"])
    assert doc["search"]["evaluations"] >= doc["search"]["samples"]
    assert set(doc["robust"]["approximate"]) == {"0.05"} and doc["robust"]["samples"] == 60
    assert doc["criticality"]["n_samples"] == 16 and res.samples.shape[0] == 16
    assert {"train", "samples", "single-layer", "greedy", "final"} <= set(stages)


def test_outputs_are_written_and_readable(run):
    res, files, out, _ = run
    from cosim.commands.estimate import load_assignment
    from mapping import zoo

    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["assignment.json", "report.json", "report.md", "shap_summary.png", "shap_summary_robust.png", "samples.csv",
         "model.pt"])  # and no temporary files left behind
    assignment = json.loads((out / "assignment.json").read_text())
    assert assignment == res.assignment
    resolved = load_assignment(out / "assignment.json", [l.name for l in zoo.network("digits_cnn").layers])
    assert {k: m.name for k, m in resolved.items()} == assignment  # what `cosim estimate --multipliers` reads
    doc = json.loads((out / "report.json").read_text())
    assert doc["schema"] == "cosim.xaigen" and doc["files"]["assignment"] == files["assignment"]
    assert (out / "shap_summary.png").read_bytes()[:4] == b"\x89PNG"
    md = (out / "report.md").read_text()
    assert "MAC energy" in md and "Critical layers" in md and md == report_markdown(doc)
    assert "accuracy_drop" in (out / "samples.csv").read_text().splitlines()[0]


def test_model_file_round_trip_and_errors(run, tmp_path):
    res, files, out, _ = run
    model, name, meta = load_model_file(out / "model.pt")
    assert name == "digits_cnn" and meta["num_classes"] == 10 and meta["dataset"] == "digits"
    for (k, v), (k2, v2) in zip(model.state_dict().items(), res.model.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    torch.save(res.model.state_dict(), tmp_path / "bare.pt")
    m2, name2, _ = load_model_file(tmp_path / "bare.pt", "digits_cnn")
    assert name2 == "digits_cnn"
    with pytest.raises(XaiGenError, match="bare state dict"):
        load_model_file(tmp_path / "bare.pt")
    with pytest.raises(XaiGenError, match="does not fit zoo model 'lenet5'"):
        load_model_file(tmp_path / "bare.pt", "lenet5")
    with pytest.raises(XaiGenError, match="holds zoo model 'digits_cnn'"):
        load_model_file(out / "model.pt", "lenet5")
    with pytest.raises(XaiGenError, match="no such model file"):
        load_model_file(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(XaiGenError, match="junk.pt: not a torch.save'd"):
        load_model_file(tmp_path / "junk.pt", "digits_cnn")
    save_model_file(tmp_path / "again.pt", m2, "digits_cnn", num_classes=10, input_shape=(1, 8, 8))
    assert load_model_file(tmp_path / "again.pt")[1] == "digits_cnn"


def test_cli_from_saved_model_reproduces_the_run(run, tmp_path):
    """Same weights (loaded, not trained), same seed and settings: the same assignment and figures."""
    from typer.testing import CliRunner

    from nas.cli import app

    res, _, out, _ = run
    args = ["approximate", "--model", str(out / "model.pt"), "--dataset", "digits", "--samples", "16",
            "--robust-samples", "60", "--robust-eps", "0.05", "--pgd-steps", "3", "--seed", "0",
            "--out", str(tmp_path / "cli"), "--quiet"]
    r = CliRunner().invoke(app, args + ["--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["assignment"] == res.assignment and not doc["trained"]
    assert doc["critical_layers"] == res.report["critical_layers"]
    assert doc["accuracy"] == res.report["accuracy"]
    assert doc["hardware"] == res.report["hardware"]
    assert doc["criticality"]["scores"] == res.report["criticality"]["scores"]
    assert json.loads((tmp_path / "cli" / "assignment.json").read_text()) == res.assignment
    # the table form
    r2 = CliRunner().invoke(app, args + ["--out", str(tmp_path / "cli2"), "--samples", "8", "--sample-eps", "0",
                                         "--robust-samples", "0"])
    assert r2.exit_code == 0, r2.output
    assert "MAC energy" in r2.stdout and "critical layers:" in r2.stdout
    bad = CliRunner().invoke(app, ["approximate", "--model", "nosuchnet", "--dataset", "digits", "--quiet",
                                   "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and "nosuchnet" in bad.output
    bad = CliRunner().invoke(app, ["approximate", "--budget", "150", "--quiet"])
    assert bad.exit_code == 2 and "budget" in bad.output


def test_select_multipliers():
    exact, cands = select_multipliers()
    assert exact.name == "mul8u_wallace" and not exact.signed
    assert cands and all(not m.is_exact and not m.signed and m.energy_pj < exact.energy_pj for m in cands)
    assert [m.energy_pj for m in cands] == sorted(m.energy_pj for m in cands)
    sexact, scands = select_multipliers(signed=True)
    assert sexact.signed and sexact.is_exact and all(m.signed for m in scands)
    e2, c2 = select_multipliers("mul8u_trunc_t6, mul8u_etm_s4")
    assert [m.name for m in c2] == ["mul8u_etm_s4", "mul8u_trunc_t6"]
    with pytest.raises(XaiGenError, match="mul8s_trunc_t4 is signed"):
        select_multipliers("mul8s_trunc_t4")
    with pytest.raises(XaiGenError, match="no multiplier named"):
        select_multipliers("nope_mult")
    assert len(select_multipliers("all")[1]) > len(cands)


@pytest.mark.parametrize("field, value, match", [
    ("budget", 1.5, "budget"), ("samples", 3, "samples"), ("criticality", "x", "criticality"),
    ("critical_policy", "y", "critical_policy"), ("share", 0.0, "share"), ("timing", "z", "timing"),
])
def test_config_errors_name_the_field(field, value, match):
    with pytest.raises(XaiGenError, match=f"XaiGenConfig.{match}"):
        XaiGenConfig(**{field: value})


def test_ablation_without_xai_opens_every_layer(run, tmp_path):
    res, _, _, _ = run
    cfg = XaiGenConfig(**{**CFG, "xai": False, "robust_samples": 0, "sample_eps": 0.0})
    r = run_xaigen(cfg, model=res.model)
    doc = r.report
    assert doc["critical_layers"] == [] and doc["criticality"] is None and r.criticality is None
    assert doc["search"]["samples"] == 0 and not doc["trained"]
    assert doc["accuracy"]["loss"]["val"] <= 0.01 + 1e-9
    assert doc["accuracy"]["exact_int8"] == res.report["accuracy"]["exact_int8"]  # same weights, same baseline
    files = write_outputs(r, tmp_path)
    assert "shap_summary" not in files and not (tmp_path / "shap_summary.png").exists()
    assert "No SHAP criticality" in (tmp_path / "report.md").read_text()
