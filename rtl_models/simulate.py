"""Exhaustive bit-parallel simulation of 8x8 multiplier netlists (Numba).

Stimulus (documented and seeded, so that toggle counts are reproducible):
every one of the 65,536 operand pairs is applied exactly once, in the order of
`numpy.random.default_rng(seed).permutation(65536)`; pair index p means A = p >> 8 (port A,
the activation) and B = p & 255 (port B, the weight). Vector t of the sequence sits in
64-bit word t // 64, bit t % 64, so each net holds 1,024 words. One pass gives both the full
256x256 product table (unscrambled through the permutation) and, per net, the number of
value changes between consecutive vectors (65,535 transitions in all), which drives the
dynamic power estimate.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numba import njit

from .netlist import CONST1, CompiledNetlist, Netlist, NetlistError

N_PAIRS = 65536
N_WORDS = N_PAIRS // 64
DEFAULT_SEED = 2024


@dataclass(frozen=True)
class SimulationResult:
    """Exhaustive simulation output of a two-operand netlist."""

    table: np.ndarray  # (256, 256): uint16 unsigned or int16 signed, indexed [a_code, b_code]
    toggles: np.ndarray  # (n_nets,) int64, value changes over the stimulus sequence
    n_transitions: int  # number of consecutive-vector transitions (65,535)
    seed: int


@lru_cache(maxsize=8)
def stimulus(seed: int = DEFAULT_SEED, width_a: int = 8, width_b: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """(perm, bit_words): the pair order and each input bit packed as 1,024 uint64 words.

    bit_words has shape (width_a + width_b, 1024): rows 0..width_a-1 are A's bits (LSB first),
    then B's bits.
    """
    if width_a + width_b != 16:
        raise ValueError(f"exhaustive stimulus needs 16 operand bits in all, got {width_a}+{width_b}")
    perm = np.random.default_rng(seed).permutation(N_PAIRS).astype(np.int64)
    a = perm >> width_b
    b = perm & ((1 << width_b) - 1)
    bits = np.empty((width_a + width_b, N_PAIRS), dtype=np.uint8)
    for i in range(width_a):
        bits[i] = (a >> i) & 1
    for j in range(width_b):
        bits[width_a + j] = (b >> j) & 1
    # pack little-endian within each 64-bit word: vector t -> word t//64, bit t%64
    packed = np.packbits(bits, axis=1, bitorder="little").view(np.uint64)
    perm.setflags(write=False)
    packed.setflags(write=False)
    return perm, np.ascontiguousarray(packed)


@njit(cache=True, nogil=True)
def _evaluate(opcode, ins, outs, values):
    n_words = values.shape[1]
    for k in range(opcode.shape[0]):
        op = opcode[k]
        a = ins[k, 0]
        b = ins[k, 1]
        c = ins[k, 2]
        y = outs[k, 0]
        z = outs[k, 1]
        if op == 0:
            for w in range(n_words):
                values[y, w] = values[a, w] & values[b, w]
        elif op == 1:
            for w in range(n_words):
                values[y, w] = values[a, w] | values[b, w]
        elif op == 2:
            for w in range(n_words):
                values[y, w] = values[a, w] ^ values[b, w]
        elif op == 3:
            for w in range(n_words):
                values[y, w] = ~(values[a, w] & values[b, w])
        elif op == 4:
            for w in range(n_words):
                values[y, w] = ~(values[a, w] | values[b, w])
        elif op == 5:
            for w in range(n_words):
                values[y, w] = ~(values[a, w] ^ values[b, w])
        elif op == 6:
            for w in range(n_words):
                values[y, w] = ~values[a, w]
        elif op == 7:
            for w in range(n_words):
                values[y, w] = values[a, w]
        elif op == 8:
            for w in range(n_words):
                values[y, w] = ~(values[a, w] & values[b, w] & values[c, w])
        elif op == 9:
            for w in range(n_words):
                values[y, w] = ~(values[a, w] | values[b, w] | values[c, w])
        elif op == 10:
            for w in range(n_words):
                values[y, w] = ~((values[a, w] & values[b, w]) | values[c, w])
        elif op == 11:
            for w in range(n_words):
                values[y, w] = ~((values[a, w] | values[b, w]) & values[c, w])
        elif op == 12:
            for w in range(n_words):
                s = values[c, w]
                values[y, w] = (values[a, w] & ~s) | (values[b, w] & s)
        elif op == 13:
            for w in range(n_words):
                va = values[a, w]
                vb = values[b, w]
                values[y, w] = va ^ vb
                values[z, w] = va & vb
        else:  # 14: full adder
            for w in range(n_words):
                va = values[a, w]
                vb = values[b, w]
                vc = values[c, w]
                t = va ^ vb
                values[y, w] = t ^ vc
                values[z, w] = (va & vb) | (t & vc)


@njit(cache=True, inline="always")
def _popcount64(x):
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return (x * np.uint64(0x0101010101010101)) >> np.uint64(56)


@njit(cache=True, nogil=True)
def _toggle_counts(values):
    n_nets, n_words = values.shape
    out = np.zeros(n_nets, dtype=np.int64)
    one = np.uint64(1)
    s63 = np.uint64(63)
    for n in range(n_nets):
        total = np.uint64(0)
        prev_top = values[n, 0] & one  # vector 0 has no predecessor: compare it with itself
        for w in range(n_words):
            v = values[n, w]
            shifted = (v << one) | prev_top
            total += _popcount64(v ^ shifted)
            prev_top = v >> s63
        out[n] = np.int64(total)
    return out


@njit(cache=True, nogil=True)
def _unscramble(values, out_nets, perm, signed):
    n_out = out_nets.shape[0]
    table = np.zeros(perm.shape[0], dtype=np.int64)
    one = np.uint64(1)
    for t in range(perm.shape[0]):
        w = t >> 6
        sh = np.uint64(t & 63)
        acc = 0
        for o in range(n_out):
            acc |= np.int64((values[out_nets[o], w] >> sh) & one) << o
        if signed and n_out > 0 and (acc >> (n_out - 1)) & 1:
            acc -= np.int64(1) << n_out
        table[perm[t]] = acc
    return table


def simulate(
    netlist: Netlist | CompiledNetlist,
    signed: bool = False,
    seed: int = DEFAULT_SEED,
    a_port: str = "A",
    b_port: str = "B",
    out_port: str | None = None,
) -> SimulationResult:
    """Apply all 65,536 operand pairs to an 8x8 multiplier netlist; table and toggle counts."""
    comp = netlist.compile() if isinstance(netlist, Netlist) else netlist
    for port in (a_port, b_port):
        if port not in comp.inputs:
            raise NetlistError(f"input port {port!r} not found (ports: {', '.join(comp.inputs)})", net=port)
    wa, wb = len(comp.inputs[a_port]), len(comp.inputs[b_port])
    if (wa, wb) != (8, 8):
        raise NetlistError(
            f"width mismatch: exhaustive simulation needs 8-bit ports {a_port!r} and {b_port!r}, "
            f"got {wa} and {wb} bits",
            net=a_port if wa != 8 else b_port,
        )
    if out_port is None:
        if len(comp.outputs) != 1:
            raise NetlistError(f"netlist has {len(comp.outputs)} output ports; name the product port")
        out_port = next(iter(comp.outputs))
    if out_port not in comp.outputs:
        raise NetlistError(f"output port {out_port!r} not found", net=out_port)
    out_nets = comp.outputs[out_port]
    if len(out_nets) > 16:
        raise NetlistError(
            f"width mismatch on output port {out_port!r}: at most 16 bits, got {len(out_nets)}", net=out_port
        )
    perm, bit_words = stimulus(seed)
    values = np.zeros((comp.n_nets, N_WORDS), dtype=np.uint64)
    values[CONST1] = np.uint64(0xFFFFFFFFFFFFFFFF)
    values[comp.inputs[a_port]] = bit_words[:8]
    values[comp.inputs[b_port]] = bit_words[8:]
    _evaluate(comp.opcode, comp.ins, comp.outs, values)
    flat = _unscramble(values, out_nets.astype(np.int64), perm, signed)
    dtype = np.int16 if signed else np.uint16
    table = flat.reshape(256, 256).astype(dtype)
    toggles = _toggle_counts(values)
    return SimulationResult(table=table, toggles=toggles, n_transitions=N_PAIRS - 1, seed=seed)
