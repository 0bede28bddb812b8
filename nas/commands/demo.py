"""`cosim demo`: the main job on built-in data.

Three stages, each writing under ``--out``:

1. ``multipliers``: simulate and characterize the built-in multiplier library exhaustively and
   print its power/MRE Pareto fronts (seconds);
2. ``xaigen``: XAI-Gen on LeNet-5 and mnist5k: SHAP-critical layers kept exact, the rest on the
   cheapest multipliers within a 1 % accuracy budget (about a minute);
3. ``search``: a short XAI-NAS (NSGA-II over architectures x per-layer multipliers) on mnist5k,
   scored on accuracy, robustness, energy, latency and memory (about three minutes).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer
from rich.progress import Progress

from cosim.commands._common import atomic_write_text, console, fail, out_console, print_json

STAGES = ("multipliers", "xaigen", "search")


def register(app: typer.Typer) -> None:
    """Attach `cosim demo` to the root app."""
    app.command("demo")(demo)


def _stage_multipliers(out: Path, quiet: bool, show: bool) -> tuple[str, dict]:
    from rtl_models.designs import load_all
    from rtl_models.library import MultiplierLibrary, characterize_builtins

    from cosim.commands.multipliers import error_heatmap_png, multiplier_table

    t0 = time.perf_counter()
    with Progress(console=console, transient=True, disable=quiet) as prog:
        task = prog.add_task("characterizing built-in multipliers", total=len(load_all()))
        mults = characterize_builtins(progress=lambda name: prog.advance(task))
    lib = MultiplierLibrary(mults)
    elapsed = time.perf_counter() - t0
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "multipliers.json", json.dumps(lib.records(), indent=2))
    fronts: dict[str, list] = {}
    for signed in (False, True):
        front = lib.filter(signed=signed).pareto("mre", "power")
        kind = "signed" if signed else "unsigned"
        if show:
            out_console.print(multiplier_table(front.records(), f"{kind} 8x8 multipliers: power vs MRE Pareto front"))
        fronts[kind] = front.records()
        for m in front:
            error_heatmap_png(m, out / "heatmaps" / f"{m.name}_error.png")
    line = (f"{len(lib)} built-in multipliers simulated exhaustively and characterized in {elapsed:.2f} s: "
            f"{out / 'multipliers.json'}, heat maps in {out / 'heatmaps'}")
    return line, {"designs": len(lib), "characterize_s": elapsed, "pareto_power_vs_mre": fronts,
                  "files": {"records": str(out / "multipliers.json"), "heatmaps": str(out / "heatmaps")}}


def _stage_xaigen(out: Path, quiet: bool, show: bool) -> tuple[str, dict]:
    from nas.xaigen import XaiGenConfig, run_xaigen, write_outputs

    from .approximate import _print, stage_progress

    progress, step = stage_progress(quiet, prefix="XAI-Gen ")
    with progress:
        result = run_xaigen(XaiGenConfig(), progress=step)
        files = write_outputs(result, out)
    doc = dict(result.report)
    doc["files"] = files
    if show:
        _print(doc)
    return f"XAI-Gen (LeNet-5, mnist5k, 1 % budget): report, assignment and SHAP plot in {out}", doc


def _stage_search(out: Path, quiet: bool, show: bool) -> tuple[str, dict]:
    import shutil

    from nas.xainas import demo_search, format_front

    if out.exists():  # a search refuses a directory that holds one; the demo's own is rerun from scratch
        shutil.rmtree(out)
    res = demo_search(out, quiet=quiet or not show)  # prints its log and the front unless quiet
    if quiet and show:
        out_console.print(format_front(res))
    return f"XAI-NAS (mnist5k): Pareto front, models and SHAP reports in {out}", res.to_dict()


def demo(
    out: Path = typer.Option(Path("out/demo"), "--out", help="Directory for the demo's files."),
    stages: str = typer.Option(",".join(STAGES), "--stages",
                               help=f"Comma-separated stages to run, in order: {', '.join(STAGES)}."),
    json_out: bool = typer.Option(False, "--json", help="Print every stage's results as one JSON document."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress output."),
) -> None:
    """The main job on built-in data: the multiplier library, XAI-Gen on LeNet-5, and a short XAI-NAS."""
    chosen = [s.strip() for s in stages.split(",") if s.strip()]
    bad = [s for s in chosen if s not in STAGES]
    if bad or not chosen:
        fail(f"--stages {stages!r}: expected a comma-separated subset of {', '.join(STAGES)}")
    run = {"multipliers": _stage_multipliers, "xaigen": _stage_xaigen, "search": _stage_search}
    quiet = quiet or json_out
    t0 = time.perf_counter()
    summary, docs = [], {}
    for name in STAGES:
        if name in chosen:
            if not quiet:
                console.rule(f"[bold]{name}")
            line, docs[name] = run[name](out / name if name != "multipliers" else out, quiet, not json_out)
            summary.append(line)
    wall_s = time.perf_counter() - t0
    if json_out:
        print_json({"stages": docs, "wall_s": wall_s})
        return
    console.print(f"demo finished in {wall_s:.0f} s")
    for line in summary:
        console.print(f"  - {line}")
