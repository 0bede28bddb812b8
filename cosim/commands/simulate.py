"""`cosim simulate`: run a network through the cycle-level engine and write reports and traces.

    cosim simulate --model resnet18 --hw tpu_v4_like --dataflow ws --out DIR

The network is a zoo model (``--model``) or a SCALE-Sim topology (``--topology FILE.csv``); the
machine a preset or a TOML file (``--hw``). DIR receives:

    report.json, report.csv        per-layer engine report (cosim.report schema, source "engine")
    utilization.json / .npz        busy / stalled / idle cycles per pod per window (traces.utilization)
    trace.json                     Chrome trace-event JSON: open in https://ui.perfetto.dev
    timeline.png                   per-pod timeline
    mapping_trace.json / .npz      the engine's input (traces.mapping_trace)
    address_traces/...             SCALE-Sim-format SRAM / DRAM traces (--address-traces only;
                                   their size estimate is printed before anything is written)

Everything is written into a temporary directory next to DIR and swapped in at the end, so DIR
is never half-written; an existing non-empty DIR is refused unless ``--force`` (then it is
replaced as a whole, after the new one is complete). ``--json`` prints the report (per-layer
records and the total) plus the list of files on stdout; ``--quiet`` silences progress.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ._common import console, fail, out_console, print_json


def register(app: typer.Typer) -> None:
    """Attach `cosim simulate` to the root app."""
    app.command("simulate")(simulate_cmd)


def load_network(model: str | None, topology: Path | None, quiet: bool):
    """A zoo model or a SCALE-Sim topology as a mapping Network."""
    if (model is None) == (topology is None):
        fail("give exactly one of --model NAME or --topology FILE.csv")
    if topology is not None:
        from mapping.topology import read_topology

        return read_topology(topology)
    from mapping import zoo

    if not quiet:
        console.print(f"[dim]tracing zoo model {model!r}...[/]")
    return zoo.network(model)


def prepare_out_dir(out: Path, force: bool) -> Path:
    """Check DIR may be written and make a fresh temporary directory beside it."""
    out = out.resolve()
    if out.exists() and not out.is_dir():
        fail(f"--out {out}: exists and is not a directory")
    if out.exists() and any(out.iterdir()) and not force:
        fail(f"--out {out}: directory exists and is not empty; use --force to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)
    return tmp


def swap_in(tmp: Path, out: Path) -> None:
    """Replace `out` by the complete `tmp` (the old one is removed only after the rename)."""
    out = out.resolve()
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        out.rename(old)
    try:
        tmp.rename(out)
    except BaseException:
        if old is not None:
            old.rename(out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _fmt(v: int) -> str:
    return f"{v:,}"


def summary_table(report, run, title: str) -> Table:
    """Per-layer engine table with a total row."""
    t = Table(title=title, show_lines=False)
    for col, just in (("#", "right"), ("layer", "left"), ("kind", "left"), ("split", "left"), ("pods", "right"),
                      ("compute", "right"), ("stall", "right"), ("total cycles", "right"), ("util %", "right"),
                      ("DRAM KiB", "right"), ("total µJ", "right")):
        t.add_column(col, justify=just)
    for r in report.layers:
        t.add_row(str(r.index), r.name, r.kind, r.split, str(r.pods_used), _fmt(r.compute_cycles), _fmt(r.stall_cycles),
                  _fmt(r.total_cycles), f"{100 * r.utilization:.1f}", f"{r.dram_bytes / 1024:,.1f}",
                  f"{r.total_energy_pj / 1e6:,.3f}")
    tot = report.total()
    t.add_section()
    t.add_row("", "total", "", "", "", _fmt(tot["compute_cycles"]), _fmt(tot["stall_cycles"]),
              _fmt(tot["total_cycles"]), f"{100 * tot['utilization']:.1f}", f"{tot['dram_bytes'] / 1024:,.1f}",
              f"{tot['total_energy_pj'] / 1e6:,.3f}")
    return t


def simulate_cmd(
    model: str = typer.Option(None, "--model", "-m", help="Zoo model name, e.g. resnet18."),
    topology: Path = typer.Option(None, "--topology", help="A SCALE-Sim topology CSV instead of a zoo model."),
    hw: str = typer.Option("tpu_v4_like", "--hw", help="Hardware preset name or a TOML file."),
    dataflow: str = typer.Option(None, "--dataflow", help="Override the hardware's dataflow: os, ws or is."),
    timing: str = typer.Option("scalesim", "--timing", help="Timing convention: scalesim or pipelined."),
    memory_model: str = typer.Option("scalesim-3.0.0", "--memory-model",
                                     help="scalesim-3.0.0 (as shipped) or ideal-fixed (no doubled read stall)."),
    bandwidth_mode: str = typer.Option("user", "--bandwidth-mode",
                                       help="user (finite DRAM bandwidth, stalls) or calc (SCALE-Sim's stall-free)."),
    shared_bandwidth: str = typer.Option(None, "--shared-bandwidth",
                                         help="Shared DRAM words/cycle ('inf' = unlimited); default: the hardware's."),
    quantum: int = typer.Option(256, "--quantum", help="Cycles between bandwidth re-divisions among pods."),
    split: str = typer.Option("auto", "--split", help="Pod split: auto, n, m, grid or k."),
    multipliers: Path = typer.Option(None, "--multipliers", help="JSON {layer: multiplier}; key \"*\" for all."),
    out: Path = typer.Option(..., "--out", "-o", help="Output directory (written atomically)."),
    window: int = typer.Option(None, "--window", help="Cycles per utilization window (default: ~2000 windows)."),
    address_traces: bool = typer.Option(False, "--address-traces", help="Also write SCALE-Sim-format address traces."),
    max_trace_mb: float = typer.Option(2048.0, "--max-trace-mb",
                                       help="Refuse address traces whose estimated size exceeds this (MiB)."),
    force: bool = typer.Option(False, "--force", help="Replace a non-empty --out directory."),
    json_out: bool = typer.Option(False, "--json", help="Print the report and the written files as JSON."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress output."),
) -> None:
    """Simulate a network cycle by cycle on a multi-pod machine; write reports and traces."""
    from mapping.hardware import resolve_hardware
    from mapping.layer import MappingError

    from ..analytical import estimate, mapping_trace
    from ..engine import MemoryConfig, simulate_trace
    from ..engine_core import EngineError

    quiet = quiet or json_out
    if dataflow is not None and dataflow not in ("os", "ws", "is"):
        fail(f"--dataflow {dataflow!r}: expected os, ws or is")
    if timing not in ("scalesim", "pipelined"):
        fail(f"--timing {timing!r}: expected scalesim or pipelined")
    if window is not None and window < 1:
        fail(f"--window {window}: expected a positive number of cycles")
    shared = None
    if shared_bandwidth is not None:
        try:
            shared = math.inf if shared_bandwidth.lower() in ("inf", "unlimited") else float(shared_bandwidth)
        except ValueError:
            fail(f"--shared-bandwidth {shared_bandwidth!r}: expected words/cycle or 'inf'")
    tmp = prepare_out_dir(out, force)
    try:
        try:
            machine = resolve_hardware(hw)
            if dataflow is not None:
                machine = machine.with_(dataflow=dataflow)
            memory = MemoryConfig(bandwidth_mode=bandwidth_mode, memory_model=memory_model,
                                  shared_words_per_cycle=shared, quantum_cycles=quantum)
            net = load_network(model, topology, quiet)
            assignment = None
            if multipliers is not None:
                from .estimate import load_assignment

                assignment = load_assignment(multipliers, [la.name for la in net.layers])
            trace = mapping_trace(net, machine, timing, split)
            if window is None:
                est = estimate(net, machine, timing=timing, split=split).total()["total_cycles"]
                window = max(1, -(-int(est) // 2000))
            with Progress(TextColumn("[bold]simulating[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
                          TimeElapsedColumn(), console=console, transient=True, disable=quiet) as prog:
                task = prog.add_task("", total=len(net))

                def tick(i, n, name):
                    prog.update(task, completed=i, description=name)

                run = simulate_trace(trace, memory=memory, multipliers=assignment, windows=window,
                                     record_folds=True, progress=tick, network=net, hardware=machine)
        except (MappingError, EngineError, ValueError) as exc:
            fail(str(exc))
        report = run.report
        files = _write_outputs(tmp, run, trace, report, address_traces, max_trace_mb, quiet)
        swap_in(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    out = out.resolve()
    files = [str(out / f) for f in files]
    if json_out:
        doc = report.to_dict()
        doc["out"] = str(out)
        doc["files"] = files
        doc["memory"] = run.memory_description()
        doc["window_cycles"] = int(window)
        print_json(doc)
        return
    title = (f"{report.network} on {machine.name}: {machine.pods} x {machine.rows}x{machine.cols} "
             f"{machine.dataflow.upper()}, {timing} timing, cycle-level engine")
    out_console.print(summary_table(report, run, title))
    tot = report.total()
    ut = run.utilization_trace().totals()
    cyc = sum(ut["busy"]) + sum(ut["stall"]) + sum(ut["idle"])
    out_console.print(
        f"latency {tot['latency_s'] * 1e3:.4f} ms ({tot['total_cycles']:,} cycles); energy: MAC-only "
        f"{tot['mac_energy_pj'] / 1e6:,.3f} µJ, full system {tot['total_energy_pj'] / 1e6:,.3f} µJ; pods busy "
        f"{100 * sum(ut['busy']) / max(cyc, 1):.1f}%, stalled {100 * sum(ut['stall']) / max(cyc, 1):.1f}%, idle "
        f"{100 * sum(ut['idle']) / max(cyc, 1):.1f}% ({run.memory_description()})")
    out_console.print(
        f"the table's stall column ({tot['stall_cycles']:,} cycles) is each layer's time beyond its slowest pod's "
        "compute: DRAM stalls, K-split reductions and vector (pool / add) layers; pods count only DRAM stalls as "
        "'stalled' and the rest as idle")
    out_console.print(f"wrote {len(files)} files to {out} (open trace.json in https://ui.perfetto.dev)")


def _write_outputs(tmp: Path, run, trace, report, address_traces: bool, max_trace_mb: float, quiet: bool) -> list[str]:
    """Everything into `tmp`; returns file names relative to it."""
    from traces.chrome import write_chrome_trace
    from traces.plot import plot_timeline

    report.to_json(tmp / "report.json")
    report.to_csv(tmp / "report.csv")
    util = run.utilization_trace()
    util.write(tmp / "utilization")
    write_chrome_trace(tmp / "trace.json", util, run.folds)
    plot_timeline(util, tmp / "timeline.png")
    trace.write(tmp / "mapping_trace")
    names = ["report.json", "report.csv", "utilization.json", "utilization.npz", "trace.json", "timeline.png",
             "mapping_trace.json", "mapping_trace.npz"]
    if address_traces:
        from ..address_traces import estimate_address_trace_bytes, write_address_traces

        est = estimate_address_trace_bytes(run, trace)
        mib = est["total"] / 2**20
        console.print(f"address traces: estimated size up to {mib:,.1f} MiB "
                      f"(SRAM {est['sram'] / 2**20:,.1f} MiB, DRAM {est['dram'] / 2**20:,.1f} MiB)")
        if mib > max_trace_mb:
            fail(f"address traces would take up to {mib:,.1f} MiB > --max-trace-mb {max_trace_mb:g}; "
                 "raise the limit or simulate fewer layers")
        with Progress(TextColumn("[bold]address traces[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
                      console=console, transient=True, disable=quiet) as prog:
            task = prog.add_task("", total=len(run.pods))
            files = write_address_traces(run, trace, tmp / "address_traces",
                                         progress=lambda i, n, name: prog.update(task, completed=i, description=name))
        names += [str(f.relative_to(tmp)) for f in files]
    umask = os.umask(0)  # some writers make 0600 temporary files; give every output the usual mode
    os.umask(umask)
    for name in names:
        os.chmod(tmp / name, 0o666 & ~umask)
    return names
