"""`cosim flash`: training-free FLASH search (NN-Degree predictor + hierarchical SHGO) for one machine.

The accuracy predictor is fitted on ``--samples`` architectures trained briefly on ``--dataset``
(plus ``--holdout`` more it never sees, to report its held-out R² and Kendall τ); the trained
samples are cached under ``--cache`` (default ``<cosim cache>/flash``) keyed by seed and settings,
so only the first run trains. Hardware figures come from the analytical model on ``--hw`` with
``--multiplier`` on every layer, and from the cycle-level engine once ``cosim.engine`` exists.
Limits: ``--latency-max`` (ms), ``--energy-max`` (µJ, full-system energy), ``--area-max`` (mm²:
PE array + SRAM the mapping occupies), ``--sram-max`` (KiB, per-pod SRAM working set),
``--accuracy-min`` (predicted, a fraction). ``--json`` prints everything, with the optimizer's
own time, as one JSON object.
"""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.table import Table

from cosim.commands._common import console, fail, out_console, print_json



def register(app: typer.Typer) -> None:
    """Attach `cosim flash` to the root app."""
    app.command("flash")(flash_cmd)


def _bounds(name: str, text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        lo, hi = (int(x) for x in text.replace("-", ":").split(":"))
    except ValueError:
        fail(f"--{name} {text!r}: expected LOW:HIGH integers, e.g. 4:32")
    return lo, hi


def _fmt(v, unit: str) -> str:
    if v is None:
        return "-"
    scale = {"ms": 1e3, "µJ": 1e-6, "mm²": 1e-6, "KiB": 1 / 1024, "%": 100.0, "": 1.0}[unit]
    x = v * scale
    return f"{x:,.0f}" if unit == "" else f"{x:,.4g} {unit}".strip()


def flash_cmd(
    hw: str = typer.Option("edge_16x16", "--hw", help="Hardware preset name or a TOML file."),
    multiplier: str = typer.Option("mul8u_array", "--multiplier", help="Multiplier (library name) on every layer."),
    objective: str = typer.Option("accuracy", "--objective",
                                  help="accuracy (maximize, predicted), or minimize latency, energy, edp, area, sram."),
    latency_max: float = typer.Option(None, "--latency-max", "--latency-max-ms", help="Latency limit in ms."),
    energy_max: float = typer.Option(None, "--energy-max", "--energy-max-uj", help="Energy limit in µJ (full system)."),
    area_max: float = typer.Option(None, "--area-max", "--area-max-mm2", help="Area limit in mm²."),
    sram_max: float = typer.Option(None, "--sram-max", "--sram-max-kib", help="Per-pod SRAM working-set limit in KiB."),
    accuracy_min: float = typer.Option(None, "--accuracy-min", help="Predicted accuracy floor, a fraction in (0, 1)."),
    dataset: str = typer.Option("mnist5k", "--dataset", help="Data set of the predictor samples: mnist5k, digits, ..."),
    samples: int = typer.Option(25, "--samples", help="Architectures trained to fit the predictor."),
    holdout: int = typer.Option(10, "--holdout", help="Further architectures trained only to test the predictor."),
    epochs: int = typer.Option(2, "--epochs", help="Training epochs per sample (and for --train)."),
    data_dir: Path = typer.Option(None, "--data-dir", help="Directory of a file-based data set (or $COSIM_DATA_DIR)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the sampling, the data split and the training."),
    width: str = typer.Option(None, "--width", help="Width range LOW:HIGH (default 4:32)."),
    depth: str = typer.Option(None, "--depth", help="Depth range LOW:HIGH (default 1:6)."),
    skip: str = typer.Option(None, "--skip", help="Skip-budget range LOW:HIGH (default 0:32)."),
    timing: str = typer.Option("scalesim", "--timing", help="Timing convention: scalesim or pipelined."),
    shgo_n: int = typer.Option(16, "--shgo-n", help="SHGO sampling points per level."),
    shgo_sampling: str = typer.Option("simplicial", "--shgo-sampling",
                                      help="SHGO sampling: simplicial, sobol, halton."),
    level1_skip: float = typer.Option(0.25, "--level1-skip-fraction",
                                      help="Skip budgets level one assumes, as a fraction of their range."),
    do_train: bool = typer.Option(False, "--train", help="Also train the chosen architecture and measure accuracy."),
    cache: Path = typer.Option(None, "--cache", help="Directory of the trained-sample cache (default: cosim cache)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Neither read nor write the sample cache."),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress output."),
) -> None:
    """Search the FLASH cell space for the best network under hardware limits, without training it."""
    t_start = time.perf_counter()
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from mapping.hardware import resolve_hardware
    from mapping.layer import MappingError
    from nas import flash as F
    from nas.data import DatasetError

    if objective not in F.OBJECTIVES:
        fail(f"--objective {objective!r}: expected one of {', '.join(F.OBJECTIVES)}")
    if timing not in ("scalesim", "pipelined"):
        fail(f"--timing {timing!r}: expected scalesim or pipelined")
    if shgo_sampling not in ("sobol", "simplicial", "halton"):
        fail(f"--shgo-sampling {shgo_sampling!r}: expected sobol, simplicial or halton")
    if samples < 3 or holdout < 0 or epochs < 1 or shgo_n < 2:
        fail(f"--samples {samples} (>= 3), --holdout {holdout} (>= 0), --epochs {epochs} (>= 1), "
             f"--shgo-n {shgo_n} (>= 2): out of range")
    try:
        constraints = F.Constraints(
            latency_max_s=None if latency_max is None else latency_max * 1e-3,
            energy_max_pj=None if energy_max is None else energy_max * 1e6,
            area_max_um2=None if area_max is None else area_max * 1e6,
            sram_max_bytes=None if sram_max is None else sram_max * 1024,
            accuracy_min=accuracy_min)
        machine = resolve_hardware(hw)
        bounds = {k: b for k, b in (("width", _bounds("width", width)), ("depth", _bounds("depth", depth)),
                                     ("skip", _bounds("skip", skip))) if b is not None}
        space = F.FlashSpace.for_dataset(dataset, **bounds)
        from rtl_models.library import MultiplierLibrary

        mult = MultiplierLibrary.default().get(multiplier)
    except (F.FlashError, MappingError, DatasetError, KeyError) as exc:
        fail(str(exc))

    timings: dict[str, float] = {}
    progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                        TimeElapsedColumn(), TextColumn("{task.fields[info]}"), console=console, transient=True,
                        disable=quiet)
    with progress:
        task = progress.add_task("predictor samples", total=samples + holdout, info="")

        def step(i, n, arch, hit):
            progress.update(task, completed=i, info=f"{arch.key}{' (cached)' if hit else ''}")

        try:
            pred, tr, ho, pinfo = F.build_predictor(
                space, dataset, samples=samples, holdout=holdout, seed=seed, epochs=epochs, root=data_dir,
                cache=False if no_cache else (cache if cache is not None else True), progress=step)
        except (F.FlashError, DatasetError) as exc:
            fail(str(exc))
        progress.update(task, completed=samples + holdout, info="")
        timings["predictor_s"] = pinfo["wall_s"]
        t = time.perf_counter()
        tables = F.HardwareTables(space, machine, timing=timing)
        problem = F.FlashProblem(space, tables, pred, mult, constraints, objective)
        # Load (or compile) the evaluator once outside the timed search: the optimizer time is the search alone.
        tables.evaluate(space.lower())
        timings["tables_s"] = time.perf_counter() - t
        res = F.flash_optimize(problem, n=shgo_n, sampling=shgo_sampling, level1_skip_fraction=level1_skip)
        timings["optimizer_s"] = res.optimizer_s
        t = time.perf_counter()
        analytical = F.analytical_figures(res.arch, problem)
        timings["analytical_s"] = time.perf_counter() - t
        t = time.perf_counter()
        engine = F.engine_figures(res.arch, problem)
        timings["engine_s"] = time.perf_counter() - t
        measured = None
        if do_train:
            task2 = progress.add_task("training the chosen architecture", total=None, info=res.arch.key)
            try:
                measured = F.measure_architecture(res.arch, space, dataset, seed=seed, epochs=epochs, root=data_dir)
            except DatasetError as exc:
                fail(str(exc))
            progress.remove_task(task2)
            timings["train_s"] = measured["train_s"]
    timings["end_to_end_s"] = time.perf_counter() - t_start

    doc = {
        "architecture": res.arch.to_dict() | {"cell_degrees": list(F.cell_degrees(res.arch)),
                                              "nn_degree": F.nn_degree(res.arch)},
        "feasible": res.feasible,
        "objective": objective,
        "objective_value": res.objective_value,
        "constraints": constraints.to_dict(),
        "hardware": machine.name,
        "multiplier": {"name": mult.name, "energy_pj": mult.energy_pj, "area_um2": mult.area_um2},
        "space": space.to_dict(),
        "dataset": dataset,
        "predicted_accuracy": res.figures["accuracy"],
        "measured": measured,
        "analytical": analytical,
        "engine": engine,
        "predictor": pred.to_dict() | {"samples": [s.to_dict() for s in tr], "holdout": [s.to_dict() for s in ho],
                                       "cache_file": pinfo["cache_file"], "from_cache": pinfo["from_cache"]},
        "optimizer": {"level1": res.level1, "level2": res.level2, "repair": res.repair,
                      "evaluations": res.evaluations, "optimizer_s": res.optimizer_s, "shgo_n": shgo_n,
                      "shgo_sampling": shgo_sampling, "level1_skip_fraction": level1_skip},
        "timings": timings,
    }
    doc = F.jsonable(doc)
    if json_out:
        print_json(doc)
        return
    _print(doc, res, space)


def _print(doc: dict, res, space) -> None:
    from nas import flash as F

    arch = res.arch
    t = Table(title=f"FLASH on {doc['hardware']} with {doc['multiplier']['name']}: objective {doc['objective']}"
                    f"{'' if doc['feasible'] else ' (NO FEASIBLE ARCHITECTURE: least violating shown)'}")
    for col in ("cell", "width", "depth", "skip budget", "skip links", "degree"):
        t.add_column(col, justify="right")
    for c in range(arch.cells):
        w, d, s = arch.widths[c], arch.depths[c], arch.skips[c]
        t.add_row(str(c + 1), str(w), str(d), str(s), str(F.skip_links(w, d, s)), f"{F.cell_degrees(arch)[c]:.2f}")
    t.add_section()
    t.add_row("total", "", "", "", "", f"{F.nn_degree(arch):.2f}")
    out_console.print(t)

    a, e = doc["analytical"], doc["engine"]
    cons = doc["constraints"]
    h = Table(title="hardware figures")
    for col in ("figure", "analytical", "engine", "limit"):
        h.add_column(col, justify="right" if col != "figure" else "left")
    rows = (("latency", "latency_s", "ms", cons["latency_max_s"]), ("cycles", "total_cycles", "", None),
            ("energy (full system)", "total_energy_pj", "µJ", cons["energy_max_pj"]),
            ("energy (multiplies)", "mac_energy_pj", "µJ", None), ("area", "area_um2", "mm²", cons["area_max_um2"]),
            ("SRAM working set", "sram_footprint_bytes", "KiB", cons["sram_max_bytes"]),
            ("memory footprint", "memory_footprint_bytes", "KiB", None), ("MACs", "macs", "", None),
            ("params", "params", "", None), ("utilization", "utilization", "%", None))
    for label, key, unit, lim in rows:
        h.add_row(label, _fmt(a.get(key), unit), _fmt(e.get(key), unit), _fmt(lim, unit))
    out_console.print(h)
    p = {k: (float("nan") if v is None else v) for k, v in doc["predictor"]["stats"].items()}
    acc = f"predicted accuracy {100 * doc['predicted_accuracy']:.2f}%"
    if doc["measured"]:
        m = doc["measured"]
        acc += f"; measured {100 * m['val_accuracy']:.2f}% (val), {100 * m['test_accuracy']:.2f}% (test)"
    if cons["accuracy_min"] is not None:
        acc += f"; floor {100 * cons['accuracy_min']:.2f}%"
    out_console.print(acc)
    out_console.print(
        f"predictor ({'+'.join(doc['predictor']['features'])}, {p['n_train']} samples on {doc['dataset']}): "
        f"fit R² {p['train_r2']:.3f}, τ {p['train_kendall_tau']:.3f}; leave-one-out R² {p['loo_r2']:.3f}, "
        f"τ {p['loo_kendall_tau']:.3f}"
        + (f"; held-out ({p['n_holdout']}) R² {p['holdout_r2']:.3f}, τ {p['holdout_kendall_tau']:.3f}"
           if p.get("n_holdout") else ""))
    tm = doc["timings"]
    o = doc["optimizer"]
    out_console.print(
        f"optimizer {tm['optimizer_s'] * 1e3:.1f} ms (level 1 {o['level1']['time_s'] * 1e3:.1f} ms, level 2 "
        f"{o['level2']['time_s'] * 1e3:.1f} ms, repair and polish {o['repair']['time_s'] * 1e3:.1f} ms; "
        f"{o['evaluations']} "
        f"evaluations) out of a space of {space.size():.3g} configurations; end to end {tm['end_to_end_s']:.2f} s "
        f"(predictor {tm['predictor_s']:.2f} s{' from cache' if doc['predictor']['from_cache'] else ''}, "
        f"hardware tables {tm['tables_s']:.2f} s)")
