"""`cosim approximate` (XAI-Gen): give a trained network's non-critical layers the cheapest multipliers in a budget.

The network is a zoo model (``--model lenet5``, trained here: seeded, ``--epochs``) or a model file: a
``cosim.model`` file (what this command writes as ``model.pt``; ``--model FILE``) or a bare ``torch.save``'d state
dict of a zoo model (``--model NAME --weights FILE``). SHAP over ``--samples`` random per-layer assignments
finds the critical layers (kept exact, or ``--critical-policy low-error``); a greedy search verified by measurement
gives the other layers the cheapest multipliers whose combined accuracy loss on the validation split stays within
``--budget`` (percentage points, default 1). Multipliers: unsigned with the affine uint8 scheme (default; the
library's unsigned power/MRE Pareto front) or ``--signed`` with the symmetric int8 scheme. Hardware figures come
from the analytical model on ``--hw``. Outputs in ``--out``: assignment.json (what ``cosim estimate --multipliers``
reads), report.json, report.md, shap_summary.png, samples.csv, model.pt. ``--json`` prints the report.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from cosim.commands._common import console, fail, out_console, print_json


def register(app: typer.Typer) -> None:
    """Attach `cosim approximate` to the root app."""
    app.command("approximate")(approximate_cmd)


def _floats(name: str, text: str) -> tuple[float, ...]:
    try:
        vals = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        fail(f"--{name} {text!r}: expected comma-separated numbers, e.g. 0.05,0.1")
    return vals


def approximate_cmd(
    model: str = typer.Option("lenet5", "--model", "-m",
                              help="Zoo model name (trained here) or a cosim.model file (e.g. a previous model.pt)."),
    weights: Path = typer.Option(None, "--weights", help="A state dict (or cosim.model file) of --model: skip training."),
    dataset: str = typer.Option("mnist5k", "--dataset", help="Data set: mnist5k, digits, mnist, fashion-mnist, ..."),
    data_dir: Path = typer.Option(None, "--data-dir", help="Directory of a file-based data set (or $COSIM_DATA_DIR)."),
    epochs: int = typer.Option(10, "--epochs", help="Training epochs when training here."),
    lr: float = typer.Option(3e-3, "--lr", help="Adam learning rate when training here."),
    budget: float = typer.Option(1.0, "--budget", help="Accuracy loss allowed, in percentage points (1.0 = 1 %)."),
    samples: int = typer.Option(48, "--samples", help="Random assignments measured for the SHAP surrogate."),
    share: float = typer.Option(0.8, "--share", help="Critical layers carry this share of the attributed drop."),
    criticality: str = typer.Option("accuracy", "--criticality", help="Drop explained: accuracy, robust or both."),
    critical_policy: str = typer.Option("exact", "--critical-policy",
                                        help="Critical layers: exact, or low-error (multipliers with MRE <= --low-error-mre)."),
    low_error_mre: float = typer.Option(0.5, "--low-error-mre", help="MRE bound (%) of the low-error set."),
    signed: bool = typer.Option(False, "--signed/--unsigned",
                                help="Signed multipliers (symmetric int8) or unsigned ones (affine uint8, default)."),
    candidates: str = typer.Option("pareto", "--candidates",
                                   help="pareto (power/MRE front), all, or comma-separated multiplier names."),
    eval_samples: int = typer.Option(None, "--eval-samples", help="Use only this many validation images."),
    robust_samples: int = typer.Option(200, "--robust-samples", help="Images attacked (FGSM per sample, PGD at the end)."),
    sample_eps: float = typer.Option(0.05, "--sample-eps", help="FGSM eps of the per-sample robust drop (0: off)."),
    robust_eps: str = typer.Option("0.05,0.1", "--robust-eps", help="PGD eps of the final report, comma-separated."),
    pgd_steps: int = typer.Option(10, "--pgd-steps", help="PGD steps of the final report."),
    hw: str = typer.Option("edge_16x16", "--hw", help="Hardware preset name or a TOML file."),
    timing: str = typer.Option("scalesim", "--timing", help="Timing convention: scalesim or pipelined."),
    max_evaluations: int = typer.Option(1000, "--max-evaluations", help="Cap on measured assignments."),
    threads: int = typer.Option(1, "--threads", help="torch and Numba threads while measuring."),
    xai: bool = typer.Option(True, "--xai/--no-xai", help="--no-xai: the ablation without SHAP (every layer open)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the split, the training, the sampling and the attacks."),
    out: Path = typer.Option(Path("xaigen_out"), "--out", "-o", help="Output directory."),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress output."),
) -> None:
    """Approximate a trained network layer by layer (XAI-Gen): SHAP-critical layers exact, the rest cheap."""
    from mapping.layer import MappingError
    from nas.data import DatasetError
    from nas.xaigen import XaiGenConfig, XaiGenError, run_xaigen, write_outputs

    zoo_name, weight_file = model, weights
    if Path(model).suffix in (".pt", ".pth") or Path(model).is_file():
        if weights is not None:
            fail(f"--model {model!r} is a file; give --weights only with a zoo model name")
        zoo_name, weight_file = None, Path(model)
    try:
        cfg = XaiGenConfig(
            model=zoo_name, weights=str(weight_file) if weight_file is not None else None, dataset=dataset,
            data_dir=str(data_dir) if data_dir is not None else None, seed=seed, epochs=epochs, lr=lr,
            budget=budget / 100.0, samples=samples, share=share, criticality=criticality,
            critical_policy=critical_policy, low_error_mre_pct=low_error_mre, signed=signed, candidates=candidates,
            eval_samples=eval_samples, robust_samples=robust_samples, sample_eps=sample_eps,
            robust_eps=_floats("robust-eps", robust_eps), pgd_steps=pgd_steps, hw=hw, timing=timing,
            max_evaluations=max_evaluations, threads=threads, xai=xai)
    except XaiGenError as exc:
        fail(str(exc))
    progress, step = stage_progress(quiet)
    with progress:
        try:
            result = run_xaigen(cfg, progress=step)
            files = write_outputs(result, out)
        except (XaiGenError, DatasetError, MappingError, KeyError) as exc:
            msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            fail(str(msg))
    doc = dict(result.report)
    doc["files"] = files
    if json_out:
        print_json(doc)
        return
    _print(doc)


def stage_progress(quiet: bool, prefix: str = ""):
    """A rich Progress with one bar per stage, and the `(stage, done, total, info)` callback that feeds it."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(TextColumn(prefix + "{task.description}"), BarColumn(),
                        TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                        TextColumn("{task.fields[info]}"), console=console, transient=True, disable=quiet)
    tasks: dict[str, int] = {}

    def step(stage: str, done: int, total, info: str) -> None:
        if stage not in tasks:
            tasks[stage] = progress.add_task(stage, total=total, info="")
        progress.update(tasks[stage], completed=done, total=total, info=info)

    return progress, step


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.2f} %"


def _delta(x: float) -> str:
    return f"{100 * x:+.2f} pp"


def _print(doc: dict) -> None:
    a, h = doc["accuracy"], doc["hardware"]
    t = Table(title=f"XAI-Gen: {doc['model']} on {doc['dataset']}, budget {_pct(a['budget'])} "
                    f"({doc['multipliers']['scheme']}, exact = {doc['multipliers']['exact']})")
    for col in ("layer", "MACs", "SHAP score", "critical", "multiplier", "MRE %", "single drop", "MAC µJ"):
        t.add_column(col, justify="left" if col in ("layer", "multiplier", "critical") else "right")
    for L in doc["layers"]:
        t.add_row(L["layer"], f"{L['macs']:,}", "-" if L["score"] is None else f"{L['score']:.3f}", "yes" if L["critical"] else "", L["multiplier"],
                  f"{L['mult_mre_pct']:.3g}", _pct(L["single_drop"]), f"{L['mac_energy_pj'] / 1e6:.4g}")
    out_console.print(t)
    s = Table(title="exact int8 vs approximate")
    for col in ("", "exact int8", "approximate", "change"):
        s.add_column(col, justify="right" if col else "left")
    for split in ("val", "test"):
        s.add_row(f"accuracy ({split})", _pct(a["exact_int8"][split]), _pct(a["approximate"][split]),
                  _delta(-a["loss"][split]))
    r = doc["robust"]
    for e in r["eps"]:
        k = str(e)
        if k in r["exact_int8"]:
            s.add_row(f"PGD-{r['steps']} ε={e}", _pct(r["exact_int8"][k]), _pct(r["approximate"][k]),
                      _delta(r["approximate"][k] - r["exact_int8"][k]))
    ex, ap = h["exact_int8"], h["approximate"]
    s.add_row("MAC energy", f"{ex['mac_energy_pj'] / 1e6:.4g} µJ", f"{ap['mac_energy_pj'] / 1e6:.4g} µJ",
              f"{h['mac_energy_reduction_x']:.3g}x lower")
    s.add_row("full-system energy", f"{ex['total_energy_pj'] / 1e6:.4g} µJ", f"{ap['total_energy_pj'] / 1e6:.4g} µJ",
              f"{h['total_energy_reduction_x']:.3g}x lower")
    s.add_row("latency", f"{ex['latency_s'] * 1e3:.4g} ms", f"{ap['latency_s'] * 1e3:.4g} ms", f"{h['latency_ratio']:.3g}x")
    s.add_row("memory", f"{ex['memory_footprint_bytes']:,} B", f"{ap['memory_footprint_bytes']:,} B",
              f"{h['memory_ratio']:.3g}x")
    out_console.print(s)
    c = doc["criticality"]
    r2 = "n/a" if c is None or c["r2_holdout"] is None else f"{c['r2_holdout']:.3f}"
    out_console.print(f"critical layers: {', '.join(doc['critical_layers']) or 'none'} "
                      f"(surrogate holdout R² {r2}); {doc['search']['evaluations']} evaluations, "
                      f"{doc['timings']['total_s']:.1f} s")
    out_console.print(f"files in {Path(doc['files']['report']).parent}: "
                      f"{', '.join(Path(p).name for p in doc['files'].values())}")
