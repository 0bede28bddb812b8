"""`Network`: layers on a networkx DiGraph, so residual and dense connections are real edges.

Nodes are layer names (attribute ``layer`` holds the `Layer`); an edge u -> v means v reads
u's output. Insertion order is a topological order (a layer is added after its inputs) and is
the execution order the mapping and the simulators use. `LayerArrays` is the same network as
NumPy columns, which is what the vectorized analytical model consumes.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Iterable, Iterator, Sequence

import networkx as nx
import numpy as np

from .layer import KIND_CODE, KINDS, Layer, MappingError


class Network:
    """A named DAG of layers in execution order."""

    def __init__(self, name: str, input_shape: tuple[int, int, int] | None = None):
        self.name = name
        self.input_shape = tuple(input_shape) if input_shape is not None else None  # (C, H, W)
        self.graph = nx.DiGraph()
        self._order: list[str] = []
        self._cache: dict = {}  # derived values (arrays, peak activations); cleared on every change

    # --- building -------------------------------------------------------------------------
    def add(self, layer: Layer, inputs: Iterable[str] = ()) -> Layer:
        """Append `layer`, reading the outputs of the named `inputs` (empty: the network input)."""
        if layer.name in self.graph:
            raise MappingError(f"network {self.name!r}: duplicate layer name {layer.name!r}")
        inputs = list(dict.fromkeys(inputs))
        for src in inputs:
            if src not in self.graph:
                raise MappingError(f"network {self.name!r}: layer {layer.name!r} reads unknown layer {src!r}")
        self.graph.add_node(layer.name, layer=layer)
        for src in inputs:
            self.graph.add_edge(src, layer.name)
        self._order.append(layer.name)
        self._cache.clear()
        return layer

    def replace(self, layer: Layer) -> None:
        """Swap in a new version of an existing layer (same name), keeping its edges."""
        if layer.name not in self.graph:
            raise MappingError(f"network {self.name!r}: no layer {layer.name!r} to replace")
        self.graph.nodes[layer.name]["layer"] = layer
        self._cache.clear()

    @classmethod
    def chain(cls, name: str, layers: Iterable[Layer], input_shape=None) -> "Network":
        """A network whose layers each read the previous one (a SCALE-Sim topology's shape)."""
        net = cls(name, input_shape)
        prev: list[str] = []
        for layer in layers:
            net.add(layer, prev)
            prev = [layer.name]
        return net

    # --- access ---------------------------------------------------------------------------
    @property
    def layers(self) -> list[Layer]:
        """Layers in execution (insertion) order."""
        return [self.graph.nodes[n]["layer"] for n in self._order]

    def __len__(self) -> int:
        return len(self._order)

    def __iter__(self) -> Iterator[Layer]:
        return iter(self.layers)

    def __getitem__(self, name: str) -> Layer:
        try:
            return self.graph.nodes[name]["layer"]
        except KeyError:
            raise MappingError(f"network {self.name!r}: no layer {name!r}") from None

    def inputs_of(self, name: str) -> list[str]:
        """Names of the layers `name` reads (in insertion order)."""
        pos = {n: i for i, n in enumerate(self._order)}
        return sorted(self.graph.predecessors(name), key=pos.__getitem__)

    def consumers_of(self, name: str) -> list[str]:
        """Names of the layers that read `name`'s output."""
        pos = {n: i for i, n in enumerate(self._order)}
        return sorted(self.graph.successors(name), key=pos.__getitem__)

    # --- totals ---------------------------------------------------------------------------
    @property
    def macs(self) -> int:
        """Total multiply-accumulates."""
        return sum(layer.macs for layer in self.layers)

    @property
    def params(self) -> int:
        """Total parameters after batch-norm folding (weights + biases)."""
        return sum(layer.params for layer in self.layers)

    def peak_activation_elems(self) -> int:
        """Peak live activation elements over the execution order (inputs kept until last read)."""
        if "peak" not in self._cache:
            self._cache["peak"] = self._peak_activation_elems()
        return self._cache["peak"]

    def _peak_activation_elems(self) -> int:
        order = self._order
        pos = {n: i for i, n in enumerate(order)}
        layers = self.layers
        # The network input stays live until the last layer that reads it.
        sources = [i for i, n in enumerate(order) if self.graph.in_degree(n) == 0]
        if self.input_shape is not None:
            in_elems = int(np.prod(self.input_shape)) * (layers[sources[0]].batch if sources else 1)
        else:
            in_elems = max((layers[i].input_elems for i in sources), default=0)
        input_last = max(sources, default=-1)
        last_use = []
        for i, n in enumerate(order):
            succ = [pos[s] for s in self.graph.successors(n)]
            last_use.append(max(succ) if succ else len(order) - 1)  # outputs live to the end
        # Difference array: an output joins the live set when produced, leaves after its last read.
        delta = np.zeros(len(order) + 1, dtype=np.int64)
        for j, layer in enumerate(layers):
            delta[j] += layer.output_elems
            delta[last_use[j] + 1] -= layer.output_elems
        live = np.cumsum(delta[:-1])
        if input_last >= 0:
            live[: input_last + 1] += in_elems
        peak = int(live.max()) if len(live) else 0
        return peak

    def arrays(self) -> "LayerArrays":
        """The network as NumPy columns (one row per layer, execution order; cached, read-only)."""
        if "arrays" not in self._cache:
            self._cache["arrays"] = LayerArrays.from_layers(self.layers)
        return self._cache["arrays"]

    def summary(self) -> dict:
        """Name, layer count, MACs, params, peak live activations."""
        return {"name": self.name, "layers": len(self), "macs": self.macs, "params": self.params,
                "peak_activation_elems": self.peak_activation_elems()}

    def __repr__(self) -> str:
        return f"Network({self.name!r}, {len(self)} layers, {self.macs:,} MACs)"


@dataclass(frozen=True)
class LayerArrays:
    """Layers as NumPy columns (int64 unless noted), ready for vectorized cost models."""

    names: tuple[str, ...]
    kind: np.ndarray  # int8 code into mapping.layer.KINDS
    groups: np.ndarray  # GEMM view: `groups` GEMMs of (M x K) @ (K x N); 0 for pool/add
    m: np.ndarray
    n: np.ndarray
    k: np.ndarray
    macs: np.ndarray
    weight_elems: np.ndarray
    params: np.ndarray
    in_elems: np.ndarray  # activation elements read (unpadded, all inputs)
    ifmap_elems: np.ndarray  # unique elements of the GEMM's A operand (the ifmap) per group
    out_elems: np.ndarray
    vector_ops: np.ndarray
    segment: np.ndarray  # which network each row belongs to (0 for a single network)

    @classmethod
    def from_layers(cls, layers: Sequence[Layer], segment: int = 0) -> "LayerArrays":
        """Columns for `layers`."""
        def col(fn, dtype=np.int64):
            return np.fromiter((fn(l) for l in layers), dtype=dtype, count=len(layers))
        gemm = np.array([l.gemm for l in layers], dtype=np.int64).reshape(len(layers), 4)
        out = cls(
            names=tuple(l.name for l in layers),
            kind=col(lambda l: KIND_CODE[l.kind], np.int8),
            groups=gemm[:, 0].copy(), m=gemm[:, 1].copy(), n=gemm[:, 2].copy(), k=gemm[:, 3].copy(),
            macs=col(lambda l: l.macs),
            weight_elems=col(lambda l: l.weight_elems),
            params=col(lambda l: l.params),
            in_elems=col(lambda l: l.input_elems),
            ifmap_elems=col(lambda l: (l.batch * l.in_h * l.in_w * l.in_c) // l.groups if l.is_gemm else 0),
            out_elems=col(lambda l: l.output_elems),
            vector_ops=col(lambda l: l.vector_ops),
            segment=np.full(len(layers), segment, dtype=np.int64),
        )
        for f in fields(cls):
            v = getattr(out, f.name)
            if isinstance(v, np.ndarray):
                v.setflags(write=False)  # shared through Network's cache
        return out

    @classmethod
    def concat(cls, parts: Sequence["LayerArrays"]) -> "LayerArrays":
        """Stack several networks' columns; `segment` numbers the parts 0..len(parts)-1."""
        out = {}
        for f in fields(cls):
            if f.name == "names":
                out["names"] = tuple(n for p in parts for n in p.names)
            elif f.name == "segment":
                out["segment"] = np.concatenate([np.full(len(p), i, dtype=np.int64) for i, p in enumerate(parts)])
            else:
                out[f.name] = np.concatenate([getattr(p, f.name) for p in parts])
        return cls(**out)

    def __len__(self) -> int:
        return len(self.names)

    @property
    def kinds(self) -> list[str]:
        """Kind names per row."""
        return [KINDS[c] for c in self.kind]
