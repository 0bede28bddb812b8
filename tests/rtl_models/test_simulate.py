"""The bit-parallel Numba evaluator against a plain NumPy boolean reference on random netlists."""

import numpy as np
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


def reference_simulate(nl: Netlist, signed: bool, seed: int):
    """Per-vector boolean evaluation in stimulus order: the slow, obvious reference."""
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
    out = np.zeros(N_PAIRS, dtype=np.int64)
    for o, n in enumerate(nl.outputs["O"]):
        out |= vals[n].astype(np.int64) << o
    if signed:
        out = np.where(out >= 1 << 15, out - (1 << 16), out)
    table = np.zeros(N_PAIRS, dtype=np.int64)
    table[perm] = out
    toggles = (vals[:, 1:] != vals[:, :-1]).sum(axis=1)
    return table.reshape(256, 256), toggles


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
    np.testing.assert_array_equal(got.toggles, toggles)
    assert got.n_transitions == N_PAIRS - 1


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
