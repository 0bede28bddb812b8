"""The one report schema: a `LayerReport` per layer and a `NetworkReport` summary.

The analytical model fills it today and the cycle-level engine fills it next (`source` says
which). Units are in the field names: cycles are integers, bytes are bytes, SRAM accesses are
words (one word = `word_bytes`), energies are pJ, times are seconds. Export as records, a
pandas DataFrame, CSV or JSON (``{"schema": "cosim.report", "version": 1, ..., "layers": [...],
"total": {...}}``); `NetworkReport.from_json` reads the JSON back.

Per layer (`LayerReport`):

  identity     index, name, kind, split (pod split chosen), pods_used, dataflow, timing,
               multiplier (name of the layer's multiplier, "default" for the energy table's)
  work         macs, params, groups, m, n, k (per-group GEMM), folds (all pods)
  time         compute_cycles (slowest pod), vector_cycles (pool/add), memory_cycles
               (DRAM-bound time), reduction_cycles (K-split partial sums), stall_cycles
               (total minus busy), total_cycles, latency_s, pod_compute_cycles (per pod)
  efficiency   utilization (MACs / (total_cycles x pods x R x C)), mapping_efficiency (mean PE
               occupancy of the folds, SCALE-Sim's), compute_utilization (SCALE-Sim's per-fold
               mean in the scalesim convention; MACs / (compute_cycles x pods_used x R x C) in
               the pipelined one)
  accesses     ifmap_sram_reads, filter_sram_reads, ofmap_sram_writes, ofmap_sram_reads (words);
               ifmap_dram_bytes, filter_dram_bytes, ofmap_dram_bytes (writes),
               psum_dram_read_bytes, dram_bytes (all), interconnect_bytes
  footprint    ifmap/filter/ofmap_footprint_bytes and sram_footprint_bytes: the peak working
               set of one pod with double buffering, each operand capped at its SRAM
  energy       mac_energy_pj (MACs x the multiplier's energy: the MAC-only figure approximate-
               DNN papers quote), accumulate_energy_pj, sram_energy_pj, dram_energy_pj,
               interconnect_energy_pj, static_energy_pj, total_energy_pj (full system)

Network totals (`NetworkReport.total()`): sums of the per-layer work, cycles, latency, accesses
and energies (layers run one after another), the largest SRAM footprint, weight_bytes,
peak_activation_bytes, memory_footprint_bytes (weights + peak live activations) and the
overall utilization.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from traces.atomic import atomic_write_text

SCHEMA = "cosim.report"
VERSION = 1


@dataclass(frozen=True)
class LayerReport:
    """Costs of one layer on one machine (see the module docstring for every field)."""

    index: int
    name: str
    kind: str
    split: str
    pods_used: int
    dataflow: str
    timing: str
    multiplier: str
    macs: int
    params: int
    groups: int
    m: int
    n: int
    k: int
    folds: int
    compute_cycles: int
    vector_cycles: int
    memory_cycles: int
    reduction_cycles: int
    stall_cycles: int
    total_cycles: int
    latency_s: float
    utilization: float
    mapping_efficiency: float
    compute_utilization: float
    ifmap_sram_reads: int
    filter_sram_reads: int
    ofmap_sram_writes: int
    ofmap_sram_reads: int
    ifmap_dram_bytes: int
    filter_dram_bytes: int
    ofmap_dram_bytes: int
    psum_dram_read_bytes: int
    dram_bytes: int
    interconnect_bytes: int
    ifmap_footprint_bytes: int
    filter_footprint_bytes: int
    ofmap_footprint_bytes: int
    sram_footprint_bytes: int
    mac_energy_pj: float
    accumulate_energy_pj: float
    sram_energy_pj: float
    dram_energy_pj: float
    interconnect_energy_pj: float
    static_energy_pj: float
    total_energy_pj: float
    pod_compute_cycles: tuple[int, ...] = ()
    source: str = "analytical"

    def record(self) -> dict:
        """Flat JSON-ready dict (pod_compute_cycles as a list)."""
        d = asdict(self)
        d["pod_compute_cycles"] = list(self.pod_compute_cycles)
        return d


LAYER_FIELDS = tuple(f.name for f in fields(LayerReport))
_INT_FIELDS = {f.name for f in fields(LayerReport) if f.type in ("int", int)}
_SUM_FIELDS = ("macs", "params", "folds", "compute_cycles", "vector_cycles", "memory_cycles", "reduction_cycles",
               "stall_cycles", "total_cycles", "latency_s", "ifmap_sram_reads", "filter_sram_reads",
               "ofmap_sram_writes", "ofmap_sram_reads", "ifmap_dram_bytes", "filter_dram_bytes", "ofmap_dram_bytes",
               "psum_dram_read_bytes", "dram_bytes", "interconnect_bytes", "mac_energy_pj", "accumulate_energy_pj",
               "sram_energy_pj", "dram_energy_pj", "interconnect_energy_pj", "static_energy_pj", "total_energy_pj")


@dataclass(frozen=True)
class NetworkReport:
    """Per-layer reports plus what only the whole network has (memory footprint, machine)."""

    network: str
    hardware: str
    dataflow: str
    timing: str
    layers: tuple[LayerReport, ...]
    pes: int  # PEs on the machine (pods x rows x cols), for the overall utilization
    weight_bytes: int
    peak_activation_bytes: int
    source: str = "analytical"

    @property
    def memory_footprint_bytes(self) -> int:
        """Weights plus peak live activations."""
        return self.weight_bytes + self.peak_activation_bytes

    def total(self) -> dict:
        """The network's `total` record: sums, peaks and footprints."""
        t: dict = {"name": "total", "network": self.network, "hardware": self.hardware, "dataflow": self.dataflow,
                   "timing": self.timing, "source": self.source, "layers": len(self.layers)}
        for f in _SUM_FIELDS:
            vals = [getattr(r, f) for r in self.layers]
            t[f] = sum(vals) if vals else 0
        t["sram_footprint_bytes"] = max((r.sram_footprint_bytes for r in self.layers), default=0)
        cyc = t["total_cycles"]
        t["utilization"] = t["macs"] / (cyc * self.pes) if cyc else 0.0
        t["weight_bytes"] = self.weight_bytes
        t["peak_activation_bytes"] = self.peak_activation_bytes
        t["memory_footprint_bytes"] = self.memory_footprint_bytes
        return t

    # --- exports --------------------------------------------------------------------------
    def records(self) -> list[dict]:
        """One dict per layer."""
        return [r.record() for r in self.layers]

    def to_dataframe(self, include_total: bool = False):
        """Per-layer pandas DataFrame (optionally with the total as a last row)."""
        import pandas as pd

        df = pd.DataFrame.from_records(self.records(), columns=list(LAYER_FIELDS))
        if include_total:
            tot = {k: v for k, v in self.total().items() if k in LAYER_FIELDS}
            df = pd.concat([df, pd.DataFrame([tot])], ignore_index=True)
        return df

    def to_dict(self) -> dict:
        """The JSON document as a dict."""
        return {"schema": SCHEMA, "version": VERSION, "network": self.network, "hardware": self.hardware,
                "dataflow": self.dataflow, "timing": self.timing, "source": self.source, "pes": self.pes,
                "layers": self.records(), "total": self.total()}

    def to_json(self, path: str | Path | None = None) -> str:
        """JSON text; written atomically to `path` when given."""
        text = json.dumps(self.to_dict(), indent=1, allow_nan=False) + "\n"
        if path is not None:
            atomic_write_text(Path(path), text)
        return text

    def to_csv(self, path: str | Path | None = None, include_total: bool = True) -> str:
        """CSV text (per-layer rows, then the total); written atomically to `path` when given."""
        df = self.to_dataframe(include_total=include_total)
        df["pod_compute_cycles"] = df["pod_compute_cycles"].map(
            lambda v: ";".join(str(x) for x in v) if isinstance(v, (list, tuple)) else "")
        buf = io.StringIO()
        df.to_csv(buf, index=False)
        text = buf.getvalue()
        if path is not None:
            atomic_write_text(Path(path), text)
        return text

    @classmethod
    def from_dict(cls, d: dict) -> "NetworkReport":
        """Inverse of `to_dict`."""
        if d.get("schema") != SCHEMA or d.get("version") != VERSION:
            raise ValueError(f"report: schema {d.get('schema')!r} version {d.get('version')!r}: "
                             f"expected {SCHEMA!r} version {VERSION}")
        layers = []
        for i, rec in enumerate(d["layers"]):
            missing = [f for f in LAYER_FIELDS if f not in rec and f not in ("pod_compute_cycles", "source")]
            if missing:
                raise ValueError(f"report: layers[{i}] lacks {', '.join(missing)}")
            kw = {f: rec[f] for f in LAYER_FIELDS if f in rec}
            kw["pod_compute_cycles"] = tuple(kw.get("pod_compute_cycles", ()))
            layers.append(LayerReport(**kw))
        tot = d.get("total", {})
        return cls(network=d["network"], hardware=d["hardware"], dataflow=d["dataflow"], timing=d["timing"],
                   layers=tuple(layers), pes=d["pes"], weight_bytes=tot.get("weight_bytes", 0),
                   peak_activation_bytes=tot.get("peak_activation_bytes", 0), source=d.get("source", "analytical"))

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> "NetworkReport":
        """Read a report from JSON text or a JSON file."""
        s = str(text_or_path)
        text = Path(s).read_text(encoding="utf-8") if not s.lstrip().startswith("{") else s
        return cls.from_dict(json.loads(text))




def finite(x: float) -> float:
    """`x` if finite, else 0.0 (JSON has no NaN)."""
    return x if math.isfinite(x) else 0.0
