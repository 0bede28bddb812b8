"""Characterize a multiplier netlist: simulate exhaustively, then error metrics and costs."""

from __future__ import annotations

from .costs import CALIBRATIONS, CHARACTERIZATION_CLOCK_GHZ, POWER_DELAY_MODEL, cost_model_id, hardware_costs
from .metrics import error_metrics
from .multiplier import Multiplier, table_sha256
from .netlist import Netlist
from .simulate import DEFAULT_SEED, simulate


def characterize(
    netlist: Netlist,
    *,
    name: str,
    library: str,
    version: str,
    signed: bool,
    family: str = "",
    params: dict | None = None,
    description: str = "",
    source: str = "",
    published: dict | None = None,
    disagreements: tuple = (),
    clock_ghz: float = CHARACTERIZATION_CLOCK_GHZ,
    seed: int = DEFAULT_SEED,
    delay_model: str = POWER_DELAY_MODEL,
) -> Multiplier:
    """One exhaustive simulation gives the table, the error metrics and the power; STA the delay."""
    if delay_model not in CALIBRATIONS:
        raise ValueError(f"delay_model must be one of {', '.join(CALIBRATIONS)}, got {delay_model!r}")
    comp = netlist.compile()
    sim = simulate(comp, signed=signed, seed=seed, delay_model=delay_model)
    costs = hardware_costs(comp, sim.toggles, sim.n_transitions, clock_ghz=clock_ghz,
                           cal=CALIBRATIONS[delay_model])
    return Multiplier(
        name=name,
        library=library,
        version=version,
        signed=signed,
        table=sim.table,
        sha256=table_sha256(sim.table, signed),
        metrics=error_metrics(sim.table, signed),
        area_um2=costs.area_um2,
        delay_ns=costs.delay_ns,
        power_mw=costs.power_mw,
        energy_pj=costs.energy_pj,
        family=family,
        params=dict(params or {}),
        description=description,
        source=source,
        cells=netlist.cell_counts(),
        published=dict(published or {}),
        disagreements=tuple(disagreements),
        cost_model=cost_model_id(delay_model),
    )
