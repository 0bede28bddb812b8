"""The RoHNAS cost model (Marchisio et al., 'RoHNAS', IEEE Access 2022) as a named baseline.

RoHNAS estimates a CNN on a 16x16 systolic array clocked at 3 ns, per conv / linear layer with
square kernel K (K^2 = kernel_h * kernel_w), Cin input channels (per group), Cout outputs and
Ho^2 = out_h * out_w output pixels:

    weights = (Cin * K^2 + 1) * Cout
    cycles  = (R + stages - 1) * ceil(weights / C / min(R, (K^2 + 1) * Cin)) + Ho^2 * Cin
    power   = P_PE * R * C + accumulators * P_reg      (P_PE = 0.4815 mW, P_reg = 0.2303 mW, 25-bit)
    energy  = power * cycles * clock period

`stages` (pipeline stages of a PE) and `accumulators` (25-bit accumulator registers) are not
pinned down by the formula; the defaults here (2 stages, one accumulator per column) are our
assumption. Pool and add layers cost nothing in this model. The memory footprint is the
weights (bias included) at one byte each.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from mapping.network import Network


@dataclass(frozen=True)
class RohnasConfig:
    """RoHNAS's array and power figures."""

    rows: int = 16
    cols: int = 16
    clock_ns: float = 3.0
    stages: int = 2  # assumption: multiplier and accumulator stages per PE
    accumulators: int | None = None  # assumption: one per column when None
    pe_power_mw: float = 0.4815
    reg_power_mw: float = 0.2303

    @property
    def power_mw(self) -> float:
        """Array power: PEs plus accumulator registers."""
        acc = self.cols if self.accumulators is None else self.accumulators
        return self.pe_power_mw * self.rows * self.cols + acc * self.reg_power_mw


def rohnas_layer(layer, cfg: RohnasConfig = RohnasConfig()) -> dict:
    """RoHNAS weights, cycles, latency, power and energy of one layer (zeros for pool/add)."""
    if not layer.is_gemm:
        return {"name": layer.name, "weights": 0, "cycles": 0, "latency_s": 0.0, "power_mw": cfg.power_mw,
                "energy_pj": 0.0}
    k2 = layer.kernel_h * layer.kernel_w
    cin = layer.in_c // layer.groups
    cout = layer.out_c
    weights = (cin * k2 + 1) * cout
    R, C = cfg.rows, cfg.cols
    per = C * min(R, (k2 + 1) * cin)
    cycles = (R + cfg.stages - 1) * (-(-weights // per)) + layer.out_h * layer.out_w * layer.batch * cin
    latency = cycles * cfg.clock_ns * 1e-9
    energy_pj = cfg.power_mw * latency * 1e9  # mW x s = 1e9 pJ
    return {"name": layer.name, "weights": weights, "cycles": cycles, "latency_s": latency,
            "power_mw": cfg.power_mw, "energy_pj": energy_pj}


def rohnas_network(network: Network, cfg: RohnasConfig = RohnasConfig()) -> dict:
    """Per-layer RoHNAS records and totals (`layers`, `total`)."""
    layers = [rohnas_layer(l, cfg) for l in network.layers]
    total = {
        "name": "total", "model": "rohnas", "network": network.name,
        "weights": sum(r["weights"] for r in layers),
        "cycles": sum(r["cycles"] for r in layers),
        "latency_s": sum(r["latency_s"] for r in layers),
        "energy_pj": sum(r["energy_pj"] for r in layers),
        "power_mw": cfg.power_mw,
        "memory_footprint_bytes": sum(r["weights"] for r in layers),
        "config": asdict(cfg),
    }
    return {"layers": layers, "total": total}
