"""Cost model, calibration, characterization and the exact designs."""

import networkx as nx
import numpy as np
import pytest

from rtl_models.characterize import characterize
from rtl_models.costs import (
    ANCHOR_NAME,
    ANCHOR_PUBLISHED,
    BASE_CELL_COSTS,
    CALIBRATION,
    CALIBRATIONS,
    POWER_DELAY_MODEL,
    critical_path_ns,
    fit_calibration,
    hardware_costs,
)
from rtl_models.designs import load_all
from rtl_models.metrics import error_metrics, exact_table
from rtl_models.netlist import CELL_TYPES
from rtl_models.simulate import DELAY_MODELS, simulate

EXACT = ["mul8u_array", "mul8u_dadda", "mul8u_wallace", "mul8s_bw_array", "mul8s_bw_dadda"]


@pytest.fixture(scope="module")
def designs():
    return load_all()


@pytest.mark.parametrize("name", EXACT)
def test_exact_designs_are_exact(designs, name):
    spec = designs[name]
    sim = simulate(spec.build(), signed=spec.signed)
    np.testing.assert_array_equal(sim.table.astype(np.int64), exact_table(spec.signed))
    np.testing.assert_array_equal(sim.table, spec.reference_table())


def test_every_cell_type_has_costs():
    assert set(BASE_CELL_COSTS) == set(CELL_TYPES)
    for name, c in BASE_CELL_COSTS.items():
        n_out = len(CELL_TYPES[name].outputs)
        assert len(c.delay_ns) == n_out and len(c.energy_fj) == n_out


@pytest.mark.parametrize("delay_model", DELAY_MODELS)
def test_calibration_constants_match_a_fresh_fit(designs, delay_model):
    comp = designs[ANCHOR_NAME].build().compile()
    sim = simulate(comp, delay_model=delay_model)
    fit = fit_calibration(comp, sim.toggles, sim.n_transitions)
    cal = CALIBRATIONS[delay_model]
    for field in ("area", "delay", "energy", "leakage"):
        assert getattr(cal, field) == pytest.approx(getattr(fit, field), rel=1e-3), field
    costs = hardware_costs(comp, sim.toggles, sim.n_transitions, cal=cal)
    assert costs.area_um2 == pytest.approx(ANCHOR_PUBLISHED["area_um2"], rel=1e-3)
    assert costs.delay_ns == pytest.approx(ANCHOR_PUBLISHED["delay_ns"], rel=1e-3)
    assert costs.power_mw == pytest.approx(ANCHOR_PUBLISHED["power_mw"], rel=1e-3)


def test_power_model_is_glitch_aware_and_zero_delay_stays_selectable(designs):
    assert set(CALIBRATIONS) == set(DELAY_MODELS)
    assert CALIBRATION == CALIBRATIONS[POWER_DELAY_MODEL] == CALIBRATIONS["unit"]
    spec = designs[ANCHOR_NAME]
    unit = characterize(spec.build(), name=spec.name, library="cosim", version="1", signed=False)
    zero = characterize(spec.build(), name=spec.name, library="cosim", version="1", signed=False,
                        delay_model="zero")
    # each model's own calibration puts the anchor on the published power
    assert unit.power_mw == pytest.approx(ANCHOR_PUBLISHED["power_mw"], rel=1e-3)
    assert zero.power_mw == pytest.approx(ANCHOR_PUBLISHED["power_mw"], rel=1e-3)
    assert unit.area_um2 == zero.area_um2 and unit.delay_ns == zero.delay_ns
    # a shallow design glitches less than the deep anchor, so glitch-aware power ranks it cheaper
    shallow = designs["mul8u_dadda"]
    u = characterize(shallow.build(), name=shallow.name, library="cosim", version="1", signed=False)
    z = characterize(shallow.build(), name=shallow.name, library="cosim", version="1", signed=False,
                     delay_model="zero")
    assert u.power_mw < z.power_mw
    with pytest.raises(ValueError, match="'inertial'"):
        characterize(spec.build(), name=spec.name, library="cosim", version="1", signed=False,
                     delay_model="inertial")


def test_static_timing_equals_longest_path(designs):
    nl = designs["mul8u_dadda"].build()
    comp = nl.compile()
    g = nx.DiGraph()
    from rtl_models.costs import _per_opcode_tables

    _, _, delay, _ = _per_opcode_tables(CALIBRATION)
    for c in nl.cells:
        op = CELL_TYPES[c.kind].opcode
        for q, o in enumerate(c.outs):
            for i in c.ins:
                w = delay[op, q]
                if g.has_edge(i, o):
                    w = max(w, g[i][o]["w"])
                g.add_edge(i, o, w=w)
    sink = "sink"
    for o in nl.outputs["O"]:
        if o in g:
            g.add_edge(o, sink, w=0.0)
    longest = nx.dag_longest_path_length(g, weight="w")
    assert critical_path_ns(comp) == pytest.approx(longest)


def test_power_scales_with_clock_and_energy_is_per_multiply(designs):
    comp = designs["mul8u_array"].build().compile()
    sim = simulate(comp)
    c1 = hardware_costs(comp, sim.toggles, sim.n_transitions, clock_ghz=1.0)
    c2 = hardware_costs(comp, sim.toggles, sim.n_transitions, clock_ghz=0.5)
    assert c2.dynamic_power_mw == pytest.approx(c1.dynamic_power_mw / 2)
    assert c2.leakage_power_mw == pytest.approx(c1.leakage_power_mw)
    assert c1.energy_pj == pytest.approx(c1.power_mw)  # at 1 GHz, mW == pJ per cycle
    with pytest.raises(ValueError, match="clock_ghz"):
        hardware_costs(comp, sim.toggles, sim.n_transitions, clock_ghz=0)


def test_characterize_record(designs):
    spec = designs["mul8u_dadda"]
    m = characterize(spec.build(), name=spec.name, library="cosim", version="1", signed=False)
    assert m.is_exact and m.metrics == error_metrics(m.table, False)
    rec = m.record()
    for key in ("name", "library", "version", "sha256", "mae_pct", "mre_pct", "wcre_pct", "wce_pct",
                "ep_pct", "mse", "bias", "power_mw", "area_um2", "delay_ns", "energy_pj"):
        assert key in rec
    assert not m.table.flags.writeable
    assert len(m.sha256) == 64


def test_metrics_definitions_on_a_hand_table():
    t = exact_table(False).astype(np.int64)
    t[3, 5] += 4  # one pair off by +4 (exact 15)
    t[0, 7] = 2  # exact 0, approx 2: counts in EP/MAE, not in MRE
    m = error_metrics(t.astype(np.uint16), False)
    assert m.wce == 4 and m.mae == pytest.approx(6 / 65536)
    assert m.ep_pct == pytest.approx(2 / 65536 * 100)
    nz = (exact_table(False) != 0).sum()
    assert m.mre_pct == pytest.approx(4 / 15 / nz * 100)
    assert m.wcre_pct == pytest.approx(4 / 15 * 100)
    assert m.bias == pytest.approx(6 / 65536)
    assert m.mse == pytest.approx(20 / 65536)
    assert m.mae_pct == pytest.approx(m.mae / 65536 * 100)
