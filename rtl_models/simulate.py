"""Exhaustive bit-parallel simulation of 8x8 multiplier netlists (Numba).

Stimulus (documented and seeded, so that toggle counts are reproducible):
every one of the 65,536 operand pairs is applied exactly once, in the order of
`numpy.random.default_rng(seed).permutation(65536)`; pair index p means A = p >> 8 (port A,
the activation) and B = p & 255 (port B, the weight). Vector t of the sequence sits in
64-bit word t // 64, bit t % 64, so each net holds 1,024 words. One pass gives both the full
256x256 product table (unscrambled through the permutation) and, per net, the number of
value changes between consecutive vectors (65,535 transitions in all; vector 0 has no
predecessor), which drives the dynamic power estimate.

Two toggle counts over that same sequence (`delay_model`):

* ``"zero"`` (zero delay): changes of each net's *settled* value from vector t-1 to vector t.
* ``"unit"`` (unit delay, the default and the power model's): each transition is simulated in
  time. Every net starts from its settled value for vector t-1, the inputs switch to vector t
  at step 0, and then the whole netlist steps synchronously: at step s every cell output takes
  its cell's function of its fan-ins' values at step s-1 (each cell output is one step late;
  HA/FA outputs too). The netlist settles after as many steps as its deepest path has cells;
  every change of every net at every step is counted, so spurious transitions on the way
  (glitches, from paths of unequal depth) count too. ``toggles - toggles_zero_delay`` are the
  glitch toggles (per net even, and never negative).
* An integer array of per-output-pin delays (compiled cell order, shape (cells, 2), >= 1) runs
  the same simulation with those delays in steps (transport delay: an output at step s is its
  function of the fan-ins at step s - d), e.g. cell delays quantized to 10 ps.

How it is bit-parallel: the settled state of vector t-1 is the zero-delay result shifted up by
one bit position (the carry crossing into the next word; vector 0 starts from itself), so 64
transitions are simulated at once per word. Which nets can change at which step is known
statically (a net can only change one delay after one of its fan-ins changed), so each word is
evaluated once per (net, possible change step) along a precomputed schedule, not once per step
for every net.
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
DELAY_MODELS = ("zero", "unit")
DEFAULT_DELAY_MODEL = "unit"  # the dynamic power model's (rtl_models.costs)
_CHUNK_WORDS = 32  # words simulated together per schedule pass: keeps the slot buffer in cache
_MAX_SCHEDULE_CELLS = 1 << 25  # nets x time steps of the schedule's change-time bitmap


@dataclass(frozen=True)
class SimulationResult:
    """Exhaustive simulation output of a two-operand netlist."""

    table: np.ndarray  # (256, 256): uint16 unsigned or int16 signed, indexed [a_code, b_code]
    toggles: np.ndarray  # (n_nets,) int64, value changes over the stimulus sequence under delay_model
    n_transitions: int  # number of consecutive-vector transitions (65,535)
    seed: int
    toggles_zero_delay: np.ndarray  # (n_nets,) int64, settled-value changes (zero-delay model)
    delay_model: str = DEFAULT_DELAY_MODEL  # "zero", "unit" or "steps" (caller's per-pin delays)

    @property
    def glitch_toggles(self) -> np.ndarray:
        """Per-net spurious transitions: timing-aware toggles minus zero-delay toggles."""
        return self.toggles - self.toggles_zero_delay


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


@njit(cache=True)
def _latest_change(opcode, ins, outs, n_nets, steps, sources):
    """Latest time each net can change (longest path in delay steps; -1: never, e.g. constant-driven)."""
    n_in = np.array([2, 2, 2, 2, 2, 2, 1, 1, 3, 3, 3, 3, 3, 2, 3])
    last = np.full(n_nets, -1, dtype=np.int64)
    for s in sources:
        last[s] = 0
    for k in range(opcode.shape[0]):
        op = opcode[k]
        t = -1
        for p in range(n_in[op]):
            t = max(t, last[ins[k, p]])
        for q in range(2):
            o = outs[k, q]
            if o >= 0:
                last[o] = t + steps[k, q] if t >= 0 else -1
    return last


@njit(cache=True)
def _timing_schedule(opcode, ins, outs, n_nets, steps, sources, horizon):
    """Static event schedule of the timed simulation (change times 0 .. horizon - 1).

    Net n owns value slots base[n] (its settled value for the previous vector) and base[n] + j
    (its value after its j-th possible change time, in time order). Event e computes slot
    dst[e] with opcode code[e] (15/16: HA/FA carry) from slots src[e, :].
    """
    n_in = np.array([2, 2, 2, 2, 2, 2, 1, 1, 3, 3, 3, 3, 3, 2, 3])
    n_cells = opcode.shape[0]
    # times[n, t]: net n can change at time t (some fan-in can change at t - delay)
    times = np.zeros((n_nets, horizon), dtype=np.bool_)
    for s in sources:
        times[s, 0] = True
    for k in range(n_cells):
        op = opcode[k]
        for q in range(2):
            o = outs[k, q]
            if o < 0:
                continue
            d = steps[k, q]
            for p in range(n_in[op]):
                i = ins[k, p]
                for t in range(horizon - d):
                    if times[i, t]:
                        times[o, t + d] = True
    cum = np.zeros((n_nets, horizon), dtype=np.int32)  # changes of net n at times <= t
    base = np.zeros(n_nets, dtype=np.int64)
    n_slots = 0
    for n in range(n_nets):
        c = 0
        for t in range(horizon):
            if times[n, t]:
                c += 1
            cum[n, t] = c
        base[n] = n_slots
        n_slots += 1 + c
    n_events = 0
    for k in range(n_cells):
        for q in range(2):
            o = outs[k, q]
            if o >= 0:
                n_events += cum[o, horizon - 1]
    code = np.empty(n_events, dtype=np.int64)
    src = np.zeros((n_events, 3), dtype=np.int64)
    dst = np.empty(n_events, dtype=np.int64)
    net = np.empty(n_events, dtype=np.int64)
    e = 0
    # cells in topological order, each output's events in time order: every source slot is
    # computed before it is read
    for k in range(n_cells):
        op = opcode[k]
        for q in range(2):
            o = outs[k, q]
            if o < 0:
                continue
            d = steps[k, q]
            j = 0
            for t in range(horizon):
                if not times[o, t]:
                    continue
                j += 1
                code[e] = op if q == 0 else op + 2
                for p in range(n_in[op]):
                    i = ins[k, p]
                    src[e, p] = base[i] + cum[i, t - d]
                dst[e] = base[o] + j
                net[e] = o
                e += 1
    return base, n_slots, code, src, dst, net


@njit(cache=True, nogil=True)
def _timed_toggle_counts(values, sources, base, n_slots, code, src, dst, net, chunk):
    n_nets, n_words = values.shape
    n_events = code.shape[0]
    val = np.empty((n_slots, chunk), dtype=np.uint64)
    acc = np.zeros(n_events, dtype=np.uint64)
    src_acc = np.zeros(sources.shape[0], dtype=np.uint64)
    one = np.uint64(1)
    s63 = np.uint64(63)
    for w0 in range(0, n_words, chunk):
        m = min(chunk, n_words - w0)
        # start state: every net at its settled value for the previous vector
        for n in range(n_nets):
            b = base[n]
            for j in range(m):
                w = w0 + j
                v = values[n, w]
                carry = (values[n, w - 1] >> s63) if w > 0 else (v & one)  # vector 0: itself
                val[b, j] = (v << one) | carry
        # step 0: the inputs switch to the new vector
        for si in range(sources.shape[0]):
            s = sources[si]
            b = base[s]
            t = np.uint64(0)
            for j in range(m):
                v = values[s, w0 + j]
                t += _popcount64(v ^ val[b, j])
                val[b + 1, j] = v
            src_acc[si] += t
        for e in range(n_events):
            op = code[e]
            a = src[e, 0]
            b = src[e, 1]
            c = src[e, 2]
            y = dst[e]
            t = np.uint64(0)  # changes against slot y - 1, the net's previous value
            if op == 0:
                for j in range(m):
                    v = val[a, j] & val[b, j]
                    val[y, j] = v
                    t += _popcount64(v ^ val[y - 1, j])
            elif op == 1:
                for j in range(m):
                    v = val[a, j] | val[b, j]
                    val[y, j] = v
                    t += _popcount64(v ^ val[y - 1, j])
            elif op == 2 or op == 13:  # XOR2, HA sum
                for j in range(m):
                    v = val[a, j] ^ val[b, j]
                    val[y, j] = v
                    t += _popcount64(v ^ val[y - 1, j])
            elif op == 3:
                for j in range(m):
                    v = ~(val[a, j] & val[b, j])
                    val[y, j] = v
                    t += _popcount64(v ^ val[y - 1, j])
            elif op == 4:
                for j in range(m):
                    v = ~(val[a, j] | val[b, j])
                    val[y, j] = v
                    t += _popcount64(v ^ val[y - 1, j])
            elif op == 5:
                for j in range(m):
                    v = ~(val[a, j] ^ val[b, j])
                    val[y, j] = v
                    t += _popcount64(v ^ val[y - 1, j])
            elif op == 6:
                for j in range(m):
                    v = ~val[a, j]
                    val[y, j] = v
                    t += _popcount64(v ^ val[y - 1, j])
            elif op == 7:
                for j in range(m):
                    v = val[a, j]
                    val[y, j] = v
                    t += _popcount64(v ^ val[y - 1, j])
            elif op == 8:
                for j in range(m):
                    v = ~(val[a, j] & val[b, j] & val[c, j])
                    val[y, j] = v
                    t += _popcount64(v ^ val[y - 1, j])
            elif op == 9:
                for j in range(m):
                    v = ~(val[a, j] | val[b, j] | val[c, j])
                    val[y, j] = v
                    t += _popcount64(v ^ val[y - 1, j])
            elif op == 10:
                for j in range(m):
                    v = ~((val[a, j] & val[b, j]) | val[c, j])
                    val[y, j] = v
                    t += _popcount64(v ^ val[y - 1, j])
            elif op == 11:
                for j in range(m):
                    v = ~((val[a, j] | val[b, j]) & val[c, j])
                    val[y, j] = v
                    t += _popcount64(v ^ val[y - 1, j])
            elif op == 12:
                for j in range(m):
                    sel = val[c, j]
                    v = (val[a, j] & ~sel) | (val[b, j] & sel)
                    val[y, j] = v
                    t += _popcount64(v ^ val[y - 1, j])
            elif op == 14:  # FA sum
                for j in range(m):
                    v = val[a, j] ^ val[b, j] ^ val[c, j]
                    val[y, j] = v
                    t += _popcount64(v ^ val[y - 1, j])
            elif op == 15:  # HA carry
                for j in range(m):
                    v = val[a, j] & val[b, j]
                    val[y, j] = v
                    t += _popcount64(v ^ val[y - 1, j])
            else:  # 16: FA carry
                for j in range(m):
                    va = val[a, j]
                    vb = val[b, j]
                    v = (va & vb) | ((va ^ vb) & val[c, j])
                    val[y, j] = v
                    t += _popcount64(v ^ val[y - 1, j])
            acc[e] += t
    out = np.zeros(n_nets, dtype=np.int64)
    for e in range(n_events):
        out[net[e]] += np.int64(acc[e])
    for si in range(sources.shape[0]):
        out[sources[si]] += np.int64(src_acc[si])
    return out


def _delay_steps(comp: CompiledNetlist, delay_model) -> np.ndarray:
    """Per-output-pin delays in steps, (cells, 2) int64, checked."""
    n_cells = comp.opcode.shape[0]
    if isinstance(delay_model, str):
        return np.ones((n_cells, 2), dtype=np.int64)
    steps = np.asarray(delay_model)
    if steps.shape != (n_cells, 2):
        raise ValueError(f"delay_model: per-pin delay steps need shape ({n_cells}, 2) (cells, output pins), "
                         f"got {steps.shape}")
    if not np.issubdtype(steps.dtype, np.integer):
        raise ValueError(f"delay_model: per-pin delay steps must be integers, got dtype {steps.dtype}")
    used = comp.outs >= 0
    if used.any() and steps[used].min() < 1:
        k, q = np.argwhere(used & (steps < 1))[0]
        raise ValueError(f"delay_model: delay of cell {k} (compiled order) output pin {q} must be >= 1 step, "
                         f"got {steps[k, q]}")
    return np.ascontiguousarray(steps, dtype=np.int64)


def timed_toggles(comp: CompiledNetlist, values: np.ndarray, sources: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Per-net toggles, glitches included, of settled `values` simulated in time with per-pin `steps` delays."""
    sources = np.unique(np.asarray(sources, dtype=np.int64))
    last = _latest_change(comp.opcode, comp.ins, comp.outs, comp.n_nets, steps, sources)
    horizon = int(max(last.max(initial=0), 0)) + 1
    if horizon * comp.n_nets > _MAX_SCHEDULE_CELLS:
        raise ValueError(f"delay_model: the longest path is {horizon - 1} steps over {comp.n_nets} nets, "
                         f"too long to schedule (at most {_MAX_SCHEDULE_CELLS} net-steps); use coarser steps")
    base, n_slots, code, src, dst, net = _timing_schedule(comp.opcode, comp.ins, comp.outs, comp.n_nets,
                                                          steps, sources, horizon)
    return _timed_toggle_counts(values, sources, base, n_slots, code, src, dst, net, _CHUNK_WORDS)


@njit(cache=True, nogil=True)
def _unscramble(values, out_nets, perm, signed):
    n_out = out_nets.shape[0]
    n_words = values.shape[1]
    table = np.zeros(perm.shape[0], dtype=np.int64)
    one = np.uint64(1)
    codes = np.zeros(64, dtype=np.int64)
    for w in range(n_words):
        # transpose one word's 64 vectors from bit-sliced outputs to codes (inner loop vectorizes)
        for b in range(64):
            codes[b] = 0
        for o in range(n_out):
            v = values[out_nets[o], w]
            for b in range(64):
                codes[b] |= np.int64((v >> np.uint64(b)) & one) << o
        for b in range(64):
            acc = codes[b]
            if signed and n_out > 0 and (acc >> (n_out - 1)) & 1:
                acc -= np.int64(1) << n_out
            table[perm[w * 64 + b]] = acc
    return table


def simulate(
    netlist: Netlist | CompiledNetlist,
    signed: bool = False,
    seed: int = DEFAULT_SEED,
    a_port: str = "A",
    b_port: str = "B",
    out_port: str | None = None,
    delay_model: str | np.ndarray = DEFAULT_DELAY_MODEL,
) -> SimulationResult:
    """Apply all 65,536 operand pairs to an 8x8 multiplier netlist; table and toggle counts."""
    comp = netlist.compile() if isinstance(netlist, Netlist) else netlist
    if isinstance(delay_model, str):
        if delay_model not in DELAY_MODELS:
            raise ValueError(f"delay_model must be one of {', '.join(DELAY_MODELS)} or per-pin delay steps, "
                             f"got {delay_model!r}")
        steps = None if delay_model == "zero" else _delay_steps(comp, delay_model)
    else:
        steps = _delay_steps(comp, delay_model)
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
    zero = _toggle_counts(values)
    if steps is None:
        toggles, model = zero, "zero"
    else:
        sources = np.concatenate([comp.inputs[a_port], comp.inputs[b_port]])
        toggles = timed_toggles(comp, values, sources, steps)
        model = delay_model if isinstance(delay_model, str) else "steps"
    return SimulationResult(table=table, toggles=toggles, n_transitions=N_PAIRS - 1, seed=seed,
                            toggles_zero_delay=zero, delay_model=model)
