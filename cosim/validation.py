"""Cross-validation: the analytical model, the cycle-level engine and SCALE-Sim 3.0.0, side by side.

Two jobs:

* `validate_network`: one network on one pod of a machine (SCALE-Sim has one array, so every
  fidelity sees the same single array: the machine's per-pod SRAM share and DRAM rate). Per
  layer it collects the analytical model's figures, the engine's, SCALE-Sim's (one subprocess
  for all layers) and, with `register_level=True` (or a function (ConvShape, PodSpec, groups) -> {metric: value} or
  None when the layer is too large for it), the register-level array model's compute cycles
  (`register_level_cycles`, arrays up to 16 x 16, small layers); with differences engine - SCALE-Sim (every
  SCALE-Sim report field is compared, exactly) and analytical - engine.
* `run_suite`: the cross-validation suite against SCALE-Sim (``ci``: a handful of tiny
  configurations, seconds; ``full``: all three dataflows, arrays 4x4 to 256x256 square and not,
  SRAM 1 KiB to 6 MiB, DRAM 1 to 64 words/cycle, CALC and USER modes, strided, 1x1, depthwise,
  GEMM and FC layers), every layer through the full engine (`cosim.engine`) on a one-pod
  machine, every SCALE-Sim report field compared exactly.

Differences are relative: |a - b| / max(|b|, 1). `validate_network` flags a layer when the
engine and SCALE-Sim differ by more than the tolerance in any field, or when the analytical
and engine compute cycles do (they are equal by construction); the analytical model's total
and stall cycles, utilization and DRAM traffic come from a different memory model and are
shown, not checked (see `cosim.engine` for the bound the tests hold them to).
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from mapping.hardware import HardwareConfig
from mapping.layer import Layer
from mapping.network import Network

from .engine import MemoryConfig, layer_shape, pod_spec, simulate_network
from .engine_core import ConvShape, EngineResult, PodSpec
from .scalesim_bridge import ScaleSimConfig, ScaleSimLayer, run_scalesim, scalesim_available

# Largest layer the register-level model is asked to step (its compute cycles, closed form): it
# steps a few thousand cycles a second, so this keeps one layer under ~10 s.
REGISTER_LEVEL_MAX_CYCLES = 20_000
REGISTER_LEVEL_MAX_DIM = 16


def register_level_cycles(shape: ConvShape, spec: PodSpec, groups: int = 1) -> dict | None:
    """Compute cycles of one layer on the register-level array (`rtl_models.array_model`), or None.

    None (no column) for arrays above 16 x 16, grouped layers (the model runs one GEMM) and
    layers whose closed-form compute time exceeds `REGISTER_LEVEL_MAX_CYCLES`. The operands are
    seeded random codes through the exact multiplier: only the cycle count is compared here (the
    values are held to the LUT kernels by the array model's own tests). SCALE-Sim convention
    prints the index of the last cycle, so that is what is returned under ``scalesim``.
    """
    import numpy as np

    from mapping import gemm
    from rtl_models.array_model import run_gemm

    if groups != 1 or spec.rows > REGISTER_LEVEL_MAX_DIM or spec.cols > REGISTER_LEVEL_MAX_DIM:
        return None
    m, n, k = shape.m, shape.n, shape.k
    sr, sc, t = gemm.operand_dims(m, n, k, spec.dataflow)
    if int(gemm.compute_cycles(1, sr, sc, t, spec.rows, spec.cols, spec.dataflow, spec.timing)) \
            > REGISTER_LEVEL_MAX_CYCLES:
        return None
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (m, k), dtype=np.uint8)
    b = rng.integers(0, 256, (k, n), dtype=np.uint8)
    exact = (np.arange(256)[:, None] * np.arange(256)[None, :]).astype(np.uint16)
    run = run_gemm(a, b, (exact, False), spec.rows, spec.cols, spec.dataflow, spec.timing)
    cycles = run.scalesim_cycles() if spec.timing == "scalesim" else run.total_cycles
    return {"compute_cycles": int(cycles)}


# The register-level column's default: `validate_network(register_level=True)` uses this.
REGISTER_LEVEL: Callable[..., dict | None] = register_level_cycles

# (key, label, unit) of the metrics shown side by side
METRICS = (
    ("total_cycles", "total cycles", "cycles"),
    ("compute_cycles", "compute cycles", "cycles"),
    ("stall_cycles", "stall cycles", "cycles"),
    ("overall_util_pct", "utilization %", "%"),
    ("mapping_efficiency_pct", "mapping efficiency %", "%"),
    ("ifmap_sram_reads", "ifmap SRAM reads", "words"),
    ("filter_sram_reads", "filter SRAM reads", "words"),
    ("ofmap_sram_writes", "ofmap SRAM writes", "words"),
    ("ifmap_dram_reads", "ifmap DRAM reads", "words"),
    ("filter_dram_reads", "filter DRAM reads", "words"),
    ("ofmap_dram_writes", "ofmap DRAM writes", "words"),
)


def rel_diff(a, b) -> float:
    """|a - b| / max(|b|, 1)."""
    return abs(float(a) - float(b)) / max(abs(float(b)), 1.0)


def one_pod(hw: HardwareConfig) -> HardwareConfig:
    """One pod of `hw`: its SRAM share and the DRAM channel (what SCALE-Sim can model)."""
    si, sf, so = hw.pod_sram_bytes()
    return hw.with_(name=f"{hw.name}/pod", pods=1, sram_pods_per_group=1, ifmap_sram_bytes=si,
                    filter_sram_bytes=sf, ofmap_sram_bytes=so)


def _scalesim_config(hw: HardwareConfig, memory: MemoryConfig, run_name: str = "validate") -> ScaleSimConfig | None:
    """SCALE-Sim's config for a one-pod machine, or None when SCALE-Sim cannot express it."""
    if hw.word_bytes != 1:
        return None
    kib = [s // 1024 for s in hw.pod_sram_bytes()]
    if any(s % 1024 for s in hw.pod_sram_bytes()) or min(kib) < 1:
        return None
    bw = memory.port(hw)
    return ScaleSimConfig(hw.rows, hw.cols, hw.dataflow, kib[0], kib[1], kib[2], memory.bandwidth_mode.upper(),
                          bw, bw, bw, run_name=run_name)


def _scalesim_layers(rec: dict) -> list[ScaleSimLayer]:
    """The SCALE-Sim topology row(s) of a mapping-trace layer (grouped: one per group / DP row)."""
    s = layer_shape(rec)
    safe = rec["name"].replace(",", "_").replace(" ", "_")
    g = rec["gemm"]["groups"]
    if rec["kind"] == "depthwise" and s.channels == 1 and g > 1:
        name = safe if "DP" in safe else safe + "_DP"
        return [ScaleSimLayer(name, s.ifmap_h, s.ifmap_w, s.filter_h, s.filter_w, g, s.num_filters, s.stride,
                              depthwise=True)]
    safe = safe.replace("DP", "dp")
    names = [safe] if g == 1 else [f"{safe}_g{i}" for i in range(g)]
    return [ScaleSimLayer(n, s.ifmap_h, s.ifmap_w, s.filter_h, s.filter_w, s.channels, s.num_filters, s.stride)
            for n in names]


def _engine_fields(runs: list[EngineResult]) -> dict:
    """SCALE-Sim-comparable sums over an engine's runs (one per group)."""
    out = {}
    for k in ("total_cycles", "compute_cycles", "stall_cycles", "ifmap_sram_reads", "filter_sram_reads",
              "ofmap_sram_writes", "ifmap_dram_reads", "filter_dram_reads", "ofmap_dram_writes"):
        out[k] = sum(getattr(r, k) for r in runs)
    for k in ("overall_util_pct", "mapping_efficiency_pct"):
        out[k] = sum(getattr(r, k) for r in runs) / len(runs)
    return out


def validate_network(network: Network, hw: HardwareConfig, *, timing: str = "scalesim",
                     memory: MemoryConfig | None = None, scalesim: bool = True, tolerance: float = 0.0,
                     layers: slice | None = None, register_level: Callable | bool | None = None,
                     progress: Callable[[str], None] | None = None) -> dict:
    """Side-by-side figures per layer on one pod of `hw`; returns {"machine", "layers": [...], "ok", ...}."""
    from .analytical import estimate, mapping_trace

    memory = memory or MemoryConfig()
    hw1 = one_pod(hw)
    if register_level is True:
        register_level = REGISTER_LEVEL
    register_level = register_level or None
    say = progress or (lambda msg: None)
    say("analytical model")
    ana = estimate(network, hw1, timing=timing)
    say("cycle-level engine")
    trace = mapping_trace(network, hw1, timing)
    run = simulate_network(network, hw1, timing=timing, memory=memory)
    idx = list(range(len(network)))[layers] if layers is not None else list(range(len(network)))
    recs = trace.layers
    notes = []
    ss_rows: dict[int, list] = {}
    ss_wall = None
    cfg = _scalesim_config(hw1, memory)
    want_ss = scalesim and timing == "scalesim"
    if scalesim and timing != "scalesim":
        notes.append("SCALE-Sim column skipped: SCALE-Sim has only the 'scalesim' timing convention")
    elif scalesim and cfg is None:
        notes.append("SCALE-Sim column skipped: SCALE-Sim needs 1-byte words and whole-KiB SRAMs")
        want_ss = False
    elif scalesim and not scalesim_available():
        notes.append("SCALE-Sim column skipped: scalesim is not installed")
        want_ss = False
    if want_ss and cfg is not None:
        todo = [(i, _scalesim_layers(recs[i])) for i in idx if recs[i]["pods"]]
        flat = [la for _, las in todo for la in las]
        if flat:
            say(f"SCALE-Sim 3.0.0 ({len(flat)} topology rows)")
            srun = run_scalesim(flat, cfg)
            ss_wall = srun.wall_s
            it = iter(srun.results)
            for i, las in todo:
                ss_rows[i] = [next(it) for la in las for _ in la.report_names()]
    spec = pod_spec(hw1, timing, memory)
    out_layers = []
    ok = True
    for i in idx:
        lr_a, lr_e = ana.layers[i], run.report.layers[i]
        row: dict[str, Any] = {"index": i, "name": lr_a.name, "kind": lr_a.kind, "values": {}, "diffs": {},
                               "fields_equal": None, "differing_fields": {}, "flagged": []}
        pods = run.pods[i]
        eng = _engine_fields(pods[0].runs) if pods else None
        a_vals = {"total_cycles": lr_a.total_cycles, "compute_cycles": lr_a.compute_cycles,
                  "stall_cycles": lr_a.stall_cycles, "overall_util_pct": 100 * lr_a.utilization,
                  "mapping_efficiency_pct": 100 * lr_a.mapping_efficiency,
                  "ifmap_sram_reads": lr_a.ifmap_sram_reads, "filter_sram_reads": lr_a.filter_sram_reads,
                  "ofmap_sram_writes": lr_a.ofmap_sram_writes,
                  "ifmap_dram_reads": lr_a.ifmap_dram_bytes // hw.word_bytes,
                  "filter_dram_reads": lr_a.filter_dram_bytes // hw.word_bytes,
                  "ofmap_dram_writes": lr_a.ofmap_dram_bytes // hw.word_bytes}
        if eng is None:  # pool / add: no array work, both models use the same closed form
            eng = {"total_cycles": lr_e.total_cycles, "compute_cycles": lr_e.compute_cycles,
                   "stall_cycles": lr_e.stall_cycles}
        ss = None
        if i in ss_rows:
            rows = ss_rows[i]
            ss = {k: sum(r.fields()[k] for r in rows) for k in
                  ("total_cycles", "stall_cycles", "ifmap_sram_reads", "filter_sram_reads", "ofmap_sram_writes",
                   "ifmap_dram_reads", "filter_dram_reads", "ofmap_dram_writes")}
            ss["overall_util_pct"] = sum(r.compute.overall_util_pct for r in rows) / len(rows)
            ss["mapping_efficiency_pct"] = sum(r.compute.mapping_efficiency_pct for r in rows) / len(rows)
            diff = {}
            for r, e in zip(rows, pods[0].runs):
                for k, (v_ss, v_e) in r.differences(e).items():
                    diff.setdefault(k, (v_ss, v_e))
            if len(rows) != len(pods[0].runs):
                diff["report_rows"] = (len(rows), len(pods[0].runs))
            row["fields_equal"] = not diff
            row["differing_fields"] = {k: list(v) for k, v in diff.items()}
            if any(rel_diff(v_e, v_ss) > tolerance for v_ss, v_e in diff.values()):
                row["flagged"].append("engine vs SCALE-Sim")
        reg = None
        if register_level is not None and recs[i]["pods"]:
            say(f"register-level array: {lr_a.name}")
            reg = register_level(layer_shape(recs[i]), spec, recs[i]["gemm"]["groups"])
        for key, _, _ in METRICS:
            vals = {"analytical": a_vals.get(key), "engine": eng.get(key),
                    "scalesim": ss.get(key) if ss else None, "register_level": reg.get(key) if reg else None}
            row["values"][key] = vals
            d = {}
            if vals["engine"] is not None and vals["scalesim"] is not None:
                d["engine_vs_scalesim"] = rel_diff(vals["engine"], vals["scalesim"])
            if vals["analytical"] is not None and vals["engine"] is not None:
                d["analytical_vs_engine"] = rel_diff(vals["analytical"], vals["engine"])
            if vals["register_level"] is not None and vals["engine"] is not None:
                d["register_level_vs_engine"] = rel_diff(vals["register_level"], vals["engine"])
                if d["register_level_vs_engine"] > tolerance:
                    row["flagged"].append(f"register-level vs engine: {key}")
            row["diffs"][key] = d
        if row["diffs"]["compute_cycles"].get("analytical_vs_engine", 0.0) > tolerance:
            row["flagged"].append("analytical vs engine: compute cycles")
        ok = ok and not row["flagged"]
        out_layers.append(row)
    return {"network": network.name, "hardware": hw.name, "machine": hw1.to_dict(), "timing": timing,
            "memory": run.memory_description(), "tolerance": tolerance, "scalesim_wall_s": ss_wall,
            "register_level": register_level is not None, "notes": notes, "layers": out_layers, "ok": ok}


# ---------------------------------------------------------------------------------------------
# The suite
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SuiteCase:
    """One SCALE-Sim configuration and the layers run on it."""

    case_id: str
    config: ScaleSimConfig
    layers: tuple[ScaleSimLayer, ...]


def _layers_for(rows: int, cols: int, j: int, tiny: bool) -> list[ScaleSimLayer]:
    """A mix sized to the array (about 2-4 folds each way): conv 3x3, strided, 1x1, FC, GEMM, DP."""
    L = ScaleSimLayer
    r, c = rows, cols
    if tiny:
        return [L(f"conv{j}", 10, 10, 3, 3, 3, 5, 1), L(f"s2conv{j}", 10, 10, 3, 3, 4, 6, 2),
                L(f"pw{j}", 6, 6, 1, 1, 7, 9, 1), L(f"fc{j}", 1, 1, 1, 1, 20, 10, 1)]
    ch = max(2, min(64, (r + 2) // 3))  # K = 9 * ch ~ 3R (WS/IS row folds)
    nf = max(2, min(384, 3 * c // 2 + 1))  # N ~ 1.5 C (column folds)
    hw_ = max(6, min(20, int(math.sqrt(4 * max(r, c))) + 4))  # M ~ output pixels
    out = [L(f"conv{j}", hw_, hw_, 3, 3, ch, nf, 1),
           L(f"s2conv{j}", hw_ + 1, hw_ + 1, 3, 3, ch, nf, 2),  # (H - F) % s != 0: clipped windows
           L(f"pw{j}", hw_ - 2, hw_ - 2, 1, 1, 2 * ch, nf, 1),
           L(f"fc{j}", 1, 1, 1, 1, 4 * ch, max(10, c // 2), 1)]
    if j % 3 == 0:
        out.append(L(f"DPconv{j}", hw_, hw_, 3, 3, 2, 2, 1, depthwise=True))
    if j % 4 == 1:
        out.append(L(f"s3conv{j}", hw_ + 2, hw_ + 2, 5, 5, max(2, ch // 2), nf, 3))
    return out


def suite_cases(name: str) -> list[SuiteCase]:
    """The `name` ('ci' or 'full') suite's configurations and layers."""
    C = ScaleSimConfig
    if name == "ci":
        return [
            SuiteCase("ci-os-4x6-user", C(4, 6, "os", 1, 1, 1, "USER", 2, 2, 2, run_name="ci0"),
                      tuple(_layers_for(4, 6, 0, True))),
            SuiteCase("ci-ws-8x4-user", C(8, 4, "ws", 2, 1, 1, "USER", 4, 4, 4, run_name="ci1"),
                      tuple(_layers_for(8, 4, 1, True))),
            SuiteCase("ci-is-5x8-calc", C(5, 8, "is", 1, 1, 1, "CALC", run_name="ci2"),
                      tuple(_layers_for(5, 8, 2, True))),
            SuiteCase("ci-ws-gemm", C(8, 8, "ws", 1, 2, 1, "USER", 2, 2, 2, run_name="ci3"),
                      (ScaleSimLayer.gemm("g0", 30, 20, 25), ScaleSimLayer.gemm("g1", 9, 33, 17))),
        ]
    if name != "full":
        raise ValueError(f"suite {name!r}: expected 'ci' or 'full'")
    arrays = [(4, 4), (8, 8), (16, 16), (32, 32), (64, 64), (128, 128), (256, 256),
              (4, 16), (16, 4), (8, 32), (32, 8), (12, 14), (64, 16), (128, 32), (16, 128), (256, 64)]
    srams = [(1, 1, 1), (64, 64, 64), (6144, 6144, 2048), (4, 2, 2), (256, 256, 128), (1024, 512, 256),
             (16, 16, 8), (2048, 2048, 1024)]
    bws = [1, 2, 4, 8, 16, 32, 64]
    cases = []
    j = 0
    for ai, (r, c) in enumerate(arrays):
        for di, df in enumerate(("os", "ws", "is")):
            mode = "CALC" if (ai + di) % 3 == 0 else "USER"
            kib = srams[(ai * 3 + di) % len(srams)]
            bw = bws[(ai * 3 + di) % len(bws)]
            if mode == "USER" and max(r, c) >= 128:
                # SCALE-Sim's DRAM-trace bookkeeping is quadratic in the prefetches, and a 128-wide
                # line overruns a few-KiB buffer several times: keep such cases to minutes
                kib = tuple(max(k, 64) for k in kib)
            cfg = C(r, c, df, *kib, mode, bw, bw, bw, run_name=f"suite{j}")
            layers = _layers_for(r, c, j, False)
            if j % 5 == 2:  # GEMM form (SCALE-Sim's -i gemm) on some configurations
                layers = [ScaleSimLayer.gemm(f"g{j}a", 3 * r + 1, 2 * c - 1, 2 * r + 3),
                          ScaleSimLayer.gemm(f"g{j}b", 7, c + 3, 4 * r)]
            cases.append(SuiteCase(f"{df}-{r}x{c}-{mode.lower()}-{kib[0]}k-bw{bw}", cfg, tuple(layers)))
            j += 1
    return cases


def _network_of(layers: tuple[ScaleSimLayer, ...]) -> Network:
    """The layers as a mapping Network (ceil-mode convs, depthwise, linear for GEMMs)."""
    out = []
    for la in layers:
        if la.gemm_mnk:
            m, n, k = la.gemm_mnk
            out.append(Layer(la.name, "linear", m, 1, k, n))
        elif la.depthwise and la.channels > 1:
            out.append(Layer(la.name, "depthwise", la.ifmap_h, la.ifmap_w, la.channels, la.channels * la.num_filters,
                             la.filter_h, la.filter_w, la.stride, la.stride, groups=la.channels, ceil_mode=True))
        else:
            out.append(Layer(la.name, "conv2d", la.ifmap_h, la.ifmap_w, la.channels, la.num_filters, la.filter_h,
                             la.filter_w, la.stride, la.stride, ceil_mode=True))
    return Network.chain("suite", out)


def _hw_of(cfg: ScaleSimConfig) -> tuple[HardwareConfig, MemoryConfig]:
    bw = cfg.ifmap_dram_bw_words
    if not cfg.ifmap_dram_bw_words == cfg.filter_dram_bw_words == cfg.ofmap_dram_bw_words:
        raise ValueError(f"{cfg.run_name}: the engine's pods run all interfaces at one rate")
    hw = HardwareConfig(name=cfg.run_name, pods=1, rows=cfg.rows, cols=cfg.cols, dataflow=cfg.dataflow,
                        ifmap_sram_bytes=cfg.ifmap_sram_kib * 1024, filter_sram_bytes=cfg.filter_sram_kib * 1024,
                        ofmap_sram_bytes=cfg.ofmap_sram_kib * 1024, dram_bytes_per_cycle=float(bw), clock_mhz=1000.0)
    return hw, MemoryConfig(bandwidth_mode=cfg.bandwidth_mode.lower())


def run_case(case: SuiteCase, timeout_s: float | None = None) -> list[dict]:
    """One suite case: SCALE-Sim once, the engine per layer; one result row per report row."""
    net = _network_of(case.layers)
    hw, memory = _hw_of(case.config)
    t0 = time.perf_counter()
    run = simulate_network(net, hw, timing="scalesim", memory=memory)
    eng_s = time.perf_counter() - t0
    ss = run_scalesim(list(case.layers), case.config, timeout_s=timeout_s)
    it = iter(ss.results)
    cfg = case.config
    rows = []
    for li, la in enumerate(case.layers):
        engine_runs = run.pods[li][0].runs
        for g, name in enumerate(la.report_names()):
            ref = next(it)
            res = engine_runs[g]
            diff = ref.differences(res)
            rows.append({
                "case": case.case_id, "dataflow": cfg.dataflow, "rows": cfg.rows, "cols": cfg.cols,
                "ifmap_sram_kib": cfg.ifmap_sram_kib, "filter_sram_kib": cfg.filter_sram_kib,
                "ofmap_sram_kib": cfg.ofmap_sram_kib, "mode": cfg.bandwidth_mode, "bw_words": cfg.ifmap_dram_bw_words,
                "layer": name, "kind": "gemm" if la.gemm_mnk else ("depthwise" if la.depthwise else "conv"),
                "stride": la.stride, "filter": f"{la.filter_h}x{la.filter_w}",
                "engine_total_cycles": res.total_cycles, "scalesim_total_cycles": ref.compute.total_cycles,
                "engine_stall_cycles": res.stall_cycles, "scalesim_stall_cycles": ref.compute.stall_cycles,
                "engine_dram_reads": res.ifmap_dram_reads + res.filter_dram_reads,
                "scalesim_dram_reads": ref.access.ifmap_dram_reads + ref.access.filter_dram_reads,
                "fields_compared": len(ref.fields()), "fields_differing": len(diff),
                "differences": {k: list(v) for k, v in diff.items()},
                "max_rel_diff": max((rel_diff(v_e, v_s) for v_s, v_e in diff.values()), default=0.0),
                "equal": not diff, "case_engine_s": eng_s, "case_scalesim_s": ss.wall_s})
    return rows


def run_suite(name: str, *, progress: Callable[[int, int, str], None] | None = None,
              timeout_s: float | None = None) -> dict:
    """Run the suite; returns {"suite", "rows", "summary"} (rows: one per SCALE-Sim report row)."""
    cases = suite_cases(name)
    rows: list[dict] = []
    t0 = time.perf_counter()
    for i, case in enumerate(cases):
        rows.extend(run_case(case, timeout_s))
        if progress is not None:
            progress(i + 1, len(cases), case.case_id)
    wall = time.perf_counter() - t0
    per_case = {}
    for r in rows:
        per_case[r["case"]] = (r["case_engine_s"], r["case_scalesim_s"])
    eng_s = sum(v[0] for v in per_case.values())
    ss_s = sum(v[1] for v in per_case.values())
    summary = {
        "suite": name, "cases": len(cases), "report_rows": len(rows), "equal_rows": sum(r["equal"] for r in rows),
        "all_equal": all(r["equal"] for r in rows), "dataflows": sorted({r["dataflow"] for r in rows}),
        "arrays": sorted({f"{r['rows']}x{r['cols']}" for r in rows}, key=lambda s: tuple(map(int, s.split("x")))),
        "sram_kib": sorted({r["ifmap_sram_kib"] for r in rows} | {r["ofmap_sram_kib"] for r in rows}),
        "bw_words": sorted({r["bw_words"] for r in rows if r["mode"] == "USER"}),
        "modes": sorted({r["mode"] for r in rows}), "kinds": sorted({r["kind"] for r in rows}),
        "strides": sorted({r["stride"] for r in rows}), "engine_s": eng_s, "scalesim_s": ss_s, "wall_s": wall,
        "stall_rows": sum(r["scalesim_stall_cycles"] > 0 for r in rows)}
    return {"suite": name, "rows": rows, "summary": summary}


CSV_COLUMNS = ("case", "dataflow", "rows", "cols", "ifmap_sram_kib", "filter_sram_kib", "ofmap_sram_kib", "mode",
               "bw_words", "layer", "kind", "stride", "filter", "engine_total_cycles", "scalesim_total_cycles",
               "engine_stall_cycles", "scalesim_stall_cycles", "engine_dram_reads", "scalesim_dram_reads",
               "fields_compared", "fields_differing", "max_rel_diff", "equal")


def suite_csv(result: dict) -> str:
    """The suite's result table as CSV text (one row per SCALE-Sim report row)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in result["rows"]:
        w.writerow(r)
    return buf.getvalue()


def suite_json(result: dict, machine: dict | None = None) -> str:
    """The suite's result as JSON text (summary first)."""
    doc = {"schema": "cosim.validation-suite", "version": 1, "summary": result["summary"]}
    if machine:
        doc["machine"] = machine
    doc["rows"] = result["rows"]
    return json.dumps(doc, indent=1) + "\n"


def machine_info() -> dict:
    """Date, Python, platform, CPU and the simulators' versions (for the suite's result file)."""
    import datetime as dt
    import os
    import platform
    import sys
    from importlib import metadata

    versions = {}
    for pkg in ("cosim", "numpy", "numba", "scalesim"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "python": sys.version.split()[0], "platform": platform.platform(), "cpu_count": os.cpu_count(),
            "versions": versions}


def write_suite(result: dict, stem: str | Path, machine: dict | None = None) -> tuple[Path, Path]:
    """Write STEM.json and STEM.csv atomically; returns both paths."""
    from traces.atomic import atomic_write

    stem = Path(stem)
    stem = stem.with_suffix("") if stem.suffix in (".json", ".csv") else stem
    js, cs = stem.with_name(stem.name + ".json"), stem.with_name(stem.name + ".csv")
    atomic_write(cs, suite_csv(result).encode("utf-8"))
    atomic_write(js, suite_json(result, machine).encode("utf-8"))
    return js, cs
