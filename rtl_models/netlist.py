"""Gate-level netlists: a small cell set, nets, ports, structural checks and topological order.

A `Netlist` holds integer nets (0 is constant 0, 1 is constant 1), named input and output
ports (lists of nets, least significant bit first) and cells. Every cell type has a fixed
list of input pins and output pins; `CELL_TYPES` is the single source of truth for them,
shared by the evaluator, the static timer, the Verilog reader and writer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


class NetlistError(ValueError):
    """A structural error in a netlist; `net` names the offending net when there is one."""

    def __init__(self, message: str, net: str | None = None):
        super().__init__(message)
        self.net = net


@dataclass(frozen=True)
class CellType:
    """A cell kind: its pins and its opcode in the compiled netlist."""

    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    opcode: int


# Opcodes are part of the compiled form read by the Numba evaluator (rtl_models.simulate).
CELL_TYPES: dict[str, CellType] = {
    ct.name: ct
    for ct in (
        CellType("AND2", ("A", "B"), ("Y",), 0),
        CellType("OR2", ("A", "B"), ("Y",), 1),
        CellType("XOR2", ("A", "B"), ("Y",), 2),
        CellType("NAND2", ("A", "B"), ("Y",), 3),
        CellType("NOR2", ("A", "B"), ("Y",), 4),
        CellType("XNOR2", ("A", "B"), ("Y",), 5),
        CellType("INV", ("A",), ("Y",), 6),
        CellType("BUF", ("A",), ("Y",), 7),
        CellType("NAND3", ("A", "B", "C"), ("Y",), 8),
        CellType("NOR3", ("A", "B", "C"), ("Y",), 9),
        # AOI21: Y = ~((A & B) | C);  OAI21: Y = ~((A | B) & C)
        CellType("AOI21", ("A", "B", "C"), ("Y",), 10),
        CellType("OAI21", ("A", "B", "C"), ("Y",), 11),
        # MUX2: Y = S ? B : A
        CellType("MUX2", ("A", "B", "S"), ("Y",), 12),
        CellType("HA", ("A", "B"), ("S", "CO"), 13),
        CellType("FA", ("A", "B", "CI"), ("S", "CO"), 14),
    )
}

CONST0 = 0
CONST1 = 1


@dataclass(frozen=True)
class Cell:
    """One cell instance: its type, input nets and output nets (in `CELL_TYPES` pin order)."""

    kind: str
    ins: tuple[int, ...]
    outs: tuple[int, ...]
    name: str = ""


def _bit(name: str, width: int, i: int) -> str:
    return f"{name}[{i}]" if width > 1 else name


@dataclass
class Netlist:
    """A combinational gate-level netlist with named ports."""

    name: str = "netlist"
    net_names: list[str] = field(default_factory=lambda: ["1'b0", "1'b1"])
    inputs: dict[str, list[int]] = field(default_factory=dict)
    outputs: dict[str, list[int]] = field(default_factory=dict)
    cells: list[Cell] = field(default_factory=list)

    # -- construction -------------------------------------------------------------------
    @property
    def n_nets(self) -> int:
        """Number of nets, constants included."""
        return len(self.net_names)

    def add_net(self, name: str | None = None) -> int:
        """Create a net and return its id."""
        nid = len(self.net_names)
        self.net_names.append(name if name is not None else f"n{nid}")
        return nid

    def add_input(self, name: str, width: int) -> list[int]:
        """Declare an input port of `width` bits; returns its nets, LSB first."""
        if name in self.inputs or name in self.outputs:
            raise NetlistError(f"port {name!r} declared twice", net=name)
        if width < 1:
            raise NetlistError(f"port {name!r}: width must be >= 1, got {width}", net=name)
        nets = [self.add_net(_bit(name, width, i)) for i in range(width)]
        self.inputs[name] = nets
        return nets

    def set_output(self, name: str, nets: list[int], width: int | None = None) -> None:
        """Declare output port `name` driven by `nets` (LSB first); `width` is checked if given."""
        if width is not None and len(nets) != width:
            raise NetlistError(
                f"width mismatch on output port {name!r}: declared {width} bits, "
                f"connected {len(nets)}",
                net=name,
            )
        if name in self.inputs:
            raise NetlistError(f"port {name!r} is already an input", net=name)
        for n in nets:
            self._check_net_id(n, f"output port {name!r}")
        self.outputs[name] = list(nets)

    def add_cell(self, kind: str, ins: list[int] | tuple[int, ...], outs=None, name: str = "") -> tuple[int, ...]:
        """Instantiate a cell; creates its output nets unless `outs` is given. Returns the outputs."""
        ct = CELL_TYPES.get(kind)
        if ct is None:
            raise NetlistError(f"unknown cell type {kind!r} (known: {', '.join(CELL_TYPES)})")
        label = name or f"{kind} #{len(self.cells)}"
        if len(ins) != len(ct.inputs):
            raise NetlistError(
                f"width mismatch on cell {label}: {kind} takes {len(ct.inputs)} inputs "
                f"({', '.join(ct.inputs)}), got {len(ins)}"
            )
        for n in ins:
            self._check_net_id(n, f"cell {label}")
        if outs is None:
            outs = tuple(self.add_net() for _ in ct.outputs)
        else:
            outs = tuple(outs)
            if len(outs) != len(ct.outputs):
                raise NetlistError(
                    f"width mismatch on cell {label}: {kind} drives {len(ct.outputs)} outputs "
                    f"({', '.join(ct.outputs)}), got {len(outs)}"
                )
            for n in outs:
                self._check_net_id(n, f"cell {label}")
        self.cells.append(Cell(kind, tuple(int(i) for i in ins), outs, name))
        return outs

    def _check_net_id(self, n: int, where: str) -> None:
        if not (0 <= int(n) < len(self.net_names)):
            raise NetlistError(f"{where}: net id {n} does not exist")

    # -- checks -------------------------------------------------------------------------
    def drivers(self) -> np.ndarray:
        """Driver of each net: -2 constant, -1 input port, cell index >= 0, or -3 undriven.

        Raises NetlistError on a net with more than one driver.
        """
        drv = np.full(self.n_nets, -3, dtype=np.int64)
        drv[CONST0] = drv[CONST1] = -2
        for port, nets in self.inputs.items():
            for n in nets:
                if drv[n] != -3:
                    raise NetlistError(
                        f"net {self.net_names[n]!r} has multiple drivers (input port {port!r} "
                        f"and {self._describe_driver(drv[n])})",
                        net=self.net_names[n],
                    )
                drv[n] = -1
        for ci, cell in enumerate(self.cells):
            for n in cell.outs:
                if drv[n] != -3:
                    raise NetlistError(
                        f"net {self.net_names[n]!r} has multiple drivers "
                        f"({self._describe_driver(drv[n])} and {self._cell_label(ci)})",
                        net=self.net_names[n],
                    )
                drv[n] = ci
        return drv

    def _cell_label(self, ci: int) -> str:
        c = self.cells[ci]
        return f"cell {c.name or '#' + str(ci)} ({c.kind})"

    def _describe_driver(self, d: int) -> str:
        if d == -2:
            return "a constant"
        if d == -1:
            return "an input port"
        return self._cell_label(int(d))

    def topological_order(self) -> list[int]:
        """Cell indices in evaluation order; checks drivers, undriven nets and loops."""
        drv = self.drivers()
        for ci, cell in enumerate(self.cells):
            for n in cell.ins:
                if drv[n] == -3:
                    raise NetlistError(
                        f"net {self.net_names[n]!r} is undriven (read by {self._cell_label(ci)})",
                        net=self.net_names[n],
                    )
        for port, nets in self.outputs.items():
            for n in nets:
                if drv[n] == -3:
                    raise NetlistError(
                        f"net {self.net_names[n]!r} is undriven (drives output port {port!r})",
                        net=self.net_names[n],
                    )
        # Kahn's algorithm over cells.
        n_cells = len(self.cells)
        indeg = np.zeros(n_cells, dtype=np.int64)
        fanout: list[list[int]] = [[] for _ in range(n_cells)]
        for ci, cell in enumerate(self.cells):
            for n in cell.ins:
                d = drv[n]
                if d >= 0:
                    indeg[ci] += 1
                    fanout[d].append(ci)
        ready = [ci for ci in range(n_cells) if indeg[ci] == 0]
        order: list[int] = []
        while ready:
            ci = ready.pop()
            order.append(ci)
            for co in fanout[ci]:
                indeg[co] -= 1
                if indeg[co] == 0:
                    ready.append(co)
        if len(order) != n_cells:
            stuck = [ci for ci in range(n_cells) if indeg[ci] > 0]
            loop_net = self._find_loop_net(drv, set(stuck))
            raise NetlistError(
                f"combinational loop through net {loop_net!r}", net=loop_net
            )
        # Stable order: keep the original relative order where dependencies allow.
        return self._stable_order(drv)

    def _stable_order(self, drv: np.ndarray) -> list[int]:
        level = np.zeros(len(self.cells), dtype=np.int64)
        done = np.zeros(len(self.cells), dtype=bool)
        # Iterative DFS computing levels (longest distance from inputs).
        for start in range(len(self.cells)):
            if done[start]:
                continue
            stack = [(start, 0)]
            while stack:
                ci, k = stack.pop()
                ins = self.cells[ci].ins
                while k < len(ins) and (drv[ins[k]] < 0 or done[drv[ins[k]]]):
                    k += 1
                if k < len(ins):
                    stack.append((ci, k + 1))
                    stack.append((int(drv[ins[k]]), 0))
                    continue
                lv = 0
                for n in ins:
                    if drv[n] >= 0:
                        lv = max(lv, level[drv[n]] + 1)
                level[ci] = lv
                done[ci] = True
        return [int(i) for i in np.lexsort((np.arange(len(self.cells)), level))]

    def _find_loop_net(self, drv: np.ndarray, stuck: set[int]) -> str:
        # Walk backwards from a stuck cell through stuck drivers until a cell repeats.
        ci = min(stuck)
        seen: dict[int, int] = {}
        while ci not in seen:
            seen[ci] = len(seen)
            for n in self.cells[ci].ins:
                d = int(drv[n])
                if d in stuck:
                    ci = d
                    last_net = n
                    break
            else:  # pragma: no cover - a stuck cell always has a stuck driver
                break
        return self.net_names[last_net]

    def validate(self) -> None:
        """Raise NetlistError if the netlist is not a well-formed combinational circuit."""
        self.topological_order()

    # -- transformations ----------------------------------------------------------------
    def pruned(self) -> "Netlist":
        """A copy without cells whose outputs reach no output port."""
        drv = self.drivers()
        live_nets = np.zeros(self.n_nets, dtype=bool)
        stack = [n for nets in self.outputs.values() for n in nets]
        live_cells = np.zeros(len(self.cells), dtype=bool)
        while stack:
            n = stack.pop()
            if live_nets[n]:
                continue
            live_nets[n] = True
            d = drv[n]
            if d >= 0 and not live_cells[d]:
                live_cells[d] = True
                stack.extend(self.cells[d].ins)
        out = Netlist(
            name=self.name,
            net_names=list(self.net_names),
            inputs={k: list(v) for k, v in self.inputs.items()},
            outputs={k: list(v) for k, v in self.outputs.items()},
            cells=[c for c, keep in zip(self.cells, live_cells) if keep],
        )
        return out

    def cell_counts(self) -> dict[str, int]:
        """Number of cells of each type."""
        counts: dict[str, int] = {}
        for c in self.cells:
            counts[c.kind] = counts.get(c.kind, 0) + 1
        return counts

    def compile(self) -> "CompiledNetlist":
        """Topologically ordered arrays for the Numba evaluator and static timer."""
        order = self.topological_order()
        n = len(order)
        op = np.empty(n, dtype=np.int8)
        ins = np.zeros((n, 3), dtype=np.int32)
        outs = np.full((n, 2), -1, dtype=np.int32)
        for k, ci in enumerate(order):
            c = self.cells[ci]
            op[k] = CELL_TYPES[c.kind].opcode
            ins[k, : len(c.ins)] = c.ins
            outs[k, : len(c.outs)] = c.outs
        return CompiledNetlist(
            n_nets=self.n_nets,
            opcode=op,
            ins=ins,
            outs=outs,
            inputs={k: np.asarray(v, dtype=np.int32) for k, v in self.inputs.items()},
            outputs={k: np.asarray(v, dtype=np.int32) for k, v in self.outputs.items()},
        )


@dataclass(frozen=True)
class CompiledNetlist:
    """Array form of a netlist: cells in topological order, pins as net indices."""

    n_nets: int
    opcode: np.ndarray  # (cells,) int8, see CELL_TYPES
    ins: np.ndarray  # (cells, 3) int32, unused pins 0
    outs: np.ndarray  # (cells, 2) int32, unused pins -1
    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]


OPCODE_TO_KIND = {ct.opcode: ct.name for ct in CELL_TYPES.values()}
