"""Bridge to SCALE-Sim 3.0.0: write its config and topology files, run it, parse its reports.

SCALE-Sim's rules that the writers enforce (scalesim/topology_utils.py, scale_config.py):

* topology rows end with a trailing comma (SCALE-Sim drops the last field of every row);
* no padding field: pad the IFMAP yourself (`ScaleSimLayer.from_conv` does: H = s*(E-1) + Fh);
* one stride for both axes; output size ceil((H - Fh + s)/s);
* a depthwise layer is marked only by ``DP`` in its name, and SCALE-Sim then runs it as
  `channels` one-channel layers (one report row each, named ``<name>Channel_<i>``); any other
  layer must not contain ``DP`` in its name;
* GEMM form: ``Layer, M, N, K,`` (run with ``-i gemm``), which SCALE-Sim turns into the conv
  (H, W, Fh, Fw, C, N, s) = (M, K, 1, K, 1, N, 1).

In USER mode the ifmap and filter DRAM rates are the ``[layout] IfmapSRAMBankBandwidth`` /
``FilterSRAMBankBandwidth`` keys (single_layer_sim.py passes config.ifmap_sram_bank_bandwidth
and filter_sram_bank_bandwidth to the read buffers) and the ofmap drain rate is the first value
of ``[architecture_presets] Bandwidth``; in CALC mode SCALE-Sim uses 10 words/cycle for the
reads and ArrayWidth words/cycle for the drain. The bank counts are written as 1 (SCALE-Sim
asserts that the bank count divides the bandwidth). SCALE-Sim's word size is 1 byte.

SCALE-Sim runs in a subprocess (`python -c`, driving `scalesim.scale_sim.scalesim` with trace
saving off, so no traces are written) in a temporary directory that is removed afterwards
unless `keep_dir` is given. `scalesim.get_total_cycles()` is broken in 3.0.0 (it subscripts a
method), so we never call it and read the CSV reports instead.
"""

from __future__ import annotations

import csv
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from .engine_core import ConvShape, PodSpec

REPORT_FILES = ("COMPUTE_REPORT.csv", "BANDWIDTH_REPORT.csv", "DETAILED_ACCESS_REPORT.csv")


class ScaleSimError(RuntimeError):
    """SCALE-Sim could not be run, or its output could not be read (names the file/field)."""


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ScaleSimLayer:
    """One topology row: a conv as SCALE-Sim sees it (or a GEMM when `gemm_mnk` is set)."""

    name: str
    ifmap_h: int
    ifmap_w: int
    filter_h: int
    filter_w: int
    channels: int
    num_filters: int
    stride: int = 1
    depthwise: bool = False
    gemm_mnk: tuple[int, int, int] | None = None

    def __post_init__(self):
        if not self.name or any(ch in self.name for ch in ",\n\r"):
            raise ScaleSimError(f"layer name {self.name!r}: must be non-empty, without commas "
                                "or newlines")
        for f in ("ifmap_h", "ifmap_w", "filter_h", "filter_w", "channels", "num_filters",
                  "stride"):
            v = getattr(self, f)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise ScaleSimError(f"layer {self.name!r}: {f} = {v!r}, expected a positive int")
            object.__setattr__(self, f, int(v))
        if self.filter_h > self.ifmap_h or self.filter_w > self.ifmap_w:
            raise ScaleSimError(f"layer {self.name!r}: filter {self.filter_h}x{self.filter_w} is "
                                f"larger than the ifmap {self.ifmap_h}x{self.ifmap_w}")
        if self.depthwise and "DP" not in self.name:
            raise ScaleSimError(f"layer {self.name!r}: depthwise layers need 'DP' in the name "
                                "(SCALE-Sim's only depthwise marker)")
        if not self.depthwise and "DP" in self.name:
            raise ScaleSimError(f"layer {self.name!r}: 'DP' in a name makes SCALE-Sim treat the "
                                "layer as depthwise; rename it or set depthwise=True")

    @classmethod
    def gemm(cls, name: str, m: int, n: int, k: int) -> "ScaleSimLayer":
        """A GEMM (M x K) @ (K x N)."""
        return cls(name, m, k, 1, k, 1, n, 1, gemm_mnk=(m, n, k))

    @classmethod
    def from_conv(cls, name: str, in_h: int, in_w: int, filter_h: int, filter_w: int,
                  channels: int, num_filters: int, stride: int = 1, padding: int = 0,
                  depthwise: bool = False) -> "ScaleSimLayer":
        """A padded torch-style conv, with the IFMAP written as H = s*(E-1) + Fh so that
        SCALE-Sim's ceil((H - Fh + s)/s) equals torch's floor((in + 2p - F)/s) + 1."""
        eh = (in_h + 2 * padding - filter_h) // stride + 1
        ew = (in_w + 2 * padding - filter_w) // stride + 1
        if eh < 1 or ew < 1:
            raise ScaleSimError(f"layer {name!r}: empty output ({eh}x{ew})")
        return cls(name, stride * (eh - 1) + filter_h, stride * (ew - 1) + filter_w, filter_h,
                   filter_w, channels, num_filters, stride, depthwise=depthwise)

    def shapes(self) -> list[ConvShape]:
        """The ConvShape of each report row SCALE-Sim produces for this layer."""
        ch = 1 if self.depthwise else self.channels
        one = ConvShape(self.ifmap_h, self.ifmap_w, self.filter_h, self.filter_w, ch,
                        self.num_filters, self.stride)
        return [one] * (self.channels if self.depthwise else 1)

    def report_names(self) -> list[str]:
        """Names of the report rows, as SCALE-Sim names them."""
        if self.depthwise:
            return [f"{self.name}Channel_{i}" for i in range(self.channels)]
        return [self.name]


@dataclass(frozen=True)
class ScaleSimConfig:
    """A SCALE-Sim run configuration (SRAM sizes in KiB, as its config file wants them)."""

    rows: int
    cols: int
    dataflow: str
    ifmap_sram_kib: int
    filter_sram_kib: int
    ofmap_sram_kib: int
    bandwidth_mode: str = "CALC"
    ifmap_dram_bw_words: int = 10
    filter_dram_bw_words: int = 10
    ofmap_dram_bw_words: int = 10
    run_name: str = "cosim_run"

    def __post_init__(self):
        if self.dataflow not in ("os", "ws", "is"):
            raise ScaleSimError(f"ScaleSimConfig.dataflow = {self.dataflow!r}: expected os, ws "
                                "or is")
        if self.bandwidth_mode not in ("CALC", "USER"):
            raise ScaleSimError(f"ScaleSimConfig.bandwidth_mode = {self.bandwidth_mode!r}: "
                                "expected CALC or USER")
        for f in ("rows", "cols", "ifmap_sram_kib", "filter_sram_kib", "ofmap_sram_kib",
                  "ifmap_dram_bw_words", "filter_dram_bw_words", "ofmap_dram_bw_words"):
            v = getattr(self, f)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise ScaleSimError(f"ScaleSimConfig.{f} = {v!r}: expected a positive integer")
            object.__setattr__(self, f, int(v))
        if not self.run_name.replace("_", "").isalnum():
            raise ScaleSimError(f"ScaleSimConfig.run_name = {self.run_name!r}: letters, digits "
                                "and _ only")

    def pod_spec(self, memory_model: str = "scalesim-3.0.0") -> PodSpec:
        """The engine's PodSpec for this configuration (word size 1, as in SCALE-Sim)."""
        return PodSpec.from_kib(
            self.dataflow, self.rows, self.cols, self.ifmap_sram_kib, self.filter_sram_kib,
            self.ofmap_sram_kib, bandwidth_mode=self.bandwidth_mode.lower(),
            ifmap_dram_bw_words=self.ifmap_dram_bw_words,
            filter_dram_bw_words=self.filter_dram_bw_words,
            ofmap_dram_bw_words=self.ofmap_dram_bw_words, memory_model=memory_model)


def config_text(cfg: ScaleSimConfig) -> str:
    """The .cfg file SCALE-Sim 3.0.0 reads for `cfg` (every key its parser requires)."""
    return f"""[general]
run_name = {cfg.run_name}

[architecture_presets]
ArrayHeight = {cfg.rows}
ArrayWidth = {cfg.cols}
IfmapSramSzkB = {cfg.ifmap_sram_kib}
FilterSramSzkB = {cfg.filter_sram_kib}
OfmapSramSzkB = {cfg.ofmap_sram_kib}
IfmapOffset = 0
FilterOffset = 10000000
OfmapOffset = 20000000
Bandwidth = {cfg.ofmap_dram_bw_words}
Dataflow = {cfg.dataflow}
ReadRequestBuffer = 32
WriteRequestBuffer = 32

[layout]
IfmapCustomLayout = False
IfmapSRAMBankBandwidth = {cfg.ifmap_dram_bw_words}
IfmapSRAMBankNum = 1
IfmapSRAMBankPort = 2
FilterCustomLayout = False
FilterSRAMBankBandwidth = {cfg.filter_dram_bw_words}
FilterSRAMBankNum = 1
FilterSRAMBankPort = 2

[sparsity]
SparsitySupport = false
SparseRep = ellpack_block
OptimizedMapping = false
BlockSize = 8
RandomNumberGeneratorSeed = 40

[run_presets]
InterfaceBandwidth = {cfg.bandwidth_mode}
UseRamulatorTrace = False
"""


def topology_text(layers: list[ScaleSimLayer], form: str = "auto") -> tuple[str, str]:
    """(topology CSV text, form) for `layers`; form is 'conv', 'gemm' or 'auto'
    (gemm when every layer is a GEMM)."""
    if not layers:
        raise ScaleSimError("topology: no layers")
    names = [la.name for la in layers]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ScaleSimError(f"topology: duplicate layer names {sorted(dup)}")
    if form == "auto":
        form = "gemm" if all(la.gemm_mnk for la in layers) else "conv"
    if form == "gemm":
        bad = [la.name for la in layers if not la.gemm_mnk]
        if bad:
            raise ScaleSimError(f"topology: GEMM form but layers {bad} are convolutions")
        rows = ["Layer, M, N, K,"]
        rows += [f"{la.name}, {m}, {n}, {k}," for la in layers for (m, n, k) in [la.gemm_mnk]]
    elif form == "conv":
        rows = ["Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, "
                "Num Filter, Strides,"]
        rows += [f"{la.name}, {la.ifmap_h}, {la.ifmap_w}, {la.filter_h}, {la.filter_w}, "
                 f"{la.channels}, {la.num_filters}, {la.stride}," for la in layers]
    else:
        raise ScaleSimError(f"topology form = {form!r}: expected conv, gemm or auto")
    return "\n".join(rows) + "\n", form


# ---------------------------------------------------------------------------------------------
# Report records
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ComputeReportRow:
    """One row of COMPUTE_REPORT.csv."""

    layer_id: int
    total_cycles_incl_prefetch: int
    total_cycles: int
    stall_cycles: int
    overall_util_pct: float
    mapping_efficiency_pct: float
    compute_util_pct: float


@dataclass(frozen=True)
class BandwidthReportRow:
    """One row of BANDWIDTH_REPORT.csv (words/cycle)."""

    layer_id: int
    avg_ifmap_sram_bw: float
    avg_filter_sram_bw: float
    avg_ofmap_sram_bw: float
    avg_ifmap_dram_bw: float
    avg_filter_dram_bw: float
    avg_ofmap_dram_bw: float


@dataclass(frozen=True)
class DetailedAccessRow:
    """One row of DETAILED_ACCESS_REPORT.csv (cycles and word counts)."""

    layer_id: int
    ifmap_sram_start_cycle: int
    ifmap_sram_stop_cycle: int
    ifmap_sram_reads: int
    filter_sram_start_cycle: int
    filter_sram_stop_cycle: int
    filter_sram_reads: int
    ofmap_sram_start_cycle: int
    ofmap_sram_stop_cycle: int
    ofmap_sram_writes: int
    ifmap_dram_start_cycle: int
    ifmap_dram_stop_cycle: int
    ifmap_dram_reads: int
    filter_dram_start_cycle: int
    filter_dram_stop_cycle: int
    filter_dram_reads: int
    ofmap_dram_start_cycle: int
    ofmap_dram_stop_cycle: int
    ofmap_dram_writes: int


@dataclass(frozen=True)
class ScaleSimLayerResult:
    """Everything SCALE-Sim reported for one report row (a layer, or one DP channel)."""

    name: str
    compute: ComputeReportRow
    bandwidth: BandwidthReportRow
    access: DetailedAccessRow

    def fields(self) -> dict:
        """The comparable numbers, named as in `cosim.engine_core.EngineResult`."""
        out = {}
        for rec in (self.compute, self.access, self.bandwidth):
            for f in fields(rec):
                if f.name != "layer_id":
                    out[f.name] = getattr(rec, f.name)
        return out

    def differences(self, result) -> dict[str, tuple]:
        """{field: (SCALE-Sim's value, result's value)} for every field that is not equal;
        `result` is anything with the same attribute names (an `EngineResult`)."""
        return {k: (v, getattr(result, k)) for k, v in self.fields().items()
                if getattr(result, k) != v}


@dataclass(frozen=True)
class ScaleSimRun:
    """Results of one SCALE-Sim run, one entry per report row, and its wall time."""

    config: ScaleSimConfig
    results: list[ScaleSimLayerResult]
    wall_s: float
    run_dir: Path | None = None


def _read_rows(path: Path, header_prefix: str, ncols: int) -> list[list[str]]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ScaleSimError(f"{path}: report file missing (SCALE-Sim did not finish)") from None
    rows = list(csv.reader(text.splitlines()))
    if not rows or not rows[0] or rows[0][0].strip() != header_prefix:
        raise ScaleSimError(f"{path}: unexpected header {rows[0] if rows else None!r}")
    out = []
    for lineno, row in enumerate(rows[1:], start=2):
        if not row or all(not x.strip() for x in row):
            continue
        if row[-1].strip() == "":
            row = row[:-1]  # trailing comma
        if len(row) != ncols:
            raise ScaleSimError(f"{path}:{lineno}: expected {ncols} fields, got {len(row)}")
        out.append(row)
    return out


def _parse_record(cls, path: Path, row: list[str], lineno_hint: int):
    vals = []
    for f, raw in zip(fields(cls), row):
        raw = raw.strip()
        try:
            if f.type in ("int", int):
                x = float(raw)
                if not math.isfinite(x) or x != int(x):
                    raise ValueError
                vals.append(int(x))
            else:
                vals.append(float(raw))
        except ValueError:
            raise ScaleSimError(f"{path}: row {lineno_hint}, field {f.name!r} = {raw!r} is not "
                                f"a valid {'integer' if f.type in ('int', int) else 'number'}"
                                ) from None
    return cls(*vals)


def parse_compute_report(path: Path) -> list[ComputeReportRow]:
    """Parse COMPUTE_REPORT.csv."""
    path = Path(path)
    rows = _read_rows(path, "LayerID", len(fields(ComputeReportRow)))
    return [_parse_record(ComputeReportRow, path, r, i) for i, r in enumerate(rows)]


def parse_bandwidth_report(path: Path) -> list[BandwidthReportRow]:
    """Parse BANDWIDTH_REPORT.csv (without sparsity columns)."""
    path = Path(path)
    rows = _read_rows(path, "LayerID", len(fields(BandwidthReportRow)))
    return [_parse_record(BandwidthReportRow, path, r, i) for i, r in enumerate(rows)]


def parse_detailed_access_report(path: Path) -> list[DetailedAccessRow]:
    """Parse DETAILED_ACCESS_REPORT.csv."""
    path = Path(path)
    rows = _read_rows(path, "LayerID", len(fields(DetailedAccessRow)))
    return [_parse_record(DetailedAccessRow, path, r, i) for i, r in enumerate(rows)]


def parse_reports(report_dir: Path, names: list[str] | None = None) -> list[ScaleSimLayerResult]:
    """Parse the three reports of one run directory into per-row results."""
    report_dir = Path(report_dir)
    comp = parse_compute_report(report_dir / "COMPUTE_REPORT.csv")
    bw = parse_bandwidth_report(report_dir / "BANDWIDTH_REPORT.csv")
    acc = parse_detailed_access_report(report_dir / "DETAILED_ACCESS_REPORT.csv")
    if not (len(comp) == len(bw) == len(acc)):
        raise ScaleSimError(f"{report_dir}: reports disagree on the number of layers "
                            f"({len(comp)}, {len(bw)}, {len(acc)})")
    if names is not None and len(names) != len(comp):
        raise ScaleSimError(f"{report_dir}: expected {len(names)} report rows, found {len(comp)}")
    out = []
    for i, (c, b, a) in enumerate(zip(comp, bw, acc)):
        if not (c.layer_id == b.layer_id == a.layer_id == i):
            raise ScaleSimError(f"{report_dir}: row {i} has LayerID {c.layer_id}/{b.layer_id}/"
                                f"{a.layer_id}, expected {i}")
        out.append(ScaleSimLayerResult(names[i] if names else str(i), c, b, a))
    return out


# ---------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------
_DRIVER = """
import sys
from scalesim.scale_sim import scalesim
cfg, topo, layout, out, gemm = sys.argv[1:6]
s = scalesim(save_disk_space=True, verbose=False, config=cfg, topology=topo, layout=layout,
             input_type_gemm=(gemm == "1"))
s.run_scale(top_path=out)
"""


def scalesim_available(python: str | None = None) -> bool:
    """True when `python` (default: this interpreter) can import scalesim."""
    py = python or sys.executable
    r = subprocess.run([py, "-c", "import scalesim.scale_sim"], capture_output=True)
    return r.returncode == 0


def run_scalesim(layers: list[ScaleSimLayer], config: ScaleSimConfig, *, form: str = "auto",
                 keep_dir: Path | None = None, timeout_s: float | None = None,
                 python: str | None = None) -> ScaleSimRun:
    """Run SCALE-Sim 3.0.0 on `layers` with `config` in a subprocess and parse its reports.

    Works in a temporary directory (removed afterwards); with `keep_dir` the config, topology
    and reports are copied there (the directory must not exist yet).
    """
    text, form = topology_text(layers, form)
    names = [n for la in layers for n in la.report_names()]
    py = python or sys.executable
    if keep_dir is not None and Path(keep_dir).exists():
        raise ScaleSimError(f"keep_dir {keep_dir}: already exists; not overwriting it")
    tmp = Path(tempfile.mkdtemp(prefix="cosim-scalesim-"))
    try:
        (tmp / "scale.cfg").write_text(config_text(config))
        (tmp / "topology.csv").write_text(text)
        (tmp / "layout.csv").write_text("Layer name,\n")  # parsed always, unused without layouts
        env = dict(os.environ)
        env.setdefault("OMP_NUM_THREADS", "1")
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(
                [py, "-c", _DRIVER, "scale.cfg", "topology.csv", "layout.csv", "out",
                 "1" if form == "gemm" else "0"],
                cwd=tmp, capture_output=True, text=True, timeout=timeout_s, env=env)
        except subprocess.TimeoutExpired:
            raise ScaleSimError(f"scalesim: timed out after {timeout_s} s") from None
        wall = time.perf_counter() - t0
        report_dir = tmp / "out" / config.run_name
        if proc.returncode != 0 and not all((report_dir / f).exists() for f in REPORT_FILES):
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
            raise ScaleSimError(f"scalesim exited with {proc.returncode}:\n{tail}")
        results = parse_reports(report_dir, names)
        kept = None
        if keep_dir is not None:  # copy under a temporary name, then rename (atomic)
            kept = Path(keep_dir)
            partial = kept.with_name(f".{kept.name}.partial-{os.getpid()}")
            shutil.copytree(tmp, partial)
            partial.rename(kept)
        return ScaleSimRun(config, results, wall, kept)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
