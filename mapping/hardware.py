"""`HardwareConfig`: a multi-pod systolic-array accelerator, its energy table, TOML I/O, presets.

A machine is `pods` identical arrays of `rows` x `cols` PEs running one dataflow (os, ws, is),
each with an ifmap, a filter and an ofmap SRAM. SRAM sizes are per group of
`sram_pods_per_group` pods (1: private per pod; `pods`: one shared set); the cost models give
each pod an equal share. All pods share one DRAM channel (`dram_bytes_per_cycle`) and move
partial sums between them over an interconnect (`interconnect_bytes_per_cycle`). Bandwidths
are bytes per array clock cycle.

Every figure of a preset names its source in `sources` (keys are field names, energy figures
as "energy.<field>"); "assumption" marks the figures no publication pins down.

TOML: `load_hardware(path)` / `save_hardware(hw, path)`; top-level keys are the fields below,
an ``[energy]`` table holds `EnergyTable`, ``[sources]`` the provenance strings, and an optional
``preset = "name"`` key starts from a preset and overrides only the keys given.
"""

from __future__ import annotations

import json
import math
import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ._atomic import atomic_write_text
from .layer import MappingError

DATAFLOWS = ("os", "ws", "is")

HOROWITZ = "Horowitz, 'Computing's energy problem', ISSCC 2014 (45 nm)"


class HardwareConfigError(MappingError):
    """A hardware description with a bad key or value; names the file, key, value, expectation."""


@dataclass(frozen=True)
class EnergyTable:
    """Energy figures: per MAC (default multiplier), SRAM by size, DRAM, interconnect, leakage."""

    mac_pj: float = 0.2  # one 8-bit multiply; replaced per layer by the chosen multiplier's energy_pj
    accumulate_pj: float = 0.1  # the 32-bit accumulate add of every MAC
    # (SRAM size in bytes, energy per byte accessed in pJ); interpolated log-log, sqrt-law outside
    sram_pj_per_byte: tuple[tuple[int, float], ...] = ((8192, 1.25), (32768, 2.5), (1048576, 12.5))
    dram_pj_per_byte: float = 162.5
    interconnect_pj_per_byte: float = 1.0
    leakage_mw_per_pe: float = 0.01
    leakage_mw_per_sram_mib: float = 5.0

    def sram_energy_pj_per_byte(self, size_bytes: float) -> float:
        """Energy per byte accessed in an SRAM of `size_bytes` (log-log interpolation)."""
        pts = sorted(self.sram_pj_per_byte)
        s = max(float(size_bytes), 1.0)
        if len(pts) == 1:
            (s0, e0), = pts
            return e0 * math.sqrt(s / s0)
        if s <= pts[0][0]:
            return pts[0][1] * math.sqrt(s / pts[0][0])
        if s >= pts[-1][0]:
            return pts[-1][1] * math.sqrt(s / pts[-1][0])
        for (s0, e0), (s1, e1) in zip(pts, pts[1:]):
            if s0 <= s <= s1:
                t = (math.log(s) - math.log(s0)) / (math.log(s1) - math.log(s0))
                return math.exp(math.log(e0) + t * (math.log(e1) - math.log(e0)))
        raise AssertionError("unreachable")


DEFAULT_ENERGY_SOURCES = {
    "energy.mac_pj": f"{HOROWITZ}: 8-bit integer multiply 0.2 pJ",
    "energy.accumulate_pj": f"{HOROWITZ}: 32-bit integer add 0.1 pJ",
    "energy.sram_pj_per_byte": f"{HOROWITZ}: 64-bit SRAM access 10 pJ (8 KB), 20 pJ (32 KB), 100 pJ (1 MB)",
    "energy.dram_pj_per_byte": f"{HOROWITZ}: 64-bit DRAM access 1.3-2.6 nJ; lower end, 1.3 nJ / 8 B",
    "energy.interconnect_pj_per_byte": "assumption: about 1 mm of on-chip wire at ~0.1 pJ/bit/mm",
    "energy.leakage_mw_per_pe": "assumption: ~2% of the 0.4815 mW per-PE power used by RoHNAS (16x16, 3 ns)",
    "energy.leakage_mw_per_sram_mib": "assumption: order of magnitude of 45 nm SRAM standby power",
}


@dataclass(frozen=True)
class HardwareConfig:
    """Pods x rows x cols, dataflow, SRAM sizes, word size, bandwidths, clock, energy table."""

    name: str
    pods: int
    rows: int
    cols: int
    dataflow: str
    ifmap_sram_bytes: int
    filter_sram_bytes: int
    ofmap_sram_bytes: int
    dram_bytes_per_cycle: float
    clock_mhz: float
    sram_pods_per_group: int = 1
    global_buffer_bytes: int = 0  # shared on-chip buffer behind the SRAMs (TPU v4 CMEM); see analytical docs
    interconnect_bytes_per_cycle: float = 64.0
    word_bytes: int = 1
    psum_bytes: int = 4
    energy: EnergyTable = field(default_factory=EnergyTable)
    description: str = ""
    sources: tuple[tuple[str, str], ...] = ()

    def __post_init__(self):
        src = f"hardware {self.name!r}"
        _check_fields(self, src)
        if self.pods % self.sram_pods_per_group:
            raise HardwareConfigError(
                f"{src}: key 'sram_pods_per_group' = {self.sram_pods_per_group}: expected a divisor of pods = {self.pods}")

    # --- derived --------------------------------------------------------------------------
    @property
    def pes(self) -> int:
        """PEs in one pod."""
        return self.rows * self.cols

    @property
    def clock_hz(self) -> float:
        """Clock frequency in Hz."""
        return self.clock_mhz * 1e6

    def pod_sram_bytes(self) -> tuple[int, int, int]:
        """Each pod's share of the (ifmap, filter, ofmap) SRAMs in bytes."""
        g = self.sram_pods_per_group
        return (self.ifmap_sram_bytes // g, self.filter_sram_bytes // g, self.ofmap_sram_bytes // g)

    def total_sram_bytes(self) -> int:
        """All operand SRAM on the machine."""
        groups = self.pods // self.sram_pods_per_group
        return groups * (self.ifmap_sram_bytes + self.filter_sram_bytes + self.ofmap_sram_bytes)

    def leakage_mw(self) -> float:
        """Static power of all PEs and operand SRAMs."""
        e = self.energy
        return e.leakage_mw_per_pe * self.pods * self.pes + e.leakage_mw_per_sram_mib * self.total_sram_bytes() / 2**20

    def source(self, key: str) -> str:
        """Where the figure `key` ("clock_mhz", "energy.mac_pj", ...) comes from ("" if unstated)."""
        return dict(self.sources).get(key, "")

    def with_(self, **changes: Any) -> "HardwareConfig":
        """A copy with some fields changed (validated)."""
        return replace(self, **changes)

    # --- dict / TOML ----------------------------------------------------------------------
    def to_dict(self) -> dict:
        """Plain dict (the TOML layout): fields, an `energy` table and a `sources` table."""
        d: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "energy":
                d["energy"] = {ef.name: _plain(getattr(v, ef.name)) for ef in fields(EnergyTable)}
            elif f.name == "sources":
                d["sources"] = dict(v)
            else:
                d[f.name] = v
        return d

    @classmethod
    def from_dict(cls, data: dict, source: str = "<dict>") -> "HardwareConfig":
        """Build and validate from the TOML layout; errors name `source`, the key and the value."""
        return _from_dict(data, source)

    def to_toml(self) -> str:
        """TOML text that `load_hardware` reads back to an equal config."""
        return _to_toml(self.to_dict())


# --- validation ---------------------------------------------------------------------------

_INT_POS = ("pods", "rows", "cols", "ifmap_sram_bytes", "filter_sram_bytes", "ofmap_sram_bytes",
            "sram_pods_per_group", "word_bytes", "psum_bytes")
_INT_NONNEG = ("global_buffer_bytes",)
_FLOAT_POS = ("dram_bytes_per_cycle", "clock_mhz", "interconnect_bytes_per_cycle")
_E_FLOAT_NONNEG = ("mac_pj", "accumulate_pj", "dram_pj_per_byte", "interconnect_pj_per_byte",
                   "leakage_mw_per_pe", "leakage_mw_per_sram_mib")


def _bad(src: str, key: str, value: Any, expected: str) -> HardwareConfigError:
    return HardwareConfigError(f"{src}: key '{key}' = {value!r}: expected {expected}")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


def _check_fields(hw: HardwareConfig, src: str) -> None:
    if not isinstance(hw.name, str) or not hw.name:
        raise _bad(src, "name", hw.name, "a non-empty string")
    for k in _INT_POS:
        v = getattr(hw, k)
        if not _is_int(v) or v < 1:
            raise _bad(src, k, v, "a positive integer")
    for k in _INT_NONNEG:
        v = getattr(hw, k)
        if not _is_int(v) or v < 0:
            raise _bad(src, k, v, "a non-negative integer")
    for k in _FLOAT_POS:
        v = getattr(hw, k)
        if not _is_num(v) or v <= 0:
            raise _bad(src, k, v, "a positive number")
    if hw.dataflow not in DATAFLOWS:
        raise _bad(src, "dataflow", hw.dataflow, "one of 'os', 'ws', 'is'")
    if not isinstance(hw.energy, EnergyTable):
        raise _bad(src, "energy", hw.energy, "an EnergyTable")
    e = hw.energy
    for k in _E_FLOAT_NONNEG:
        v = getattr(e, k)
        if not _is_num(v) or v < 0:
            raise _bad(src, f"energy.{k}", v, "a non-negative number")
    pts = e.sram_pj_per_byte
    ok = isinstance(pts, tuple) and len(pts) >= 1 and all(
        isinstance(p, tuple) and len(p) == 2 and _is_num(p[0]) and p[0] > 0 and _is_num(p[1]) and p[1] > 0 for p in pts)
    if not ok or len({p[0] for p in pts}) != len(pts):
        raise _bad(src, "energy.sram_pj_per_byte", pts,
                   "a list of [size_bytes, pj_per_byte] pairs, positive numbers, distinct sizes")
    if not isinstance(hw.sources, tuple) or not all(
            isinstance(p, tuple) and len(p) == 2 and all(isinstance(x, str) for x in p) for p in hw.sources):
        raise _bad(src, "sources", hw.sources, "a table of strings")
    if not isinstance(hw.description, str):
        raise _bad(src, "description", hw.description, "a string")


def _plain(v):
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    return v


_FIELD_NAMES = [f.name for f in fields(HardwareConfig)]
_ENERGY_NAMES = [f.name for f in fields(EnergyTable)]


def _from_dict(data: dict, src: str) -> HardwareConfig:
    if not isinstance(data, dict):
        raise HardwareConfigError(f"{src}: expected a table of hardware keys, got {type(data).__name__}")
    data = dict(data)
    base: dict[str, Any] = {}
    if "preset" in data:
        p = data.pop("preset")
        if p not in PRESETS:
            raise _bad(src, "preset", p, f"one of {', '.join(sorted(PRESETS))}")
        base = PRESETS[p].to_dict()
    allowed = set(_FIELD_NAMES)
    for k in data:
        if k not in allowed:
            raise HardwareConfigError(
                f"{src}: unknown key {k!r}: expected one of preset, {', '.join(_FIELD_NAMES)}")
    energy = dict(base.get("energy", {}))
    if "energy" in data:
        if not isinstance(data["energy"], dict):
            raise _bad(src, "energy", data["energy"], "a table")
        for k, v in data["energy"].items():
            if k not in _ENERGY_NAMES:
                raise HardwareConfigError(
                    f"{src}: unknown key 'energy.{k}': expected one of {', '.join('energy.' + n for n in _ENERGY_NAMES)}")
            energy[k] = v
    sources = dict(base.get("sources", {}))
    if "sources" in data:
        if not isinstance(data["sources"], dict):
            raise _bad(src, "sources", data["sources"], "a table of strings")
        sources.update(data["sources"])
    merged = {**base, **{k: v for k, v in data.items() if k not in ("energy", "sources")}}
    for req in ("name", "pods", "rows", "cols", "dataflow", "ifmap_sram_bytes", "filter_sram_bytes",
                "ofmap_sram_bytes", "dram_bytes_per_cycle", "clock_mhz"):
        if req not in merged:
            raise HardwareConfigError(f"{src}: missing key {req!r} (or give preset = \"name\")")
    # Whole-number floats such as 6.0 MiB written by hand are accepted for integer keys.
    for k in _INT_POS + _INT_NONNEG:
        v = merged.get(k)
        if isinstance(v, float) and v.is_integer():
            merged[k] = int(v)
    if "sram_pj_per_byte" in energy:
        pts = energy["sram_pj_per_byte"]
        if not isinstance(pts, (list, tuple)) or not all(isinstance(p, (list, tuple)) for p in pts):
            raise _bad(src, "energy.sram_pj_per_byte", pts, "a list of [size_bytes, pj_per_byte] pairs")
        energy["sram_pj_per_byte"] = tuple(tuple(p) for p in pts)
    for k, v in sources.items():
        if not isinstance(v, str):
            raise _bad(src, f"sources.{k}", v, "a string")
    try:
        et = EnergyTable(**energy)
        merged["energy"] = et
        merged["sources"] = tuple(sorted(sources.items()))
        hw = HardwareConfig(**merged)
    except HardwareConfigError as exc:
        # Re-label the message with the file the values came from.
        msg = str(exc)
        raise HardwareConfigError(src + msg[msg.index(":"):] if ":" in msg else f"{src}: {msg}") from None
    except TypeError as exc:
        raise HardwareConfigError(f"{src}: {exc}") from None
    return hw


# --- TOML writer (tomllib reads; the writer covers the value types a config uses) ---------

def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ValueError(f"cannot write non-finite number {v!r} to TOML")
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)  # a JSON string is a valid TOML basic string
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def _toml_key(k: str) -> str:
    bare = k and all(c.isalnum() or c in "_-" for c in k)
    return k if bare else json.dumps(k)


def _to_toml(d: dict) -> str:
    lines = ["# cosim hardware configuration (mapping.hardware); units are in the key names."]
    tables = {k: v for k, v in d.items() if isinstance(v, dict)}
    for k, v in d.items():
        if not isinstance(v, dict):
            lines.append(f"{_toml_key(k)} = {_toml_value(v)}")
    for name, table in tables.items():
        lines.append("")
        lines.append(f"[{_toml_key(name)}]")
        for k, v in table.items():
            lines.append(f"{_toml_key(k)} = {_toml_value(v)}")
    return "\n".join(lines) + "\n"


def load_hardware(path: str | Path) -> HardwareConfig:
    """Read a hardware TOML file; a bad file raises HardwareConfigError naming key, value, expectation."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HardwareConfigError(f"{path}: no such hardware file") from None
    except tomllib.TOMLDecodeError as exc:
        raise HardwareConfigError(f"{path}: not valid TOML: {exc}") from None
    return _from_dict(data, str(path))


def save_hardware(hw: HardwareConfig, path: str | Path) -> None:
    """Write `hw` as TOML, atomically (temporary file + rename)."""
    atomic_write_text(path, hw.to_toml())


# --- presets ------------------------------------------------------------------------------

MiB = 2**20
KiB = 2**10


def _sources(**extra: str) -> tuple[tuple[str, str], ...]:
    d = dict(DEFAULT_ENERGY_SOURCES)
    d.update({k.replace("__", "."): v for k, v in extra.items()})
    return tuple(sorted(d.items()))


TPU_V4 = "Jouppi et al., 'TPU v4', ISCA 2023, and the Cloud TPU system-architecture docs"

PRESETS: dict[str, HardwareConfig] = {
    "tpu_v4_like": HardwareConfig(
        name="tpu_v4_like", pods=8, rows=128, cols=128, dataflow="ws",
        # One TensorCore's 16 MiB VMEM serves its 4 MXUs; the model splits it by operand.
        ifmap_sram_bytes=6 * MiB, filter_sram_bytes=6 * MiB, ofmap_sram_bytes=4 * MiB,
        sram_pods_per_group=4, global_buffer_bytes=128 * MiB,
        dram_bytes_per_cycle=1.2e12 / 1.05e9, interconnect_bytes_per_cycle=512.0, clock_mhz=1050.0,
        word_bytes=1, psum_bytes=4,
        energy=EnergyTable(dram_pj_per_byte=31.2),
        description="TPU v4-like chip: 2 TensorCores x 4 MXUs of 128x128, VMEM per core, CMEM, HBM2",
        sources=_sources(
            pods=f"{TPU_V4}: 2 TensorCores x 4 MXUs per chip",
            rows=f"{TPU_V4}: 128x128 MXU", cols=f"{TPU_V4}: 128x128 MXU",
            clock_mhz=f"{TPU_V4}: 1050 MHz",
            ifmap_sram_bytes=f"{TPU_V4}: 16 MiB VMEM per TensorCore (4 MXUs); split 6/6/4 MiB by the model (assumption)",
            filter_sram_bytes=f"{TPU_V4}: 16 MiB VMEM per TensorCore (4 MXUs); split 6/6/4 MiB by the model (assumption)",
            ofmap_sram_bytes=f"{TPU_V4}: 16 MiB VMEM per TensorCore (4 MXUs); split 6/6/4 MiB by the model (assumption)",
            sram_pods_per_group=f"{TPU_V4}: one VMEM per TensorCore of 4 MXUs",
            global_buffer_bytes=f"{TPU_V4}: 128 MiB CMEM",
            dram_bytes_per_cycle=f"{TPU_V4}: HBM2 1.2 TB/s at 1050 MHz",
            interconnect_bytes_per_cycle="assumption: on-chip MXU-to-MXU path via VMEM, 512 B/cycle",
            dataflow=f"{TPU_V4}: weight-stationary MXU",
            energy__dram_pj_per_byte="O'Connor et al., 'Fine-grained DRAM', MICRO 2017: HBM2 ~3.9 pJ/bit",
        ),
    ),
    "scalesim_google": HardwareConfig(
        name="scalesim_google", pods=1, rows=256, cols=256, dataflow="ws",
        ifmap_sram_bytes=6144 * KiB, filter_sram_bytes=6144 * KiB, ofmap_sram_bytes=2048 * KiB,
        dram_bytes_per_cycle=10.0, clock_mhz=700.0, word_bytes=1, psum_bytes=4,
        description="SCALE-Sim's google.cfg: one 256x256 weight-stationary array (TPU v1-like)",
        sources=_sources(
            rows="SCALE-Sim configs/google.cfg: ArrayHeight 256", cols="SCALE-Sim configs/google.cfg: ArrayWidth 256",
            dataflow="SCALE-Sim configs/google.cfg: Dataflow ws",
            ifmap_sram_bytes="SCALE-Sim configs/google.cfg: IfmapSramSzkB 6144",
            filter_sram_bytes="SCALE-Sim configs/google.cfg: FilterSramSzkB 6144",
            ofmap_sram_bytes="SCALE-Sim configs/google.cfg: OfmapSramSzkB 2048",
            dram_bytes_per_cycle="SCALE-Sim configs/google.cfg: Bandwidth 10 words/cycle, 1-byte words",
            clock_mhz="Jouppi et al., 'In-datacenter performance analysis of a TPU', ISCA 2017: 700 MHz",
        ),
    ),
    "edge_16x16": HardwareConfig(
        name="edge_16x16", pods=1, rows=16, cols=16, dataflow="ws",
        ifmap_sram_bytes=64 * KiB, filter_sram_bytes=64 * KiB, ofmap_sram_bytes=64 * KiB,
        dram_bytes_per_cycle=8.0, clock_mhz=1e3 / 3.0, word_bytes=1, psum_bytes=4,
        description="RoHNAS's edge accelerator: one 16x16 array at a 3 ns clock",
        sources=_sources(
            rows="Marchisio et al., 'RoHNAS', IEEE Access 2022: 16x16 systolic array",
            cols="Marchisio et al., 'RoHNAS', IEEE Access 2022: 16x16 systolic array",
            clock_mhz="Marchisio et al., 'RoHNAS', IEEE Access 2022: 3 ns clock period",
            ifmap_sram_bytes="assumption: 64 KiB per operand", filter_sram_bytes="assumption: 64 KiB per operand",
            ofmap_sram_bytes="assumption: 64 KiB per operand",
            dram_bytes_per_cycle="assumption: 64-bit LPDDR interface, one transfer per cycle",
            dataflow="assumption",
        ),
    ),
    "eyeriss_like": HardwareConfig(
        name="eyeriss_like", pods=1, rows=12, cols=14, dataflow="ws",
        ifmap_sram_bytes=54 * KiB, filter_sram_bytes=27 * KiB, ofmap_sram_bytes=27 * KiB,
        dram_bytes_per_cycle=8.0, clock_mhz=200.0, word_bytes=1, psum_bytes=4,
        description="Eyeriss-like: 12x14 PEs, 108 KiB global buffer, 200 MHz (row-stationary modelled as WS)",
        sources=_sources(
            rows="Chen et al., 'Eyeriss', ISSCC 2016 / JSSC 2017: 12x14 PE array",
            cols="Chen et al., 'Eyeriss', ISSCC 2016 / JSSC 2017: 12x14 PE array",
            clock_mhz="Chen et al., 'Eyeriss', JSSC 2017: 200 MHz core clock",
            ifmap_sram_bytes="Chen et al., 'Eyeriss': 108 KB global buffer; split 54/27/27 KiB (assumption)",
            filter_sram_bytes="Chen et al., 'Eyeriss': 108 KB global buffer; split 54/27/27 KiB (assumption)",
            ofmap_sram_bytes="Chen et al., 'Eyeriss': 108 KB global buffer; split 54/27/27 KiB (assumption)",
            dram_bytes_per_cycle="Chen et al., 'Eyeriss': 64-bit off-chip bus; one transfer per cycle (assumption)",
            dataflow="assumption: Eyeriss's row-stationary dataflow modelled as weight-stationary",
        ),
    ),
}


def preset(name: str) -> HardwareConfig:
    """The preset called `name`."""
    try:
        return PRESETS[name]
    except KeyError:
        raise HardwareConfigError(f"unknown hardware preset {name!r}: expected one of {', '.join(sorted(PRESETS))}") from None


def resolve_hardware(spec: str | Path) -> HardwareConfig:
    """A preset name, or a path to a TOML file."""
    s = str(spec)
    if s in PRESETS:
        return PRESETS[s]
    if s.endswith(".toml") or os.path.sep in s or Path(s).exists():
        return load_hardware(s)
    raise HardwareConfigError(f"unknown hardware {s!r}: expected a preset ({', '.join(sorted(PRESETS))}) or a .toml file")
