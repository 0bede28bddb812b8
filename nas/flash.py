"""FLASH: training-free architecture search with NN-Degree and hierarchical SHGO (Li et al., ACM TECS 2021).

Search space (`FlashSpace`, `FlashArch`)
----------------------------------------
A DenseNet-style cell space: ``cells`` (three) cells, cell c has width w_c (channels of every
layer), depth d_c (3x3 conv + batch-norm + ReLU layers) and a skip budget t_c. Layer 1 of a
cell (its entry) reads the previous cell's output (the image for cell 1), with stride 2 entering
cells 2 and up; layer 2 reads layer 1; layer i >= 3 reads layer i-1 (its short-range link)
concatenated with min(t_c, (i-2) w_c) channels taken from the outputs of layers 1..i-2 (its
long-range links): the budget is dealt as evenly as possible over those layers, the more recent
ones first, and layer j contributes its first k_j channels (`long_range_links`). A cell outputs
its last layer; global average pooling and one linear layer finish the network. `build_network`
builds it as a `mapping.Network` (layer ``cellC.convI``, ``pool``, ``fc``; batch-norm folded
into the conv's bias) and `build_model` as a torch module whose `mapping.torch_import` trace is
that same `Network`.

NN-Degree (the definition implemented here)
-------------------------------------------
View a cell as a graph whose nodes are channels (neurons): a channel of layer v has one incoming
link from every channel v's convolution reads. Its in-degree is w_c short-range links (the
channels of its immediate predecessor, all of width w_c) plus its long-range links. Averaged over
the cell's d_c w_c channels:

    ḡ_c = w_c + L_c / d_c,   L_c = Σ_{i=3..d_c} min(t_c, (i-2) w_c),   ḡ = Σ_c ḡ_c

where L_c counts the cell's long-range (skip) links, per receiving channel. As in FLASH, every
layer of a cell is credited w_c short-range links: the entry layer's input comes from outside the
cell (the image or the previous cell, of another width) and is counted at the cell's own width.
`nn_degree` evaluates the closed form; `nn_degree_from_network` recomputes it from a `Network`'s
graph alone (cells from the layer names, a layer's in-degree = the channels of all its graph
inputs = its ``in_c``, the entry layer's = its width), and the tests hold the two equal on the
space, for the directly built network and for the torch model's trace.

Accuracy predictor
------------------
`sample_architectures` draws architectures spread over the NN-Degree range (seeded strata);
`train_samples` trains each briefly (`nas.train`) and records its validation accuracy, cached on
disk keyed by seed and settings; `fit_predictor` fits logit(accuracy) ~ log ḡ (+ log MACs or log
params, whichever the leave-one-out error prefers) by least squares and reports R² and Kendall τ
on the training samples, leave-one-out, and on held-out architectures it never saw.

Hardware model and the hierarchical SHGO
----------------------------------------
Every layer's cost on the analytical model (`cosim.analytical`) depends only on its own shape,
and the space has few distinct shapes, so `HardwareTables` costs each of them once (one batched
`estimate_arrays` call) and a compiled kernel sums table rows: an architecture's cycles, energy,
MACs, params and SRAM footprint in about a microsecond, equal to `estimate` on the built network
(tests hold the two equal). The continuous relaxation interpolates the tables bilinearly in
(width, input channels) and linearly in depth, so it agrees with the integer model at integer
points. Area is the chip the design needs (`AreaModel`): the PE array with the chosen multiplier
plus the SRAM the mapping actually occupies.

`flash_optimize` runs `scipy.optimize.shgo` twice: level one over widths and depths (skip budgets
held at a quarter of their range), level two over the skip budgets with the rounded widths and
depths; then it rounds and repairs (the best feasible of the floor/ceil corners, else greedy
descent of the constraint violation) and polishes: ±1 integer moves, then cell by cell every
(depth, skip) with the width within ±2, one batched evaluation per cell. Objective and limits are
on a log scale (accuracy on the logit scale). The defaults (simplicial sampling, n = 16, a quarter)
were chosen on the mnist5k predictor against long NSGA-II runs (see benchmarks/bench_flash.py).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from numba import njit

from cosim.jsonutil import jsonable
from mapping.hardware import HardwareConfig
from mapping.layer import Layer
from mapping.network import LayerArrays, Network
from traces.atomic import atomic_write

__all__ = [
    "OBJECTIVES", "AreaModel", "Constraints", "FlashArch", "FlashError", "FlashProblem", "FlashResult", "FlashSpace",
    "HardwareTables", "AccuracyPredictor", "SampleResult", "build_model", "build_network", "build_predictor",
    "cell_degrees", "cell_degrees_from_network", "engine_figures", "fit_predictor", "flash_optimize",
    "jsonable", "long_range_links", "measure_architecture", "nn_degree", "nn_degree_from_network",
    "sample_architectures", "skip_links", "train_samples", "analytical_figures",
]

CACHE_VERSION = 1  # bump when the sample format, the model or the training recipe changes


class FlashError(ValueError):
    """A bad architecture, space, constraint or cache file; the message names the field and the value."""


# --- the space ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FlashArch:
    """One architecture: per-cell widths w_c, depths d_c and skip budgets t_c."""

    widths: tuple[int, ...]
    depths: tuple[int, ...]
    skips: tuple[int, ...]

    def __post_init__(self):
        for f in ("widths", "depths", "skips"):
            v = getattr(self, f)
            try:
                v = tuple(int(x) for x in v)
            except (TypeError, ValueError):
                raise FlashError(f"architecture {f} = {v!r}: expected a sequence of integers") from None
            object.__setattr__(self, f, v)
        if not (len(self.widths) == len(self.depths) == len(self.skips)) or not self.widths:
            raise FlashError(f"architecture: widths {self.widths}, depths {self.depths}, skips {self.skips} "
                             "must have one entry per cell")
        for f, lo in (("widths", 1), ("depths", 1), ("skips", 0)):
            bad = [x for x in getattr(self, f) if x < lo]
            if bad:
                raise FlashError(f"architecture {f} = {getattr(self, f)}: every entry must be >= {lo}")

    @property
    def cells(self) -> int:
        """Number of cells."""
        return len(self.widths)

    @property
    def key(self) -> str:
        """Compact name, e.g. ``w8-16-32_d2-3-4_t0-4-8``."""
        j = lambda v: "-".join(map(str, v))  # noqa: E731
        return f"w{j(self.widths)}_d{j(self.depths)}_t{j(self.skips)}"

    def vector(self) -> tuple[int, ...]:
        """(w_1..w_C, d_1..d_C, t_1..t_C)."""
        return self.widths + self.depths + self.skips

    def canonical(self, skip_low: int = 0) -> "FlashArch":
        """The same network with each skip budget cut to what the cell can use, max((d-2) w, skip_low)."""
        t = tuple(max(min(t, max(d - 2, 0) * w), min(t, skip_low))
                  for w, d, t in zip(self.widths, self.depths, self.skips))
        return FlashArch(self.widths, self.depths, t)

    @classmethod
    def from_vector(cls, v: Sequence[float], cells: int) -> "FlashArch":
        """Inverse of `vector` (entries rounded to integers)."""
        v = [int(round(float(x))) for x in v]
        return cls(tuple(v[:cells]), tuple(v[cells:2 * cells]), tuple(v[2 * cells:3 * cells]))

    def to_dict(self) -> dict:
        """JSON-ready dict with the key."""
        return {"key": self.key, "widths": list(self.widths), "depths": list(self.depths), "skips": list(self.skips)}

    @classmethod
    def from_dict(cls, d: dict) -> "FlashArch":
        """Inverse of `to_dict`."""
        return cls(tuple(d["widths"]), tuple(d["depths"]), tuple(d["skips"]))


# (shape, classes) of nas.data's built-in sets; tests hold this to nas.data.dataset_info
_BUILTIN_SHAPES = {"digits": ((1, 8, 8), 10), "mnist5k": ((1, 28, 28), 10)}


def _range(name: str, v) -> tuple[int, int]:
    try:
        lo, hi = (int(x) for x in v)
    except (TypeError, ValueError):
        raise FlashError(f"space {name} = {v!r}: expected (low, high) integers") from None
    if lo > hi:
        raise FlashError(f"space {name} = ({lo}, {hi}): low must not exceed high")
    return lo, hi


@dataclass(frozen=True)
class FlashSpace:
    """Bounds of the cell space (inclusive) and the data it runs on."""

    width: tuple[int, int] = (4, 32)
    depth: tuple[int, int] = (1, 6)
    skip: tuple[int, int] = (0, 32)
    cells: int = 3
    input_shape: tuple[int, int, int] = (1, 28, 28)  # (C, H, W)
    classes: int = 10

    def __post_init__(self):
        object.__setattr__(self, "width", _range("width", self.width))
        object.__setattr__(self, "depth", _range("depth", self.depth))
        object.__setattr__(self, "skip", _range("skip", self.skip))
        if self.width[0] < 1 or self.depth[0] < 1 or self.skip[0] < 0:
            raise FlashError(f"space: width {self.width} and depth {self.depth} must start at >= 1, "
                             f"skip {self.skip} at >= 0")
        if not isinstance(self.cells, int) or self.cells < 1:
            raise FlashError(f"space cells = {self.cells!r}: expected a positive integer")
        shape = tuple(int(x) for x in self.input_shape)
        if len(shape) != 3 or min(shape) < 1:
            raise FlashError(f"space input_shape = {self.input_shape!r}: expected (C, H, W), positive")
        object.__setattr__(self, "input_shape", shape)
        if self.classes < 2:
            raise FlashError(f"space classes = {self.classes!r}: expected >= 2")

    @classmethod
    def for_dataset(cls, name: str, **bounds) -> "FlashSpace":
        """The space on data set `name` (its image shape and class count)."""
        import sys

        if name in _BUILTIN_SHAPES and "nas.data" not in sys.modules:
            shape, classes = _BUILTIN_SHAPES[name]  # spares a cached run the torch import nas.data brings
        else:
            from .data import dataset_info

            info = dataset_info(name)
            shape, classes = info.shape, info.classes
        return cls(input_shape=shape, classes=classes, **bounds)

    def size(self) -> int:
        """Number of (w, d, t) configurations (equivalent ones, e.g. any t when d < 3, counted apart)."""
        per = 1
        for lo, hi in (self.width, self.depth, self.skip):
            per *= hi - lo + 1
        return per ** self.cells

    def lower(self) -> np.ndarray:
        """Lower bounds of the (w..., d..., t...) vector."""
        C = self.cells
        return np.array([self.width[0]] * C + [self.depth[0]] * C + [self.skip[0]] * C, dtype=np.float64)

    def upper(self) -> np.ndarray:
        """Upper bounds of the (w..., d..., t...) vector."""
        C = self.cells
        return np.array([self.width[1]] * C + [self.depth[1]] * C + [self.skip[1]] * C, dtype=np.float64)

    def check(self, arch: FlashArch) -> FlashArch:
        """Raise FlashError unless `arch` lies in the space."""
        if arch.cells != self.cells:
            raise FlashError(f"architecture {arch.key}: {arch.cells} cells, the space has {self.cells}")
        for f, (lo, hi) in (("widths", self.width), ("depths", self.depth), ("skips", self.skip)):
            for c, v in enumerate(getattr(arch, f)):
                if not lo <= v <= hi:
                    raise FlashError(f"architecture {arch.key}: {f}[{c}] = {v} outside the space's [{lo}, {hi}]")
        return arch

    def sample(self, rng: np.random.Generator) -> FlashArch:
        """One architecture drawn uniformly."""
        C = self.cells
        return FlashArch(tuple(int(x) for x in rng.integers(self.width[0], self.width[1] + 1, C)),
                         tuple(int(x) for x in rng.integers(self.depth[0], self.depth[1] + 1, C)),
                         tuple(int(x) for x in rng.integers(self.skip[0], self.skip[1] + 1, C)))

    def resolutions(self) -> list[tuple[int, int]]:
        """(H, W) of each cell's input (index c) and of the last cell's output (index cells)."""
        _, h, w = self.input_shape
        out = [(h, w)]
        for c in range(self.cells):
            if c > 0:  # 3x3, stride 2, padding 1
                h, w = (h - 1) // 2 + 1, (w - 1) // 2 + 1
            out.append((h, w))
        return out

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return {"width": list(self.width), "depth": list(self.depth), "skip": list(self.skip), "cells": self.cells,
                "input_shape": list(self.input_shape), "classes": self.classes, "configurations": self.size()}


def long_range_links(width: int, depth: int, skip: int) -> tuple[tuple[tuple[int, int], ...], ...]:
    """Per layer i = 1..depth: the (source layer, channels) pairs it concatenates beside layer i-1."""
    out: list[tuple[tuple[int, int], ...]] = []
    for i in range(1, depth + 1):
        if i < 3:
            out.append(())
            continue
        sources = list(range(i - 2, 0, -1))  # most recent first
        budget = min(skip, (i - 2) * width)
        q, r = divmod(budget, len(sources))
        links = tuple((j, q + (1 if rank < r else 0)) for rank, j in enumerate(sources) if q + (rank < r) > 0)
        out.append(links)
    return tuple(out)


def skip_links(width: int, depth: int, skip: int) -> int:
    """L_c: the cell's long-range links per receiving channel, Σ_{i=3..d} min(t, (i-2) w)."""
    return sum(min(skip, (i - 2) * width) for i in range(3, depth + 1))


def cell_degrees(arch: FlashArch) -> tuple[float, ...]:
    """ḡ_c = w_c + L_c / d_c per cell (closed form)."""
    return tuple(w + skip_links(w, d, t) / d for w, d, t in zip(arch.widths, arch.depths, arch.skips))


def nn_degree(arch: FlashArch) -> float:
    """NN-Degree ḡ = Σ_c (w_c + L_c / d_c) (closed form; see the module docstring)."""
    return float(sum(cell_degrees(arch)))


_CELL_RE = re.compile(r"^cell(\d+)\.")


def cell_degrees_from_network(net: Network) -> tuple[float, ...]:
    """ḡ_c per cell from the graph alone: mean in-degree (in channels) of the cell's layers."""
    cells: dict[int, list[Layer]] = {}
    for layer in net.layers:
        m = _CELL_RE.match(layer.name)
        if m and layer.kind == "conv2d":
            cells.setdefault(int(m.group(1)), []).append(layer)
    if not cells:
        raise FlashError(f"network {net.name!r}: no layers named cellN.* (not a FLASH cell network)")
    out = []
    for c in sorted(cells):
        members = {l.name for l in cells[c]}
        degs = []
        for layer in cells[c]:
            inside = [u for u in net.inputs_of(layer.name) if u in members]
            if not inside:  # the entry layer: its short-range link is credited at the cell's width
                degs.append(layer.out_c)
            else:
                degs.append(layer.in_c)  # = channels of all graph inputs: w_c short-range + long-range
        out.append(sum(degs) / len(degs))
    return tuple(out)


def nn_degree_from_network(net: Network) -> float:
    """NN-Degree of a FLASH cell network computed from its `Network` graph."""
    return float(sum(cell_degrees_from_network(net)))


# --- building -------------------------------------------------------------------------------------------------

def build_network(arch: FlashArch, space: FlashSpace, name: str | None = None, batch: int = 1) -> Network:
    """The architecture as a `Network` (layer names match `build_model`'s trace)."""
    space.check(arch)
    in_c, h, w = space.input_shape
    net = Network(name or f"flash_{arch.key}", input_shape=space.input_shape)
    prev: list[str] = []
    ch = in_c
    for c in range(arch.cells):
        width, depth, skip = arch.widths[c], arch.depths[c], arch.skips[c]
        links = long_range_links(width, depth, skip)
        stride = 1 if c == 0 else 2
        names: list[str] = []
        for i in range(1, depth + 1):
            lname = f"cell{c + 1}.conv{i}"
            if i == 1:
                layer = Layer(lname, "conv2d", h, w, ch, width, 3, 3, stride, stride, 1, 1, bias=True, batch=batch)
                h, w = layer.out_h, layer.out_w
                inputs = prev
            else:
                extra = sum(k for _, k in links[i - 1])
                layer = Layer(lname, "conv2d", h, w, width + extra, width, 3, 3, 1, 1, 1, 1, bias=True, batch=batch)
                inputs = [names[-1]] + [names[j - 1] for j, _ in links[i - 1]]
            net.add(layer, inputs)
            names.append(lname)
        prev = [names[-1]]
        ch = width
    if (h, w) != (1, 1):  # adaptive average pooling to 1x1 (torch_import drops it when it is the identity)
        net.add(Layer("pool", "pool", h, w, ch, ch, h, w, h, w, batch=batch, pool_op="avg"), prev)
        prev = ["pool"]
    net.add(Layer("fc", "linear", 1, 1, ch, space.classes, bias=True, batch=batch), prev)
    return net


def build_model(arch: FlashArch, space: FlashSpace):
    """The architecture as a torch module (conv-BN-ReLU layers, dense long-range concatenations)."""
    import torch
    from torch import nn

    space.check(arch)

    class FlashCell(nn.Module):
        """One cell: `depth` conv-BN-ReLU layers with long-range concatenations."""

        def __init__(self, in_ch: int, width: int, depth: int, skip: int, stride: int):
            super().__init__()
            self.links = long_range_links(width, depth, skip)
            self.depth = depth
            for i in range(1, depth + 1):
                cin = in_ch if i == 1 else width + sum(k for _, k in self.links[i - 1])
                setattr(self, f"conv{i}", nn.Conv2d(cin, width, 3, stride if i == 1 else 1, 1, bias=False))
                setattr(self, f"bn{i}", nn.BatchNorm2d(width))

        def forward(self, x):
            outs = []
            for i in range(1, self.depth + 1):
                if i > 1:
                    parts = [outs[-1]] + [outs[j - 1][:, :k] for j, k in self.links[i - 1]]
                    x = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
                x = torch.relu(getattr(self, f"bn{i}")(getattr(self, f"conv{i}")(x)))
                outs.append(x)
            return outs[-1]

    class FlashNet(nn.Module):
        """Cells, global average pooling, one linear layer."""

        def __init__(self):
            super().__init__()
            ch = space.input_shape[0]
            self.ncells = arch.cells
            for c in range(arch.cells):
                setattr(self, f"cell{c + 1}", FlashCell(ch, arch.widths[c], arch.depths[c], arch.skips[c],
                                                        1 if c == 0 else 2))
                ch = arch.widths[c]
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(ch, space.classes)

        def forward(self, x):
            for c in range(1, self.ncells + 1):
                x = getattr(self, f"cell{c}")(x)
            return self.fc(torch.flatten(self.pool(x), 1))

    return FlashNet()


# --- hardware tables and the compiled evaluator ------------------------------------------------------------------

# Kernel output columns
K_CYCLES, K_EFIX, K_MACS, K_SRAM, K_PARAMS, K_DEGREE = range(6)
KERNEL_OUTPUTS = ("total_cycles", "energy_excl_mult_pj", "macs", "sram_footprint_bytes", "params", "nn_degree")
_TABLE_METRICS = 5  # the first five kernel outputs come from the tables


def _default_pe_overhead_um2() -> float:
    from rtl_models.costs import BASE_CELL_COSTS, CALIBRATION

    # A 32-bit ripple-carry accumulator (32 FA) and 48 flip-flops (8-bit activation, 8-bit weight,
    # 32-bit partial sum); FreePDK45 DFF_X1 is 4.522 um^2. Same area calibration as the multipliers.
    return (32 * BASE_CELL_COSTS["FA"].area_um2 + 48 * 4.522) * CALIBRATION.area


@dataclass(frozen=True)
class AreaModel:
    """Silicon a design needs: PEs x (multiplier + PE overhead) + the SRAM bytes the mapping occupies."""

    pe_overhead_um2: float = field(default_factory=_default_pe_overhead_um2)
    # 45 nm 6T bit cell 0.346 um^2 (Mistry et al., IEDM 2007) at ~50% array efficiency (assumption)
    sram_um2_per_byte: float = 8 * 0.346 / 0.5

    def area_um2(self, hw: HardwareConfig, multiplier_area_um2: float, sram_footprint_bytes):
        """Area in um^2 (arrays broadcast over `sram_footprint_bytes`, the per-pod peak working set)."""
        pes = hw.pods * hw.rows * hw.cols
        return pes * (multiplier_area_um2 + self.pe_overhead_um2) + \
            hw.pods * np.asarray(sram_footprint_bytes, dtype=np.float64) * self.sram_um2_per_byte


def _conv(name, h, w, cin, cout, stride) -> Layer:
    return Layer(name, "conv2d", h, w, cin, cout, 3, 3, stride, stride, 1, 1, bias=True)


class HardwareTables:
    """Per-shape layer costs of a space on one machine (analytical model), for the compiled evaluator.

    entry[c, a, b]: cell c's entry layer with input width index a (0 for cell 1: the image) and
    width index b; inner[c, b, v]: a later layer of cell c with width index b and v + width[0]
    input channels; head[b]: pooling + linear after a last cell of width index b. The last axis
    holds total cycles, energy without the multiplies (pJ), MACs, SRAM footprint (bytes), params.
    """

    def __init__(self, space: FlashSpace, hw: HardwareConfig, timing: str = "scalesim", split: str = "auto"):
        from cosim.analytical import estimate_arrays

        t0 = time.perf_counter()
        self.space, self.hw, self.timing, self.split = space, hw, timing, split
        wlo, whi = space.width
        W = whi - wlo + 1
        V = whi + space.skip[1] - wlo + 1
        C = space.cells
        A = W if C > 1 else 1
        res = space.resolutions()
        layers: list[Layer] = []
        for c in range(C):
            h, w = res[c]
            stride = 1 if c == 0 else 2
            ins = [space.input_shape[0]] if c == 0 else range(wlo, whi + 1)
            for a, cin in enumerate(ins):
                for b in range(W):
                    layers.append(_conv(f"e{c}_{a}_{b}", h, w, cin, wlo + b, stride))
        for c in range(C):
            h, w = res[c + 1]
            for b in range(W):
                for v in range(V):
                    layers.append(_conv(f"i{c}_{b}_{v}", h, w, wlo + v, wlo + b, 1))
        h, w = res[C]
        head_pool = (h, w) != (1, 1)
        for b in range(W):
            if head_pool:
                layers.append(Layer(f"p{b}", "pool", h, w, wlo + b, wlo + b, h, w, h, w, pool_op="avg"))
            layers.append(Layer(f"f{b}", "linear", 1, 1, wlo + b, space.classes, bias=True))
        arrays = LayerArrays.from_layers(layers)
        _, v = estimate_arrays(arrays, hw, 0.0, timing, split)  # multiply energy added per multiplier later
        cols = np.stack([v["total_cycles"].astype(np.float64), v["total_energy_pj"], arrays.macs.astype(np.float64),
                         v["sram_footprint_bytes"].astype(np.float64), arrays.params.astype(np.float64)], axis=1)
        n_entry = W + (C - 1) * W * W
        entry = np.zeros((C, A, W, _TABLE_METRICS))
        entry[0, 0] = cols[:W]
        if C > 1:
            entry[1:] = cols[W:n_entry].reshape(C - 1, W, W, _TABLE_METRICS)
        n_inner = C * W * V
        inner = cols[n_entry:n_entry + n_inner].reshape(C, W, V, _TABLE_METRICS)
        rest = cols[n_entry + n_inner:]
        if head_pool:
            rest = rest.reshape(W, 2, _TABLE_METRICS)
            head = rest[:, 0].copy()
            head[:, :K_SRAM] += rest[:, 1, :K_SRAM]
            head[:, K_SRAM] = np.maximum(rest[:, 0, K_SRAM], rest[:, 1, K_SRAM])
            head[:, K_PARAMS] += rest[:, 1, K_PARAMS]
        else:
            head = rest.copy()
        self.entry = np.ascontiguousarray(entry)
        self.inner = np.ascontiguousarray(inner)
        self.head = np.ascontiguousarray(head)
        self.bounds = np.array([wlo, space.depth[0], space.depth[1]], dtype=np.float64)
        self.layers_costed = len(layers)
        self.build_s = time.perf_counter() - t0

    def evaluate(self, X: np.ndarray) -> np.ndarray:
        """Kernel outputs (N, 6) for N (possibly fractional) (w..., d..., t...) vectors."""
        X = np.ascontiguousarray(np.atleast_2d(np.asarray(X, dtype=np.float64)))
        if X.shape[1] != 3 * self.space.cells:
            raise FlashError(f"evaluate: vectors of length {X.shape[1]}, expected {3 * self.space.cells}")
        return _eval_many(X, self.space.cells, self.entry, self.inner, self.head, self.bounds)

    def evaluate_one(self, x: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Kernel outputs for one vector into `out` (no validation: the optimizer's hot path)."""
        _eval_one(x, self.space.cells, self.entry, self.inner, self.head, self.bounds, out)
        return out


@njit(cache=True)
def _interp2(T, u, v, out, weight):
    """out[m] += weight * bilinear T[u, v, m] (u, v clamped); returns the interpolated SRAM column."""
    nu, nv = T.shape[0], T.shape[1]
    u = min(max(u, 0.0), nu - 1.0)
    v = min(max(v, 0.0), nv - 1.0)
    i0 = min(int(math.floor(u)), max(nu - 2, 0))
    j0 = min(int(math.floor(v)), max(nv - 2, 0))
    i1 = min(i0 + 1, nu - 1)
    j1 = min(j0 + 1, nv - 1)
    fu = u - i0
    fv = v - j0
    sram = 0.0
    for m in range(T.shape[2]):
        a = T[i0, j0, m] if fu == 0.0 and fv == 0.0 else (
            (1 - fu) * (1 - fv) * T[i0, j0, m] + (1 - fu) * fv * T[i0, j1, m]
            + fu * (1 - fv) * T[i1, j0, m] + fu * fv * T[i1, j1, m])
        if m == 3:
            sram = weight * a
        else:
            out[m] += weight * a
    return sram


@njit(cache=True)
def _eval_one(x, C, entry, inner, head, bounds, out):
    wlo, dlo, dhi = bounds[0], bounds[1], bounds[2]
    for m in range(6):
        out[m] = 0.0
    sram = 0.0
    degree = 0.0
    for c in range(C):
        w = x[c]
        d = min(max(x[C + c], dlo), dhi)
        t = x[2 * C + c]
        a = 0.0 if c == 0 else x[c - 1] - wlo
        s = _interp2(entry[c], a, w - wlo, out, 1.0)
        sram = max(sram, s)
        D = int(math.floor(d))
        f = d - D
        L = 0.0
        for i in range(2, D + 2):
            wt = 1.0 if i <= D else f
            if wt == 0.0:
                continue
            lr = min(t, (i - 2) * w) if i >= 3 else 0.0
            s = _interp2(inner[c], w - wlo, w + lr - wlo, out, wt)
            sram = max(sram, s)
            L += wt * lr
        degree += w + L / d
    # head: pooling + linear, 1-D in the last width (reuse the 2-D routine with a unit axis)
    wl = x[C - 1] - wlo
    nW = head.shape[0]
    u = min(max(wl, 0.0), nW - 1.0)
    i0 = min(int(math.floor(u)), max(nW - 2, 0))
    i1 = min(i0 + 1, nW - 1)
    fu = u - i0
    for m in range(head.shape[1]):
        a = head[i0, m] if fu == 0.0 else (1 - fu) * head[i0, m] + fu * head[i1, m]
        if m == 3:
            sram = max(sram, a)
        else:
            out[m] += a
    out[3] = sram
    out[5] = degree


@njit(cache=True)
def _eval_many(X, C, entry, inner, head, bounds):
    N = X.shape[0]
    out = np.zeros((N, 6))
    for r in range(N):
        _eval_one(X[r], C, entry, inner, head, bounds, out[r])
    return out


# --- accuracy predictor ---------------------------------------------------------------------------------------

FEATURE_SETS = (("log_degree",), ("log_degree", "log_macs"), ("log_degree", "log_params"))
_ACC_CLIP = 1e-3


def _logit(p):
    p = np.clip(np.asarray(p, dtype=np.float64), _ACC_CLIP, 1 - _ACC_CLIP)
    return np.log(p / (1 - p))


def _features(names: Sequence[str], degree, macs, params) -> np.ndarray:
    cols = {"log_degree": degree, "log_macs": macs, "log_params": params}
    return np.stack([np.log(np.maximum(np.asarray(cols[n], dtype=np.float64), 1e-9)) for n in names], axis=-1)


@dataclass(frozen=True)
class SampleResult:
    """One trained sample: architecture, NN-Degree, size, validation / test accuracy, training time."""

    arch: FlashArch
    nn_degree: float
    params: int
    macs: int
    val_accuracy: float
    test_accuracy: float
    train_s: float

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        d = asdict(self)
        d["arch"] = self.arch.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SampleResult":
        """Inverse of `to_dict`."""
        d = dict(d)
        d["arch"] = FlashArch.from_dict(d["arch"])
        return cls(**d)


def _kendall(a, b) -> float:
    from scipy.stats import kendalltau

    if len(a) < 2:
        return float("nan")
    tau = kendalltau(a, b).statistic
    return float(tau) if tau == tau else float("nan")


def _r2(y, p) -> float:
    y, p = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
    if len(y) < 2:
        return float("nan")
    ss = float(((y - y.mean()) ** 2).sum())
    return 1.0 - float(((y - p) ** 2).sum()) / ss if ss > 0 else float("nan")


@dataclass(frozen=True)
class AccuracyPredictor:
    """logit(accuracy) = intercept + coef · standardized log features; with its fit statistics."""

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float
    stats: dict = field(default_factory=dict, compare=False)

    def logit(self, degree, macs, params):
        """Predicted logit(accuracy) (arrays broadcast)."""
        z = (_features(self.features, degree, macs, params) - np.asarray(self.mean)) / np.asarray(self.scale)
        return self.intercept + z @ np.asarray(self.coef)

    def predict(self, degree, macs, params):
        """Predicted accuracy in (0, 1)."""
        return 1.0 / (1.0 + np.exp(-self.logit(degree, macs, params)))

    def to_dict(self) -> dict:
        """JSON-ready dict (coefficients and fit statistics)."""
        return jsonable({"features": list(self.features), "mean": list(self.mean), "scale": list(self.scale),
                         "coef": list(self.coef), "intercept": self.intercept, "stats": self.stats})


def _lsq(F: np.ndarray, y: np.ndarray, ridge: float = 1e-3):
    mu = F.mean(axis=0)
    sd = F.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    Z = (F - mu) / sd
    A = np.hstack([np.ones((len(Z), 1)), Z])
    reg = ridge * np.eye(A.shape[1])
    reg[0, 0] = 0.0  # the intercept is not shrunk
    beta = np.linalg.solve(A.T @ A + reg, A.T @ y)
    return mu, sd, beta


def fit_predictor(samples: Sequence[SampleResult], holdout: Sequence[SampleResult] = (),
                  feature_sets: Sequence[Sequence[str]] = FEATURE_SETS) -> AccuracyPredictor:
    """Fit the predictor on `samples` (feature set chosen by leave-one-out RMSE); report fit and held-out R², τ."""
    if len(samples) < 3:
        raise FlashError(f"fit_predictor: {len(samples)} samples, need at least 3")
    deg = np.array([s.nn_degree for s in samples])
    macs = np.array([s.macs for s in samples], dtype=np.float64)
    par = np.array([s.params for s in samples], dtype=np.float64)
    acc = np.array([s.val_accuracy for s in samples])
    y = _logit(acc)
    n = len(samples)
    best = None
    loo_table = {}
    for names in feature_sets:
        names = tuple(names)
        F = _features(names, deg, macs, par)
        if n <= F.shape[1] + 2:
            continue
        pred = np.empty(n)
        for i in range(n):
            keep = np.arange(n) != i
            mu, sd, beta = _lsq(F[keep], y[keep])
            pred[i] = beta[0] + ((F[i] - mu) / sd) @ beta[1:]
        pacc = 1 / (1 + np.exp(-pred))
        rmse = float(np.sqrt(np.mean((pacc - acc) ** 2)))
        loo_table["+".join(names)] = rmse
        if best is None or rmse < best[0] - 1e-12:
            best = (rmse, names, pacc)
    if best is None:  # too few samples for leave-one-out: the NN-Degree alone
        best = (float("nan"), ("log_degree",), np.full(n, np.nan))
    _, names, loo_pred = best
    F = _features(names, deg, macs, par)
    mu, sd, beta = _lsq(F, y)
    p = AccuracyPredictor(names, tuple(map(float, mu)), tuple(map(float, sd)), tuple(map(float, beta[1:])),
                          float(beta[0]))
    fit_pred = p.predict(deg, macs, par)
    stats = {"n_train": n, "train_r2": _r2(acc, fit_pred), "train_kendall_tau": _kendall(acc, fit_pred),
             "train_rmse": float(np.sqrt(np.mean((fit_pred - acc) ** 2))),
             "loo_r2": _r2(acc, loo_pred), "loo_kendall_tau": _kendall(acc, loo_pred),
             "loo_rmse_by_features": loo_table,
             "degree_kendall_tau": _kendall(acc, deg)}
    if holdout:
        hd = np.array([s.nn_degree for s in holdout])
        hm = np.array([s.macs for s in holdout], dtype=np.float64)
        hp = np.array([s.params for s in holdout], dtype=np.float64)
        ha = np.array([s.val_accuracy for s in holdout])
        hpred = p.predict(hd, hm, hp)
        stats.update(n_holdout=len(holdout), holdout_r2=_r2(ha, hpred), holdout_kendall_tau=_kendall(ha, hpred),
                     holdout_rmse=float(np.sqrt(np.mean((hpred - ha) ** 2))),
                     holdout_degree_kendall_tau=_kendall(ha, hd))
    else:
        stats.update(n_holdout=0)
    return AccuracyPredictor(p.features, p.mean, p.scale, p.coef, p.intercept, stats)


def sample_architectures(space: FlashSpace, n: int, seed: int = 0, holdout: int = 0,
                         pool_factor: int = 40) -> tuple[list[FlashArch], list[FlashArch]]:
    """`n` training and `holdout` held-out architectures, each set spread over the NN-Degree range.

    A seeded pool of pool_factor * (n + holdout) uniform draws is sorted by NN-Degree and cut into
    equal strata; each set takes one random member per stratum (the held-out set from what the
    training set left), so both cover small to large networks instead of clustering in the middle.
    """
    if n < 1 or holdout < 0:
        raise FlashError(f"sample_architectures: n = {n}, holdout = {holdout}: expected n >= 1, holdout >= 0")
    rng = np.random.default_rng(seed)
    pool = {}
    for _ in range(pool_factor * (n + holdout)):
        a = space.sample(rng)
        pool.setdefault(a.key, a)
    archs = sorted(pool.values(), key=lambda a: (nn_degree(a), a.key))

    def pick(items: list[FlashArch], k: int) -> list[FlashArch]:
        if k == 0:
            return []
        if len(items) < k:
            raise FlashError(f"sample_architectures: the space has too few distinct architectures for {k} samples")
        edges = np.linspace(0, len(items), k + 1).astype(int)
        return [items[int(rng.integers(lo, hi))] for lo, hi in zip(edges[:-1], edges[1:])]

    train = pick(archs, n)
    taken = {a.key for a in train}
    rest = [a for a in archs if a.key not in taken]
    return train, pick(rest, holdout)




def _cache_key(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def _atomic_json(path: Path, data: Any) -> None:
    atomic_write(path, (json.dumps(data, indent=1) + "\n").encode("utf-8"))


def train_samples(archs: Sequence[FlashArch], space: FlashSpace, dataset, config, *,
                  cache_file: Path | None = None, settings: dict | None = None,
                  progress: Callable[[int, int, FlashArch, bool], None] | None = None) -> list[SampleResult]:
    """Train each architecture on dataset.train, score on val and test; reuse and extend `cache_file`.

    The cache holds {"settings": ..., "samples": {arch key: SampleResult}} and is rewritten
    (atomically) after every trained sample, so an interrupted run resumes where it stopped.
    `progress(i, n, arch, cached)` is called before each architecture.
    """
    done: dict[str, SampleResult] = {}
    if cache_file is not None and cache_file.is_file():
        try:
            doc = json.loads(cache_file.read_text(encoding="utf-8"))
            if settings is None or doc.get("settings") == settings:
                done = {k: SampleResult.from_dict(v) for k, v in doc["samples"].items()}
        except (json.JSONDecodeError, KeyError, TypeError, FlashError) as exc:
            raise FlashError(f"{cache_file}: unreadable FLASH sample cache ({exc}); delete it to retrain") from None
    out = []
    for i, arch in enumerate(archs):
        hit = arch.key in done
        if progress is not None:
            progress(i, len(archs), arch, hit)
        if hit:
            out.append(done[arch.key])
            continue
        import torch

        from .train import evaluate, train

        torch.manual_seed(config.seed)
        model = build_model(arch, space)
        net = build_network(arch, space)
        res = train(model, dataset.train.x, dataset.train.y, config, quiet=True)
        threads = config.threads
        r = SampleResult(arch, nn_degree(arch), net.params, net.macs,
                         evaluate(model, dataset.val.x, dataset.val.y, threads=threads),
                         evaluate(model, dataset.test.x, dataset.test.y, threads=threads), res.wall_s)
        done[arch.key] = r
        out.append(r)
        if cache_file is not None:
            _atomic_json(cache_file, {"settings": settings, "samples": {k: v.to_dict() for k, v in done.items()}})
    return out


def build_predictor(space: FlashSpace, dataset: str = "mnist5k", *, samples: int = 25, holdout: int = 10,
                    seed: int = 0, epochs: int = 2, batch_size: int = 32, lr: float = 3e-3,
                    max_train: int | None = None, cache: Path | None | bool = True, root: str | Path | None = None,
                    progress: Callable[[int, int, FlashArch, bool], None] | None = None):
    """Sample, train (or load from the cache) and fit: (predictor, training samples, held-out samples, info).

    `cache`: True for ``<cosim cache>/flash/``, a directory, or False/None for none. The cache file
    is keyed by every setting that changes the results (space, data set, seed, counts, recipe).
    `root` is the data directory of file-based data sets (see `nas.data.load_dataset`).
    """
    # torch (through nas.data / nas.train) is imported only when something must be trained: a cached
    # run then starts in a fraction of the time.
    settings = {"version": CACHE_VERSION, "space": space.to_dict(), "dataset": dataset, "seed": seed,
                "samples": samples, "holdout": holdout, "epochs": epochs, "batch_size": batch_size, "lr": lr,
                "max_train": max_train}
    cache_file = None
    if cache:
        if cache is True:
            from rtl_models.library import cache_dir

            cache = cache_dir() / "flash"
        cache_file = Path(cache) / f"samples-{dataset}-{_cache_key(settings)}.json"
    train_archs, hold_archs = sample_architectures(space, samples, seed, holdout)
    t0 = time.perf_counter()
    needed = True
    if cache_file is not None and cache_file.is_file():
        try:
            doc = json.loads(cache_file.read_text(encoding="utf-8"))
            needed = not all(a.key in doc.get("samples", {}) for a in train_archs + hold_archs)
        except json.JSONDecodeError:
            needed = True
    config = None
    ds: Any = _NoData()
    if needed:
        from .data import load_dataset
        from .train import TrainConfig

        config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, threads=1)
        ds = load_dataset(dataset, root, seed=seed, max_train=max_train)
    results = train_samples(train_archs + hold_archs, space, ds, config, cache_file=cache_file, settings=settings,
                            progress=progress)
    tr, ho = results[:samples], results[samples:]
    pred = fit_predictor(tr, ho)
    info = {"settings": settings, "cache_file": str(cache_file) if cache_file else None,
            "trained": sum(1 for _ in results) if needed else 0, "from_cache": not needed,
            "wall_s": time.perf_counter() - t0, "train_s_total": float(sum(r.train_s for r in results))}
    return pred, tr, ho, info


def measure_architecture(arch: FlashArch, space: FlashSpace, dataset: str = "mnist5k", *, seed: int = 0,
                         epochs: int = 2, batch_size: int = 32, lr: float = 3e-3,
                         max_train: int | None = None, root: str | Path | None = None) -> dict:
    """Train `arch` with the predictor samples' recipe: validation / test accuracy and training time."""
    from .data import load_dataset
    from .train import TrainConfig

    config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, threads=1)
    ds = load_dataset(dataset, root, seed=seed, max_train=max_train)
    r = train_samples([arch], space, ds, config)[0]
    return {"val_accuracy": r.val_accuracy, "test_accuracy": r.test_accuracy, "train_s": r.train_s}


class _NoData:
    """Stands in for a data set when every sample is cached (loading mnist5k takes seconds)."""

    def __getattr__(self, name):
        raise FlashError("internal: a cached FLASH sample was missing and no data set was loaded")


# --- the problem ----------------------------------------------------------------------------------------------

OBJECTIVES = ("accuracy", "latency", "energy", "edp", "area", "sram")


@dataclass(frozen=True)
class Constraints:
    """Upper limits on the hardware figures and a floor on predicted accuracy (None: unconstrained)."""

    latency_max_s: float | None = None
    energy_max_pj: float | None = None
    area_max_um2: float | None = None
    sram_max_bytes: float | None = None
    accuracy_min: float | None = None

    def __post_init__(self):
        for f in ("latency_max_s", "energy_max_pj", "area_max_um2", "sram_max_bytes"):
            v = getattr(self, f)
            if v is not None and not (math.isfinite(v) and v > 0):
                raise FlashError(f"constraint {f} = {v!r}: expected a positive number")
        a = self.accuracy_min
        if a is not None and not 0 < a < 1:
            raise FlashError(f"constraint accuracy_min = {a!r}: expected a fraction in (0, 1)")

    def active(self) -> list[tuple[str, float]]:
        """(metric, limit) pairs that are set; accuracy is a floor, the others ceilings."""
        m = {"latency_max_s": "latency_s", "energy_max_pj": "energy_pj", "area_max_um2": "area_um2",
             "sram_max_bytes": "sram_footprint_bytes", "accuracy_min": "accuracy"}
        return [(m[f], getattr(self, f)) for f in m if getattr(self, f) is not None]

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return asdict(self)


class FlashProblem:
    """Space + hardware tables + predictor + multiplier + constraints + objective: what the optimizers see."""

    def __init__(self, space: FlashSpace, tables: HardwareTables, predictor: AccuracyPredictor, multiplier: Any,
                 constraints: Constraints = Constraints(), objective: str = "accuracy",
                 area_model: AreaModel | None = None):
        if objective not in OBJECTIVES:
            raise FlashError(f"objective {objective!r}: expected one of {', '.join(OBJECTIVES)}")
        if tables.space != space:
            raise FlashError("hardware tables were built for another space")
        self.space, self.tables, self.predictor = space, tables, predictor
        self.multiplier, self.constraints, self.objective = multiplier, constraints, objective
        self.area_model = area_model or AreaModel()
        self.mult_pj = float(getattr(multiplier, "energy_pj"))
        self.mult_area_um2 = float(getattr(multiplier, "area_um2"))
        self.hw = tables.hw
        self._active = constraints.active()
        self._logit_floor = float(_logit(constraints.accuracy_min)) if constraints.accuracy_min is not None else 0.0
        self.evaluations = 0

    # figures from kernel outputs (N, 6)
    def metrics(self, K: np.ndarray) -> dict[str, np.ndarray]:
        """Named figures from kernel outputs: latency, energies, area, SRAM, accuracy, degree, size."""
        K = np.atleast_2d(K)
        hw = self.hw
        mac_e = K[:, K_MACS] * self.mult_pj
        return {
            "total_cycles": K[:, K_CYCLES], "latency_s": K[:, K_CYCLES] / hw.clock_hz,
            "energy_pj": K[:, K_EFIX] + mac_e, "mac_energy_pj": mac_e,
            "area_um2": self.area_model.area_um2(hw, self.mult_area_um2, K[:, K_SRAM]),
            "sram_footprint_bytes": K[:, K_SRAM], "macs": K[:, K_MACS], "params": K[:, K_PARAMS],
            "nn_degree": K[:, K_DEGREE],
            "accuracy": self.predictor.predict(K[:, K_DEGREE], K[:, K_MACS], K[:, K_PARAMS]),
            "accuracy_logit": self.predictor.logit(K[:, K_DEGREE], K[:, K_MACS], K[:, K_PARAMS]),
        }

    def score(self, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(objective to minimize, constraint margins (N, k), >= 0 where met) on a log scale."""
        m = self.metrics(K)
        if self.objective == "accuracy":
            obj = -m["accuracy_logit"]
        elif self.objective == "edp":
            obj = np.log(m["energy_pj"] * m["latency_s"])
        else:
            key = {"latency": "latency_s", "energy": "energy_pj", "area": "area_um2",
                   "sram": "sram_footprint_bytes"}[self.objective]
            obj = np.log(np.maximum(m[key], 1e-30))
        margins = np.zeros((len(obj), len(self._active)))
        for j, (name, lim) in enumerate(self._active):
            if name == "accuracy":
                margins[:, j] = m["accuracy_logit"] - float(_logit(lim))
            else:
                margins[:, j] = math.log(lim) - np.log(np.maximum(m[name], 1e-30))
        return obj, margins

    def score_one(self, k: np.ndarray) -> tuple[float, list[float]]:
        """`score` for one kernel output row in scalar math (the optimizer's hot path; equal to `score`)."""
        p = self.predictor
        feats = {"log_degree": k[K_DEGREE], "log_macs": k[K_MACS], "log_params": k[K_PARAMS]}
        logit = p.intercept
        for name, mu, sd, c in zip(p.features, p.mean, p.scale, p.coef):
            logit += c * (math.log(max(feats[name], 1e-9)) - mu) / sd
        lat = k[K_CYCLES] / self.hw.clock_hz
        energy = k[K_EFIX] + k[K_MACS] * self.mult_pj
        vals = {"latency_s": lat, "energy_pj": energy, "sram_footprint_bytes": k[K_SRAM]}
        if self.objective == "area" or any(n == "area_um2" for n, _ in self._active):
            vals["area_um2"] = float(self.area_model.area_um2(self.hw, self.mult_area_um2, k[K_SRAM]))
        if self.objective == "accuracy":
            obj = -logit
        elif self.objective == "edp":
            obj = math.log(max(energy * lat, 1e-30))
        else:
            key = {"latency": "latency_s", "energy": "energy_pj", "area": "area_um2",
                   "sram": "sram_footprint_bytes"}[self.objective]
            obj = math.log(max(vals[key], 1e-30))
        margins = [logit - self._logit_floor if name == "accuracy"
                   else math.log(lim) - math.log(max(vals[name], 1e-30)) for name, lim in self._active]
        return obj, margins

    def evaluate_vectors(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(kernel outputs, objective, margins) for N vectors."""
        K = self.tables.evaluate(X)
        self.evaluations += len(K)
        obj, mar = self.score(K)
        return K, obj, mar

    def objective_value(self, K: np.ndarray) -> np.ndarray:
        """The objective in its natural unit (predicted accuracy, seconds, pJ, pJ*s, um^2, bytes)."""
        m = self.metrics(K)
        return {"accuracy": m["accuracy"], "latency": m["latency_s"], "energy": m["energy_pj"],
                "edp": m["energy_pj"] * m["latency_s"], "area": m["area_um2"],
                "sram": m["sram_footprint_bytes"]}[self.objective]

    def figures(self, arch: FlashArch) -> dict:
        """Every figure of one architecture from the tables (exact at integer points), JSON-ready."""
        self.space.check(arch)
        K = self.tables.evaluate(np.array(arch.vector(), dtype=np.float64))
        m = {k: float(v[0]) for k, v in self.metrics(K).items()}
        m["total_cycles"] = int(round(m["total_cycles"]))
        m["macs"] = int(round(m["macs"]))
        m["params"] = int(round(m["params"]))
        m["sram_footprint_bytes"] = int(round(m["sram_footprint_bytes"]))
        return m


# --- the optimizer --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FlashResult:
    """What `flash_optimize` found, with its timings (seconds) and evaluation count."""

    arch: FlashArch
    feasible: bool
    objective: str
    objective_value: float  # natural unit (see FlashProblem.objective_value)
    figures: dict
    level1: dict
    level2: dict
    repair: dict
    optimizer_s: float
    evaluations: int

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        d = asdict(self)
        d["arch"] = self.arch.to_dict()
        return jsonable(d)


def _shgo_level(problem: FlashProblem, base: np.ndarray, free: list[int], n: int, iters: int,
                sampling: str, maxiter: int) -> dict:
    """Minimize over the `free` entries of the (w, d, t) vector (normalized to [0, 1]) with SHGO."""
    from scipy.optimize import shgo

    lo, hi = problem.space.lower(), problem.space.upper()
    free = [i for i in free if hi[i] > lo[i]]
    x = base.astype(np.float64).copy()
    if not free:
        return {"x": x, "success": True, "nfev": 0, "time_s": 0.0, "message": "no free variables"}
    span = hi[free] - lo[free]
    out = np.zeros(6)
    kern = problem.tables
    memo: dict = {}
    counter = [0]

    def full(z):
        x[free] = lo[free] + np.clip(z, 0.0, 1.0) * span
        return x

    def ev(z):
        key = z.tobytes()
        r = memo.get(key)
        if r is None:
            kern.evaluate_one(full(z), out)
            counter[0] += 1
            obj, mar = problem.score_one(out)
            r = (obj, np.array(mar))
            if len(memo) > 4096:
                memo.clear()
            memo[key] = r
        return r

    cons = []
    if problem._active:
        cons = [{"type": "ineq", "fun": lambda z: ev(z)[1]}]
    t0 = time.perf_counter()
    res = shgo(lambda z: ev(z)[0], [(0.0, 1.0)] * len(free), constraints=cons or None, n=n, iters=iters,
               sampling_method=sampling,
               minimizer_kwargs={"method": "SLSQP", "options": {"maxiter": maxiter, "ftol": 1e-6}},
               options={"ftol": 1e-6})
    dt = time.perf_counter() - t0
    problem.evaluations += counter[0]
    z = np.asarray(res.x, dtype=np.float64) if res.x is not None else None
    feasible = z is not None and bool(getattr(res, "success", False))
    if z is None or not np.all(np.isfinite(z)):
        z = np.zeros(len(free))  # nothing feasible sampled: start the repair from the smallest networks
    xv = full(z).copy()
    return {"x": xv, "success": feasible, "nfev": counter[0], "time_s": dt, "message": str(res.message),
            "fun": float(res.fun) if feasible else None}


def _best_index(obj: np.ndarray, mar: np.ndarray) -> tuple[int, bool]:
    viol = np.clip(-mar, 0, None).sum(axis=1) if mar.shape[1] else np.zeros(len(obj))
    ok = viol <= 1e-12
    if ok.any():
        idx = np.flatnonzero(ok)
        return int(idx[np.argmin(obj[idx])]), True
    return int(np.argmin(viol)), False


def _repair(problem: FlashProblem, x: np.ndarray, polish_rounds: int = 200) -> tuple[np.ndarray, bool, dict]:
    """Round `x` to the best feasible floor/ceil corner, else descend the violation; then ±1 polish."""
    lo, hi = problem.space.lower(), problem.space.upper()
    x = np.clip(x, lo, hi)
    fl, ce = np.floor(x), np.ceil(x)
    diff = np.flatnonzero(ce > fl)
    if len(diff) > 12:  # keep the corner set small: round the least fractional entries
        frac = np.abs(x[diff] - np.round(x[diff]))
        keepi = diff[np.argsort(-frac)[:12]]
        base = np.round(x)
        diff = keepi
    else:
        base = fl.copy()
    combos = np.array(np.meshgrid(*[[0, 1]] * len(diff), indexing="ij")).reshape(len(diff), -1).T \
        if len(diff) else np.zeros((1, 0))
    X = np.repeat(base[None, :], len(combos), axis=0)
    if len(diff):
        X[:, diff] = np.where(combos == 1, ce[diff], fl[diff])
    _, obj, mar = problem.evaluate_vectors(X)
    i, ok = _best_index(obj, mar)
    z = X[i].copy()
    info = {"corners": len(X), "corner_feasible": ok, "descent_steps": 0, "polish_steps": 0}
    moves = np.vstack([np.eye(len(z)), -np.eye(len(z))])
    if not ok:  # greedy descent of the summed violation
        for _ in range(10_000):
            cand = np.clip(z + moves, lo, hi)
            _, cobj, cmar = problem.evaluate_vectors(cand)
            _, _, zmar = problem.evaluate_vectors(z[None, :])
            cv = np.clip(-cmar, 0, None).sum(axis=1)
            zv = float(np.clip(-zmar, 0, None).sum())
            j = int(np.lexsort((cobj, cv))[0])
            if cv[j] >= zv - 1e-12:
                break
            z = cand[j]
            info["descent_steps"] += 1
            if cv[j] <= 1e-12:
                ok = True
                break
    if ok:  # polish: best improving feasible ±1 move until none improves
        _, zobj, _ = problem.evaluate_vectors(z[None, :])
        cur = float(zobj[0])
        for _ in range(polish_rounds):
            cand = np.clip(z + moves, lo, hi)
            _, cobj, cmar = problem.evaluate_vectors(cand)
            feas = (cmar >= -1e-12).all(axis=1) if cmar.shape[1] else np.ones(len(cobj), bool)
            if not feas.any():
                break
            j = np.flatnonzero(feas)[np.argmin(cobj[feas])]
            if cobj[j] >= cur - 1e-12:
                break
            z, cur = cand[j], float(cobj[j])
            info["polish_steps"] += 1
    return z, ok, info


def _block_polish(problem: FlashProblem, z: np.ndarray, wspan: int = 2, rounds: int = 20) -> tuple[np.ndarray, int]:
    """Cell by cell, try every (depth, skip) with the width within ±wspan, others fixed; keep the best feasible.

    One batched evaluation per cell (about a thousand candidates); repeats until a round changes
    nothing. This catches the joint moves (narrower but deeper, more skip links) that ±1 steps miss.
    """
    space = problem.space
    C = space.cells
    _, zobj, _ = problem.evaluate_vectors(z[None, :])
    cur = float(zobj[0])
    d_all = np.arange(space.depth[0], space.depth[1] + 1)
    t_all = np.arange(space.skip[0], space.skip[1] + 1)
    steps = 0
    for _ in range(rounds):
        changed = False
        for c in range(C):
            w0 = int(z[c])
            ws = np.arange(max(space.width[0], w0 - wspan), min(space.width[1], w0 + wspan) + 1)
            W, D, T = (g.ravel() for g in np.meshgrid(ws, d_all, t_all, indexing="ij"))
            X = np.repeat(z[None, :], len(W), axis=0)
            X[:, c], X[:, C + c], X[:, 2 * C + c] = W, D, T
            _, obj, mar = problem.evaluate_vectors(X)
            feas = (mar >= -1e-12).all(axis=1) if mar.shape[1] else np.ones(len(obj), bool)
            if not feas.any():
                continue
            j = np.flatnonzero(feas)[np.argmin(obj[feas])]
            if obj[j] < cur - 1e-12:
                z, cur = X[j].copy(), float(obj[j])
                changed = True
                steps += 1
        if not changed:
            break
    return z, steps


def flash_optimize(problem: FlashProblem, *, n: int = 16, iters: int = 1, sampling: str = "simplicial",
                   maxiter: int = 30, level1_skip_fraction: float = 0.25, polish: bool = True) -> FlashResult:
    """Hierarchical SHGO: widths and depths, then skip budgets; round, repair and (optionally) polish."""
    if not 0.0 <= level1_skip_fraction <= 1.0:
        raise FlashError(f"level1_skip_fraction = {level1_skip_fraction!r}: expected a fraction in [0, 1]")
    from scipy.optimize import shgo  # noqa: F401  (imported before the clock starts:
    from scipy.stats import qmc  # noqa: F401   shgo's samplers live in scipy.stats)

    C = problem.space.cells
    lo, hi = problem.space.lower(), problem.space.upper()
    problem.tables.evaluate_one(lo, np.zeros(6))  # loads (or compiles) the kernel before the clock starts
    ev0 = problem.evaluations
    t0 = time.perf_counter()
    x0 = lo + (hi - lo) * 0.5
    x0[2 * C:] = lo[2 * C:] + (hi[2 * C:] - lo[2 * C:]) * level1_skip_fraction
    l1 = _shgo_level(problem, x0, list(range(2 * C)), n, iters, sampling, maxiter)
    x1 = l1["x"].copy()
    x1[:2 * C] = np.clip(np.round(x1[:2 * C]), lo[:2 * C], hi[:2 * C])
    l2 = _shgo_level(problem, x1, list(range(2 * C, 3 * C)), n, iters, sampling, maxiter)
    tr = time.perf_counter()
    z, ok, rinfo = _repair(problem, l2["x"])
    if ok and polish:
        z, rinfo["block_polish_steps"] = _block_polish(problem, z)
    rinfo["time_s"] = time.perf_counter() - tr
    total = time.perf_counter() - t0
    arch = FlashArch.from_vector(z, C).canonical(problem.space.skip[0])
    z = np.array(arch.vector(), dtype=np.float64)
    K = problem.tables.evaluate(z)
    val = float(problem.objective_value(K)[0])
    for lv in (l1, l2):
        lv["x"] = [float(v) for v in lv["x"]]
    return FlashResult(arch=arch, feasible=ok, objective=problem.objective, objective_value=val,
                       figures=problem.figures(arch), level1=l1, level2=l2, repair=rinfo, optimizer_s=total,
                       evaluations=problem.evaluations - ev0)


# --- exact figures: analytical model and (when it lands) the cycle-level engine -----------------------------------

def analytical_figures(arch: FlashArch, problem: FlashProblem) -> dict:
    """Totals of `cosim.analytical.estimate` on the built network with the chosen multiplier, plus area."""
    from cosim.analytical import estimate

    net = build_network(arch, problem.space)
    rep = estimate(net, problem.hw, multipliers=problem.multiplier, timing=problem.tables.timing,
                   split=problem.tables.split)
    return _summary(rep.total(), problem)


def _summary(tot: dict, problem: FlashProblem) -> dict:
    keys = ("total_cycles", "latency_s", "stall_cycles", "macs", "params", "total_energy_pj", "mac_energy_pj",
            "dram_bytes", "sram_footprint_bytes", "memory_footprint_bytes", "utilization")
    out = {k: tot[k] for k in keys if k in tot}
    if "sram_footprint_bytes" in tot:
        out["area_um2"] = float(problem.area_model.area_um2(problem.hw, problem.mult_area_um2,
                                                            tot["sram_footprint_bytes"]))
    return out


def engine_figures(arch: FlashArch, problem: FlashProblem) -> dict:
    """Totals of the cycle-level engine (`cosim.engine.simulate_network`) on the built network, plus area."""
    from cosim.engine import simulate_network

    net = build_network(arch, problem.space)
    run = simulate_network(net, problem.hw, timing=problem.tables.timing, multipliers=problem.multiplier,
                           split=problem.tables.split)
    return _summary(run.report.total(), problem)
