"""`cosim demo`: the main job on built-in data (grows with each landed stage)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer
from rich.progress import Progress

from ._common import atomic_write_text, console, out_console


def register(app: typer.Typer) -> None:
    """Attach `cosim demo` to the root app."""
    app.command("demo")(demo)


def demo(
    out: Path = typer.Option(Path("out/demo"), "--out", help="Directory for the demo's files."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress output."),
) -> None:
    """Characterize the built-in multiplier library and print its power/error Pareto fronts."""
    from rtl_models.library import MultiplierLibrary, characterize_builtins

    from .multipliers import error_heatmap_png, multiplier_table

    t0 = time.perf_counter()
    with Progress(console=console, transient=True, disable=quiet) as prog:
        designs = __import__("rtl_models.designs", fromlist=["load_all"]).load_all()
        task = prog.add_task("characterizing built-in multipliers", total=len(designs))
        mults = characterize_builtins(progress=lambda name: prog.advance(task))
    lib = MultiplierLibrary(mults)
    elapsed = time.perf_counter() - t0
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "multipliers.json", json.dumps(lib.records(), indent=2))
    for signed in (False, True):
        front = lib.filter(signed=signed).pareto("mre", "power")
        out_console.print(
            multiplier_table(front.records(), f"{'signed' if signed else 'unsigned'} 8x8 multipliers: power vs MRE Pareto front")
        )
        for m in front:
            error_heatmap_png(m, out / "heatmaps" / f"{m.name}_error.png")
    console.print(
        f"{len(lib)} built-in multipliers simulated exhaustively and characterized in {elapsed:.2f} s; "
        f"records in {out / 'multipliers.json'}, heat maps in {out / 'heatmaps'}"
    )
