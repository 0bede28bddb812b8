"""The analytical model: closed-form cycles, accesses, footprints and energy, per layer and pod.

Timing conventions (`mapping.gemm`): ``scalesim`` reproduces SCALE-Sim 3.0.0's compute
schedule (per fold P = R + C + T - 2 for OS, 2R + C + T - 2 for WS/IS, folds serial, F*P - 1
per layer) and its access bookkeeping; ``pipelined`` is a TPU-like array that double-buffers
the stationary operand and overlaps one fold's drain with the next fold's fill
(L0 + (G*F - 1) * max(T, R) + T + R + C - 2), and keeps partial sums on chip when they fit.

Per layer (`mapping.tiler`): the split over pods (``auto`` takes the fastest), each pod's
folds, DRAM traffic under a reuse model that fetches an operand once when it fits in half its
SRAM (double buffering), memory-bound time = all pods' DRAM bytes / shared DRAM bandwidth,
layer cycles = max(slowest pod, memory time) + K-split reduction. Pods run in parallel and
the layer ends with its slowest pod; layers run one after another.

Energy per layer: MACs x the layer's multiplier energy (`mac_energy_pj`, the MAC-only figure)
plus accumulate adds, SRAM accesses (array-side words plus DRAM fills and drains, at the
energy per byte of that operand's per-pod SRAM size), DRAM bytes, interconnect bytes and
leakage over the layer's latency (`total_energy_pj`, the full system).

Multipliers are duck-typed: anything with ``.name`` and ``.energy_pj`` (pJ per multiply), such
as `rtl_models.multiplier.Multiplier`. Pass one for every layer or a {layer name: multiplier}
dict; layers without one use the hardware energy table's `mac_pj` (named "default").

Everything is NumPy over layers (`estimate_arrays`), so `estimate_batch` evaluates thousands of
(network, multiplier assignment) pairs in one pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from mapping.gemm import TIMINGS, compute_cycles, fold_counts, fold_period, operand_dims  # noqa: F401 (re-exported)
from mapping.hardware import HardwareConfig
from mapping.layer import MappingError
from mapping.network import LayerArrays, Network
from mapping.tiler import Plan, fold_schedule, plan

from .report import LayerReport, NetworkReport

__all__ = ["estimate", "estimate_arrays", "estimate_batch", "BatchEstimate", "layer_energy_pj", "mac_energies",
           "mapping_trace", "compute_cycles", "fold_counts", "fold_period", "operand_dims", "TIMINGS"]


def _sram_pj(hw: HardwareConfig) -> tuple[float, float, float]:
    e = hw.energy
    return tuple(e.sram_energy_pj_per_byte(s) for s in hw.pod_sram_bytes())  # type: ignore[return-value]


def mac_energies(names: Sequence[str], hw: HardwareConfig, multipliers: Any = None) -> tuple[np.ndarray, list[str]]:
    """Per-layer multiply energy (pJ) and multiplier names for `multipliers` (None, one, or a dict)."""
    default = float(hw.energy.mac_pj)
    pj = np.full(len(names), default)
    labels = ["default"] * len(names)
    if multipliers is None:
        return pj, labels
    if isinstance(multipliers, Mapping):
        index = {n: i for i, n in enumerate(names)}
        unknown = [k for k in multipliers if k not in index]
        if unknown:
            raise MappingError(f"multiplier assignment names unknown layers: {', '.join(map(repr, unknown))}")
        for lname, mult in multipliers.items():
            i = index[lname]
            pj[i] = _energy(mult, lname)
            labels[i] = str(getattr(mult, "name", "?"))
        return pj, labels
    e = _energy(multipliers, "every layer")
    return np.full(len(names), e), [str(getattr(multipliers, "name", "?"))] * len(names)


def _energy(mult: Any, where: str) -> float:
    e = getattr(mult, "energy_pj", None)
    if e is None or not np.isfinite(float(e)) or float(e) < 0:
        raise MappingError(f"multiplier for {where}: energy_pj = {e!r}: expected a non-negative number "
                           "(an object with .name and .energy_pj)")
    return float(e)


def layer_energy_pj(p: Plan, mac_pj: np.ndarray) -> dict[str, np.ndarray]:
    """Energy components (pJ) per layer for a costed plan and per-layer multiply energies."""
    hw = p.hw
    a, t = p.arrays, p.layer
    e = hw.energy
    wb = hw.word_bytes
    si, sf, so = _sram_pj(hw)
    latency = t["total_cycles"] / hw.clock_hz
    out = {
        "mac_energy_pj": a.macs * mac_pj,
        "accumulate_energy_pj": a.macs * e.accumulate_pj,
        "sram_energy_pj": ((t["ifmap_sram_reads"] * wb + t["ifmap_dram_bytes"]) * si
                           + (t["filter_sram_reads"] * wb + t["filter_dram_bytes"]) * sf
                           + ((t["ofmap_sram_writes"] + t["ofmap_sram_reads"]) * wb + t["ofmap_dram_bytes"]
                              + t["psum_dram_read_bytes"]) * so),
        "dram_energy_pj": t["dram_bytes"] * e.dram_pj_per_byte,
        "interconnect_energy_pj": t["interconnect_bytes"] * e.interconnect_pj_per_byte,
        "static_energy_pj": hw.leakage_mw() * latency * 1e9,  # mW x s = 1e9 pJ
    }
    out["total_energy_pj"] = sum(out.values())
    return out


def estimate_arrays(arrays: LayerArrays | Network, hw: HardwareConfig, mac_pj: np.ndarray | float | None = None,
                    timing: str = "scalesim", split: str = "auto") -> tuple[Plan, dict[str, np.ndarray]]:
    """Vectorized core: the plan and every per-layer figure as arrays (no report objects)."""
    p = plan(arrays, hw, timing, split)
    a = p.arrays
    if mac_pj is None:
        mac_pj = hw.energy.mac_pj
    mac_pj = np.broadcast_to(np.asarray(mac_pj, dtype=np.float64), (len(a),))
    t = p.layer
    out = dict(t)
    out.update(layer_energy_pj(p, mac_pj))
    out["latency_s"] = t["total_cycles"] / hw.clock_hz
    pes = hw.pods * hw.pes
    cyc = t["total_cycles"]
    with np.errstate(divide="ignore", invalid="ignore"):
        out["utilization"] = np.where(cyc > 0, a.macs / (np.maximum(cyc, 1) * pes), 0.0)
        out["mapping_efficiency"] = np.where(t["pe_fold_capacity"] > 0,
                                             t["pe_fold_sum"] / np.maximum(t["pe_fold_capacity"], 1), 0.0)
        if timing == "scalesim":
            cu = np.where(t["folds"] > 0, t["util_fold_sum"] / np.maximum(t["folds"], 1), 0.0)
        else:
            cu = np.where(t["compute_cycles"] > 0,
                          a.macs / (np.maximum(t["compute_cycles"], 1) * np.maximum(t["pods_used"], 1) * hw.pes), 0.0)
        out["compute_utilization"] = cu
    return p, out


def estimate(network: Network, hw: HardwareConfig, *, multipliers: Any = None, timing: str = "scalesim",
             split: str = "auto", dataflow: str | None = None) -> NetworkReport:
    """Analytical per-layer report and totals for `network` on `hw`."""
    if dataflow is not None:
        hw = hw.with_(dataflow=dataflow)
    arrays = network.arrays()
    mac_pj, mult_names = mac_energies(arrays.names, hw, multipliers)
    p, v = estimate_arrays(arrays, hw, mac_pj, timing, split)
    a = p.arrays
    cols = {k: np.asarray(x).tolist() for k, x in v.items()}
    kinds = a.kinds
    pod_cyc = p.pod["compute_cycles"].tolist()
    base = {"m": a.m.tolist(), "n": a.n.tolist(), "k": a.k.tolist(), "groups": a.groups.tolist(),
            "macs": a.macs.tolist(), "params": a.params.tolist()}
    layers = []
    for i, name in enumerate(a.names):
        layers.append(LayerReport(
            index=i, name=name, kind=kinds[i], split=p.labels[i], pods_used=cols["pods_used"][i],
            dataflow=hw.dataflow, timing=timing, multiplier=mult_names[i] if a.macs[i] else "",
            macs=base["macs"][i], params=base["params"][i], groups=base["groups"][i], m=base["m"][i],
            n=base["n"][i], k=base["k"][i], folds=cols["folds"][i], compute_cycles=cols["compute_cycles"][i],
            vector_cycles=cols["vector_cycles"][i], memory_cycles=cols["memory_cycles"][i],
            reduction_cycles=cols["reduction_cycles"][i], stall_cycles=cols["stall_cycles"][i],
            total_cycles=cols["total_cycles"][i], latency_s=cols["latency_s"][i],
            utilization=cols["utilization"][i], mapping_efficiency=cols["mapping_efficiency"][i],
            compute_utilization=cols["compute_utilization"][i],
            ifmap_sram_reads=cols["ifmap_sram_reads"][i], filter_sram_reads=cols["filter_sram_reads"][i],
            ofmap_sram_writes=cols["ofmap_sram_writes"][i], ofmap_sram_reads=cols["ofmap_sram_reads"][i],
            ifmap_dram_bytes=cols["ifmap_dram_bytes"][i], filter_dram_bytes=cols["filter_dram_bytes"][i],
            ofmap_dram_bytes=cols["ofmap_dram_bytes"][i], psum_dram_read_bytes=cols["psum_dram_read_bytes"][i],
            dram_bytes=cols["dram_bytes"][i], interconnect_bytes=cols["interconnect_bytes"][i],
            ifmap_footprint_bytes=cols["ifmap_footprint_bytes"][i],
            filter_footprint_bytes=cols["filter_footprint_bytes"][i],
            ofmap_footprint_bytes=cols["ofmap_footprint_bytes"][i],
            sram_footprint_bytes=cols["sram_footprint_bytes"][i],
            mac_energy_pj=cols["mac_energy_pj"][i], accumulate_energy_pj=cols["accumulate_energy_pj"][i],
            sram_energy_pj=cols["sram_energy_pj"][i], dram_energy_pj=cols["dram_energy_pj"][i],
            interconnect_energy_pj=cols["interconnect_energy_pj"][i], static_energy_pj=cols["static_energy_pj"][i],
            total_energy_pj=cols["total_energy_pj"][i], pod_compute_cycles=tuple(pod_cyc[i]),
        ))
    return NetworkReport(network=network.name, hardware=hw.name, dataflow=hw.dataflow, timing=timing,
                         layers=tuple(layers), pes=hw.pods * hw.pes,
                         weight_bytes=network.params * hw.word_bytes,
                         peak_activation_bytes=network.peak_activation_elems() * hw.word_bytes)


def mapping_trace(network: Network, hw: HardwareConfig, timing: str = "scalesim", split: str = "auto"):
    """The network's mapping trace (`traces.mapping_trace.MappingTrace`), validated."""
    from traces.mapping_trace import MappingTrace

    meta, arrays = fold_schedule(network, hw, timing, split)
    return MappingTrace(meta, arrays)


# --- batches --------------------------------------------------------------------------------

@dataclass(frozen=True)
class BatchEstimate:
    """Per-evaluation totals of `estimate_batch` (arrays of length E)."""

    network_index: np.ndarray
    macs: np.ndarray
    total_cycles: np.ndarray
    latency_s: np.ndarray
    mac_energy_pj: np.ndarray
    total_energy_pj: np.ndarray
    dram_bytes: np.ndarray
    memory_footprint_bytes: np.ndarray

    def __len__(self) -> int:
        return len(self.network_index)


def _footprint_elems(net) -> tuple[int, int]:
    """(params, peak live activation elements); LayerArrays use the chain approximation."""
    if isinstance(net, Network):
        return net.params, net.peak_activation_elems()
    a = net
    live = a.in_elems + a.out_elems
    return int(a.params.sum()), int(live.max()) if len(live) else 0


def estimate_batch(networks: Sequence[Network | LayerArrays], hw: HardwareConfig, mac_pj=None, *,
                   network_index=None, timing: str = "scalesim", split: str = "auto") -> BatchEstimate:
    """Evaluate E (network, multiplier assignment) pairs at once.

    `networks` are the distinct networks; `network_index` (length E, default one evaluation per
    network) says which one each evaluation uses; `mac_pj` gives each evaluation's per-layer
    multiply energies: None (the energy table's default), a scalar, or a sequence of E arrays
    (each as long as its network). Every distinct network is planned once; multiplier energy
    enters linearly, so an evaluation costs one dot product.
    """
    parts = [n.arrays() if isinstance(n, Network) else n for n in networks]
    U = len(parts)
    idx = np.arange(U) if network_index is None else np.asarray(network_index, dtype=np.int64)
    if len(idx) and (idx.min() < 0 or idx.max() >= U):
        raise MappingError(f"network_index values must lie in [0, {U}), got [{idx.min()}, {idx.max()}]")
    stacked = LayerArrays.concat(parts)
    default = hw.energy.mac_pj
    p, v = estimate_arrays(stacked, hw, default, timing, split)
    lengths = np.array([len(x) for x in parts], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    seg = stacked.segment

    def per_net(x):
        return np.bincount(seg, weights=x, minlength=U)

    cyc_u = per_net(v["total_cycles"]).astype(np.int64)
    macs_u = per_net(stacked.macs).astype(np.int64)
    dram_u = per_net(v["dram_bytes"]).astype(np.int64)
    # Everything except the multiply energy is independent of the assignment.
    fixed_u = per_net(v["total_energy_pj"] - v["mac_energy_pj"])
    fp = np.array([sum(_footprint_elems(n)) for n in networks], dtype=np.int64) * hw.word_bytes
    E = len(idx)
    if mac_pj is None or isinstance(mac_pj, (int, float, np.number)) or (
            isinstance(mac_pj, np.ndarray) and mac_pj.ndim == 0):
        e = float(default if mac_pj is None else mac_pj)
        mac_e = macs_u[idx] * e
    else:
        if len(mac_pj) != E:
            raise MappingError(f"mac_pj: {len(mac_pj)} assignments for {E} evaluations")
        flat = np.concatenate([np.asarray(x, dtype=np.float64) for x in mac_pj]) if E else np.zeros(0)
        want = lengths[idx]
        got = np.fromiter((np.size(x) for x in mac_pj), dtype=np.int64, count=E)
        if (want != got).any():
            j = int(np.nonzero(want != got)[0][0])
            raise MappingError(f"mac_pj[{j}] has {got[j]} layer energies, network {idx[j]} has {want[j]} layers")
        # Gather each evaluation's layers' MACs (rows of the stacked arrays) and dot with its energies.
        offs = np.concatenate([[0], np.cumsum(want)[:-1]]) if E else np.zeros(0, dtype=np.int64)
        rows = np.repeat(starts[idx] - offs, want) + np.arange(int(want.sum()))
        mac_e = np.add.reduceat(stacked.macs[rows] * flat, offs) if E else np.zeros(0)
        mac_e = np.where(want > 0, mac_e, 0.0)
    return BatchEstimate(
        network_index=idx, macs=macs_u[idx], total_cycles=cyc_u[idx], latency_s=cyc_u[idx] / hw.clock_hz,
        mac_energy_pj=mac_e, total_energy_pj=fixed_u[idx] + mac_e, dram_bytes=dram_u[idx],
        memory_footprint_bytes=fp[idx])

