"""`Layer`: one workload layer with its shapes and its MAC, weight and activation counts.

Kinds: ``conv2d``, ``depthwise`` (a grouped conv with groups == in_c), ``linear``, ``matmul``
(activation x activation, no weights), plus ``pool`` and ``add``, which cost no MACs but move
data. Element-wise activations, batch-norm (folded into the producer), flatten/reshape and
concatenation are not layers: they cost nothing here and only shape the graph.

Tensor layout is (batch, H, W, C) as SCALE-Sim addresses it. A ``linear`` layer on a 2-D
input (rows, features) is a 1x1 conv on an (in_h = rows, in_w = 1) image; ``matmul`` likewise
with the second operand (in_c x out_c) an activation.

GEMM view (SCALE-Sim's): per group, M = batch * out_h * out_w output pixels, K = kernel_h *
kernel_w * in_c / groups, N = out_c / groups; the layer is `groups` such GEMMs back to back.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

KINDS = ("conv2d", "depthwise", "linear", "matmul", "pool", "add")
GEMM_KINDS = ("conv2d", "depthwise", "linear", "matmul")
KIND_CODE = {k: i for i, k in enumerate(KINDS)}


class MappingError(ValueError):
    """A workload, hardware file or mapping that cannot be used; the message names what and why."""


def out_size(size: int, kernel: int, stride: int, pad: int, ceil_mode: bool = False) -> int:
    """Output extent along one axis: floor (torch) or ceil (SCALE-Sim, ceil_mode) rounding."""
    span = size + 2 * pad - kernel
    if ceil_mode:
        return -(-span // stride) + 1
    return span // stride + 1


@dataclass(frozen=True)
class Layer:
    """One layer: kind, input shape (H, W, C), output channels, window, stride, padding, groups."""

    name: str
    kind: str
    in_h: int
    in_w: int
    in_c: int
    out_c: int
    kernel_h: int = 1
    kernel_w: int = 1
    stride_h: int = 1
    stride_w: int = 1
    pad_h: int = 0  # symmetric zero padding, rows added on top and on bottom
    pad_w: int = 0
    groups: int = 1
    batch: int = 1
    bias: bool = False
    ceil_mode: bool = False  # output size rounds up: SCALE-Sim topologies, torch pool ceil_mode
    pool_op: str = ""  # "max" or "avg" for pool layers
    n_inputs: int = 1  # add: number of tensors summed

    def __post_init__(self):
        where = f"layer {self.name!r}"
        if not isinstance(self.name, str) or not self.name:
            raise MappingError(f"layer name must be a non-empty string, got {self.name!r}")
        if self.kind not in KINDS:
            raise MappingError(f"{where}: kind {self.kind!r} is not one of {', '.join(KINDS)}")
        for f in ("in_h", "in_w", "in_c", "out_c", "kernel_h", "kernel_w", "stride_h", "stride_w",
                  "groups", "batch", "n_inputs"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise MappingError(f"{where}: {f} = {v!r}: expected a positive integer")
        for f in ("pad_h", "pad_w"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise MappingError(f"{where}: {f} = {v!r}: expected a non-negative integer")
        if self.in_c % self.groups or self.out_c % self.groups:
            raise MappingError(
                f"{where}: groups = {self.groups} must divide in_c = {self.in_c} and out_c = {self.out_c}")
        if self.kind == "depthwise" and self.groups != self.in_c:
            raise MappingError(f"{where}: depthwise needs groups == in_c, got groups = {self.groups}, in_c = {self.in_c}")
        if self.kind in ("pool", "add") and self.out_c != self.in_c:
            raise MappingError(f"{where}: {self.kind} keeps channels, got in_c = {self.in_c}, out_c = {self.out_c}")
        if self.kind == "pool" and self.pool_op not in ("max", "avg"):
            raise MappingError(f"{where}: pool_op = {self.pool_op!r}: expected 'max' or 'avg'")
        if self.kind in ("linear", "matmul", "add") and (self.kernel_h, self.kernel_w, self.stride_h, self.stride_w,
                                                          self.pad_h, self.pad_w) != (1, 1, 1, 1, 0, 0):
            raise MappingError(f"{where}: a {self.kind} layer has no window, stride or padding")
        if self.kind == "add" and self.n_inputs < 2:
            raise MappingError(f"{where}: add needs n_inputs >= 2, got {self.n_inputs}")
        if self.kernel_h > self.in_h + 2 * self.pad_h or self.kernel_w > self.in_w + 2 * self.pad_w:
            raise MappingError(
                f"{where}: kernel {self.kernel_h}x{self.kernel_w} is larger than the padded input "
                f"{self.in_h + 2 * self.pad_h}x{self.in_w + 2 * self.pad_w}")

    # --- shapes -------------------------------------------------------------------------
    @property
    def out_h(self) -> int:
        """Output height."""
        return out_size(self.in_h, self.kernel_h, self.stride_h, self.pad_h, self.ceil_mode)

    @property
    def out_w(self) -> int:
        """Output width."""
        return out_size(self.in_w, self.kernel_w, self.stride_w, self.pad_w, self.ceil_mode)

    @property
    def is_gemm(self) -> bool:
        """True for layers that run on the systolic array (conv, depthwise, linear, matmul)."""
        return self.kind in GEMM_KINDS

    @property
    def gemm(self) -> tuple[int, int, int, int]:
        """(groups, M, N, K) of the GEMM view; (0, 0, 0, 0) for pool and add."""
        if not self.is_gemm:
            return (0, 0, 0, 0)
        g = self.groups
        return (g, self.batch * self.out_h * self.out_w, self.out_c // g,
                self.kernel_h * self.kernel_w * (self.in_c // g))

    # --- counts -------------------------------------------------------------------------
    @property
    def macs(self) -> int:
        """Multiply-accumulates (0 for pool and add)."""
        g, m, n, k = self.gemm
        return g * m * n * k

    @property
    def weight_elems(self) -> int:
        """Stored weights (the K x N operand of conv/linear; 0 for matmul, pool, add), bias excluded."""
        if self.kind not in ("conv2d", "depthwise", "linear"):
            return 0
        return self.kernel_h * self.kernel_w * (self.in_c // self.groups) * self.out_c

    @property
    def params(self) -> int:
        """Parameters: weights plus bias (a folded batch-norm leaves a bias)."""
        return self.weight_elems + (self.out_c if self.bias and self.weight_elems else 0)

    @property
    def input_elems(self) -> int:
        """Activation elements read: every input tensor, unpadded (matmul: both operands)."""
        x = self.batch * self.in_h * self.in_w * self.in_c
        if self.kind == "add":
            return x * self.n_inputs
        if self.kind == "matmul":
            return x + self.batch * self.in_c * self.out_c
        return x

    @property
    def output_elems(self) -> int:
        """Activation elements written."""
        return self.batch * self.out_h * self.out_w * self.out_c

    @property
    def vector_ops(self) -> int:
        """Element operations off the array: pool window reductions and add's sums."""
        if self.kind == "pool":
            return self.output_elems * self.kernel_h * self.kernel_w
        if self.kind == "add":
            return self.output_elems * (self.n_inputs - 1)
        return 0

    def to_dict(self) -> dict:
        """All fields plus derived out_h, out_w, macs and params (JSON-ready)."""
        d = asdict(self)
        d.update(out_h=self.out_h, out_w=self.out_w, macs=self.macs, params=self.params)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Layer":
        """Inverse of `to_dict` (derived keys are ignored)."""
        keys = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in keys})
