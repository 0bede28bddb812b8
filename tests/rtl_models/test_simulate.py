"""The bit-parallel Numba evaluator against plain NumPy boolean references on random netlists."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtl_models.netlist import CELL_TYPES, CONST1, Netlist
from rtl_models.simulate import N_PAIRS, simulate, stimulus

FUNCS = {
    "AND2": lambda a, b: a & b,
    "OR2": lambda a, b: a | b,
    "XOR2": lambda a, b: a ^ b,
    "NAND2": lambda a, b: ~(a & b),
    "NOR2": lambda a, b: ~(a | b),
    "XNOR2": lambda a, b: ~(a ^ b),
    "INV": lambda a: ~a,
    "BUF": lambda a: a,
    "NAND3": lambda a, b, c: ~(a & b & c),
    "NOR3": lambda a, b, c: ~(a | b | c),
    "AOI21": lambda a, b, c: ~((a & b) | c),
    "OAI21": lambda a, b, c: ~((a | b) & c),
    "MUX2": lambda a, b, s: np.where(s, b, a),
    "HA": lambda a, b: (a ^ b, a & b),
    "FA": lambda a, b, c: (a ^ b ^ c, (a & b) | (a & c) | (b & c)),
}


def reference_settled(nl: Netlist, seed: int) -> np.ndarray:
    """Settled value of every net for every vector, (n_nets, 65536) bool, in stimulus order."""
    perm, _ = stimulus(seed)
    a, b = perm >> 8, perm & 255
    vals = np.zeros((nl.n_nets, N_PAIRS), dtype=bool)
    vals[CONST1] = True
    for i, n in enumerate(nl.inputs["A"]):
        vals[n] = (a >> i) & 1
    for j, n in enumerate(nl.inputs["B"]):
        vals[n] = (b >> j) & 1
    for ci in nl.topological_order():
        c = nl.cells[ci]
        res = FUNCS[c.kind](*[vals[n] for n in c.ins])
        res = res if isinstance(res, tuple) else (res,)
        for n, r in zip(c.outs, res):
            vals[n] = r
    return vals


def reference_simulate(nl: Netlist, signed: bool, seed: int):
    """Per-vector boolean evaluation in stimulus order: the slow, obvious reference."""
    perm, _ = stimulus(seed)
    vals = reference_settled(nl, seed)
    out = np.zeros(N_PAIRS, dtype=np.int64)
    for o, n in enumerate(nl.outputs["O"]):
        out |= vals[n].astype(np.int64) << o
    if signed:
        out = np.where(out >= 1 << 15, out - (1 << 16), out)
    table = np.zeros(N_PAIRS, dtype=np.int64)
    table[perm] = out
    toggles = (vals[:, 1:] != vals[:, :-1]).sum(axis=1)
    return table.reshape(256, 256), toggles


def reference_timed_toggles(nl: Netlist, seed: int, delays: dict[int, tuple[int, ...]] | None = None) -> np.ndarray:
    """Per-net toggles of every transition simulated step by step, all 65,535 transitions at once.

    Each transition starts from the previous vector's settled state (vector 0 from its own), the
    inputs switch at step 0, and output pin q of cell ci at step s takes the cell's function of
    the whole state at step s - delays[ci][q] (the previous vector's state before step 0); with
    all delays 1 this is the synchronous unit-delay stepping of the whole netlist.
    """
    settled = reference_settled(nl, seed)
    old = np.concatenate([settled[:, :1], settled[:, :-1]], axis=1)
    delays = delays or {ci: (1,) * len(c.outs) for ci, c in enumerate(nl.cells)}
    max_d = max((d for ds in delays.values() for d in ds), default=1)
    inputs = [n for port in ("A", "B") for n in nl.inputs[port]]
    states: dict[int, np.ndarray] = {}  # the last max_d steps' states
    prev = old
    toggles = np.zeros(nl.n_nets, dtype=np.int64)
    for step in range(10_000):
        state = prev.copy()
        state[inputs] = settled[inputs]
        for ci, c in enumerate(nl.cells):
            for q, n in enumerate(c.outs):
                s = step - delays[ci][q]
                src = states[s] if s >= 0 else old
                res = FUNCS[c.kind](*[src[i] for i in c.ins])
                state[n] = res[q] if isinstance(res, tuple) else res
        toggles += (state != prev).sum(axis=1)
        states[step] = state
        states.pop(step - max_d, None)
        prev = state
        # settled and every state a cell can still read is settled: nothing changes any more
        if step >= max_d - 1 and all(np.array_equal(states[k], settled) for k in range(step - max_d + 1, step + 1)):
            return toggles
    raise AssertionError("reference timing simulation did not settle")


@st.composite
def random_netlists(draw):
    nl = Netlist("rand")
    nets = nl.add_input("A", 8) + nl.add_input("B", 8) + [0, 1]
    kinds = sorted(CELL_TYPES)
    for _ in range(draw(st.integers(1, 40))):
        kind = draw(st.sampled_from(kinds))
        ins = [draw(st.sampled_from(nets)) for _ in CELL_TYPES[kind].inputs]
        nets.extend(nl.add_cell(kind, ins))
    outs = [draw(st.sampled_from(nets)) for _ in range(16)]
    nl.set_output("O", outs)
    return nl


@settings(max_examples=25, deadline=None)
@given(random_netlists(), st.booleans(), st.integers(0, 3))
def test_evaluator_matches_reference(nl, signed, seed):
    got = simulate(nl, signed=signed, seed=seed)
    table, toggles = reference_simulate(nl, signed, seed)
    np.testing.assert_array_equal(got.table.astype(np.int64), table)
    np.testing.assert_array_equal(got.toggles_zero_delay, toggles)
    assert got.n_transitions == N_PAIRS - 1
    zero = simulate(nl, signed=signed, seed=seed, delay_model="zero")
    assert zero.delay_model == "zero"
    np.testing.assert_array_equal(zero.toggles, toggles)
    np.testing.assert_array_equal(zero.table, got.table)


@settings(max_examples=20, deadline=None)
@given(random_netlists(), st.integers(0, 3))
def test_unit_delay_toggles_match_reference(nl, seed):
    got = simulate(nl, seed=seed)
    assert got.delay_model == "unit"
    np.testing.assert_array_equal(got.toggles, reference_timed_toggles(nl, seed))
    # a glitch is a pulse: it adds an even number of toggles, never removes one
    assert np.all(got.glitch_toggles >= 0) and np.all(got.glitch_toggles % 2 == 0)


@settings(max_examples=15, deadline=None)
@given(random_netlists(), st.integers(0, 3), st.data())
def test_per_pin_delay_steps_match_reference(nl, seed, data):
    delays = {ci: tuple(data.draw(st.integers(1, 4)) for _ in c.outs) for ci, c in enumerate(nl.cells)}
    comp = nl.compile()
    steps = np.ones((len(nl.cells), 2), dtype=np.int64)
    for k, ci in enumerate(nl.topological_order()):  # compiled cells are in topological order
        steps[k, : len(delays[ci])] = delays[ci]
    got = simulate(comp, seed=seed, delay_model=steps)
    assert got.delay_model == "steps"
    np.testing.assert_array_equal(got.toggles, reference_timed_toggles(nl, seed, delays))


def test_stimulus_is_a_seeded_permutation():
    perm, words = stimulus(7)
    assert np.array_equal(np.sort(perm), np.arange(N_PAIRS))
    assert words.shape == (16, 1024) and words.dtype == np.uint64
    assert np.array_equal(stimulus(7)[0], perm)
    assert not np.array_equal(stimulus(8)[0], perm)


def test_input_toggle_rate_is_about_one_half():
    nl = Netlist("wires")
    a = nl.add_input("A", 8)
    b = nl.add_input("B", 8)
    nl.set_output("O", a + b)
    r = simulate(nl)
    rate = r.toggles[a + b] / r.n_transitions
    assert np.all(np.abs(rate - 0.5) < 0.01)


def test_static_hazard_glitches_twice_per_input_change():
    nl = Netlist("hazard")
    a = nl.add_input("A", 8)
    b = nl.add_input("B", 8)
    (late,) = nl.add_cell("BUF", [a[0]])
    (y,) = nl.add_cell("XOR2", [a[0], late])  # always 0 when settled, pulses whenever A[0] changes
    nl.set_output("O", [y] + a[1:] + b)
    unit = simulate(nl)
    assert unit.toggles_zero_delay[y] == 0
    assert unit.toggles[y] == 2 * unit.toggles[a[0]]
    comp = nl.compile()
    steps = np.ones((2, 2), dtype=np.int64)
    steps[0, 0] = 3  # BUF (first in topological order) three steps late: a 3-step pulse, same count
    assert simulate(comp, delay_model=steps).toggles[y] == unit.toggles[y]


def test_delay_model_errors_name_the_value():
    nl = Netlist("wires")
    nl.set_output("O", nl.add_input("A", 8) + nl.add_input("B", 8))
    with pytest.raises(ValueError, match="'inertial'"):
        simulate(nl, delay_model="inertial")
    nl2 = Netlist("one")
    a = nl2.add_input("A", 8)
    b = nl2.add_input("B", 8)
    (y,) = nl2.add_cell("AND2", [a[0], b[0]])
    nl2.set_output("O", [y] + a[1:] + b[1:])
    with pytest.raises(ValueError, match=r"shape \(1, 2\)"):
        simulate(nl2, delay_model=np.ones((3, 2), dtype=np.int64))
    with pytest.raises(ValueError, match="must be >= 1 step, got 0"):
        simulate(nl2, delay_model=np.zeros((1, 2), dtype=np.int64))
    with pytest.raises(ValueError, match="longest path is 10000000 steps"):
        simulate(nl2, delay_model=np.full((1, 2), 10_000_000, dtype=np.int64))


def test_unit_delay_on_the_deep_ripple_array_matches_reference():
    from rtl_models.designs import load_all

    nl = load_all()["mul8u_array"].build()
    got = simulate(nl)
    np.testing.assert_array_equal(got.toggles, reference_timed_toggles(nl, got.seed))
    # a ripple array is glitchy: about as many spurious toggles as settled ones
    assert 1.5 < got.toggles.sum() / got.toggles_zero_delay.sum() < 2.5
