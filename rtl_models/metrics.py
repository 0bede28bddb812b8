"""Error metrics of an 8x8 multiplier table, with EvoApprox's definitions.

For an 8x8 multiplier the output range is 2^16, so MAE% = MAE / 2^16 * 100 and
WCE% = WCE / 2^16 * 100. EP% is the share of operand pairs with any error. MRE% and WCRE%
are taken over the pairs whose exact product is non-zero. MSE is the mean squared error and
`bias` the mean signed error (approximate minus exact). All averages are over all 65,536
operand pairs (uniform operands).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

OUTPUT_RANGE = 2**16


@dataclass(frozen=True)
class ErrorMetrics:
    """Error statistics of an approximate multiplier against the exact product."""

    mae: float
    mae_pct: float
    wce: int
    wce_pct: float
    ep_pct: float
    mre_pct: float
    wcre_pct: float
    mse: float
    bias: float

    def as_dict(self) -> dict:
        """Plain dict, units in key names."""
        return asdict(self)


def exact_table(signed: bool) -> np.ndarray:
    """The exact 256x256 product table (int64), indexed by 8-bit operand codes."""
    codes = np.arange(256, dtype=np.int64)
    vals = np.where(codes >= 128, codes - 256, codes) if signed else codes
    return np.multiply.outer(vals, vals)


def error_metrics(table: np.ndarray, signed: bool) -> ErrorMetrics:
    """EvoApprox-style error metrics of a 256x256 product table."""
    table = np.asarray(table)
    if table.shape != (256, 256):
        raise ValueError(f"table must be 256x256, got shape {table.shape}")
    exact = exact_table(signed)
    err = table.astype(np.int64) - exact
    abs_err = np.abs(err)
    nz = exact != 0
    rel = abs_err[nz] / np.abs(exact[nz])
    mae = float(abs_err.mean())
    wce = int(abs_err.max())
    return ErrorMetrics(
        mae=mae,
        mae_pct=mae / OUTPUT_RANGE * 100.0,
        wce=wce,
        wce_pct=wce / OUTPUT_RANGE * 100.0,
        ep_pct=float((err != 0).mean() * 100.0),
        mre_pct=float(rel.mean() * 100.0),
        wcre_pct=float(rel.max() * 100.0),
        mse=float((err.astype(np.float64) ** 2).mean()),
        bias=float(err.mean()),
    )
