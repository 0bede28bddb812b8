"""The XAI-NAS search space: a CNN macro space plus one approximate-multiplier gene per layer position.

A genome has ``n_stages`` active stages out of ``max_stages``; stage s has ``layers`` convolutions
(1..max_layers) of ``channels`` output channels and a ``kernel`` x ``kernel`` window (3 or 5, "same"
padding), ReLU after each, and downsamples once: ``down = "stride"`` gives its first convolution
stride 2, ``down = "pool"`` ends the stage with a 2x2 max pool (neither happens once the feature
map is 1x1). With ``residual`` set, every convolution after the stage's first adds its input
(``x = x + relu(conv(x))``; shapes agree there). One linear layer (``FC``) over the flattened
last feature map finishes the network (global average pooling instead trains far too slowly for
a search that trains each candidate for an epoch or two).

Layer positions are named ``S<s>L<l>`` (stage s, layer l, from 1) and ``FC``; the torch modules
and the `mapping.Network` layers carry those names, so a multiplier assignment means the same in
the functional kernels, the analytical model and the cycle-level engine. Every position has a
multiplier gene (a library name), inactive ones included, so the genome has a fixed length for
pymoo; `Genome.key` only spells out the active parts, so two genomes that build the same network
with the same multipliers share one key (and one evaluation).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Sequence

import numpy as np

from mapping.layer import Layer
from mapping.network import Network

__all__ = [
    "DOWNS",
    "Genome",
    "LayerSpec",
    "SearchSpace",
    "SpaceError",
    "StageGene",
    "default_multipliers",
]

DOWNS = ("stride", "pool")
FC = "FC"


class SpaceError(ValueError):
    """A genome or a space setting outside the space; the message names the field and the value."""


@dataclass(frozen=True)
class StageGene:
    """One stage: conv layers, output channels, kernel size, downsampling kind, residual connections."""

    layers: int
    channels: int
    kernel: int
    down: str
    residual: bool

    def tag(self) -> str:
        """Compact text form, e.g. ``2x16k3s+r`` (2 layers, 16 channels, kernel 3, stride, residual)."""
        return f"{self.layers}x{self.channels}k{self.kernel}{self.down[0]}{'+r' if self.residual and self.layers > 1 else ''}"


@dataclass(frozen=True)
class Genome:
    """A point of the space: all stage genes (inactive ones too) and one multiplier name per position."""

    n_stages: int
    stages: tuple[StageGene, ...]
    mults: tuple[str, ...]  # aligned with SearchSpace.positions

    def active_stages(self) -> tuple[StageGene, ...]:
        """The stage genes that build layers."""
        return self.stages[: self.n_stages]

    def active_positions(self) -> tuple[str, ...]:
        """Names of the layer positions this genome builds, in execution order (``FC`` last)."""
        out = [f"S{s + 1}L{l + 1}" for s, st in enumerate(self.active_stages()) for l in range(st.layers)]
        return tuple(out) + (FC,)

    def mult_of(self, positions: Sequence[str]) -> dict[str, str]:
        """{position: multiplier name} over all positions (`positions` = the space's)."""
        return dict(zip(positions, self.mults))

    @property
    def arch_key(self) -> str:
        """The architecture alone (active stages), e.g. ``2x16k3s+r|1x8k5p``."""
        return "|".join(st.tag() for st in self.active_stages())

    def key_for(self, positions: Sequence[str]) -> str:
        """Canonical key: active architecture and the active positions' multipliers."""
        m = self.mult_of(positions)
        return self.arch_key + "#" + ",".join(f"{p}={m[p]}" for p in self.active_positions())

    def to_dict(self) -> dict:
        """JSON-ready form (inverse: `Genome.from_dict`)."""
        return {"n_stages": self.n_stages,
                "stages": [{"layers": s.layers, "channels": s.channels, "kernel": s.kernel, "down": s.down,
                            "residual": s.residual} for s in self.stages],
                "mults": list(self.mults)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Genome":
        """Inverse of `to_dict`."""
        return cls(n_stages=int(d["n_stages"]),
                   stages=tuple(StageGene(int(s["layers"]), int(s["channels"]), int(s["kernel"]), str(s["down"]),
                                          bool(s["residual"])) for s in d["stages"]),
                   mults=tuple(str(m) for m in d["mults"]))


@dataclass(frozen=True)
class LayerSpec:
    """One conv/linear position of a built genome: shapes and window (stride 1 unless downsampling)."""

    name: str
    kind: str  # "conv2d" or "linear"
    in_h: int
    in_w: int
    in_c: int
    out_c: int
    kernel: int
    stride: int
    stage: int  # 1-based; 0 for FC
    index: int  # 1-based layer index within the stage; 0 for FC
    residual: bool  # adds its input to its output

    @property
    def out_h(self) -> int:
        """Output height ("same" padding)."""
        return (self.in_h + 2 * (self.kernel // 2) - self.kernel) // self.stride + 1 if self.kind == "conv2d" else 1

    @property
    def out_w(self) -> int:
        """Output width ("same" padding)."""
        return (self.in_w + 2 * (self.kernel // 2) - self.kernel) // self.stride + 1 if self.kind == "conv2d" else 1

    @property
    def macs(self) -> int:
        """Multiply-accumulates at batch 1."""
        return self.out_h * self.out_w * self.out_c * self.in_c * self.kernel * self.kernel

    @property
    def weights(self) -> int:
        """Weights (bias excluded)."""
        return self.in_c * self.out_c * self.kernel * self.kernel


def default_multipliers() -> tuple[str, ...]:
    """Names of the library's (MRE, power) Pareto subset, cheapest first, with an exact design included."""
    from rtl_models.library import MultiplierLibrary

    lib = MultiplierLibrary.default()
    front = list(lib.pareto("mre", "power"))
    if not any(m.is_exact for m in front):
        exact = [m for m in lib if m.is_exact]
        if not exact:
            raise SpaceError("the multiplier library holds no exact multiplier; XAI-NAS needs one to pin genes to")
        front.append(min(exact, key=lambda m: m.power_mw))
    return tuple(m.name for m in front)


@dataclass(frozen=True)
class SearchSpace:
    """Bounds of the macro space, the input it serves, and the multiplier genes' options (names)."""

    input_shape: tuple[int, int, int]  # (C, H, W)
    classes: int
    multipliers: tuple[str, ...]
    exact: str  # the exact multiplier among `multipliers`
    max_stages: int = 3
    max_layers: int = 3
    min_stages: int = 1
    channels: tuple[int, ...] = (4, 8, 16, 24)
    kernels: tuple[int, ...] = (3, 5)
    downs: tuple[str, ...] = DOWNS
    positions: tuple[str, ...] = field(init=False)

    def __post_init__(self):
        if len(self.input_shape) != 3 or min(self.input_shape) < 1:
            raise SpaceError(f"SearchSpace.input_shape={self.input_shape!r}: expected (C, H, W), all >= 1")
        if self.classes < 2:
            raise SpaceError(f"SearchSpace.classes={self.classes!r}: expected >= 2")
        if not 1 <= self.min_stages <= self.max_stages:
            raise SpaceError(f"SearchSpace stages {self.min_stages}..{self.max_stages}: expected 1 <= min <= max")
        if self.max_layers < 1:
            raise SpaceError(f"SearchSpace.max_layers={self.max_layers!r}: expected >= 1")
        if not self.channels or min(self.channels) < 1:
            raise SpaceError(f"SearchSpace.channels={self.channels!r}: expected positive channel counts")
        if not self.kernels or any(k < 1 or k % 2 == 0 for k in self.kernels):
            raise SpaceError(f"SearchSpace.kernels={self.kernels!r}: expected odd kernel sizes ('same' padding)")
        if not self.downs or any(d not in DOWNS for d in self.downs):
            raise SpaceError(f"SearchSpace.downs={self.downs!r}: expected a subset of {DOWNS}")
        if not self.multipliers or len(set(self.multipliers)) != len(self.multipliers):
            raise SpaceError(f"SearchSpace.multipliers={self.multipliers!r}: expected distinct library names")
        if self.exact not in self.multipliers:
            raise SpaceError(f"SearchSpace.exact={self.exact!r} is not among the multipliers {self.multipliers}")
        pos = tuple(f"S{s}L{l}" for s in range(1, self.max_stages + 1) for l in range(1, self.max_layers + 1))
        object.__setattr__(self, "positions", pos + (FC,))

    @classmethod
    def for_dataset(cls, name: str, multipliers: Sequence[str] | None = None, exact: str | None = None,
                    **overrides) -> "SearchSpace":
        """The space for data set `name` (its shape and classes) with library multipliers (default: Pareto)."""
        from nas.data import dataset_info

        info = dataset_info(name)
        names = tuple(multipliers) if multipliers is not None else default_multipliers()
        if exact is None:
            exact = _find_exact(names)
        return cls(input_shape=info.shape, classes=info.classes, multipliers=names, exact=exact, **overrides)

    def to_dict(self) -> dict:
        """JSON-ready settings (inverse: `SearchSpace.from_dict`)."""
        return {"input_shape": list(self.input_shape), "classes": self.classes, "multipliers": list(self.multipliers),
                "exact": self.exact, "max_stages": self.max_stages, "max_layers": self.max_layers,
                "min_stages": self.min_stages, "channels": list(self.channels), "kernels": list(self.kernels),
                "downs": list(self.downs)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SearchSpace":
        """Inverse of `to_dict`."""
        return cls(input_shape=tuple(d["input_shape"]), classes=int(d["classes"]),
                   multipliers=tuple(d["multipliers"]), exact=str(d["exact"]), max_stages=int(d["max_stages"]),
                   max_layers=int(d["max_layers"]), min_stages=int(d["min_stages"]),
                   channels=tuple(int(c) for c in d["channels"]), kernels=tuple(int(k) for k in d["kernels"]),
                   downs=tuple(d["downs"]))

    # --- genomes ------------------------------------------------------------------------------------------
    def check(self, g: Genome) -> Genome:
        """Raise SpaceError unless `g` lies in this space; return it."""
        if not self.min_stages <= g.n_stages <= self.max_stages:
            raise SpaceError(f"genome n_stages={g.n_stages}: expected {self.min_stages}..{self.max_stages}")
        if len(g.stages) != self.max_stages:
            raise SpaceError(f"genome has {len(g.stages)} stage genes, the space {self.max_stages}")
        for s, st in enumerate(g.stages, 1):
            for fname, v, ok in (("layers", st.layers, 1 <= st.layers <= self.max_layers),
                                 ("channels", st.channels, st.channels in self.channels),
                                 ("kernel", st.kernel, st.kernel in self.kernels),
                                 ("down", st.down, st.down in self.downs)):
                if not ok:
                    raise SpaceError(f"genome stage {s} {fname}={v!r}: outside the space")
        if len(g.mults) != len(self.positions):
            raise SpaceError(f"genome has {len(g.mults)} multiplier genes, the space {len(self.positions)} positions")
        for p, m in zip(self.positions, g.mults):
            if m not in self.multipliers:
                raise SpaceError(f"genome multiplier gene {p}={m!r}: not one of {', '.join(self.multipliers)}")
        return g

    def key(self, g: Genome) -> str:
        """The genome's canonical key (see `Genome.key_for`)."""
        return g.key_for(self.positions)

    def key_hash(self, g: Genome) -> str:
        """A short, file-name-safe hash of the canonical key."""
        return hashlib.sha256(self.key(g).encode()).hexdigest()[:16]

    def variables(self) -> dict:
        """The pymoo mixed variables, by gene name (fresh objects: pinning edits their options)."""
        from pymoo.core.variable import Binary, Choice, Integer

        v: dict[str, Any] = {"n_stages": Integer(bounds=(self.min_stages, self.max_stages))}
        for s in range(1, self.max_stages + 1):
            v[f"s{s}_layers"] = Integer(bounds=(1, self.max_layers))
            v[f"s{s}_channels"] = Choice(options=list(self.channels))
            v[f"s{s}_kernel"] = Choice(options=list(self.kernels))
            v[f"s{s}_down"] = Choice(options=list(self.downs))
            v[f"s{s}_residual"] = Binary()
        for p in self.positions:
            v[f"m_{p}"] = Choice(options=list(self.multipliers))
        return v

    def encode(self, g: Genome) -> dict:
        """The genome as a pymoo variable dict."""
        self.check(g)
        x: dict[str, Any] = {"n_stages": g.n_stages}
        for s, st in enumerate(g.stages, 1):
            x.update({f"s{s}_layers": st.layers, f"s{s}_channels": st.channels, f"s{s}_kernel": st.kernel,
                      f"s{s}_down": st.down, f"s{s}_residual": st.residual})
        x.update({f"m_{p}": m for p, m in zip(self.positions, g.mults)})
        return x

    def decode(self, x: Mapping[str, Any]) -> Genome:
        """A pymoo variable dict (NumPy scalars welcome) as a checked genome."""
        try:
            stages = tuple(StageGene(int(round(float(x[f"s{s}_layers"]))), int(x[f"s{s}_channels"]),
                                     int(x[f"s{s}_kernel"]), str(x[f"s{s}_down"]), bool(x[f"s{s}_residual"]))
                           for s in range(1, self.max_stages + 1))
            g = Genome(int(round(float(x["n_stages"]))), stages, tuple(str(x[f"m_{p}"]) for p in self.positions))
        except KeyError as exc:
            raise SpaceError(f"variable dict lacks gene {exc.args[0]!r}") from None
        return self.check(g)

    def sample(self, rng: np.random.Generator) -> Genome:
        """A uniformly random genome."""
        stages = tuple(StageGene(int(rng.integers(1, self.max_layers + 1)), int(rng.choice(self.channels)),
                                 int(rng.choice(self.kernels)), str(rng.choice(self.downs)), bool(rng.integers(2)))
                       for _ in range(self.max_stages))
        mults = tuple(str(rng.choice(self.multipliers)) for _ in self.positions)
        return Genome(int(rng.integers(self.min_stages, self.max_stages + 1)), stages, mults)

    def largest(self, multiplier: str | None = None) -> Genome:
        """The costliest genome: every stage and layer, widest, largest kernel, pooling, residual."""
        st = StageGene(self.max_layers, max(self.channels), max(self.kernels),
                       "pool" if "pool" in self.downs else self.downs[0], True)
        m = multiplier or self.exact
        return Genome(self.max_stages, (st,) * self.max_stages, (m,) * len(self.positions))

    def with_multipliers(self, g: Genome, assignment: Mapping[str, str]) -> Genome:
        """A copy of `g` with some positions' multiplier genes replaced."""
        m = dict(zip(self.positions, g.mults))
        unknown = set(assignment) - set(m)
        if unknown:
            raise SpaceError(f"unknown layer positions {sorted(unknown)}; positions are {', '.join(self.positions)}")
        m.update(assignment)
        return self.check(replace(g, mults=tuple(m[p] for p in self.positions)))

    # --- structure ----------------------------------------------------------------------------------------
    def layer_specs(self, g: Genome) -> list[LayerSpec]:
        """The conv and linear layers `g` builds, in execution order (pools and adds implied by the genes)."""
        self.check(g)
        c, h, w = self.input_shape
        out: list[LayerSpec] = []
        for s, st in enumerate(g.active_stages(), 1):
            for l in range(1, st.layers + 1):
                stride = 2 if (l == 1 and st.down == "stride" and min(h, w) >= 2) else 1
                spec = LayerSpec(f"S{s}L{l}", "conv2d", h, w, c, st.channels, st.kernel, stride, s, l,
                                 st.residual and l > 1)
                out.append(spec)
                c, h, w = st.channels, spec.out_h, spec.out_w
            if st.down == "pool" and min(h, w) >= 2:
                h, w = h // 2, w // 2
        out.append(LayerSpec(FC, "linear", 1, 1, c * h * w, self.classes, 1, 1, 0, 0, False))
        return out

    def assignment(self, g: Genome) -> dict[str, str]:
        """{layer name: multiplier name} for the layers `g` builds."""
        m = g.mult_of(self.positions)
        return {p: m[p] for p in g.active_positions()}

    def build_network(self, g: Genome, name: str | None = None, batch: int = 1) -> Network:
        """The genome as a `mapping.Network` (the same layers as `build_model`'s torch.fx trace)."""
        specs = self.layer_specs(g)
        net = Network(name or f"xainas_{self.key_hash(g)}", input_shape=self.input_shape)
        prev: list[str] = []
        c, h, w = self.input_shape
        by_stage: dict[int, list[LayerSpec]] = {}
        for sp in specs[:-1]:
            by_stage.setdefault(sp.stage, []).append(sp)
        for s, st in enumerate(g.active_stages(), 1):
            for sp in by_stage[s]:
                pad = sp.kernel // 2
                layer = Layer(sp.name, "conv2d", sp.in_h, sp.in_w, sp.in_c, sp.out_c, sp.kernel, sp.kernel,
                              sp.stride, sp.stride, pad, pad, batch=batch, bias=True)
                net.add(layer, prev)
                if sp.residual:
                    net.add(Layer(f"{sp.name}_add", "add", sp.out_h, sp.out_w, sp.out_c, sp.out_c, batch=batch,
                                  n_inputs=2), [sp.name] + prev)
                    prev = [f"{sp.name}_add"]
                else:
                    prev = [sp.name]
                c, h, w = sp.out_c, sp.out_h, sp.out_w
            if st.down == "pool" and min(h, w) >= 2:
                net.add(Layer(f"S{s}P", "pool", h, w, c, c, 2, 2, 2, 2, batch=batch, pool_op="max"), prev)
                prev = [f"S{s}P"]
                h, w = h // 2, w // 2
        net.add(Layer(FC, "linear", 1, 1, c * h * w, self.classes, batch=batch, bias=True), prev)
        return net

    def build_model(self, g: Genome):
        """The genome as a plain torch module (conv + ReLU stages, a linear head on the flattened map)."""
        return GenomeNet(self.layer_specs(g), [st.down for st in g.active_stages()], self.classes)

    def count(self) -> float:
        """Number of distinct networks-with-multipliers (canonical keys) in the space."""
        per_layer = len(self.multipliers)
        stage_arch = len(self.channels) * len(self.kernels) * len(self.downs)
        total = 0.0
        for n in range(self.min_stages, self.max_stages + 1):
            # per stage: sum over layer counts L of (archs x residual options x multipliers^L)
            per_stage = sum(stage_arch * (2 if L > 1 else 1) * per_layer ** L for L in range(1, self.max_layers + 1))
            total += per_stage ** n * per_layer
        return total


def _find_exact(names: Sequence[str]) -> str:
    from rtl_models.library import MultiplierLibrary

    lib = MultiplierLibrary.default()
    exact = [n for n in names if lib.get(n).is_exact]
    if not exact:
        raise SpaceError(f"none of the multipliers {', '.join(names)} is exact; include one (e.g. mul8u_wallace)")
    return exact[0]


try:  # torch is the `ml` extra; the space itself (genomes, networks) works without it
    import torch
    import torch.nn.functional as F
    from torch import nn

    class GenomeNet(nn.Module):
        """A built genome: conv + ReLU layers per stage (with residual adds and pools), flatten, linear head."""

        def __init__(self, specs: Sequence[LayerSpec], downs: Sequence[str], classes: int):
            super().__init__()
            self.plan: list[list[tuple[str, bool]]] = []
            self.pools: list[bool] = []
            for sp in specs[:-1]:
                setattr(self, sp.name, nn.Conv2d(sp.in_c, sp.out_c, sp.kernel, sp.stride, sp.kernel // 2))
            fc = specs[-1]
            self.FC = nn.Linear(fc.in_c, classes)
            stages: dict[int, list[LayerSpec]] = {}
            for sp in specs[:-1]:
                stages.setdefault(sp.stage, []).append(sp)
            for s in sorted(stages):
                self.plan.append([(sp.name, sp.residual) for sp in stages[s]])
                last = stages[s][-1]
                self.pools.append(downs[s - 1] == "pool" and min(last.out_h, last.out_w) >= 2)

        def forward(self, x):  # noqa: D102
            for layers, pool in zip(self.plan, self.pools):
                for name, residual in layers:
                    y = torch.relu(getattr(self, name)(x))
                    x = x + y if residual else y
                if pool:
                    x = F.max_pool2d(x, 2)
            return self.FC(torch.flatten(x, 1))
except ImportError:  # pragma: no cover - exercised only without torch
    GenomeNet = None  # type: ignore[assignment]
