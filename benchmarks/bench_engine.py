"""Benchmark: the cycle-level engine against SCALE-Sim 3.0.0, and the multi-pod engine's speed (issue 4).

1. ResNet-18 (CIFAR) conv and FC layers on one 32x32 WS array, 64 KiB SRAMs, whole process
   against whole process (each side starts a Python interpreter, imports its simulator, runs
   every layer and writes its reports):
   a. CALC mode (SCALE-Sim's stall-free mode): target engine >= 100x faster, identical cycles;
   b. USER mode (finite bandwidth 8 words/cycle per interface, stalls on): target >= 1,000x.
   Every report field of every layer (COMPUTE, BANDWIDTH and DETAILED_ACCESS) is compared.
   SCALE-Sim keeps its DRAM trace in memory and grows it with np.concatenate on every
   prefetch, so layers needing more than MAX_SCALESIM_PREFETCHES prefetches (three layer-4
   convs here: ~52,000 filter prefetches, a 15 GiB trace copied quadratically) cannot finish;
   they are left out of the USER comparison (recorded with the engine's figures and SCALE-Sim's
   predicted trace size), and the engine's time for all 21 layers is recorded as well.
2. ResNet-18 (ImageNet, 224x224) on `tpu_v4_like` (8 pods of 128x128), all layers, the full
   memory model (USER mode, scalesim-3.0.0, shared DRAM arbitration): target under 2 s, both
   timing conventions; measured in-process after warm-up (best of 3) and as a whole process.

SCALE-Sim runs take minutes (CALC) to hours (USER): run this in the background, one at a time
(`nohup .venv/bin/python benchmarks/bench_engine.py &`). Results are written after every stage
to benchmarks/results/engine.json ("status" says how far it got). Options: --stages
tpu,calc,user,user_rest (default all; stages not run keep their earlier results from the file;
user_rest runs SCALE-Sim on the USER layers it cannot finish until --rest-timeout, under a
12 GiB memory cap, for a measured lower bound on the whole network), --scalesim-timeout.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).parent))

from common import write_result  # noqa: E402

from cosim.engine import layer_shape, simulate_network  # noqa: E402
from cosim.scalesim_bridge import ScaleSimConfig, ScaleSimError, ScaleSimLayer, run_scalesim  # noqa: E402
from mapping import zoo  # noqa: E402
from mapping.hardware import preset  # noqa: E402
from mapping.tiler import fold_schedule  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

# The engine side of "whole process against whole process": start Python, import the engine,
# run every layer, write every report field.
ENGINE_DRIVER = """
import json, sys
from dataclasses import asdict
from cosim.engine_core import ConvShape, PodSpec, simulate_layer
job = json.load(open(sys.argv[1]))
spec = PodSpec(**job["spec"])
out = []
for s in job["shapes"]:
    r = simulate_layer(ConvShape(**s), spec)
    d = asdict(r); d.pop("windows")
    for k in ("avg_ifmap_sram_bw", "avg_filter_sram_bw", "avg_ofmap_sram_bw", "avg_ifmap_dram_bw",
              "avg_filter_dram_bw", "avg_ofmap_dram_bw"):
        d[k] = getattr(r, k)
    out.append(d)
json.dump(out, open(sys.argv[2], "w"))
"""


def resnet18_cifar_layers() -> tuple[list[ScaleSimLayer], list[dict]]:
    """SCALE-Sim topology rows and engine shapes of ResNet-18 (CIFAR)'s GEMM layers."""
    net = zoo.network("resnet18_cifar")
    hw = preset("scalesim_google")
    meta, _ = fold_schedule(net, hw)
    layers, shapes = [], []
    for rec in meta["layers"]:
        if not rec["pods"]:
            continue
        s = layer_shape(rec)
        name = rec["name"].replace(".", "_")
        layers.append(ScaleSimLayer(name, s.ifmap_h, s.ifmap_w, s.filter_h, s.filter_w, s.channels, s.num_filters,
                                    s.stride))
        shapes.append({"ifmap_h": s.ifmap_h, "ifmap_w": s.ifmap_w, "filter_h": s.filter_h, "filter_w": s.filter_w,
                       "channels": s.channels, "num_filters": s.num_filters, "stride": s.stride})
    return layers, shapes


def run_engine_process(cfg: ScaleSimConfig, shapes: list[dict]) -> tuple[float, list[dict]]:
    """Wall time of one whole engine process, and its per-layer results."""
    spec = cfg.pod_spec()
    with tempfile.TemporaryDirectory(prefix="cosim-bench-") as tmp:
        job, out = Path(tmp) / "job.json", Path(tmp) / "out.json"
        job.write_text(json.dumps({"spec": {f: getattr(spec, f) for f in spec.__dataclass_fields__},
                                   "shapes": shapes}))
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", ENGINE_DRIVER, str(job), str(out)], check=True, cwd=ROOT,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
        wall = time.perf_counter() - t0
        return wall, json.loads(out.read_text())


# SCALE-Sim 3.0.0 appends every prefetch to an in-memory DRAM trace with np.concatenate, so its
# cost grows with the square of a buffer's prefetches: beyond this many it needs hours and GBs.
MAX_SCALESIM_PREFETCHES = 2000


def scalesim_feasible(cfg: ScaleSimConfig, layers, shapes) -> tuple[list[int], list[dict]]:
    """Indices of the layers SCALE-Sim can finish, and a note for each one it cannot (USER mode)."""
    from cosim import engine_core as ec
    from cosim.engine_core import ConvShape, PodEngine

    spec = cfg.pod_spec()
    keep, skipped = [], []
    for i, (la, s) in enumerate(zip(layers, shapes)):
        if cfg.bandwidth_mode != "USER":
            keep.append(i)
            continue
        e = PodEngine(ConvShape(**s), spec)
        e.step()
        npf = [int(e.st[ec.S_RD + o * ec.S_RD_STRIDE + ec.RS_NPF]) for o in range(2)]
        if max(npf) <= MAX_SCALESIM_PREFETCHES:
            keep.append(i)
            continue
        lp = [-(-(n - -(-n // 2)) // bw) for n, bw in ((spec.ifmap_sram_words, spec.ifmap_dram_bw_words),
                                                        (spec.filter_sram_words, spec.filter_dram_bw_words))]
        rows = sum(k * l for k, l in zip(npf, lp))
        skipped.append({"layer": la.name, "prefetches": npf, "engine_total_cycles": e.result().total_cycles,
                        "engine_stall_cycles": e.result().stall_cycles,
                        "scalesim_dram_trace_rows": rows,
                        "scalesim_dram_trace_gib": rows * (spec.ifmap_dram_bw_words + 1) * 8 / 2**30,
                        "why": f"SCALE-Sim's DRAM trace grows by np.concatenate per prefetch: {max(npf):,} prefetches "
                               f"> {MAX_SCALESIM_PREFETCHES} would copy ~{rows * max(npf) * 36 / 2**40:,.0f} TiB"})
    return keep, skipped


def compare(cfg: ScaleSimConfig, layers, shapes, timeout_s: float | None, repeats: int = 3) -> dict:
    """Engine (whole process, best of `repeats`) against SCALE-Sim (whole process, once), on the
    layers SCALE-Sim can finish (`scalesim_feasible`); the engine also runs all layers."""
    run_engine_process(cfg, shapes[:1])  # make sure the Numba cache is warm on disk
    keep, skipped = scalesim_feasible(cfg, layers, shapes)
    all_walls = [run_engine_process(cfg, shapes)[0] for _ in range(repeats)]
    layers, shapes = [layers[i] for i in keep], [shapes[i] for i in keep]
    walls, results = [], None
    for _ in range(repeats):
        w, results = run_engine_process(cfg, shapes)
        walls.append(w)
    eng_s = min(walls)
    out = {"config": {f: getattr(cfg, f) for f in cfg.__dataclass_fields__}, "layers": len(layers),
           "layer_names": [la.name for la in layers], "engine_process_s": eng_s, "engine_process_runs_s": walls,
           "engine_process_all_21_layers_s": min(all_walls), "scalesim_skipped_layers": skipped,
           "engine_total_cycles": [r["total_cycles"] for r in results],
           "engine_stall_cycles": [r["stall_cycles"] for r in results]}
    try:
        run = run_scalesim(layers, cfg, timeout_s=timeout_s)
    except ScaleSimError as exc:
        out.update(scalesim_error=str(exc), scalesim_process_s_lower_bound=timeout_s,
                   speedup_lower_bound=(timeout_s / eng_s) if timeout_s else None)
        return out
    diffs = {}
    for ref, res in zip(run.results, results):
        d = {k: (v, res[k]) for k, v in ref.fields().items() if res[k] != v}
        if d:
            diffs[ref.name] = d
    out.update(scalesim_process_s=run.wall_s, speedup=run.wall_s / eng_s,
               scalesim_total_cycles=[r.compute.total_cycles for r in run.results],
               identical_cycles=all(r.compute.total_cycles == e["total_cycles"] for r, e in zip(run.results, results)),
               identical_all_fields=not diffs, differing_fields=diffs)
    return out


def scalesim_lower_bound(cfg: ScaleSimConfig, layers, shapes, skipped: list[dict], timeout_s: float,
                         memory_cap_gib: float = 12.0) -> dict:
    """SCALE-Sim on the layers `scalesim_feasible` left out, until `timeout_s` (or a memory cap):
    a measured lower bound on its time for them, whole process."""
    import resource

    names = {d["layer"] for d in skipped}
    rest = [la for la in layers if la.name in names]
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = int(memory_cap_gib * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))  # inherited by SCALE-Sim's process
    t0 = time.perf_counter()
    try:
        run = run_scalesim(rest, cfg, timeout_s=timeout_s)
        outcome = {"finished": True, "scalesim_process_s": run.wall_s}
    except ScaleSimError as exc:
        outcome = {"finished": False, "stopped_after_s": time.perf_counter() - t0, "reason": str(exc)[-300:]}
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    return {"layers": [la.name for la in rest], "timeout_s": timeout_s, "memory_cap_gib": memory_cap_gib, **outcome}


def tpu_benchmark() -> dict:
    """ResNet-18 (ImageNet) on tpu_v4_like, full memory model, in-process and whole-process."""
    hw = preset("tpu_v4_like")
    out = {}
    simulate_network(zoo.network("lenet5"), hw)  # compile / load the Numba cache
    for name in ("resnet18", "resnet18_cifar"):
        net = zoo.network(name)
        for timing in ("scalesim", "pipelined"):
            times = []
            for _ in range(3):
                t0 = time.perf_counter()
                run = simulate_network(net, hw, timing=timing)
                times.append(time.perf_counter() - t0)
            tot = run.report.total()
            code = ("import time; t=time.perf_counter(); from mapping import zoo; from mapping.hardware import preset; "
                    "from cosim.engine import simulate_network; "
                    f"simulate_network(zoo.network({name!r}), preset('tpu_v4_like'), timing={timing!r})")
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
            proc = time.perf_counter() - t0
            out[f"{name}_{timing}"] = {
                "layers": len(run.report.layers), "in_process_best_s": min(times), "in_process_runs_s": times,
                "whole_process_s": proc, "total_cycles": tot["total_cycles"], "stall_cycles": tot["stall_cycles"],
                "compute_cycles": tot["compute_cycles"], "arbitration_quanta": run.quanta,
                "memory": run.memory_description()}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stages", default="tpu,calc,user,user_rest",
                    help="comma-separated subset of tpu, calc, user, user_rest")
    ap.add_argument("--scalesim-timeout", type=float, default=4 * 3600.0)
    ap.add_argument("--rest-timeout", type=float, default=5400.0,
                    help="seconds SCALE-Sim may spend on the USER layers it cannot finish (a lower bound)")
    args = ap.parse_args()
    stages = set(args.stages.split(","))
    old = Path(__file__).parent / "results" / "engine.json"
    data: dict = {}
    if old.exists() and stages != {"tpu", "calc", "user", "user_rest"}:
        data = {k: v for k, v in json.loads(old.read_text()).items() if k not in ("benchmark", "machine")}
    data["targets"] = {"calc_speedup": 100, "user_speedup": 1000, "tpu_v4_like_resnet18_s": 2.0}
    data["status"] = "started"
    t0 = time.perf_counter()
    if "tpu" in stages:
        data["tpu_v4_like"] = tpu_benchmark()
        data["status"] = "tpu done"
        write_result("engine", data)
        print(json.dumps(data["tpu_v4_like"], indent=1), flush=True)
    layers, shapes = resnet18_cifar_layers()
    for stage, key, cfg in (
            ("calc", "resnet18_cifar_32x32_calc",
             ScaleSimConfig(32, 32, "ws", 64, 64, 64, "CALC", run_name="bench_calc")),
            ("user", "resnet18_cifar_32x32_user",
             ScaleSimConfig(32, 32, "ws", 64, 64, 64, "USER", 8, 8, 8, run_name="bench_user"))):
        if stage not in stages:
            continue
        data[key] = compare(cfg, layers, shapes, args.scalesim_timeout)
        data["status"] = f"{stage} done"
        write_result("engine", data)
        print(json.dumps({k: v for k, v in data[key].items() if "cycles" not in k}, indent=1), flush=True)
    user = data.get("resnet18_cifar_32x32_user")
    if "user_rest" in stages and user and user.get("scalesim_skipped_layers"):
        cfg = ScaleSimConfig(32, 32, "ws", 64, 64, 64, "USER", 8, 8, 8, run_name="bench_user_rest")
        rest = scalesim_lower_bound(cfg, layers, shapes, user["scalesim_skipped_layers"], args.rest_timeout)
        s_rest = rest.get("scalesim_process_s", rest.get("stopped_after_s"))
        rest["all_21_layers_scalesim_s_at_least"] = user["scalesim_process_s"] + s_rest
        rest["all_21_layers_speedup_at_least"] = rest["all_21_layers_scalesim_s_at_least"] / user[
            "engine_process_all_21_layers_s"]
        data["resnet18_cifar_32x32_user_all_layers"] = rest
        write_result("engine", data)
        print(json.dumps(rest, indent=1), flush=True)
    data["status"] = "complete"
    data["bench_wall_s"] = time.perf_counter() - t0
    summary = {}
    for key, tgt in (("resnet18_cifar_32x32_calc", 100), ("resnet18_cifar_32x32_user", 1000)):
        r = data.get(key)
        if r:
            sp = r.get("speedup", r.get("speedup_lower_bound"))
            summary[key] = {"speedup": sp, "target": tgt, "met": bool(sp and sp >= tgt),
                            "identical_cycles": r.get("identical_cycles"), "layers": r.get("layers")}
    r = data.get("resnet18_cifar_32x32_user_all_layers")
    if r:
        sp = r["all_21_layers_speedup_at_least"]
        summary["resnet18_cifar_32x32_user_all_21_layers"] = {"speedup_at_least": sp, "target": 1000,
                                                               "met": sp >= 1000, "scalesim_finished": r["finished"]}
    for key, r in data.get("tpu_v4_like", {}).items():
        summary[f"tpu_v4_like_{key}"] = {"in_process_best_s": r["in_process_best_s"], "target_s": 2.0,
                                         "met": r["in_process_best_s"] < 2.0}
    data["summary"] = summary
    write_result("engine", data)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
