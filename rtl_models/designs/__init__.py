"""Built-in multiplier designs: gate-level generators paired with NumPy behavioural references.

Each design module registers its configurations with `register`. A configuration has a
unique name (e.g. ``mul8u_trunc_t6``), a family, its parameters, its signedness, a netlist
generator and a behavioural reference. The reference takes operand *values* (0..255 for
unsigned designs, -128..127 for signed ones) as int64 arrays and returns the int64 products;
the netlist's exhaustive table must equal it exactly (tests check every configuration).

Operand order is fixed: port A is the activation, port B the weight. Designs that are not
commutative say which operand gets which treatment in their docstring.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..netlist import Netlist


@dataclass(frozen=True)
class DesignSpec:
    """One built-in multiplier configuration."""

    name: str
    family: str
    signed: bool
    build: Callable[[], Netlist]
    reference: Callable[[np.ndarray, np.ndarray], np.ndarray]
    params: dict = field(default_factory=dict)
    description: str = ""

    def reference_table(self) -> np.ndarray:
        """The 256x256 table of the behavioural reference, indexed by 8-bit operand codes."""
        return reference_table(self.reference, self.signed)


DESIGNS: dict[str, DesignSpec] = {}


def register(spec: DesignSpec) -> DesignSpec:
    """Add a configuration to the built-in library (names must be unique)."""
    if spec.name in DESIGNS:
        raise ValueError(f"design {spec.name!r} registered twice")
    DESIGNS[spec.name] = spec
    return spec


def operand_grid(signed: bool) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) operand values over all 65,536 code pairs, shaped (256, 256) as [a_code, b_code]."""
    codes = np.arange(256, dtype=np.int64)
    vals = np.where(codes >= 128, codes - 256, codes) if signed else codes
    return np.meshgrid(vals, vals, indexing="ij")


def reference_table(ref: Callable[[np.ndarray, np.ndarray], np.ndarray], signed: bool) -> np.ndarray:
    """Evaluate a behavioural reference over every code pair: uint16 (unsigned) or int16 (signed)."""
    a, b = operand_grid(signed)
    prod = np.asarray(ref(a, b), dtype=np.int64)
    if signed:
        if prod.min() < -32768 or prod.max() > 32767:
            raise ValueError("signed reference product out of int16 range")
        return prod.astype(np.int16)
    if prod.min() < 0 or prod.max() > 65535:
        raise ValueError("unsigned reference product out of uint16 range")
    return prod.astype(np.uint16)


def load_all() -> dict[str, DesignSpec]:
    """Import every design module (registering its configurations) and return the registry."""
    from . import dynamic_range, exact, logarithmic, partial_product  # noqa: F401

    return DESIGNS
