"""`cosim search`: XAI-NAS, a hardware-aware NSGA-II over CNNs with one approximate multiplier per layer.

Each candidate is trained briefly on ``--dataset`` (``--epochs``, at most ``--time-budget`` seconds),
quantized to int8 with its multipliers and scored on accuracy, robust accuracy (``--attack`` at
``--eps``), energy, latency and memory (analytical model on ``--hw``). Every ``--xai-every``
generations SHAP over the evaluated population pins the multiplier genes of critical layer
positions to the exact multiplier (``--pin-to low-error``: to the low-error set); ``--no-xai``
runs the same NSGA-II without pinning. The final front is scored on the test split and re-scored
by the cycle-level engine when it is available.

Parallel evaluation: a process pool of ``--processes`` workers (default: the CPU count; 0 runs
in-process), or Dask: ``--dask-scheduler ADDRESS`` joins a running cluster, ``--workers N``
starts a LocalCluster of N worker processes. Everything lands in ``--out``: a checkpoint after
every generation and every evaluated candidate in ``archive/``, so ``--resume DIR`` continues a
killed search (with its saved settings) without losing any candidate. ``--json`` prints the
result as one JSON object.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from cosim.commands._common import console, fail, out_console, print_json


def register(app: typer.Typer) -> None:
    """Attach `cosim search` to the root app."""
    app.command("search")(search_cmd)


def search_cmd(
    dataset: str = typer.Option("mnist5k", "--dataset", help="digits, mnist5k, mnist, fashion-mnist, cifar10, svhn."),
    data_dir: Path = typer.Option(None, "--data-dir", help="Directory of a file-based data set (or $COSIM_DATA_DIR)."),
    generations: int = typer.Option(8, "--generations", help="NSGA-II generations (the first is the random one)."),
    pop_size: int = typer.Option(12, "--pop-size", help="Population size (and offspring per generation)."),
    epochs: int = typer.Option(1, "--epochs", help="Training epochs per candidate."),
    time_budget: float = typer.Option(None, "--time-budget",
                                      help="Wall-clock cap in seconds on each candidate's training "
                                           "(when it binds, results depend on machine speed)."),
    xai_every: int = typer.Option(2, "--xai-every", help="Run SHAP criticality and pin genes every k generations."),
    no_xai: bool = typer.Option(False, "--no-xai", help="The baseline: the same NSGA-II without SHAP pinning."),
    xai_share: float = typer.Option(0.8, "--xai-share", help="Share of the attributed accuracy drop critical layers carry."),
    pin_to: str = typer.Option("exact", "--pin-to", help="Pin critical genes to 'exact' or the 'low-error' set."),
    low_error_mre: float = typer.Option(1.0, "--low-error-mre", help="MRE (%) bound of the low-error set."),
    attack: str = typer.Option("fgsm", "--attack", help="Attack of the robustness objective: fgsm or pgd."),
    eps: float = typer.Option(0.1, "--eps", help="L-infinity radius of the attack (inputs in [0, 1])."),
    hw: str = typer.Option("edge_16x16", "--hw", help="Hardware preset name or a TOML file."),
    cost_model: str = typer.Option("analytical", "--cost-model",
                                   help="Hardware objectives from 'analytical' (ours) or 'rohnas' (the baseline's)."),
    energy_metric: str = typer.Option("mac", "--energy-metric",
                                      help="Energy objective: 'mac' (multiplier energy) or 'total' (full system)."),
    exact_only: bool = typer.Option(False, "--exact-only", help="Search architectures with exact multipliers only."),
    accuracy_floor: float = typer.Option(None, "--accuracy-floor", help="Constraint: validation accuracy >= this fraction."),
    energy_cap: float = typer.Option(None, "--energy-cap", help="Constraint: energy objective <= this many nJ."),
    val_samples: int = typer.Option(500, "--val-samples", help="Validation images scoring each candidate."),
    robust_samples: int = typer.Option(200, "--robust-samples", help="Images attacked per candidate (and per front "
                                                                     "member on the test split)."),
    test_samples: int = typer.Option(1000, "--test-samples", help="Test images scoring the final front."),
    max_stages: int = typer.Option(3, "--max-stages", help="Stages in the macro space (1..N)."),
    max_layers: int = typer.Option(3, "--max-layers", help="Conv layers per stage (1..N)."),
    processes: int = typer.Option(None, "--processes", help="Process-pool workers (default: CPU count; 0: in-process)."),
    workers: int = typer.Option(None, "--workers", help="Start a Dask LocalCluster with N worker processes."),
    dask_scheduler: str = typer.Option(None, "--dask-scheduler", help="Evaluate on the Dask cluster at ADDRESS."),
    resume: Path = typer.Option(None, "--resume", help="Continue the search in DIR with its saved settings."),
    out: Path = typer.Option(Path("xainas-search"), "--out", help="Output directory (must not hold a search)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the search, the data split and every candidate."),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress or log output."),
) -> None:
    """Search CNNs with a multiplier per layer for accuracy, robustness, energy, latency and memory (XAI-NAS)."""
    from nas import xainas as X
    from nas.data import DatasetError
    from nas.space import SpaceError

    if pin_to not in ("exact", "low-error"):
        fail(f"--pin-to {pin_to!r}: expected exact or low-error")
    if workers is not None and dask_scheduler is not None:
        fail("--workers starts a local Dask cluster and --dask-scheduler joins one: give one of them")
    if workers is not None and workers < 1:
        fail(f"--workers {workers}: expected >= 1")
    if processes is not None and processes < 0:
        fail(f"--processes {processes}: expected >= 0")
    if dask_scheduler is not None:
        runner, n = "dask", None
    elif workers is not None:
        runner, n = "dask", workers
    elif processes == 0:
        runner, n = "serial", None
    else:
        runner, n = "pool", processes
    try:
        if resume is not None:
            out = resume
            cfg = X.XaiNasSearch.load_config(resume)
        else:
            cfg = X.SearchConfig(
                dataset=dataset, data_dir=str(data_dir) if data_dir is not None else None, generations=generations,
                pop_size=pop_size, epochs=epochs, time_budget_s=time_budget, xai=not no_xai, xai_every=xai_every,
                xai_share=xai_share, pin_to=pin_to, low_error_mre_pct=low_error_mre, attack=attack, eps=eps, hw=hw,
                cost_model=cost_model, energy_metric=energy_metric, exact_only=exact_only,
                accuracy_floor=accuracy_floor, energy_cap_pj=None if energy_cap is None else energy_cap * 1e3,
                max_stages=max_stages, max_layers=max_layers, val_samples=val_samples, robust_samples=robust_samples,
                test_samples=test_samples, test_robust_samples=robust_samples, seed=seed)
            if (out / "checkpoint" / "config.json").exists():
                fail(f"{out} holds a search already: continue it with --resume {out}, or pick another --out")
    except (X.SearchError, SpaceError, DatasetError) as exc:
        fail(str(exc))

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                        TimeElapsedColumn(), console=console, transient=True, disable=quiet)
    task_ids: dict[str, int] = {}

    def step(done: int, total: int, text: str) -> None:
        if text not in task_ids:
            for t in list(task_ids.values()):
                progress.remove_task(t)
            task_ids.clear()
            task_ids[text] = progress.add_task(text, total=total)
        progress.update(task_ids[text], completed=done, total=total)

    def log(line: str) -> None:
        if not quiet:
            progress.console.print(line, highlight=False)

    try:
        with progress:
            res = X.run_search(cfg, out, runner=runner, workers=n, scheduler=dask_scheduler,
                               resume=resume is not None, log=log, quiet=quiet, progress=step)
    except (X.SearchError, SpaceError, DatasetError) as exc:
        fail(str(exc))
    if json_out:
        print_json(res.to_dict())
        return
    _print(res)


def _print(res) -> None:
    t = Table(title=f"XAI-NAS Pareto front ({len(res.front)} networks; {res.evaluations} candidates in "
                    f"{res.search_s:.0f} s; hypervolume {res.hypervolume:.4f})")
    for col in ("#", "architecture", "exact", "test acc", "FGSM", "PGD", "MAC energy nJ", "energy µJ",
                "latency µs", "memory KiB", "engine latency µs"):
        t.add_column(col, justify="left" if col == "architecture" else "right")
    for r in res.front:
        eng = r.get("engine") or {}
        t.add_row(str(r["rank"]), r["arch"], f"{r['exact_layers']}/{r['layers']}", f"{100 * r['test_acc']:.1f}%",
                  f"{100 * r['test_fgsm_acc']:.1f}%", f"{100 * r['test_pgd_acc']:.1f}%",
                  f"{r['mac_energy_pj'] / 1e3:.2f}", f"{r['energy_pj'] / 1e6:.2f}", f"{r['latency_s'] * 1e6:.1f}",
                  f"{r['memory_bytes'] / 1024:.1f}",
                  f"{eng['latency_s'] * 1e6:.1f}" if eng.get("latency_s") is not None else "n/a")
    out_console.print(t)
    for ev in res.xai_events:
        out_console.print(f"SHAP after generation {ev['generation']}: {ev.get('reason', '')}", highlight=False)
    if res.engine != "available":
        out_console.print(f"[dim]cycle-level engine: {res.engine}[/]")
    out_console.print(f"files in {res.out_dir}: " + ", ".join(f"{k} {v}" for k, v in res.files.items()),
                      highlight=False)
