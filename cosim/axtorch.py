"""torch modules whose every product goes through a chosen 8-bit (approximate) multiplier.

`AxConv2d` / `AxLinear` replace `nn.Conv2d` / `nn.Linear`: the forward quantizes the input
(per-tensor, calibrated) and the weights (per channel for signed multipliers, per tensor for
unsigned ones, see `cosim.quant`), computes the integer accumulators with the multiplier's
table, and dequantizes. The backward is straight-through: the gradient is the float layer's
exact gradient at the float input and weights, so a network can be fine-tuned with its
multipliers in place and attacked with gradients.

Back-ends for the integer accumulators (all give identical integers):
- ``numba``: `cosim.axkernels` (fast paths, CPU tensors);
- ``torch``: a torch gather over the table, chunked; runs on any device (the GPU path);
- ``integer``: plain integer arithmetic on the code values, no table at all. With the exact
  multiplier this is the int8 network "computed with plain integer arithmetic".
``auto`` is ``numba`` for CPU tensors and ``torch`` elsewhere.

`approximate(model, assignment, calibration=...)` swaps the modules into a copy of a float
model; `calibrate(model, batches)` (re)sets the activation ranges from a few batches.
"""

from __future__ import annotations

import copy
from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import axkernels as ak
from . import quant

BACKENDS = ("auto", "numba", "torch", "integer")
_GATHER_BUDGET = 1 << 24  # elements of one gathered (M, k-chunk, N) block


# ----------------------------------------------------------------------------------------
# torch reference kernels (any device)
# ----------------------------------------------------------------------------------------
def lut_gemm_torch(a_codes: torch.Tensor, b_codes: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """C[m,n] = sum_k T[A[m,k], B[k,n]] (int64) by torch gathers on A's device, chunked over k."""
    A = a_codes.to(torch.int64)
    B = b_codes.to(torch.int64)
    M, K = A.shape
    N = B.shape[1]
    flat = table.reshape(-1).to(device=A.device, dtype=torch.int64)
    out = torch.zeros((M, N), dtype=torch.int64, device=A.device)
    kc = max(1, _GATHER_BUDGET // max(1, M * N))
    for k0 in range(0, K, kc):
        k1 = min(K, k0 + kc)
        idx = A[:, k0:k1, None] * 256 + B[None, k0:k1, :]
        out += flat[idx].sum(dim=1)
    return out


def unfold_codes(x_codes: torch.Tensor, kernel_size, stride, padding, dilation, pad_code: int) -> torch.Tensor:
    """im2col of uint8 codes on any device: (B*L, C*kh*kw) uint8, columns ordered (c, i, j)."""
    ph, pw = ak._pair(padding, "padding")
    xf = x_codes.to(torch.float32)  # codes 0..255 are exact in float32
    if ph or pw:
        xf = F.pad(xf, (pw, pw, ph, ph), value=float(pad_code & 0xFF))
    cols = F.unfold(xf, kernel_size, dilation=dilation, padding=0, stride=stride)  # (B, K, L)
    return cols.transpose(1, 2).reshape(-1, cols.shape[1]).to(torch.uint8)


# ----------------------------------------------------------------------------------------
# Multiplier resolution
# ----------------------------------------------------------------------------------------
def resolve_multiplier(m):
    """A Multiplier-like object, (table, signed) pair or library name -> kernels' MulTable."""
    if isinstance(m, str):
        from rtl_models.library import MultiplierLibrary

        return ak.as_multiplier(MultiplierLibrary.default().get(m))
    return ak.as_multiplier(m)


# ----------------------------------------------------------------------------------------
# Modules
# ----------------------------------------------------------------------------------------
class _AxLayer(nn.Module):
    """Shared machinery of AxConv2d and AxLinear."""

    def __init__(self, multiplier, backend: str = "auto", path: str = "auto", per_channel: bool | None = None):
        super().__init__()
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.mult = resolve_multiplier(multiplier)
        self.scheme = quant.scheme_for(self.mult.signed)
        self.backend = backend
        self.path = path
        self.per_channel = per_channel
        self.act_qp: quant.QuantParams | None = None
        self.observer = quant.RangeObserver()
        self.calibrating = False
        self.layer_name = ""
        self._cache_key = None
        self._cache = None
        self._table_t = None

    # -- quantization -------------------------------------------------------------------
    def set_activation_range(self, xmin: float, xmax: float) -> None:
        """Fix the input quantization from a known range."""
        self.act_qp = quant.params_from_range(xmin, xmax, self.scheme)

    def finish_calibration(self) -> None:
        """Turn the observed input range into the activation quantization."""
        self.act_qp = self.observer.params(self.scheme)
        self.calibrating = False

    def _weight_state(self):
        w = self.weight
        key = (w._version, w.data_ptr(), w.device, self.backend, self.path)
        if self._cache_key != key:
            wqp = quant.weight_params(w.detach(), self.scheme, self.per_channel, axis=0)
            wcodes = quant.quantize(w.detach().cpu(), wqp).numpy()
            self._cache = {"wqp": wqp, "wcodes": wcodes, "kernel": None}
            self._cache_key = key
        return self._cache

    def _backend_for(self, x: torch.Tensor) -> str:
        if self.backend == "auto":
            return "numba" if x.device.type == "cpu" else "torch"
        if self.backend == "numba" and x.device.type != "cpu":
            raise ValueError(f"{self._label()}: backend 'numba' needs CPU tensors, got device {x.device}")
        return self.backend

    def _table(self, device) -> torch.Tensor:
        if self._table_t is None or self._table_t.device != torch.device(device):
            self._table_t = torch.tensor(self.mult.table.astype(np.int64), device=device)
        return self._table_t

    def _label(self) -> str:
        return f"{type(self).__name__} {self.layer_name or '(unnamed)'} [{self.mult.name}]"

    def _epilogue(self, wqp: quant.QuantParams, n: int) -> ak.Epilogue:
        """Per-channel dequantization constants (float64) and zero points of this call."""
        scale = np.broadcast_to(quant.output_scale(self.act_qp, wqp), (n,)).astype(np.float64)
        bias = (self.bias.detach().cpu().numpy().astype(np.float64) if self.bias is not None
                else np.zeros(n, np.float64))
        if self.scheme == "affine":
            zw = np.broadcast_to(wqp.zero_point, (n,)).astype(np.int64)
            return ak.Epilogue(scale, bias, int(self.act_qp.zero_point), zw)
        return ak.Epilogue(scale, bias)

    def _dequantize(self, acc: torch.Tensor, ep: ak.Epilogue, channel_dim: int) -> torch.Tensor:
        # the same float64 arithmetic as the fused Numba epilogue, so back-ends agree bit for bit
        shape = [1] * acc.dim()
        shape[channel_dim] = -1
        scale = torch.tensor(ep.scale, dtype=torch.float64, device=acc.device).reshape(shape)
        bias = torch.tensor(ep.bias, dtype=torch.float64, device=acc.device).reshape(shape)
        return (acc.to(torch.float64) * scale + bias).to(torch.float32)

    def _check_ready(self):
        if self.act_qp is None:
            raise RuntimeError(f"{self._label()}: not calibrated; pass calibration batches to "
                               "approximate() or call calibrate(model, batches)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if self.calibrating:
            self.observer.update(x)
            return self._float_forward(x)
        self._check_ready()
        y = self._approx_forward(x)
        if torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad):
            yf = self._float_forward(x)
            # straight-through: (yf - yf.detach()) is exactly zero, so the value is y bit for
            # bit while the gradient is the float layer's
            return (yf - yf.detach()) + y
        return y

    def describe(self) -> dict:
        """Layer, multiplier, table kind and the kernel path last used (with the reason)."""
        d = {"layer": self.layer_name, "multiplier": self.mult.name, "signed": self.mult.signed,
             "scheme": self.scheme, "backend": self.backend}
        k = (self._cache or {}).get("kernel")
        if k is not None:
            d.update({key: v for key, v in k.describe().items() if key not in ("multiplier",)})
        else:
            d["kind"] = ak.analyze(self.mult).kind
        return d


class AxConv2d(_AxLayer):
    """nn.Conv2d whose products go through an 8-bit multiplier table (straight-through backward)."""

    def __init__(self, conv: nn.Conv2d, multiplier, backend: str = "auto", path: str = "auto",
                 per_channel: bool | None = None):
        super().__init__(multiplier, backend, path, per_channel)
        if conv.padding_mode != "zeros":
            raise ValueError(f"AxConv2d supports padding_mode='zeros' only, got {conv.padding_mode!r}")
        if isinstance(conv.padding, str):
            if conv.padding != "valid":
                raise ValueError(f"AxConv2d supports explicit or 'valid' padding, got {conv.padding!r}")
            padding = (0, 0)
        else:
            padding = tuple(conv.padding)
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        self.kernel_size, self.stride, self.padding = tuple(conv.kernel_size), tuple(conv.stride), padding
        self.dilation, self.groups = tuple(conv.dilation), conv.groups
        self.weight = conv.weight
        self.bias = conv.bias

    def _float_forward(self, x):
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def _approx_forward(self, x):
        st = self._weight_state()
        ep = self._epilogue(st["wqp"], self.out_channels)
        xc = quant.quantize(x, self.act_qp)
        pad = quant.zero_code(self.act_qp)
        backend = self._backend_for(x)
        if backend == "numba":
            if st["kernel"] is None:
                st["kernel"] = ak.PreparedConv2d(st["wcodes"], self.mult, self.stride, self.padding,
                                                 self.dilation, self.groups, self.path)
            return torch.from_numpy(st["kernel"](xc.numpy(), pad, ep))
        acc, rs = self._gather_conv(xc, st["wcodes"], pad, backend, ep.affine)
        if ep.affine:
            acc = self._cross(acc, rs, st, ep)
        return self._dequantize(acc, ep, 1)

    def _gather_conv(self, xc, wcodes, pad, backend, need_rs):
        Bn, C, H, W = xc.shape
        O = self.out_channels
        kh, kw = self.kernel_size
        Ho, Wo = ak.conv_output_size(H, W, kh, kw, self.stride, self.padding, self.dilation)
        cg, og = C // self.groups, O // self.groups
        wt = torch.tensor(wcodes, device=xc.device)
        acc = torch.empty((Bn, O, Ho, Wo), dtype=torch.int64, device=xc.device)
        rs = torch.empty((Bn, self.groups, Ho, Wo), dtype=torch.int64, device=xc.device) if need_rs else None
        for g in range(self.groups):
            A = unfold_codes(xc[:, g * cg:(g + 1) * cg], self.kernel_size, self.stride, self.padding,
                             self.dilation, pad)
            Bw = wt[g * og:(g + 1) * og].reshape(og, -1).T
            if backend == "torch":
                res = lut_gemm_torch(A, Bw, self._table(xc.device))
            else:  # integer: exact code-value products, no table
                va = quant.code_values(A, self.mult.signed)
                vb = quant.code_values(Bw.contiguous(), self.mult.signed)
                res = va @ vb
            acc[:, g * og:(g + 1) * og] = res.reshape(Bn, Ho, Wo, og).permute(0, 3, 1, 2)
            if need_rs:
                rs[:, g] = A.to(torch.int64).sum(dim=1).reshape(Bn, Ho, Wo)
        return acc, rs

    def _cross(self, acc, rs, st, ep):
        og = self.out_channels // self.groups
        k = (self.in_channels // self.groups) * self.kernel_size[0] * self.kernel_size[1]
        rs_full = rs.repeat_interleave(og, dim=1)  # (B, O, Ho, Wo): each output's group row sum
        zw = torch.tensor(ep.zw, device=acc.device).reshape(1, -1, 1, 1)
        wsum = torch.tensor(st["wcodes"].reshape(self.out_channels, -1).astype(np.int64).sum(axis=1),
                            device=acc.device).reshape(1, -1, 1, 1)
        return acc - zw * rs_full - ep.za * wsum + k * ep.za * zw


class AxLinear(_AxLayer):
    """nn.Linear whose products go through an 8-bit multiplier table (straight-through backward)."""

    def __init__(self, linear: nn.Linear, multiplier, backend: str = "auto", path: str = "auto",
                 per_channel: bool | None = None):
        super().__init__(multiplier, backend, path, per_channel)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = linear.weight
        self.bias = linear.bias

    def _float_forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def _approx_forward(self, x):
        st = self._weight_state()
        ep = self._epilogue(st["wqp"], self.out_features)
        lead = x.shape[:-1]
        xc = quant.quantize(x.reshape(-1, self.in_features), self.act_qp)
        backend = self._backend_for(x)
        if backend == "numba":
            if st["kernel"] is None:
                st["kernel"] = ak.PreparedGemm(np.ascontiguousarray(st["wcodes"].T), self.mult, self.path)
            y = torch.from_numpy(st["kernel"](xc.numpy(), ep).reshape(-1, self.out_features))
            return y.reshape(*lead, self.out_features)
        Bw = torch.tensor(st["wcodes"], device=x.device).T
        if backend == "torch":
            acc = lut_gemm_torch(xc, Bw, self._table(x.device))
        else:
            acc = quant.code_values(xc, self.mult.signed) @ quant.code_values(Bw.contiguous(), self.mult.signed)
        if ep.affine:
            rs = xc.to(torch.int64).sum(dim=1)
            zw = torch.tensor(ep.zw, device=acc.device)
            wsum = torch.tensor(st["wcodes"].astype(np.int64).sum(axis=1), device=acc.device)
            acc = acc - zw * rs[:, None] - ep.za * wsum + self.in_features * ep.za * zw
        return self._dequantize(acc, ep, 1).reshape(*lead, self.out_features)


# ----------------------------------------------------------------------------------------
# Model-level helpers
# ----------------------------------------------------------------------------------------
def ax_layers(model: nn.Module) -> list[tuple[str, _AxLayer]]:
    """(name, module) of every AxConv2d / AxLinear in `model`, in module order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, _AxLayer)]


def approximable_layers(model: nn.Module) -> list[str]:
    """Names of the nn.Conv2d / nn.Linear modules `approximate` can replace."""
    return [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def _set_module(root: nn.Module, name: str, new: nn.Module) -> None:
    parent = root
    parts = name.split(".")
    for p in parts[:-1]:
        parent = getattr(parent, p)
    setattr(parent, parts[-1], new)


def approximate(model: nn.Module, assignment, calibration=None, backend: str = "auto",
                path: str = "auto", per_channel: bool | None = None, inplace: bool = False) -> nn.Module:
    """Swap AxConv2d / AxLinear into (a copy of) a float model.

    assignment: {layer name: multiplier} (a Multiplier-like object, a (table, signed) pair, a
    library name, or None to leave the layer float), or a single multiplier for every conv and
    linear layer. calibration: a tensor or an iterable of input batches to set the activation
    ranges (otherwise call `calibrate` before the first forward).
    """
    net = model if inplace else copy.deepcopy(model)
    names = approximable_layers(net)
    if not isinstance(assignment, Mapping):
        assignment = {n: assignment for n in names}
    unknown = sorted(set(assignment) - set(names))
    if unknown:
        raise KeyError(f"assignment names layers that are not nn.Conv2d/nn.Linear in the model: {unknown}; "
                       f"approximable layers: {names}")
    modules = dict(net.named_modules())
    for name in names:
        mult = assignment.get(name)
        if mult is None:
            continue
        mod = modules[name]
        if isinstance(mod, nn.Conv2d):
            new = AxConv2d(mod, mult, backend, path, per_channel)
        else:
            new = AxLinear(mod, mult, backend, path, per_channel)
        new.layer_name = name
        _set_module(net, name, new)
    if calibration is not None:
        calibrate(net, calibration)
    return net


@torch.no_grad()
def calibrate(model: nn.Module, batches) -> nn.Module:
    """Set every Ax layer's activation range from the float activations of a few batches."""
    layers = ax_layers(model)
    if not layers:
        raise ValueError("calibrate: the model has no AxConv2d/AxLinear layers")
    if isinstance(batches, torch.Tensor):
        batches = [batches]
    was_training = model.training
    model.eval()
    for _, m in layers:
        m.observer = quant.RangeObserver()
        m.calibrating = True
    try:
        seen = 0
        for b in batches:
            if isinstance(b, (tuple, list)):
                b = b[0]
            model(b)
            seen += 1
        if seen == 0:
            raise ValueError("calibrate: no batches given")
        for _, m in layers:
            m.finish_calibration()
    finally:
        for _, m in layers:
            m.calibrating = False
        model.train(was_training)
    return model


def set_backend(model: nn.Module, backend: str) -> nn.Module:
    """Switch every Ax layer of `model` to another integer back-end (same integers)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    for _, m in ax_layers(model):
        m.backend = backend
        m._cache_key = None
    return model


def describe(model: nn.Module) -> list[dict]:
    """Per-layer report: multiplier, table kind, the kernel path chosen and why."""
    return [m.describe() for _, m in ax_layers(model)]


def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Class predictions (argmax of the logits) in batches, without gradients."""
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, x.shape[0], batch_size):
            out.append(model(x[i:i + batch_size]).argmax(dim=1))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.int64)


__all__ = ["AxConv2d", "AxLinear", "approximate", "calibrate", "describe", "ax_layers",
           "approximable_layers", "set_backend", "predict", "lut_gemm_torch", "unfold_codes",
           "resolve_multiplier", "BACKENDS"]
