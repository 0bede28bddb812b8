"""`cosim estimate`: the analytical model's per-layer table and totals for one network on one machine.

The network is a zoo model (``--model``) or a SCALE-Sim topology (``--topology FILE.csv``); the
machine a preset or a TOML file (``--hw``). ``--multipliers assignment.json`` gives each layer
its multiplier: a JSON object {layer name: multiplier} resolved through the multiplier library
(name, library/version/name, full key or sha256 prefix); the key ``"*"`` sets every layer not
named otherwise. ``--json`` prints ``{"network", "hardware", ..., "layers": [...], "total": {...}}``.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from ._common import console, fail, out_console, print_json


def register(app: typer.Typer) -> None:
    """Attach `cosim estimate` to the root app."""
    app.command("estimate")(estimate_cmd)


def load_assignment(path: Path, layer_names: list[str], library=None) -> dict:
    """Read {layer: multiplier name} JSON and resolve every name through the multiplier library."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path}: no such assignment file") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(raw, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in raw.items()):
        raise ValueError(f"{path}: expected a JSON object {{layer name: multiplier name}}")
    unknown = [k for k in raw if k != "*" and k not in layer_names]
    if unknown:
        raise ValueError(f"{path}: unknown layer(s) {', '.join(map(repr, unknown))}; "
                         f"layers are: {', '.join(layer_names[:12])}{' ...' if len(layer_names) > 12 else ''}")
    if library is None:
        from rtl_models.library import MultiplierLibrary

        library = MultiplierLibrary.default()
    resolved: dict = {}
    cache: dict = {}

    def get(name: str):
        if name not in cache:
            try:
                cache[name] = library.get(name)
            except KeyError as exc:  # LibraryError is a KeyError
                raise ValueError(f"{path}: {exc}") from None
        return cache[name]

    if "*" in raw:
        for lname in layer_names:
            resolved[lname] = get(raw["*"])
    for lname, mname in raw.items():
        if lname != "*":
            resolved[lname] = get(mname)
    return resolved


def _fmt_int(v: int) -> str:
    return f"{v:,}"


def _table(report, title: str) -> Table:
    t = Table(title=title, show_lines=False)
    for col, just in (("#", "right"), ("layer", "left"), ("kind", "left"), ("split", "left"), ("mult", "left"),
                      ("MACs", "right"), ("cycles", "right"), ("stall", "right"), ("util %", "right"),
                      ("DRAM KiB", "right"), ("SRAM KiB", "right"), ("MAC µJ", "right"), ("total µJ", "right")):
        t.add_column(col, justify=just)
    for r in report.layers:
        t.add_row(str(r.index), r.name, r.kind, r.split, r.multiplier or "-", _fmt_int(r.macs), _fmt_int(r.total_cycles),
                  _fmt_int(r.stall_cycles), f"{100 * r.utilization:.1f}", f"{r.dram_bytes / 1024:,.1f}",
                  f"{r.sram_footprint_bytes / 1024:,.1f}", f"{r.mac_energy_pj / 1e6:,.3f}",
                  f"{r.total_energy_pj / 1e6:,.3f}")
    tot = report.total()
    t.add_section()
    t.add_row("", "total", "", "", "", _fmt_int(tot["macs"]), _fmt_int(tot["total_cycles"]),
              _fmt_int(tot["stall_cycles"]), f"{100 * tot['utilization']:.1f}", f"{tot['dram_bytes'] / 1024:,.1f}",
              f"{tot['sram_footprint_bytes'] / 1024:,.1f}", f"{tot['mac_energy_pj'] / 1e6:,.3f}",
              f"{tot['total_energy_pj'] / 1e6:,.3f}")
    return t


def estimate_cmd(
    model: str = typer.Option(None, "--model", "-m", help="Zoo model name (see `mapping.zoo`), e.g. resnet18."),
    topology: Path = typer.Option(None, "--topology", help="A SCALE-Sim topology CSV instead of a zoo model."),
    hw: str = typer.Option("tpu_v4_like", "--hw", help="Hardware preset name or a TOML file."),
    multipliers: Path = typer.Option(None, "--multipliers", help="JSON {layer: multiplier}; key \"*\" for all layers."),
    dataflow: str = typer.Option(None, "--dataflow", help="Override the hardware's dataflow: os, ws or is."),
    timing: str = typer.Option("scalesim", "--timing", help="Timing convention: scalesim or pipelined."),
    split: str = typer.Option("auto", "--split", help="Pod split: auto, n, m, grid or k."),
    csv_out: Path = typer.Option(None, "--csv", help="Also write the per-layer report as CSV here."),
    trace_out: Path = typer.Option(None, "--trace", help="Also write the mapping trace (NAME.json + NAME.npz) here."),
    rohnas: bool = typer.Option(False, "--rohnas", help="Add the RoHNAS baseline's totals."),
    json_out: bool = typer.Option(False, "--json", help="Print per-layer records and the total as JSON."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress output."),
) -> None:
    """Estimate energy, latency and memory per layer with the analytical model."""
    from mapping.hardware import resolve_hardware
    from mapping.layer import MappingError

    from ..analytical import estimate, mapping_trace

    if (model is None) == (topology is None):
        fail("give exactly one of --model NAME or --topology FILE.csv")
    if dataflow is not None and dataflow not in ("os", "ws", "is"):
        fail(f"--dataflow {dataflow!r}: expected os, ws or is")
    if timing not in ("scalesim", "pipelined"):
        fail(f"--timing {timing!r}: expected scalesim or pipelined")
    try:
        machine = resolve_hardware(hw)
        if dataflow is not None:
            machine = machine.with_(dataflow=dataflow)
        if topology is not None:
            from mapping.topology import read_topology

            net = read_topology(topology)
        else:
            from mapping import zoo

            if not quiet and not json_out:
                console.print(f"[dim]tracing zoo model {model!r}...[/]")
            net = zoo.network(model)
        assignment = None
        if multipliers is not None:
            assignment = load_assignment(multipliers, [l.name for l in net.layers])
        report = estimate(net, machine, multipliers=assignment, timing=timing, split=split)
        if csv_out is not None:
            report.to_csv(csv_out)
        if trace_out is not None:
            mapping_trace(net, machine, timing, split).write(trace_out)
    except (MappingError, ValueError) as exc:
        fail(str(exc))
    base = None
    if rohnas:
        from ..rohnas import rohnas_network

        base = rohnas_network(net)["total"]
    if json_out:
        doc = report.to_dict()
        if base is not None:
            doc["rohnas"] = base
        print_json(doc)
        return
    title = (f"{net.name} on {machine.name}: {machine.pods} x {machine.rows}x{machine.cols} {machine.dataflow.upper()}, "
             f"{machine.clock_mhz:g} MHz, {timing} timing")
    out_console.print(_table(report, title))
    tot = report.total()
    out_console.print(
        f"latency {tot['latency_s'] * 1e3:.4f} ms ({tot['total_cycles']:,} cycles); energy: MAC-only "
        f"{tot['mac_energy_pj'] / 1e6:,.3f} µJ, full system {tot['total_energy_pj'] / 1e6:,.3f} µJ; memory footprint "
        f"{tot['memory_footprint_bytes'] / 2**20:,.2f} MiB (weights {tot['weight_bytes'] / 2**20:,.2f} MiB + peak "
        f"activations {tot['peak_activation_bytes'] / 2**20:,.2f} MiB)")
    if base is not None:
        out_console.print(f"RoHNAS baseline: {base['cycles']:,} cycles, {base['latency_s'] * 1e3:.4f} ms, "
                          f"{base['energy_pj'] / 1e6:,.3f} µJ")
