"""The cycle-level engine: a network's mapping trace run pod by pod, cycle by cycle, in Numba.

Input is a mapping trace (`traces.mapping_trace`, schema v1): per layer and pod the tiler's
tile box (group, M, N and K ranges) and its ordered folds. Output is the report schema of the
analytical model (`cosim.report`, ``source="engine"``) plus, on request, per-pod utilization
windows and fold records for the trace writers in `traces`.

Per pod (`cosim.engine_core.PodEngine`): the pod's tile runs on an R x C array with SCALE-Sim
3.0.0's schedule and memory system (double-buffered ifmap / filter read buffers filled from
DRAM, an ofmap write buffer drained to DRAM, stalls when data is not there in time), with the
layer's real ifmap addresses, so a tile sees exactly the window overlaps and clipping of its
part of the layer. The engine checks that the trace's folds are the ones it runs (same order,
same index ranges) and refuses a trace that disagrees.

Memory modes (`MemoryConfig`): ``user`` is SCALE-Sim's finite-bandwidth mode (each pod's three
DRAM interfaces run at its bandwidth share, stalls happen); ``calc`` is SCALE-Sim's stall-free
mode (DRAM traffic counted, never waited for). Memory models: ``scalesim-3.0.0`` (as shipped,
including its doubled read stall) and ``ideal-fixed`` (the same without the double count).

Pods and shared bandwidth. All pods of a layer start together and run concurrently; the
layer ends when its last pod ends (plus any exposed K-split reduction). They share one DRAM
channel of `shared_words_per_cycle` (default: the hardware's ``dram_bytes_per_cycle`` / word
size) and each pod's interfaces can go at most `port_words_per_cycle` (default: the same
figure, so one pod alone gets the whole channel, as SCALE-Sim with ``Bandwidth`` = that rate).
Arbitration is **fair share with a round-robin remainder**, re-divided every
`quantum_cycles` (default 256) of lockstep stepping: the running pods (those with demand
lines left) get floor(shared / n) words/cycle each, capped at the port rate and at least 1,
and the shared % n words left over go one each to the next pods in a rotation that advances
every quantum. Following SCALE-Sim's convention a pod runs each of its ifmap, filter and
ofmap interfaces at its share. A pod that finishes mid-quantum gives its share back at the
next boundary (the others see the change at most one quantum late, never early). Contention
therefore appears as extra stall cycles that no closed form sees. With unlimited shared
bandwidth (``math.inf``), in CALC mode, or when the channel covers every running pod's port
rate, pods are independent and run to completion one after another (no quanta).

K splits: pods other than the root keep their partial sums on chip and send them over the
interconnect (``interconnect_bytes_per_cycle``), which serves one transfer at a time in the
order the pods finish (first come, first served); the layer ends when the root's array and the
last transfer are done, so only the transfer time not hidden behind slower pods is exposed
(`reduction_cycles`). The ofmap drains of non-root pods are interconnect traffic, not DRAM
writes, in the report.

Timing conventions (`mapping.gemm`): ``scalesim`` runs folds strictly serially and reports
SCALE-Sim's count (the last cycle's index, F*P - 1 per layer); a grouped layer runs as
`groups` separate SCALE-Sim layers (one engine each, fresh buffers, counts summed), as SCALE-Sim
runs a ``DP`` layer. ``pipelined`` starts fold f at f * max(T, R) (overlapping the next fold's
preload / fill with the current one's stream and drain; a line then carries the demands of
every fold in flight), runs a grouped layer's groups as one fold stream, keeps WS/IS partial
sums on chip when one column chunk of them fits in half the ofmap SRAM (as the analytical
model), and counts cycles. In both conventions the engine's stall-free cycles are the closed
form's exactly (`compute_cycles`): the engine's line generator, not a formula, produces them,
and a test holds the two together.

Engine against analytical model (the bound, tested in tests/cosim/test_engine.py):
``compute_cycles`` are equal; ``total_cycles >= compute_cycles`` always; in CALC mode the
engine never stalls, so total == compute (plus the exposed reduction, never more than the
analytical's serial reduction). In USER mode the two memory models differ by design (the
analytical: aggregate reuse-aware DRAM bytes over the shared channel; the engine: SCALE-Sim's
prefetch windows, which refetch on every window slide), so no closed form bounds the engine's
stalls from the analytical's; instead each pod's stalls are bounded by its own DRAM activity:
stall <= k * (ifmap prefetch time + filter prefetch time) + ofmap drain time, with k = 2 for
``scalesim-3.0.0`` (it adds each read stall twice) and 1 for ``ideal-fixed``, where prefetch time
is the pod's prefetches x (ceil(half-SRAM / B) + 1) cycles and drain time its drained rows.

Reports: cycles, accesses and DRAM traffic come from the engines (SCALE-Sim's counters,
summed over pods; words x word size for bytes); `stall_cycles` is the layer's total minus its
slowest pod's compute (as the analytical model's), `memory_cycles` the engine's DRAM bytes over
the shared channel (a lower bound, for comparison); pool and add layers do not use the array and
take the analytical closed form (vector unit, DRAM streaming); energy uses the analytical
model's energy table and formulas on the engine's counts; SRAM footprints are the analytical
model's double-buffered working sets of each pod's largest fold, capped at the SRAM.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from mapping.hardware import HardwareConfig
from mapping.layer import KIND_CODE, Layer
from mapping.network import Network

from .engine_core import (
    BANDWIDTH_MODES,
    MEMORY_MODELS,
    ConvShape,
    EngineError,
    EngineResult,
    PodEngine,
    PodSpec,
)
from .report import LayerReport, NetworkReport

__all__ = ["MemoryConfig", "EngineRun", "PodLayerResult", "simulate_network", "simulate_layer",
           "simulate_trace", "layer_shape", "pod_spec", "stall_bound", "replay_pod"]

SOURCE = "engine"


@dataclass(frozen=True)
class MemoryConfig:
    """The engine's DRAM model: SCALE-Sim mode and memory model, bandwidths, arbitration step.

    Bandwidths are words per cycle; None means the hardware's ``dram_bytes_per_cycle`` /
    ``word_bytes`` (floored, at least 1); `shared_words_per_cycle` may be ``math.inf``
    (unlimited: pods never contend)."""

    bandwidth_mode: str = "user"
    memory_model: str = "scalesim-3.0.0"
    port_words_per_cycle: int | None = None
    shared_words_per_cycle: float | None = None
    quantum_cycles: int = 256

    def __post_init__(self):
        if self.bandwidth_mode not in BANDWIDTH_MODES:
            raise EngineError(f"MemoryConfig.bandwidth_mode = {self.bandwidth_mode!r}: expected one of "
                              f"{', '.join(BANDWIDTH_MODES)}")
        if self.memory_model not in MEMORY_MODELS:
            raise EngineError(f"MemoryConfig.memory_model = {self.memory_model!r}: expected one of "
                              f"{', '.join(MEMORY_MODELS)}")
        p = self.port_words_per_cycle
        if p is not None and (isinstance(p, bool) or not isinstance(p, (int, np.integer)) or p < 1):
            raise EngineError(f"MemoryConfig.port_words_per_cycle = {p!r}: expected a positive integer")
        s = self.shared_words_per_cycle
        if s is not None and (isinstance(s, bool) or not isinstance(s, (int, float, np.number))
                              or not s >= 1):
            raise EngineError(f"MemoryConfig.shared_words_per_cycle = {s!r}: expected a number >= 1 "
                              "(math.inf for unlimited)")
        q = self.quantum_cycles
        if isinstance(q, bool) or not isinstance(q, (int, np.integer)) or q < 1:
            raise EngineError(f"MemoryConfig.quantum_cycles = {q!r}: expected a positive integer")

    def port(self, hw: HardwareConfig) -> int:
        """Per-pod, per-interface DRAM rate in words/cycle."""
        if self.port_words_per_cycle is not None:
            return int(self.port_words_per_cycle)
        return max(1, int(hw.dram_bytes_per_cycle // hw.word_bytes))

    def shared(self, hw: HardwareConfig) -> float:
        """The shared DRAM channel in words/cycle (math.inf: unlimited)."""
        if self.shared_words_per_cycle is not None:
            return float(self.shared_words_per_cycle)
        return float(max(1, int(hw.dram_bytes_per_cycle // hw.word_bytes)))


def pod_spec(hw: HardwareConfig, timing: str, memory: MemoryConfig, bw_words: int | None = None) -> PodSpec:
    """The PodSpec of one pod of `hw` (its SRAM share in words, interfaces at `bw_words`)."""
    wb = hw.word_bytes
    si, sf, so = (s // wb for s in hw.pod_sram_bytes())
    for name, v in (("ifmap", si), ("filter", sf), ("ofmap", so)):
        if v < 100:
            raise EngineError(f"hardware {hw.name!r}: each pod's {name} SRAM holds {v} words; the engine's "
                              "memory model (SCALE-Sim's 100 sets per buffer) needs at least 100")
    bw = memory.port(hw) if bw_words is None else int(bw_words)
    return PodSpec(dataflow=hw.dataflow, rows=hw.rows, cols=hw.cols, ifmap_sram_words=si, filter_sram_words=sf,
                   ofmap_sram_words=so, bandwidth_mode=memory.bandwidth_mode, ifmap_dram_bw_words=bw,
                   filter_dram_bw_words=bw, ofmap_dram_bw_words=bw, memory_model=memory.memory_model,
                   timing=timing, word_size_bytes=wb)


def layer_shape(rec: dict) -> ConvShape:
    """The per-group ConvShape of a mapping-trace layer record (the trace's address convention)."""
    name = rec.get("name", "?")
    if rec["stride_h"] != rec["stride_w"]:
        raise EngineError(f"layer {name!r}: strides {rec['stride_h']}x{rec['stride_w']} differ; the engine's "
                          "address model (SCALE-Sim's) has one stride for both axes")
    g = rec["gemm"]["groups"]
    s = rec["stride_h"]
    # the padded input cropped to what the outputs read; a ceil-mode layer (a SCALE-Sim
    # topology) reads past its padded input, and those window entries are clipped, as SCALE-Sim
    h = min(s * (rec["out_h"] - 1) + rec["kernel_h"], rec["in_h"] + 2 * rec["pad_h"])
    w = min(s * (rec["out_w"] - 1) + rec["kernel_w"], rec["in_w"] + 2 * rec["pad_w"])
    shape = ConvShape(h, w, rec["kernel_h"], rec["kernel_w"], rec["in_c"] // g, rec["out_c"] // g, s,
                      batch=rec.get("batch", 1))
    gm = rec["gemm"]
    if (shape.m, shape.n, shape.k) != (gm["m"], gm["n"], gm["k"]):
        raise EngineError(f"layer {name!r}: the trace's GEMM (m, n, k) = ({gm['m']}, {gm['n']}, {gm['k']}) "
                          f"disagrees with its shape, which gives ({shape.m}, {shape.n}, {shape.k})")
    return shape


def _engine_folds(df: str, R: int, C: int, rng) -> dict[str, np.ndarray]:
    """The folds a PodEngine runs for tile `rng` = (g0, g1, m0, m1, n0, n1, k0, k1), in order."""
    g0, g1, m0, m1, n0, n1, k0, k1 = (int(x) for x in rng)
    m, n, k = m1 - m0, n1 - n0, k1 - k0
    sr, sc = {"os": (m, n), "ws": (k, n), "is": (k, m)}[df]
    rf, cf = -(-sr // R), -(-sc // C)
    gi, fc, fr = (x.ravel() for x in np.meshgrid(np.arange(g0, g1), np.arange(cf), np.arange(rf), indexing="ij"))
    r = np.minimum(R, sr - fr * R)
    c = np.minimum(C, sc - fc * C)
    full = np.ones_like(r)
    if df == "os":
        box = (m0 + fr * R, m0 + fr * R + r, n0 + fc * C, n0 + fc * C + c, k0 * full, k1 * full)
    elif df == "ws":
        box = (m0 * full, m1 * full, n0 + fc * C, n0 + fc * C + c, k0 + fr * R, k0 + fr * R + r)
    else:
        box = (m0 + fc * C, m0 + fc * C + c, n0 * full, n1 * full, k0 + fr * R, k0 + fr * R + r)
    names = ("m_start", "m_stop", "n_start", "n_stop", "k_start", "k_stop")
    out = dict(zip(names, box))
    out["group"] = gi
    return out


def stall_bound(res: EngineResult, spec: PodSpec, ofmap_bw_words: int | None = None) -> int:
    """Upper bound on one engine run's stall cycles from its own DRAM activity (see module doc).

    Uses the run's prefetches (DRAM reads beyond the first fill, in prefetch units) at the
    spec's rates; `ofmap_bw_words` overrides the drain rate (CALC drains at C words/cycle)."""
    if spec.bandwidth_mode == "calc":
        return 0
    k = 2 if spec.memory_model == "scalesim-3.0.0" else 1
    total = 0
    for reads, size, bw in ((res.ifmap_dram_reads, spec.ifmap_sram_words, spec.ifmap_dram_bw_words),
                            (res.filter_dram_reads, spec.filter_sram_words, spec.filter_dram_bw_words)):
        half = size - math.ceil(size * 0.5)
        lp = -(-half // bw)
        n_pf = max(0, reads) // max(1, lp * bw)  # prefetches: lp*bw words each (the first fill is less)
        total += k * (n_pf + 1) * (lp + 1)
    ob = ofmap_bw_words or spec.ofmap_dram_bw_words
    total += -(-res.ofmap_dram_writes // ob) + 1
    return int(total)


@dataclass
class PodLayerResult:
    """One pod's figures for one layer (sums over its engine runs; words and cycles)."""

    pod: int
    start_cycle: int  # global cycle the pod started the layer
    end_cycle: int  # global cycle after its last occupied cycle
    total_cycles: int  # SCALE-Sim's count (scalesim: last-cycle index per group, summed)
    compute_cycles: int
    stall_cycles: int
    folds: int
    macs: int
    ifmap_sram_reads: int
    filter_sram_reads: int
    ofmap_sram_writes: int
    ifmap_dram_reads: int
    filter_dram_reads: int
    ofmap_dram_writes: int
    mapping_eff_sum: float  # sum over folds of a*b/(R*C)
    compute_util_sum: float  # sum over folds of SCALE-Sim's per-fold compute utilization
    stall_bound: int  # `stall_bound` summed over the runs
    runs: list[EngineResult] = field(default_factory=list, repr=False)
    replay: dict = field(default_factory=dict, repr=False)  # what `replay_pod` needs to rerun it


class _PodRun:
    """One pod's work on one layer: engine runs (one per group in scalesim) back to back."""

    def __init__(self, pod: int, shape: ConvShape, rng, hw: HardwareConfig, timing: str, memory: MemoryConfig,
                 start: int, window: int | None, record: bool, psum_on_chip: bool, bw: int, trace: bool = False,
                 keep_engines: bool = False):
        self.pod = pod
        self.shape = shape
        self.rng = tuple(int(x) for x in rng)
        g0, g1, m0, m1, n0, n1, k0, k1 = self.rng
        self.tile = (m0, m1, n0, n1, k0, k1)
        ng = g1 - g0
        self.segments = [ng] if timing == "pipelined" else [1] * ng
        self.hw, self.timing, self.memory = hw, timing, memory
        self.window, self.record, self.psum = window, record, psum_on_chip
        self.bw = bw
        self.first_bw = bw
        self.trace = trace
        self.keep_engines = keep_engines or trace
        self.schedule: list[tuple[int, int]] = []  # (global cycle, bw) of every rate change
        self.engines: list[tuple[int, PodEngine]] = []  # (t0, engine) kept in trace mode
        self.start = start
        self.t0 = start  # global cycle of the current engine's cycle 0
        self.seg = 0
        self.done = False
        self.results: list[EngineResult] = []
        self.specs: list[PodSpec] = []
        self.windows: list[tuple[int, np.ndarray]] = []
        self.folds: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.engine = self._new_engine()

    def _new_engine(self) -> PodEngine:
        spec = pod_spec(self.hw, self.timing, self.memory, self.bw)
        self.specs.append(spec)
        eng = PodEngine(self.shape, spec, window_cycles=self.window, tile=self.tile,
                        groups=self.segments[self.seg], window_offset=self.t0,
                        psum_on_chip=self.psum, record_folds=self.record, trace=self.trace)
        if self.keep_engines:
            self.engines.append((self.t0, eng))
        return eng

    def set_bandwidth(self, bw: int, t: int = 0) -> None:
        """Run all three interfaces at `bw` words/cycle from the next line on (`t`: the global
        cycle the pod was stepped to, kept so that a replay can repeat the change)."""
        if bw != self.bw and not self.done:
            self.bw = bw
            self.schedule.append((t, bw))
            self.engine.set_bandwidth(bw, bw, bw)

    def step(self, limit: int | None = None) -> bool:
        """Advance to global cycle `limit` (None: to the end); True when the pod is done."""
        while not self.done:
            local = None if limit is None else limit - self.t0
            if local is not None and local <= 0:
                return False
            if not self.engine.step(local):
                return False
            eng = self.engine
            self.results.append(eng.result())
            if self.window:
                self.windows.append(eng.window_counts())
            if self.record:
                self.folds.append(eng.fold_records())
            self.t0 += eng.timeline_cycles
            self.seg += 1
            if self.seg == len(self.segments):
                self.done = True
                self.engine = None
            else:
                self.engine = self._new_engine()
        return True

    @property
    def end(self) -> int:
        """Global cycle after the pod's last occupied cycle (valid once done)."""
        return self.t0

    def summary(self) -> PodLayerResult:
        """Sum the engine runs."""
        rs = self.results

        def tot(f):
            return int(sum(getattr(r, f) for r in rs))

        me = sum(r.mapping_efficiency_pct / 100 * r.folds for r in rs)
        cu = sum(r.compute_util_pct / 100 * r.folds for r in rs)
        ob = None if self.memory.bandwidth_mode == "user" else self.hw.cols
        bound = sum(stall_bound(r, s, ob) for r, s in zip(rs, self.specs))
        return PodLayerResult(
            pod=self.pod, start_cycle=self.start, end_cycle=self.t0, total_cycles=tot("total_cycles"),
            compute_cycles=tot("compute_cycles"), stall_cycles=tot("stall_cycles"), folds=tot("folds"),
            macs=tot("macs"), ifmap_sram_reads=tot("ifmap_sram_reads"), filter_sram_reads=tot("filter_sram_reads"),
            ofmap_sram_writes=tot("ofmap_sram_writes"), ifmap_dram_reads=tot("ifmap_dram_reads"),
            filter_dram_reads=tot("filter_dram_reads"), ofmap_dram_writes=tot("ofmap_dram_writes"),
            mapping_eff_sum=me, compute_util_sum=cu, stall_bound=int(bound), runs=rs,
            replay={"shape": self.shape, "rng": self.rng, "psum": self.psum, "first_bw": self.first_bw,
                    "start": self.start, "schedule": list(self.schedule)})


def replay_pod(res: PodLayerResult, hw: HardwareConfig, timing: str, memory: MemoryConfig,
               trace: bool = True) -> list[tuple[int, PodEngine]]:
    """Rerun one pod's layer exactly as the engine ran it (same rate changes at the same cycles),
    with the engines' line and drain logs on; returns [(global start cycle, engine)] per run."""
    rp = res.replay
    r = _PodRun(res.pod, rp["shape"], rp["rng"], hw, timing, memory, rp["start"], None, False, rp["psum"],
                rp["first_bw"], trace=trace, keep_engines=True)
    for t, bw in rp["schedule"]:
        r.step(t)
        r.set_bandwidth(bw, t)
    r.step(None)
    return r.engines


def _shares(n: int, total: int, port: int, rr: int) -> list[int]:
    """Fair shares of `total` words/cycle for n pods, remainder to pods rr, rr+1, ... (mod n)."""
    base, rem = divmod(total, n)
    return [max(1, min(port, base + (1 if (i - rr) % n < rem else 0))) for i in range(n)]


def _contended(n: int, memory: MemoryConfig, hw: HardwareConfig) -> bool:
    """Do n running pods compete for the channel (USER mode, finite and below n ports)?"""
    shared = memory.shared(hw)
    return memory.bandwidth_mode == "user" and not math.isinf(shared) and shared < memory.port(hw) * n


def _initial_shares(n: int, memory: MemoryConfig, hw: HardwareConfig) -> list[int]:
    """Each pod's rate for its first fill (before cycle 0 the pods already share the channel)."""
    if n == 0 or not _contended(n, memory, hw):
        return [memory.port(hw)] * n
    return _shares(n, int(memory.shared(hw)), memory.port(hw), 0)


def _arbitrate(runs: list[_PodRun], memory: MemoryConfig, hw: HardwareConfig) -> int:
    """Run the pods of one layer to the end under the shared-bandwidth policy; returns quanta used."""
    if not _contended(len(runs), memory, hw):
        for r in runs:
            r.step(None)
        return 0
    total = int(memory.shared(hw))
    port = memory.port(hw)
    q = memory.quantum_cycles
    t = min(r.t0 for r in runs)
    rr = 0
    quanta = 0
    active = [r for r in runs if not r.done]
    while active:
        for r, bw in zip(active, _shares(len(active), total, port, rr)):
            r.set_bandwidth(bw, t)
        rr += 1
        t += q
        for r in active:
            r.step(t)
        quanta += 1
        active = [r for r in active if not r.done]
    return quanta


@dataclass
class EngineRun:
    """An engine run: the report, per-pod results and (on request) utilization windows and folds.

    `utilization` holds int64 arrays (pods, windows) busy / stall / macs and the window size;
    `folds` per-fold arrays (layer, pod, seq, start, end, stall) in global cycles; `layer_spans`
    each layer's [start, end) on the timeline (layers run one after another)."""

    report: NetworkReport
    pods: list[list[PodLayerResult]]
    layer_spans: list[tuple[int, int]]
    timeline_cycles: int
    hardware: HardwareConfig
    memory: MemoryConfig
    utilization: dict | None = None
    folds: dict | None = None
    quanta: int = 0

    def memory_description(self) -> str:
        """One line naming the memory model and bandwidths of the run."""
        m, hw = self.memory, self.hardware
        shared = m.shared(hw)
        return (f"{m.bandwidth_mode} mode, {m.memory_model}; port {m.port(hw)} words/cycle per interface, "
                f"shared {'unlimited' if math.isinf(shared) else f'{shared:g}'} words/cycle, fair share every "
                f"{m.quantum_cycles} cycles")

    def utilization_trace(self):
        """The run's windows as a `traces.utilization.UtilizationTrace` (needs windows=N)."""
        from traces.utilization import UtilizationTrace

        if self.utilization is None:
            raise EngineError("this run was made without windows; pass windows=N")
        hw, r = self.hardware, self.report
        u = self.utilization
        meta = {"network": r.network, "hardware": r.hardware, "dataflow": r.dataflow, "timing": r.timing,
                "pods": hw.pods, "rows": hw.rows, "cols": hw.cols, "clock_mhz": float(hw.clock_mhz),
                "window_cycles": int(u["window_cycles"]), "total_cycles": int(self.timeline_cycles),
                "memory": self.memory_description(),
                "layers": [{"index": i, "name": lr.name, "start_cycle": int(a), "end_cycle": int(b)}
                           for i, (lr, (a, b)) in enumerate(zip(r.layers, self.layer_spans))]}
        arrays = {k: u[k] for k in ("busy", "stall", "idle", "macs", "window_lengths")}
        return UtilizationTrace(meta, arrays, created_by="cosim.engine")


def _grow_add(acc: np.ndarray, base: int, counts: np.ndarray) -> np.ndarray:
    need = base + len(counts)
    if need > acc.shape[0]:
        new = np.zeros((max(need, 2 * acc.shape[0]), acc.shape[1]), dtype=np.int64)
        new[: acc.shape[0]] = acc
        acc = new
    acc[base:need] += counts
    return acc


def simulate_trace(trace, *, memory: MemoryConfig | None = None, multipliers: Any = None,
                   windows: int | None = None, record_folds: bool = False,
                   progress: Callable[[int, int, str], None] | None = None,
                   network: Network | None = None, hardware: HardwareConfig | None = None) -> EngineRun:
    """Run a mapping trace (`traces.mapping_trace.MappingTrace`) through the engine.

    `windows` = N cycles per utilization window (None: no windows); `record_folds` keeps every
    fold's start / end / stalls (for fold slices in Chrome traces); `progress(i, n, name)` is
    called after each layer; `network` (optional) supplies the peak-activation footprint."""
    from .analytical import mac_energies

    memory = memory or MemoryConfig()
    meta = trace.meta
    hw = hardware or HardwareConfig.from_dict(meta["hardware"], source=f"{trace.source}: hardware")
    if hw.dataflow != meta["dataflow"]:
        hw = hw.with_(dataflow=meta["dataflow"])
    timing = meta["timing"]
    if windows is not None and (int(windows) != windows or windows < 1):
        raise EngineError(f"windows = {windows!r}: expected a positive integer (cycles per window)")
    R, C, P = hw.rows, hw.cols, hw.pods
    wb = hw.word_bytes
    names = [rec["name"] for rec in meta["layers"]]
    mac_pj, mult_names = mac_energies(names, hw, multipliers)
    e = hw.energy
    sram_cap = hw.pod_sram_bytes()
    sram_pj = tuple(e.sram_energy_pj_per_byte(s) for s in sram_cap)
    n_layers = len(meta["layers"])
    acc = [np.zeros((64, 3), dtype=np.int64) for _ in range(P)] if windows else None
    fold_rows: list[np.ndarray] = []
    t = 0
    spans: list[tuple[int, int]] = []
    layer_reports: list[LayerReport] = []
    pod_results: list[list[PodLayerResult]] = []
    quanta = 0
    A = trace.arrays
    for li, rec in enumerate(meta["layers"]):
        name = rec["name"]
        kind = rec["kind"]
        gm = rec["gemm"]
        pods_rec = rec.get("pods") or []
        vec_cycles = mem_cycles = red_cycles = 0
        res_pods: list[PodLayerResult] = []
        ic_bytes = 0
        if KIND_CODE[kind] >= KIND_CODE["pool"] or not pods_rec:
            # pool / add: the vector unit and DRAM streaming, as the analytical model
            rd, wr = int(rec.get("dram_read_bytes", 0)), int(rec.get("dram_write_bytes", 0))
            vec_cycles = -(-int(rec.get("vector_ops", 0)) // (C * P))
            mem_cycles = math.ceil((rd + wr) / hw.dram_bytes_per_cycle)
            total = max(vec_cycles, mem_cycles)
            span = total
            compute = 0
            in_e = rd // wb
            out_e = wr // wb
            acc_w = dict(ifmap_sram_reads=in_e, filter_sram_reads=0, ofmap_sram_writes=out_e,
                         ifmap_dram_bytes=rd, filter_dram_bytes=0, ofmap_dram_bytes=wr)
            folds = 0
            pods_used = 0
            me = cu = 0.0
            pod_cc = tuple(0 for _ in range(P))
            fp = (0, 0, 0)
            ofmap_sram_reads = 0
        else:
            shape = layer_shape(rec)
            runs: list[_PodRun] = []
            working = [q for q, pr in enumerate(pods_rec) if pr["folds"] > 0]
            first_bw = _initial_shares(len(working), memory, hw)
            for q, pr in enumerate(pods_rec):
                if pr["folds"] == 0:
                    continue
                rng = (*pr["group"], *pr["m"], *pr["n"], *pr["k"])
                fl = trace.folds(li, q)
                want = _engine_folds(hw.dataflow, R, C, rng)
                for key, arr in want.items():
                    if len(fl[key]) != len(arr) or (fl[key] != arr).any():
                        i = int(np.argmax(fl[key] != arr)) if len(fl[key]) == len(arr) else 0
                        raise EngineError(
                            f"{trace.source}: layer {name!r} pod {q}: fold {i} has {key} = "
                            f"{fl[key][i] if len(fl[key]) > i else '(missing)'}, the engine's fold order "
                            f"gives {arr[i] if len(arr) > i else '(none)'} ({len(fl[key])} folds in the "
                            f"trace, {len(arr)} in the engine)")
                m, n, k = rng[3] - rng[2], rng[5] - rng[4], rng[7] - rng[6]
                sr, sc, tt = {"os": (m, n, k), "ws": (k, n, m), "is": (k, m, n)}[hw.dataflow]
                psum = timing == "pipelined" and tt * min(sc, C) * hw.psum_bytes <= sram_cap[2] // 2
                runs.append(_PodRun(q, shape, rng, hw, timing, memory, t, windows, record_folds, psum,
                                    first_bw[len(runs)]))
            quanta += _arbitrate(runs, memory, hw)
            res_pods = [r.summary() for r in runs]
            ends = {r.pod: r.end for r in runs}
            max_end = max(ends.values())
            # K split: FIFO transfers over the interconnect as the source pods finish
            red = trace.reductions(li)
            ksrc = set(int(x) for x in red["src_pod"])
            if len(red["src_pod"]):
                order = sorted(range(len(red["src_pod"])), key=lambda j: ends.get(int(red["src_pod"][j]), t))
                tic = t
                for j in order:
                    tic = max(tic, ends.get(int(red["src_pod"][j]), t)) + math.ceil(
                        int(red["bytes"][j]) / hw.interconnect_bytes_per_cycle)
                    ic_bytes += int(red["bytes"][j])
                red_cycles = max(0, tic - max_end)
            span = max_end - t + red_cycles
            compute = max(p.compute_cycles for p in res_pods)
            total = max(p.total_cycles for p in res_pods) + red_cycles
            folds = sum(p.folds for p in res_pods)
            pods_used = len(res_pods)
            me = sum(p.mapping_eff_sum for p in res_pods) / folds
            if timing == "scalesim":
                cu = sum(p.compute_util_sum for p in res_pods) / folds
            else:
                cu = sum(p.macs for p in res_pods) / (compute * pods_used * R * C) if compute else 0.0
            pod_cc_l = [0] * P
            for p in res_pods:
                pod_cc_l[p.pod] = p.compute_cycles
            pod_cc = tuple(pod_cc_l)
            ofd = sum(p.ofmap_dram_writes for p in res_pods if p.pod not in ksrc)
            acc_w = dict(ifmap_sram_reads=sum(p.ifmap_sram_reads for p in res_pods),
                         filter_sram_reads=sum(p.filter_sram_reads for p in res_pods),
                         ofmap_sram_writes=sum(p.ofmap_sram_writes for p in res_pods),
                         ifmap_dram_bytes=sum(p.ifmap_dram_reads for p in res_pods) * wb,
                         filter_dram_bytes=sum(p.filter_dram_reads for p in res_pods) * wb,
                         ofmap_dram_bytes=ofd * wb)
            ofmap_sram_reads = 0
            if timing == "pipelined" and hw.dataflow != "os":  # read-modify-write of partial sums
                for r in runs:
                    m0, m1, n0, n1, k0, k1 = r.tile
                    mm, nn, kk = m1 - m0, n1 - n0, k1 - k0
                    sr, sc, tt = {"ws": (kk, nn, mm), "is": (kk, mm, nn)}[hw.dataflow]
                    ofmap_sram_reads += sum(r.segments) * tt * sc * (-(-sr // R) - 1)
            # footprint: double-buffered slices of each pod's largest fold, capped at the SRAM
            sl = slice(pods_rec[0]["fold_start"], pods_rec[-1]["fold_start"] + pods_rec[-1]["folds"])
            fp = tuple(int(min(cap, 2 * int(A[f"fold_{op}_tile_bytes"][sl].max()) if sl.stop > sl.start else 0))
                       for op, cap in zip(("ifmap", "filter", "ofmap"), sram_cap))
            for r in runs:
                if windows:
                    for base, counts in r.windows:
                        acc[r.pod] = _grow_add(acc[r.pod], base, counts)
                if record_folds:
                    seq0 = 0
                    for st_, en_, sl_ in r.folds:
                        nf = len(st_)
                        fold_rows.append(np.stack([np.full(nf, li), np.full(nf, r.pod), seq0 + np.arange(nf),
                                                   st_, en_, sl_], axis=1))
                        seq0 += nf
            mem_cycles = math.ceil((acc_w["ifmap_dram_bytes"] + acc_w["filter_dram_bytes"]
                                    + acc_w["ofmap_dram_bytes"]) / hw.dram_bytes_per_cycle)
        busy = max(compute, vec_cycles)
        dram = acc_w["ifmap_dram_bytes"] + acc_w["filter_dram_bytes"] + acc_w["ofmap_dram_bytes"]
        latency = total / hw.clock_hz
        macs = int(rec.get("macs", 0))
        energy = {
            "mac_energy_pj": macs * float(mac_pj[li]),
            "accumulate_energy_pj": macs * e.accumulate_pj,
            "sram_energy_pj": ((acc_w["ifmap_sram_reads"] * wb + acc_w["ifmap_dram_bytes"]) * sram_pj[0]
                               + (acc_w["filter_sram_reads"] * wb + acc_w["filter_dram_bytes"]) * sram_pj[1]
                               + ((acc_w["ofmap_sram_writes"] + ofmap_sram_reads) * wb + acc_w["ofmap_dram_bytes"])
                               * sram_pj[2]),
            "dram_energy_pj": dram * e.dram_pj_per_byte,
            "interconnect_energy_pj": ic_bytes * e.interconnect_pj_per_byte,
            "static_energy_pj": hw.leakage_mw() * latency * 1e9,
        }
        energy["total_energy_pj"] = sum(energy.values())
        layer_reports.append(LayerReport(
            index=li, name=name, kind=kind, split=rec.get("split", "none"), pods_used=pods_used,
            dataflow=hw.dataflow, timing=timing, multiplier=mult_names[li] if macs else "", macs=macs,
            params=int(rec.get("params", 0)), groups=gm["groups"], m=gm["m"], n=gm["n"], k=gm["k"], folds=folds,
            compute_cycles=compute, vector_cycles=vec_cycles, memory_cycles=mem_cycles,
            reduction_cycles=red_cycles, stall_cycles=total - busy, total_cycles=total, latency_s=latency,
            utilization=macs / (total * P * R * C) if total else 0.0, mapping_efficiency=me,
            compute_utilization=cu, ofmap_sram_reads=ofmap_sram_reads, psum_dram_read_bytes=0, dram_bytes=dram,
            interconnect_bytes=ic_bytes, ifmap_footprint_bytes=fp[0], filter_footprint_bytes=fp[1],
            ofmap_footprint_bytes=fp[2], sram_footprint_bytes=sum(fp), pod_compute_cycles=pod_cc,
            source=SOURCE, **acc_w, **energy))
        pod_results.append(res_pods)
        spans.append((t, t + span))
        t += span
        if progress is not None:
            progress(li + 1, n_layers, name)

    weight_bytes = sum(int(r.get("params", 0)) for r in meta["layers"]) * wb
    if network is not None:
        peak = network.peak_activation_elems()
    else:
        peak = _trace_network(meta).peak_activation_elems()
    report = NetworkReport(network=meta["network"], hardware=hw.name, dataflow=hw.dataflow, timing=timing,
                           layers=tuple(layer_reports), pes=P * R * C, weight_bytes=weight_bytes,
                           peak_activation_bytes=peak * wb, source=SOURCE)
    util = None
    if windows:
        n = int(windows)
        nw = max(1, -(-t // n))
        busy = np.zeros((P, nw), dtype=np.int64)
        stall = np.zeros((P, nw), dtype=np.int64)
        macs_w = np.zeros((P, nw), dtype=np.int64)
        for q in range(P):
            k = min(nw, acc[q].shape[0])
            busy[q, :k], stall[q, :k], macs_w[q, :k] = acc[q][:k, 0], acc[q][:k, 1], acc[q][:k, 2]
        lengths = np.full(nw, n, dtype=np.int64)
        lengths[-1] = t - (nw - 1) * n if t > 0 else 0
        util = {"window_cycles": n, "busy": busy, "stall": stall, "idle": lengths[None, :] - busy - stall,
                "macs": macs_w, "window_lengths": lengths}
    folds_out = None
    if record_folds:
        rows = np.concatenate(fold_rows) if fold_rows else np.zeros((0, 6), dtype=np.int64)
        folds_out = {k: rows[:, i].astype(np.int64) for i, k in
                     enumerate(("layer", "pod", "seq", "start", "end", "stall"))}
    return EngineRun(report=report, pods=pod_results, layer_spans=spans, timeline_cycles=t, hardware=hw,
                     memory=memory, utilization=util, folds=folds_out, quanta=quanta)


def _trace_network(meta: dict) -> Network:
    """The Network a trace's layer records describe (for the activation footprint)."""
    net = Network(meta["network"])
    for rec in meta["layers"]:
        net.add(Layer.from_dict(rec), rec.get("inputs", []))
    return net


def simulate_network(network: Network, hw: HardwareConfig, dataflow: str | None = None, timing: str = "scalesim",
                     memory_model: str = "scalesim-3.0.0", multipliers: Any = None, windows: int | None = None,
                     progress: Callable[[int, int, str], None] | None = None, *, bandwidth_mode: str = "user",
                     split: str = "auto", memory: MemoryConfig | None = None,
                     record_folds: bool = False) -> EngineRun:
    """Map `network` on `hw` with the tiler and run it through the cycle-level engine.

    `memory` overrides `memory_model` / `bandwidth_mode` (and sets bandwidths and the
    arbitration quantum); the run's `report` is a NetworkReport with source "engine"."""
    from .analytical import mapping_trace

    if dataflow is not None:
        hw = hw.with_(dataflow=dataflow)
    if memory is None:
        memory = MemoryConfig(bandwidth_mode=bandwidth_mode, memory_model=memory_model)
    trace = mapping_trace(network, hw, timing, split)
    return simulate_trace(trace, memory=memory, multipliers=multipliers, windows=windows,
                          record_folds=record_folds, progress=progress, network=network, hardware=hw)


def simulate_layer(layer: Layer, hw: HardwareConfig, dataflow: str | None = None, timing: str = "scalesim",
                   memory_model: str = "scalesim-3.0.0", **kw) -> EngineRun:
    """One layer on `hw` (all its pods): `simulate_network` on a one-layer network."""
    net = Network.chain(layer.name, [layer])
    return simulate_network(net, hw, dataflow, timing, memory_model, **kw)

