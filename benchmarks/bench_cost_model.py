"""Benchmark: how well our 45 nm cell cost model predicts EvoApprox's published PDK45 figures.

Imports every 8x8 multiplier under PATH (an EvoApproxLib LITE / EvoApprox8b checkout, or any
folder in that layout), compares our area / power / delay (rtl_models.costs, calibrated on one
anchor) with the figures printed in each file's header, and writes
benchmarks/results/cost_model_vs_evoapprox.json plus a log-log scatter PNG next to it.

Run by hand: .venv/bin/python benchmarks/bench_cost_model.py PATH
The EvoApprox files themselves are a local measurement input and never go into the repository.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).parent))

import numpy as np  # noqa: E402
from scipy import optimize, stats  # noqa: E402

from common import RESULTS, write_result  # noqa: E402

from rtl_models.costs import (  # noqa: E402
    ANCHOR_NAME,
    ANCHOR_PUBLISHED,
    BASE_CELL_COSTS,
    CALIBRATION,
    Calibration,
    hardware_costs,
)
from rtl_models.evoapprox import import_path  # noqa: E402
from rtl_models.simulate import simulate  # noqa: E402
from traces.atomic import atomic_savefig  # noqa: E402

RESULT_NAME = "cost_model_vs_evoapprox"
METRICS = ("area_um2", "power_mw", "delay_ns")
# Cells whose outputs are XOR-like (high activity, large energy per toggle in our table).
XOR_LIKE = ("XOR2", "XNOR2", "HA", "FA")
RAW = Calibration(1.0, 1.0, 1.0, 1.0)


class BenchError(Exception):
    """The input cannot be measured (no path, no circuits, no published figures)."""


def _f(x) -> float | None:
    """Plain float for JSON (None for NaN/inf)."""
    x = float(x)
    return x if math.isfinite(x) else None


def netlist_style(cells: dict) -> str:
    """'fa_ha' when the netlist is written with full/half-adder cells, else 'gate_level' (2-input gates)."""
    return "fa_ha" if cells.get("FA", 0) + cells.get("HA", 0) > 0 else "gate_level"


def _xor_area_share(cells: dict, area_by_type: dict) -> float:
    total = sum(n * area_by_type[t] for t, n in cells.items())
    xor = sum(n * area_by_type[t] for t, n in cells.items() if t in XOR_LIKE)
    return xor / total if total > 0 else 0.0


def collect(path: Path) -> tuple[list[dict], list[dict], list[str], int]:
    """Import PATH and return (rows with published figures, skipped circuits, failures, n imported)."""
    if not path.exists():
        raise BenchError(f"{path}: no such file or directory")
    result = import_path(path, progress=False)
    failures = [str(f) for f in result.failures]
    if not result.characterized:
        raise BenchError("rtl_models.characterize is unavailable, so imported circuits have no costs")
    records = [r for r in result.records if r.multiplier is not None]
    if not records:
        shown = "; ".join(failures[:5]) or "nothing imported"
        raise BenchError(
            f"{path}: no 8x8 multiplier circuits found (expected multiplers/8x8_unsigned|8x8_signed/"
            f"pareto_pwr_*/*.v or multipliers_8/*.v): {shown}"
        )
    base_area = {t: c.area_um2 for t, c in BASE_CELL_COSTS.items()}
    rows: list[dict] = []
    skipped: list[dict] = []
    seen: dict[tuple, str] = {}
    for rec in records:
        m = rec.multiplier
        pub = {k: rec.published.get(k) for k in METRICS}
        missing = [k for k, v in pub.items() if v is None]
        if missing:
            skipped.append({"name": m.name, "source": m.source, "reason": f"no published {', '.join(missing)}"})
            continue
        # The same circuit sits in several pareto folders and upstream renamed circuits between
        # releases; count each (function, published figures) once so duplicates do not weigh double.
        key = (m.sha256, tuple(round(float(pub[k]), 6) for k in METRICS))
        if key in seen:
            skipped.append({"name": m.name, "source": m.source, "reason": f"duplicate of {seen[key]}"})
            continue
        seen[key] = m.name
        comp = rec.netlist.compile()
        sim = simulate(comp, signed=m.signed)
        raw = hardware_costs(comp, sim.toggles, sim.n_transitions, cal=RAW)
        ours = {"area_um2": m.area_um2, "power_mw": m.power_mw, "delay_ns": m.delay_ns}
        ratio = {k: (ours[k] / pub[k] if pub[k] > 0 else None) for k in METRICS}
        dyn_mw = raw.dynamic_power_mw * CALIBRATION.energy
        leak_mw = raw.leakage_power_mw * CALIBRATION.leakage
        rows.append({
            "name": m.name,
            "library": m.library,
            "signed": m.signed,
            "source": m.source,
            "sha256_12": m.sha256[:12],
            "mae_pct": _f(m.metrics.mae_pct),
            "ep_pct": _f(m.metrics.ep_pct),
            "cells": dict(m.cells),
            "n_cells": int(sum(m.cells.values())),
            "netlist_style": netlist_style(m.cells),
            "xor_like_area_share": _f(_xor_area_share(m.cells, base_area)),
            "published": {k: float(pub[k]) for k in METRICS},
            "ours": {k: float(ours[k]) for k in METRICS},
            "ratio_ours_over_published": {k: _f(v) if v is not None else None for k, v in ratio.items()},
            "ours_power_split_mw": {"dynamic": float(dyn_mw), "leakage": float(leak_mw)},
            "raw_uncalibrated": {
                "area_um2": float(raw.area_um2),
                "delay_ns": float(raw.delay_ns),
                "dynamic_power_mw": float(raw.dynamic_power_mw),
                "leakage_power_mw": float(raw.leakage_power_mw),
            },
            "disagreements": list(m.disagreements),
        })
    if not rows:
        raise BenchError(f"{path}: {len(records)} circuits imported but none has published PDK45 "
                         f"area, power and delay (e.g. FPGA-only headers)")
    return rows, skipped, failures, len(records)


def metric_stats(ours: np.ndarray, pub: np.ndarray) -> dict:
    """Error, ratio, rank and least-squares log-scale statistics of ours vs published (all > 0)."""
    ratio = ours / pub
    log_r = np.log(ratio)
    abs_pct = np.abs(ours - pub) / pub * 100.0
    # argmin_k sum (log(k*ours) - log(pub))^2  ->  log k = -mean(log ratio): a geometric mean
    k = float(np.exp(-log_r.mean()))
    rho, p = stats.spearmanr(ours, pub)
    slope, intercept = np.polyfit(np.log(ours), np.log(pub), 1)
    refit_abs_pct = np.abs(k * ours - pub) / pub * 100.0
    return {
        "n": int(len(ours)),
        "median_abs_pct_error": _f(np.median(abs_pct)),
        "mean_abs_pct_error": _f(abs_pct.mean()),
        "max_abs_pct_error": _f(abs_pct.max()),
        "ratio_median": _f(np.median(ratio)),
        "ratio_geometric_mean": _f(np.exp(log_r.mean())),
        "ratio_p10": _f(np.percentile(ratio, 10)),
        "ratio_p90": _f(np.percentile(ratio, 90)),
        "ratio_min": _f(ratio.min()),
        "ratio_max": _f(ratio.max()),
        "log_ratio_std": _f(log_r.std(ddof=1)) if len(ours) > 1 else None,
        "ratio_spread_factor": _f(np.exp(log_r.std(ddof=1))) if len(ours) > 1 else None,
        "spearman_rho": _f(rho),
        "spearman_p": _f(p),
        "pearson_r_log": _f(np.corrcoef(np.log(ours), np.log(pub))[0, 1]) if len(ours) > 2 else None,
        "rms_log_error_current": _f(np.sqrt((log_r ** 2).mean())),
        "ls_log_scale_factor": _f(k),
        "rms_log_error_after_scale": _f(np.sqrt(((log_r + np.log(k)) ** 2).mean())),
        "median_abs_pct_error_after_scale": _f(np.median(refit_abs_pct)),
        "mean_abs_pct_error_after_scale": _f(refit_abs_pct.mean()),
        "powerlaw_fit_log_pub_vs_log_ours": {"slope": _f(slope), "intercept": _f(intercept)},
    }


def fit_power_split(dyn_raw: np.ndarray, leak_raw: np.ndarray, pub: np.ndarray) -> dict:
    """Separate energy and leakage factors minimizing the log error of a*dyn_raw + b*leak_raw vs published."""
    def resid(theta):
        return np.log(np.exp(theta[0]) * dyn_raw + np.exp(theta[1]) * leak_raw) - np.log(pub)

    x0 = np.log([CALIBRATION.energy, CALIBRATION.leakage])
    sol = optimize.least_squares(resid, x0)
    a, b = np.exp(sol.x)
    r = resid(sol.x)
    # A factor driven towards zero means the data cannot separate the two terms (the error follows
    # circuit size/depth, not the leakage share), not that leakage is really zero.
    at_bound = bool(a < 1e-3 * CALIBRATION.energy or b < 1e-3 * CALIBRATION.leakage)
    return {
        "energy_factor": _f(a),
        "leakage_factor": _f(b),
        "degenerate": at_bound,
        "rms_log_error": _f(np.sqrt((r ** 2).mean())),
        "median_abs_pct_error": _f(np.median(np.abs(np.expm1(r))) * 100),
        "note": "power_mw = energy_factor * raw dynamic + leakage_factor * raw leakage, fitted in log space",
    }


def summarize(rows: list[dict]) -> dict:
    """Per-metric statistics (all, unsigned, signed), power split fit, residual drivers, worst cases."""
    out: dict = {"metrics": {}, "excluded_zero": {}}
    for key in METRICS:
        ok = [r for r in rows if r["published"][key] > 0 and r["ours"][key] > 0]
        out["excluded_zero"][key] = [
            {"name": r["name"], "published": r["published"][key], "ours": r["ours"][key]}
            for r in rows if not (r["published"][key] > 0 and r["ours"][key] > 0)
        ]
        per = {}
        groups = (("all", ok), ("unsigned", [r for r in ok if not r["signed"]]),
                  ("signed", [r for r in ok if r["signed"]]),
                  ("fa_ha_netlists", [r for r in ok if r["netlist_style"] == "fa_ha"]),
                  ("gate_level_netlists", [r for r in ok if r["netlist_style"] == "gate_level"]))
        for label, sel in groups:
            if len(sel) >= 3:
                per[label] = metric_stats(np.array([r["ours"][key] for r in sel]),
                                          np.array([r["published"][key] for r in sel]))
            else:
                per[label] = {"n": len(sel), "note": "fewer than 3 circuits"}
        worst = sorted(ok, key=lambda r: -abs(math.log(r["ratio_ours_over_published"][key])))[:6]
        per["worst"] = [{"name": r["name"], "ratio": r["ratio_ours_over_published"][key],
                         "published": r["published"][key], "ours": r["ours"][key], "n_cells": r["n_cells"],
                         "netlist_style": r["netlist_style"],
                         "xor_like_area_share": r["xor_like_area_share"]} for r in worst]
        if len(ok) >= 3:
            # What the log error follows: size, logic depth, cell mix, netlist style.
            log_r = np.log([r["ratio_ours_over_published"][key] for r in ok])
            drivers = {
                "log_published_value": np.log([r["published"][key] for r in ok]),
                "published_delay_ns": np.array([r["published"]["delay_ns"] for r in ok]),
                "n_cells": np.array([r["n_cells"] for r in ok], float),
                "xor_like_area_share": np.array([r["xor_like_area_share"] for r in ok]),
                "fa_ha_netlist": np.array([r["netlist_style"] == "fa_ha" for r in ok], float),
                "leakage_share_of_our_power": np.array(
                    [r["ours_power_split_mw"]["leakage"] / r["ours"]["power_mw"] for r in ok]),
            }
            per["log_ratio_spearman_vs"] = {}
            for name, v in drivers.items():
                rho, p = stats.spearmanr(v, log_r)
                per["log_ratio_spearman_vs"][name] = {"rho": _f(rho), "p": _f(p)}
        out["metrics"][key] = per

    pw = [r for r in rows if r["published"]["power_mw"] > 0 and r["ours"]["power_mw"] > 0]
    if len(pw) >= 3:
        dyn = np.array([r["raw_uncalibrated"]["dynamic_power_mw"] for r in pw])
        leak = np.array([r["raw_uncalibrated"]["leakage_power_mw"] for r in pw])
        pub = np.array([r["published"]["power_mw"] for r in pw])
        out["power_split_fit"] = fit_power_split(dyn, leak, pub)
    cur = CALIBRATION
    kf = {k: out["metrics"][k]["all"].get("ls_log_scale_factor") for k in METRICS}
    out["calibration"] = {
        "current": asdict(cur),
        "anchor": {"design": ANCHOR_NAME, "published": dict(ANCHOR_PUBLISHED)},
        "refit_single_scale": {
            "area": _f(cur.area * kf["area_um2"]) if kf["area_um2"] else None,
            "delay": _f(cur.delay * kf["delay_ns"]) if kf["delay_ns"] else None,
            "energy": _f(cur.energy * kf["power_mw"]) if kf["power_mw"] else None,
            "leakage": _f(cur.leakage * kf["power_mw"]) if kf["power_mw"] else None,
            "note": "current factor times the least-squares log scale over all circuits "
                    "(power: energy and leakage scaled together)",
        },
    }
    return out


def _write_png(rows: list[dict], summary: dict, path: Path) -> None:
    """Three log-log panels, ours vs published, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    titles = {"area_um2": "area (um^2)", "power_mw": "power (mW)", "delay_ns": "delay (ns)"}
    fig, axes = plt.subplots(1, 3, figsize=(15, 5))
    for ax, key in zip(axes, METRICS):
        ok = [r for r in rows if r["published"][key] > 0 and r["ours"][key] > 0]
        for signed, style, marker, label in ((False, "gate_level", "o", "unsigned, 2-input gate netlist"),
                                             (False, "fa_ha", "s", "unsigned, FA/HA netlist"),
                                             (True, "gate_level", "v", "signed, 2-input gate netlist"),
                                             (True, "fa_ha", "^", "signed, FA/HA netlist")):
            sel = [r for r in ok if r["signed"] == signed and r["netlist_style"] == style]
            if sel:
                ax.scatter([r["published"][key] for r in sel], [r["ours"][key] for r in sel],
                           marker=marker, s=28, alpha=0.8, label=label)
        anchor = [r for r in ok if r["name"] == "mul8u_1JFF"]
        if anchor:
            ax.scatter([anchor[0]["published"][key]], [anchor[0]["ours"][key]], marker="*", s=180,
                       c="red", label="anchor mul8u_1JFF", zorder=5)
        if ok:
            vals = [r["published"][key] for r in ok] + [r["ours"][key] for r in ok]
            lo, hi = min(vals) / 1.5, max(vals) * 1.5
            ax.plot([lo, hi], [lo, hi], "k-", lw=1, label="ours = published")
            st = summary["metrics"][key]["all"]
            k = st.get("ls_log_scale_factor")
            if k:
                ax.plot([lo, hi], [lo / k, hi / k], "k--", lw=1, label=f"best single scale (x{k:.3f})")
            ax.set_xlim(lo, hi)
            ax.set_ylim(lo, hi)
            ax.set_title(f"{titles[key]}: median ratio {st.get('ratio_median', float('nan')):.2f}, "
                         f"Spearman {st.get('spearman_rho', float('nan')):.3f}", fontsize=10)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(f"published (EvoApprox PDK45) {titles[key]}")
        ax.set_ylabel(f"ours (rtl_models.costs) {titles[key]}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    n_pos = sum(1 for r in rows if r["published"]["power_mw"] > 0)
    fig.suptitle(f"cost model vs EvoApprox published PDK45 figures ({n_pos} circuits with non-zero figures)")
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    """Measure the cost model against one checkout; exit 2 with a message when there is nothing to measure."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path", type=Path, help="EvoApproxLib / EvoApprox8b checkout (or a folder in that layout)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    try:
        rows, skipped, failures, n_imported = collect(args.path)
    except BenchError as exc:
        print(f"bench_cost_model: {exc}", file=sys.stderr)
        return 2
    summary = summarize(rows)
    png = RESULTS / f"{RESULT_NAME}.png"
    _write_png(rows, summary, png)
    data = {
        "input": {
            "path": str(args.path),
            "circuits_imported": n_imported,
            "circuits_compared": len(rows),
            "skipped": skipped,
            "import_failures": failures,
        },
        "summary": summary,
        "circuits": rows,
        "plot": png.name,
        "runtime_s": _f(time.perf_counter() - t0),
    }
    out = write_result(RESULT_NAME, data)
    for key in METRICS:
        st = summary["metrics"][key]["all"]
        print(f"{key:9s} n={st['n']:3d}  median |err| {st['median_abs_pct_error']:6.1f} %  "
              f"mean |err| {st['mean_abs_pct_error']:6.1f} %  ratio median {st['ratio_median']:.3f} "
              f"[p10 {st['ratio_p10']:.3f}, p90 {st['ratio_p90']:.3f}]  Spearman {st['spearman_rho']:.3f}  "
              f"LS scale x{st['ls_log_scale_factor']:.3f} -> median |err| "
              f"{st['median_abs_pct_error_after_scale']:.1f} %")
    for key in METRICS:
        parts = []
        for g in ("fa_ha_netlists", "gate_level_netlists", "signed", "unsigned"):
            st = summary["metrics"][key][g]
            if "ratio_median" in st:
                parts.append(f"{g} n={st['n']} ratio median {st['ratio_median']:.3f}")
        print(f"{key:9s} " + "; ".join(parts))
    ps = summary.get("power_split_fit")
    if ps:
        print(f"power split fit: energy x{ps['energy_factor']:.3f} (now {CALIBRATION.energy}), leakage "
              f"x{ps['leakage_factor']:.3f} (now {CALIBRATION.leakage}), median |err| "
              f"{ps['median_abs_pct_error']:.1f} %" + (" (degenerate: a factor hit zero)" if ps["degenerate"] else ""))
    if skipped:
        print(f"skipped {len(skipped)}: " + ", ".join(f"{s['name']} ({s['reason']})" for s in skipped))
    if failures:
        print(f"{len(failures)} import failures (see JSON)")
    print(f"wrote {out} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
