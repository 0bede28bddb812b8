"""`cosim multipliers`: list, show, import and export the approximate multiplier library."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from ._common import atomic_write_text, console, fail, out_console, print_json

app = typer.Typer(no_args_is_help=True, help="List, characterize, import and export 8x8 multipliers.")

LIST_COLUMNS = [
    ("name", "name", "{}"),
    ("library", "library", "{}"),
    ("s", "signed", "{}"),
    ("MAE%", "mae_pct", "{:.4f}"),
    ("WCE%", "wce_pct", "{:.3f}"),
    ("MRE%", "mre_pct", "{:.3f}"),
    ("WCRE%", "wcre_pct", "{:.2f}"),
    ("EP%", "ep_pct", "{:.2f}"),
    ("bias", "bias", "{:+.1f}"),
    ("power mW", "power_mw", "{:.4f}"),
    ("area um2", "area_um2", "{:.1f}"),
    ("delay ns", "delay_ns", "{:.3f}"),
    ("pJ/mul", "energy_pj", "{:.4f}"),
]


def register(app_root: typer.Typer) -> None:
    """Attach `cosim multipliers ...` to the root app."""
    app_root.add_typer(app, name="multipliers")


def _library(include_imported: bool = True):
    from rtl_models.library import MultiplierLibrary

    return MultiplierLibrary.default(include_imported=include_imported)


def multiplier_table(records: list[dict], title: str) -> Table:
    """A rich table of multiplier records."""
    t = Table(title=title, show_lines=False)
    for head, key, _ in LIST_COLUMNS:
        t.add_column(head, justify="left" if key in ("name", "library") else "right")
    for r in records:
        cells = []
        for _, key, fmt in LIST_COLUMNS:
            v = r[key]
            cells.append("s" if (key == "signed" and v) else ("u" if key == "signed" else fmt.format(v)))
        t.add_row(*cells)
    return t


@app.command("list")
def list_cmd(
    pareto: str = typer.Option(None, "--pareto", help="Keep the power-vs-error Pareto subset: mre, mae, wce, ep, wcre."),
    cost: str = typer.Option("power", "--cost", help="Cost axis of the Pareto subset: power, area, delay, energy."),
    signed: bool = typer.Option(None, "--signed/--unsigned", help="Only signed (or only unsigned) multipliers."),
    library: str = typer.Option(None, "--library", help="Only this library (e.g. cosim, EvoApproxLib)."),
    family: str = typer.Option(None, "--family", help="Only this design family (e.g. drum, truncated)."),
    json_out: bool = typer.Option(False, "--json", help="Print the records as JSON instead of a table."),
) -> None:
    """List the multiplier library (built-in and imported)."""
    from rtl_models.library import stale_cost_models

    lib = _library().filter(signed=signed, library=library, family=family)
    stale = stale_cost_models(lib)
    if stale:
        console.print(
            f"[yellow]warning:[/] {len(stale)} imported multipliers were costed by an older cost model "
            f"({', '.join(m.name for m in stale[:5])}{'...' if len(stale) > 5 else ''}); re-import them to refresh"
        )
    if pareto:
        try:
            lib = lib.pareto(pareto, cost)
        except ValueError as exc:
            fail(str(exc))
    records = lib.records()
    if json_out:
        for r in records:
            r.pop("cells", None)
        print_json(records)
        return
    title = f"{len(records)} multipliers" + (f" (Pareto: {cost} vs {pareto})" if pareto else "")
    out_console.print(multiplier_table(records, title))


def error_heatmap_png(mult, path: Path) -> None:
    """Write a heat map of (approximate - exact) over all operand pairs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from rtl_models.metrics import exact_table
    from traces.atomic import atomic_savefig

    err = mult.table.astype(np.int64) - exact_table(mult.signed)
    if mult.signed:  # show operands in value order -128..127
        order = np.r_[128:256, 0:128]
        err = err[np.ix_(order, order)]
        extent = (-128.5, 127.5, 127.5, -128.5)
    else:
        extent = (-0.5, 255.5, 255.5, -0.5)
    lim = max(1, int(np.abs(err).max()))
    fig, ax = plt.subplots(figsize=(6, 5), dpi=110)
    im = ax.imshow(err.T, cmap="RdBu_r", vmin=-lim, vmax=lim, extent=extent, interpolation="nearest")
    ax.invert_yaxis()
    ax.set_xlabel("A (activation)")
    ax.set_ylabel("B (weight)")
    m = mult.metrics
    ax.set_title(f"{mult.name}: error (approx - exact)\nMRE {m.mre_pct:.2f}%  WCE {m.wce}  EP {m.ep_pct:.1f}%", fontsize=9)
    fig.colorbar(im, ax=ax, label="error")
    fig.tight_layout()
    atomic_savefig(fig, path)


@app.command("show")
def show_cmd(
    name: str = typer.Argument(..., help="Name, library/version/name, or a sha256 prefix."),
    plot: Path = typer.Option(None, "--plot", "-o", help="Heat-map PNG path (default: ./<name>_error.png)."),
    no_plot: bool = typer.Option(False, "--no-plot", help="Do not write the heat map."),
    json_out: bool = typer.Option(False, "--json", help="Print the record as JSON."),
) -> None:
    """Show one multiplier's metrics and costs, and write its error heat map."""
    from rtl_models.library import LibraryError

    try:
        m = _library().get(name)
    except LibraryError as exc:
        fail(str(exc))
    png = None
    if not no_plot:
        png = plot or Path(f"{m.name}_error.png")
        error_heatmap_png(m, png)
    rec = m.record()
    if png is not None:
        rec["heatmap_png"] = str(png)
    if json_out:
        print_json(rec)
        return
    t = Table(title=f"{m.name}  ({m.key})", show_header=False)
    t.add_column("field")
    t.add_column("value", justify="right")
    for k, v in rec.items():
        if k in ("published", "disagreements"):
            continue
        t.add_row(k, f"{v:.6g}" if isinstance(v, float) else str(v))
    out_console.print(t)
    if m.published:
        pt = Table(title="published header vs recomputed")
        for col in ("field", "published", "ours"):
            pt.add_column(col)
        for k, v in m.published.items():
            pt.add_row(k, str(v), f"{rec.get(k, float('nan')):.6g}" if isinstance(rec.get(k), (int, float)) else "-")
        out_console.print(pt)
        for d in m.disagreements:
            console.print(f"[yellow]disagreement:[/] {d}")
    if png is not None:
        console.print(f"heat map: {png}")


@app.command("export")
def export_cmd(
    name: str = typer.Argument(..., help="Multiplier to export (name, key or hash prefix)."),
    verilog: Path = typer.Option(..., "--verilog", help="Output Verilog file (structural, 45 nm cell names)."),
) -> None:
    """Export a built-in multiplier's netlist as structural Verilog."""
    from rtl_models.designs import load_all
    from rtl_models.library import LibraryError
    from rtl_models.verilog import write_verilog

    try:
        m = _library().get(name)
    except LibraryError as exc:
        fail(str(exc))
    specs = load_all()
    if m.source != "built-in" or m.name not in specs:
        fail(f"{m.name!r} is an imported multiplier; its original Verilog is {m.source or 'not recorded'}")
    atomic_write_text(verilog, write_verilog(specs[m.name].build()))
    console.print(f"wrote {verilog}")


@app.command("import")
def import_cmd(
    path: Path = typer.Argument(..., help="An EvoApproxLib / EvoApprox8b checkout, a folder, or one .v file."),
    json_out: bool = typer.Option(False, "--json", help="Print the import summary as JSON."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress output."),
) -> None:
    """Import EvoApprox multipliers: simulate each netlist, recompute metrics, compare with headers."""
    from rtl_models.evoapprox import import_path
    from rtl_models.library import store_imported

    if not path.exists():
        fail(f"{path}: no such file or directory")
    result = import_path(path, progress=not quiet and not json_out)
    stored = store_imported(result.multipliers) if result.multipliers else []
    summary = {
        "imported": [m.record() | {"cells": None} for m in result.multipliers],
        "failed": [{"path": str(f.path), "line": f.line, "error": f.message} for f in result.failures],
        "stored": [str(p) for p in stored],
    }
    if json_out:
        print_json(summary)
    else:
        if result.multipliers:
            out_console.print(multiplier_table([m.record() for m in result.multipliers], f"imported {len(result.multipliers)} multipliers"))
        for m in result.multipliers:
            for d in m.disagreements:
                console.print(f"[yellow]{m.name}: published header disagrees:[/] {d}")
        for f in result.failures:
            console.print(f"[red]failed:[/] {f.path}:{f.line}: {f.message}")
    if result.failures and not result.multipliers:
        raise typer.Exit(1)
