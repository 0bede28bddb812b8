"""`cosim validate`: the analytical model, the cycle-level engine and SCALE-Sim side by side.

    cosim validate --model resnet18_cifar --hw edge_16x16 [--tolerance 0] [--json]
    cosim validate --suite ci|full [--out STEM]

With a network: one table per layer on one pod of the machine (SCALE-Sim has one array): rows
are cycles, stalls, utilization, SRAM and DRAM accesses; columns the analytical model, the
engine, SCALE-Sim 3.0.0 (and the register-level array model when one is plugged into
`cosim.validation.REGISTER_LEVEL`), then the relative differences engine - SCALE-Sim and
analytical - engine. The exit status is 1 when any engine / SCALE-Sim field differs by more
than ``--tolerance`` (relative), or the analytical and engine compute cycles do.

With ``--suite``: the cross-validation suite (`cosim.validation.suite_cases`) against SCALE-Sim,
every SCALE-Sim report field compared exactly; the result table is written to STEM.json and
STEM.csv (default ``validate_<suite>`` in the current directory) and the exit status is 1
unless every row is equal.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ._common import console, fail, out_console, print_json


def register(app: typer.Typer) -> None:
    """Attach `cosim validate` to the root app."""
    app.command("validate")(validate_cmd)


def _parse_layers(spec: str | None) -> slice | None:
    if spec is None:
        return None
    try:
        if ":" in spec:
            a, b = spec.split(":", 1)
            return slice(int(a) if a else None, int(b) if b else None)
        i = int(spec)
        return slice(i, i + 1)
    except ValueError:
        fail(f"--layers {spec!r}: expected an index or a slice START:STOP")


def _num(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and not float(v).is_integer():
        return f"{v:,.3f}"
    return f"{int(v):,}"


def _pct(d) -> str:
    return "-" if d is None else f"{100 * d:.2f}%"


def _layer_table(row: dict, register: bool) -> Table:
    """One layer's side-by-side table."""
    from ..validation import METRICS

    flag = " [bold red](differs)[/]" if row["flagged"] else ""
    eq = row["fields_equal"]
    sub = "" if eq is None else (" — every SCALE-Sim field equal" if eq else
                                 f" — differing: {', '.join(row['differing_fields'])}")
    t = Table(title=f"layer {row['index']}: {row['name']} ({row['kind']}){flag}{sub}", title_justify="left")
    cols = ["metric", "analytical", "engine", "SCALE-Sim"] + (["register-level"] if register else []) + [
        "Δ engine−SCALE-Sim", "Δ analytical−engine"]
    for i, c in enumerate(cols):
        t.add_column(c, justify="left" if i == 0 else "right")
    for key, label, _ in METRICS:
        v, d = row["values"][key], row["diffs"][key]
        cells = [label, _num(v["analytical"]), _num(v["engine"]), _num(v["scalesim"])]
        if register:
            cells.append(_num(v["register_level"]))
        cells += [_pct(d.get("engine_vs_scalesim")), _pct(d.get("analytical_vs_engine"))]
        t.add_row(*cells)
    return t


def validate_cmd(
    model: str = typer.Option(None, "--model", "-m", help="Zoo model name."),
    topology: Path = typer.Option(None, "--topology", help="A SCALE-Sim topology CSV instead of a zoo model."),
    hw: str = typer.Option("edge_16x16", "--hw", help="Hardware preset name or a TOML file (one pod is used)."),
    dataflow: str = typer.Option(None, "--dataflow", help="Override the hardware's dataflow: os, ws or is."),
    timing: str = typer.Option("scalesim", "--timing", help="scalesim (SCALE-Sim comparable) or pipelined."),
    memory_model: str = typer.Option("scalesim-3.0.0", "--memory-model", help="scalesim-3.0.0 or ideal-fixed."),
    bandwidth_mode: str = typer.Option("user", "--bandwidth-mode", help="user or calc (SCALE-Sim's modes)."),
    layers: str = typer.Option(None, "--layers", help="Only these layers: an index or START:STOP."),
    no_scalesim: bool = typer.Option(False, "--no-scalesim", help="Skip the SCALE-Sim column."),
    register_level: bool = typer.Option(
        True, "--register-level/--no-register-level",
        help="Add the register-level array's compute cycles (arrays up to 16x16, small layers)."),
    tolerance: float = typer.Option(0.0, "--tolerance", help="Largest relative difference accepted (0 = exact)."),
    suite: str = typer.Option(None, "--suite", help="Run the cross-validation suite: ci or full."),
    out: Path = typer.Option(None, "--out", help="Suite result STEM (writes STEM.json and STEM.csv)."),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress output."),
) -> None:
    """Cross-validate the analytical model, the engine and SCALE-Sim."""
    from mapping.hardware import resolve_hardware
    from mapping.layer import MappingError

    from ..engine import MemoryConfig
    from ..engine_core import EngineError
    from ..scalesim_bridge import ScaleSimError
    from ..validation import machine_info, run_suite, validate_network, write_suite

    quiet = quiet or json_out
    if tolerance < 0:
        fail(f"--tolerance {tolerance}: expected a non-negative number")
    if suite is not None:
        if suite not in ("ci", "full"):
            fail(f"--suite {suite!r}: expected ci or full")
        if model is not None or topology is not None:
            fail("--suite runs its own layers; drop --model / --topology")
        stem = out or Path(f"validate_{suite}")
        with Progress(TextColumn("[bold]suite[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=console, transient=True, disable=quiet) as prog:
            task = prog.add_task("", total=None)

            def tick(i, n, name):
                prog.update(task, completed=i, total=n, description=name)

            try:
                result = run_suite(suite, progress=tick)
            except ScaleSimError as exc:
                fail(str(exc))
        js, cs = write_suite(result, stem, machine_info())
        s = result["summary"]
        if json_out:
            print_json({"summary": s, "files": [str(js), str(cs)]})
        else:
            out_console.print(
                f"suite {suite}: {s['cases']} configurations, {s['report_rows']} SCALE-Sim report rows, "
                f"{s['equal_rows']} equal in every field ({'all equal' if s['all_equal'] else 'DIFFERENCES'}); "
                f"engine {s['engine_s']:.2f} s, SCALE-Sim {s['scalesim_s']:.1f} s; wrote {js} and {cs}")
        if not s["all_equal"]:
            raise typer.Exit(1)
        return
    if (model is None) == (topology is None):
        fail("give exactly one of --model NAME or --topology FILE.csv (or --suite ci|full)")
    if timing not in ("scalesim", "pipelined"):
        fail(f"--timing {timing!r}: expected scalesim or pipelined")
    try:
        machine = resolve_hardware(hw)
        if dataflow is not None:
            machine = machine.with_(dataflow=dataflow)
        memory = MemoryConfig(bandwidth_mode=bandwidth_mode, memory_model=memory_model)
        from .simulate import load_network

        net = load_network(model, topology, quiet)
        with Progress(TextColumn("[bold]validate[/] {task.description}"), console=console, transient=True,
                      disable=quiet) as prog:
            task = prog.add_task("")
            res = validate_network(net, machine, timing=timing, memory=memory, scalesim=not no_scalesim,
                                   register_level=register_level, tolerance=tolerance, layers=_parse_layers(layers),
                                   progress=lambda msg: prog.update(task, description=msg))
    except (MappingError, EngineError, ScaleSimError, ValueError) as exc:
        fail(str(exc))
    if json_out:
        print_json(res)
    else:
        for note in res["notes"]:
            console.print(f"[yellow]note:[/] {note}")
        for row in res["layers"]:
            out_console.print(_layer_table(row, res["register_level"]))
        bad = [r["name"] for r in res["layers"] if r["flagged"]]
        out_console.print(
            f"{res['network']} on one pod of {res['hardware']} ({res['memory']}): {len(res['layers'])} layers, "
            + (f"[bold red]{len(bad)} beyond tolerance {tolerance:g}[/]: {', '.join(bad[:8])}" if bad
               else f"all within tolerance {tolerance:g}"))
    if not res["ok"]:
        raise typer.Exit(1)
