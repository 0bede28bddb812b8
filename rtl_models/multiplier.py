"""The `Multiplier` record: one 8x8 multiplier's table, identity, error metrics and costs.

Identity is library + version + name + table hash: names are not stable across library
versions, and two libraries may ship the same function under different names. The table is
indexed [a_code, b_code] with port A the activation and port B the weight (most approximate
designs are not commutative); codes are 8-bit patterns, read as int8 for signed multipliers.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from .metrics import ErrorMetrics


def table_sha256(table: np.ndarray, signed: bool) -> str:
    """sha256 of the table as little-endian int16 (signed) or uint16 (unsigned), row-major."""
    dtype = "<i2" if signed else "<u2"
    arr = np.ascontiguousarray(np.asarray(table).astype(dtype, casting="unsafe"))
    return hashlib.sha256(arr.tobytes()).hexdigest()


@dataclass(frozen=True, eq=False)
class Multiplier:
    """An 8x8 multiplier: product table, identity, error metrics and hardware costs."""

    name: str
    library: str
    version: str
    signed: bool
    table: np.ndarray = field(repr=False)
    sha256: str
    metrics: ErrorMetrics
    area_um2: float
    delay_ns: float
    power_mw: float
    energy_pj: float  # energy per multiply (pJ) at the characterization clock
    family: str = ""
    params: dict = field(default_factory=dict)
    description: str = ""
    source: str = ""  # "built-in" or the imported file's path
    cells: dict = field(default_factory=dict)  # cell counts by type
    published: dict = field(default_factory=dict)  # figures from an imported header, our keys
    disagreements: tuple = ()  # published figures our recomputation does not reproduce
    cost_model: str = ""  # rtl_models.costs.cost_model_id() of the model that gave the costs

    def __post_init__(self):
        t = np.asarray(self.table)
        if t.shape != (256, 256):
            raise ValueError(f"multiplier {self.name!r}: table must be 256x256, got {t.shape}")
        want = np.int16 if self.signed else np.uint16
        if t.dtype != want:
            raise ValueError(f"multiplier {self.name!r}: table dtype must be {np.dtype(want)}, got {t.dtype}")
        t = t.copy()
        t.setflags(write=False)
        object.__setattr__(self, "table", t)

    @property
    def key(self) -> str:
        """Unique identity string: library/version/name@hash12."""
        return f"{self.library}/{self.version}/{self.name}@{self.sha256[:12]}"

    @property
    def is_exact(self) -> bool:
        """True when every product is exact."""
        return self.metrics.ep_pct == 0.0

    def record(self) -> dict:
        """One flat JSON-ready record: identity, every metric and cost, units in key names."""
        rec = {
            "name": self.name,
            "library": self.library,
            "version": self.version,
            "sha256": self.sha256,
            "signed": self.signed,
            "family": self.family,
            "params": dict(self.params),
            "description": self.description,
            "source": self.source,
        }
        rec.update(self.metrics.as_dict())
        rec.update(
            {
                "area_um2": self.area_um2,
                "delay_ns": self.delay_ns,
                "power_mw": self.power_mw,
                "energy_pj": self.energy_pj,
                "cells": dict(self.cells),
                "cost_model": self.cost_model,
            }
        )
        if self.published:
            rec["published"] = dict(self.published)
            rec["disagreements"] = list(self.disagreements)
        return rec

    def __eq__(self, other) -> bool:
        if not isinstance(other, Multiplier):
            return NotImplemented
        return self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)
