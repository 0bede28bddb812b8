"""8-bit quantization for approximate-multiplier inference: two schemes, one per multiplier kind.

- ``symmetric`` (signed multipliers): int8 codes in [-127, 127], zero-point 0; weights per
  output channel, activations per tensor. real = scale * q.
- ``affine`` (unsigned multipliers, TFApprox's scheme): uint8 codes in [0, 255] with a
  zero-point; real = scale * (q - zero_point). Weights per tensor by default (as TFApprox),
  per channel on request; activations per tensor.

A layer's integer accumulator for output n over a reduction of K products is

    symmetric: acc = sum_k T[qa_k, qw_kn]
    affine:    acc = sum_k T[qa_k, qw_kn] - zw_n * sum_k qa_k - za * sum_k qw_kn + K * za * zw_n

where T is the multiplier's 256x256 table (T[a, b] = a * b for the exact multiplier): only the
code product goes through the multiplier, the zero-point cross terms are exact. The output is
real = sa * sw_n * acc (+ bias), computed in float64 and rounded once to float32, so any two
integer back-ends that agree on `acc` agree on the output bit for bit.

Codes are stored as their 8-bit patterns (uint8); a signed code c means int8(c). Rounding is
round-half-to-even (NumPy and torch agree on it), computed as x / scale in float32.

Functions accept NumPy arrays or torch tensors (torch is imported lazily and only when given).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numba import njit, prange

SCHEMES = ("symmetric", "affine")
SYMMETRIC_QMAX = 127


def scheme_for(signed: bool) -> str:
    """The quantization scheme that matches a multiplier's signedness."""
    return "symmetric" if signed else "affine"


def _is_torch(x) -> bool:
    return type(x).__module__.startswith("torch")


@dataclass(frozen=True)
class QuantParams:
    """Quantization of one tensor: scale and zero-point, per tensor or per channel along `axis`."""

    scheme: str
    scale: np.ndarray  # float32, shape () or (channels,)
    zero_point: np.ndarray  # int64, same shape as scale
    axis: int | None = None  # channel axis for per-channel parameters
    meta: dict = field(default_factory=dict, compare=False)

    def __post_init__(self):
        if self.scheme not in SCHEMES:
            raise ValueError(f"QuantParams.scheme must be one of {SCHEMES}, got {self.scheme!r}")
        scale = np.asarray(self.scale, dtype=np.float32)
        zp = np.asarray(self.zero_point, dtype=np.int64)
        if scale.shape != zp.shape:
            raise ValueError(f"QuantParams: scale shape {scale.shape} != zero_point shape {zp.shape}")
        if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
            raise ValueError(f"QuantParams.scale must be finite and > 0, got {scale}")
        if (scale.ndim == 0) != (self.axis is None):
            raise ValueError(f"QuantParams: axis={self.axis} does not fit scale of shape {scale.shape}")
        lo, hi = self.qrange
        if self.scheme == "symmetric" and np.any(zp != 0):
            raise ValueError(f"QuantParams.zero_point must be 0 for the symmetric scheme, got {zp}")
        if np.any(zp < lo) or np.any(zp > hi):
            raise ValueError(f"QuantParams.zero_point must lie in [{lo}, {hi}], got {zp}")
        scale.setflags(write=False)
        zp.setflags(write=False)
        object.__setattr__(self, "scale", scale)
        object.__setattr__(self, "zero_point", zp)

    @property
    def signed(self) -> bool:
        """True for int8 codes (symmetric scheme)."""
        return self.scheme == "symmetric"

    @property
    def qrange(self) -> tuple[int, int]:
        """(qmin, qmax) of the integer codes."""
        return (-SYMMETRIC_QMAX, SYMMETRIC_QMAX) if self.scheme == "symmetric" else (0, 255)

    @property
    def per_channel(self) -> bool:
        """True when scale and zero-point vary along `axis`."""
        return self.axis is not None

    def _bshape(self, ndim: int) -> tuple[int, ...]:
        if self.axis is None:
            return ()
        shape = [1] * ndim
        shape[self.axis] = self.scale.shape[0]
        return tuple(shape)


def params_from_range(xmin, xmax, scheme: str, axis: int | None = None) -> QuantParams:
    """Scale/zero-point covering [xmin, xmax] (scalars, or arrays along `axis`) in `scheme`."""
    xmin = np.minimum(np.asarray(xmin, dtype=np.float64), 0.0)
    xmax = np.maximum(np.asarray(xmax, dtype=np.float64), 0.0)
    if scheme == "symmetric":
        amax = np.maximum(-xmin, xmax)
        scale = amax / SYMMETRIC_QMAX
        scale = np.where(scale > 0, scale, 1.0)  # an all-zero tensor: any scale is exact
        zp = np.zeros(scale.shape, dtype=np.int64)
    elif scheme == "affine":
        scale = (xmax - xmin) / 255.0
        scale = np.where(scale > 0, scale, 1.0)
        zp = np.clip(np.round(-xmin / scale), 0, 255).astype(np.int64)
    else:
        raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
    scale32 = np.asarray(scale, dtype=np.float32)
    scale32 = np.where(scale32 > 0, scale32, np.float32(np.finfo(np.float32).tiny))
    return QuantParams(scheme, scale32, zp, axis, {"min": xmin.tolist(), "max": xmax.tolist()})


def weight_params(w, scheme: str, per_channel: bool | None = None, axis: int = 0) -> QuantParams:
    """Weight quantization from the weights' own range (per output channel along `axis`).

    per_channel defaults to True for ``symmetric`` and False (TFApprox) for ``affine``.
    """
    w = _to_numpy(w)
    if per_channel is None:
        per_channel = scheme == "symmetric"
    if per_channel:
        red = tuple(i for i in range(w.ndim) if i != axis)
        return params_from_range(w.min(axis=red), w.max(axis=red), scheme, axis)
    return params_from_range(w.min(), w.max(), scheme, None)


def _to_numpy(x) -> np.ndarray:
    if _is_torch(x):
        return x.detach().cpu().numpy()
    return np.asarray(x)


@njit(parallel=True, cache=True)
def _quantize_flat(x, s, z, lo, hi, out):
    n = x.shape[0]
    flo = np.float32(lo - 256)
    fhi = np.float32(hi + 256)
    for i in prange(n):
        v = x[i] / s  # float32 / float32 -> float32, as in the reference
        if v != v:
            r = np.float32(0.0)
        else:
            r = min(max(np.rint(v), flo), fhi)
        q = np.int64(r) + z
        q = min(max(q, lo), hi)
        out[i] = np.uint8(q & 0xFF)
    return out


def quantize(x, qp: QuantParams):
    """Real values -> 8-bit code patterns (uint8; int8 codes are stored as their bit pattern).

    Accepts a NumPy array (returns NumPy) or a torch tensor (returns a torch uint8 tensor on the
    same device). q = clamp(round_half_even(x / scale) + zero_point, qmin, qmax). Per-tensor
    float32 CPU input takes a fused Numba kernel (same arithmetic as `quantize_reference`).
    """
    if not qp.per_channel:
        if _is_torch(x):
            import torch

            if x.device.type == "cpu" and x.dtype == torch.float32:
                xn = x.detach().contiguous().numpy()
                return torch.from_numpy(_quantize_fast(xn, qp))
        elif isinstance(x, np.ndarray) and x.dtype == np.float32:
            return _quantize_fast(x, qp)
    return quantize_reference(x, qp)


def _quantize_fast(x: np.ndarray, qp: QuantParams) -> np.ndarray:
    lo, hi = qp.qrange
    flat = np.ascontiguousarray(x).reshape(-1)
    out = np.empty(flat.shape[0], np.uint8)
    _quantize_flat(flat, np.float32(qp.scale), np.int64(qp.zero_point), np.int64(lo), np.int64(hi), out)
    return out.reshape(x.shape)


def quantize_reference(x, qp: QuantParams):
    """`quantize` by plain NumPy / torch array operations (any device, per-channel too)."""
    lo, hi = qp.qrange
    if _is_torch(x):
        import torch

        xf = x.detach().to(torch.float32)
        bs = qp._bshape(xf.ndim)
        s = torch.tensor(np.array(qp.scale), device=xf.device).reshape(bs)
        z = torch.tensor(np.array(qp.zero_point), device=xf.device).reshape(bs)
        r = torch.clamp(torch.nan_to_num(torch.round(xf / s), nan=0.0), lo - 256.0, hi + 256.0)
        q = torch.clamp(r.to(torch.int64) + z, lo, hi)
        return q.to(torch.int16).to(torch.uint8) if qp.signed else q.to(torch.uint8)
    xf = np.asarray(x, dtype=np.float32)
    bs = qp._bshape(xf.ndim)
    s = qp.scale.reshape(bs)
    z = qp.zero_point.reshape(bs)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        r = np.round(xf / s)
    # clip before the integer cast so that huge or infinite inputs saturate instead of wrapping
    r = np.clip(np.nan_to_num(r, nan=0.0), lo - 256.0, hi + 256.0)
    q = np.clip(r.astype(np.int64) + z, lo, hi)
    return q.astype(np.int8).view(np.uint8) if qp.signed else q.astype(np.uint8)


def code_values(codes, signed: bool):
    """8-bit code patterns -> integer values (int64): int8(c) when signed, c otherwise."""
    if _is_torch(codes):
        import torch

        return codes.view(torch.int8).to(torch.int64) if signed else codes.to(torch.int64)
    c = np.asarray(codes, dtype=np.uint8)
    return c.view(np.int8).astype(np.int64) if signed else c.astype(np.int64)


def dequantize(codes, qp: QuantParams):
    """8-bit code patterns -> real values (float32): scale * (value - zero_point)."""
    v = code_values(codes, qp.signed)
    if _is_torch(v):
        import torch

        bs = qp._bshape(v.ndim)
        s = torch.tensor(np.array(qp.scale), dtype=torch.float64, device=v.device).reshape(bs)
        z = torch.tensor(np.array(qp.zero_point), device=v.device).reshape(bs)
        return ((v - z).to(torch.float64) * s).to(torch.float32)
    bs = qp._bshape(v.ndim)
    return ((v - qp.zero_point.reshape(bs)) * qp.scale.astype(np.float64).reshape(bs)).astype(np.float32)


def zero_code(qp: QuantParams) -> int:
    """The code pattern that represents real 0 in a per-tensor `qp` (the padding value)."""
    if qp.per_channel:
        raise ValueError("zero_code needs per-tensor parameters")
    return int(qp.zero_point) & 0xFF


def cross_terms(acc, a_rowsum, w_colsum, k: int, qa: QuantParams, qw: QuantParams):
    """Affine zero-point corrections added to the raw code-product sums `acc` (int64, exact).

    acc[..., n] over the output channel n (last axis); a_rowsum: sum_k qa over each output
    position (broadcastable to acc without the channel axis), w_colsum[n]: sum_k qw.
    Returns acc - zw_n * a_rowsum - za * w_colsum + K * za * zw_n. Symmetric: acc unchanged.
    """
    if qa.scheme == "symmetric" and qw.scheme == "symmetric":
        return acc
    za = int(qa.zero_point)
    zw = qw.zero_point  # () or (N,)
    if _is_torch(acc):
        import torch

        zw_t = torch.tensor(np.array(zw), device=acc.device)
        ws = torch.as_tensor(w_colsum, device=acc.device) if not _is_torch(w_colsum) else w_colsum
        return acc - zw_t * a_rowsum[..., None] - za * ws + k * za * zw_t
    return acc - zw * np.asarray(a_rowsum)[..., None] - za * np.asarray(w_colsum) + k * za * zw


def output_scale(qa: QuantParams, qw: QuantParams) -> np.ndarray:
    """sa * sw_n as float64 (shape () or (N,)): real output = output_scale * acc."""
    return np.float64(qa.scale) * qw.scale.astype(np.float64)


class RangeObserver:
    """Running min/max of the tensors it sees (calibration from a few batches)."""

    def __init__(self):
        self.min = np.inf
        self.max = -np.inf
        self.count = 0

    def update(self, x) -> None:
        """Fold one batch into the running range."""
        if _is_torch(x):
            lo, hi = float(x.detach().min()), float(x.detach().max())
        else:
            x = np.asarray(x)
            lo, hi = float(x.min()), float(x.max())
        self.min = min(self.min, lo)
        self.max = max(self.max, hi)
        self.count += 1

    def params(self, scheme: str) -> QuantParams:
        """Per-tensor parameters covering the observed range."""
        if self.count == 0:
            raise ValueError("RangeObserver: no batch observed; calibrate with at least one batch")
        return params_from_range(self.min, self.max, scheme, None)
