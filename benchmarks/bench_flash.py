"""Benchmark: FLASH's hierarchical SHGO against random search and NSGA-II (pymoo) on the same problem.

Same space (the default FLASH cell space on the data set's image shape), same objective and
limits, same evaluator (`FlashProblem`: the compiled hardware-table kernel and the fitted
accuracy predictor; random search and NSGA-II evaluate whole batches / populations in one call,
FLASH one point at a time). For each scenario:

* FLASH runs `--repeat` times (it is deterministic; the median time is reported);
* equal budget: random search and NSGA-II get FLASH's own median optimizer time and report the
  best feasible predicted objective they reach in it;
* time to target: each runs until its best feasible objective reaches FLASH's (within `TOL`)
  or `--cap` seconds pass; median time and evaluations over `--seeds` seeds, and how many reached it.

The best value any method found is reported as `best_known` (FLASH's gap to it says how close to
optimal the heuristic lands). Limits are set from the space's own distribution (percentiles of
random architectures) so every scenario is feasible but binding.

The predictor comes from `nas.flash.build_predictor` (cached; on mnist5k the first run trains 35
small networks, ~10-20 minutes on one core). `--dataset digits --samples 8 --holdout 4` is quick.

Run: .venv/bin/python benchmarks/bench_flash.py [--dataset mnist5k] [--seeds 5] [--cap 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).parent))

import numpy as np  # noqa: E402
from common import write_result  # noqa: E402

from mapping.hardware import PRESETS  # noqa: E402
from nas import flash as F  # noqa: E402

TOL_ACC = 1e-4  # "reached": predicted accuracy within 0.01 percentage points of FLASH's
TOL_REL = 1e-4  # minimized objectives: within 0.01 % of FLASH's


def reached(problem: F.FlashProblem, value: float, target: float) -> bool:
    """True when `value` is at least as good as `target` up to the tolerance."""
    if problem.objective == "accuracy":
        return value >= target - TOL_ACC
    return value <= target * (1 + TOL_REL)


def better(problem, a, b) -> bool:
    """True when objective value a beats b."""
    if b is None:
        return a is not None
    return a is not None and (a > b if problem.objective == "accuracy" else a < b)


def _best_feasible(problem, K, mar):
    ok = (mar >= 0).all(axis=1) if mar.shape[1] else np.ones(len(K), bool)
    if not ok.any():
        return None
    vals = problem.objective_value(K[ok])
    return float(vals.max() if problem.objective == "accuracy" else vals.min())


def random_search(problem, seed, *, target=None, time_budget=None, cap=20.0, batch=256):
    """Uniform random search in batches; stops at `target`, after `time_budget` or at `cap` seconds."""
    rng = np.random.default_rng(seed)
    lo, hi = problem.space.lower(), problem.space.upper()
    best, evals, t_hit, e_hit = None, 0, None, None
    limit = time_budget if time_budget is not None else cap
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < limit:
        X = rng.integers(lo, hi + 1, size=(batch, len(lo))).astype(np.float64)
        K, _, mar = problem.evaluate_vectors(X)
        evals += batch
        b = _best_feasible(problem, K, mar)
        if better(problem, b, best):
            best = b
        if target is not None and best is not None and reached(problem, best, target):
            t_hit, e_hit = time.perf_counter() - t0, evals
            break
    return {"best": best, "evaluations": evals, "time_to_target_s": t_hit, "evaluations_to_target": e_hit}


def nsga2(problem, seed, *, target=None, time_budget=None, cap=20.0, pop_size=50):
    """pymoo NSGA-II (single objective, inequality constraints, integer variables by rounding)."""
    from pymoo.algorithms.moo.nsga2 import NSGA2
    from pymoo.core.problem import Problem
    from pymoo.operators.crossover.sbx import SBX
    from pymoo.operators.mutation.pm import PM
    from pymoo.operators.repair.rounding import RoundingRepair
    from pymoo.operators.sampling.rnd import IntegerRandomSampling

    lo, hi = problem.space.lower(), problem.space.upper()
    k = len(problem.constraints.active())
    state = {"best": None, "evals": 0}

    class P(Problem):
        def __init__(self):
            super().__init__(n_var=len(lo), n_obj=1, n_ieq_constr=k, xl=lo, xu=hi, vtype=int)

        def _evaluate(self, X, out, *args, **kwargs):
            K, obj, mar = problem.evaluate_vectors(np.asarray(X, dtype=np.float64))
            state["evals"] += len(X)
            b = _best_feasible(problem, K, mar)
            if better(problem, b, state["best"]):
                state["best"] = b
            out["F"] = obj[:, None]
            if k:
                out["G"] = -mar

    algo = NSGA2(pop_size=pop_size, sampling=IntegerRandomSampling(),
                 crossover=SBX(prob=0.9, eta=15, vtype=float, repair=RoundingRepair()),
                 mutation=PM(eta=20, vtype=float, repair=RoundingRepair()), eliminate_duplicates=True)
    prob = P()
    limit = time_budget if time_budget is not None else cap
    t0 = time.perf_counter()
    algo.setup(prob, termination=("n_gen", 10**9), seed=seed, verbose=False)
    t_hit = e_hit = None
    gens = 0
    while time.perf_counter() - t0 < limit:
        pop = algo.ask()
        algo.evaluator.eval(prob, pop)
        algo.tell(infills=pop)
        gens += 1
        if target is not None and state["best"] is not None and reached(problem, state["best"], target):
            t_hit, e_hit = time.perf_counter() - t0, state["evals"]
            break
    return {"best": state["best"], "evaluations": state["evals"], "generations": gens, "time_to_target_s": t_hit,
            "evaluations_to_target": e_hit}


def summarize(runs: list[dict]) -> dict:
    """Median time / evaluations to target over the runs that reached it, and the success count."""
    hit = [r for r in runs if r["time_to_target_s"] is not None]
    return {
        "reached": f"{len(hit)}/{len(runs)}",
        "median_time_to_target_s": statistics.median(r["time_to_target_s"] for r in hit) if hit else None,
        "median_evaluations_to_target": statistics.median(r["evaluations_to_target"] for r in hit) if hit else None,
        "runs": runs,
    }


def scenarios(problem_args, space, tables, pred, mult):
    """Limits at percentiles of random architectures' figures, so each scenario binds."""
    rng = np.random.default_rng(123)
    lo, hi = space.lower(), space.upper()
    X = rng.integers(lo, hi + 1, size=(20000, len(lo))).astype(np.float64)
    pb = F.FlashProblem(space, tables, pred, mult)
    m = pb.metrics(tables.evaluate(X))
    pct = lambda k, q: float(np.percentile(m[k], q))  # noqa: E731
    return [
        ("accuracy | latency p25", "accuracy", F.Constraints(latency_max_s=pct("latency_s", 25))),
        ("accuracy | latency p50, energy p25", "accuracy",
         F.Constraints(latency_max_s=pct("latency_s", 50), energy_max_pj=pct("energy_pj", 25))),
        ("accuracy | energy p10, area p50", "accuracy",
         F.Constraints(energy_max_pj=pct("energy_pj", 10), area_max_um2=pct("area_um2", 50))),
        ("energy | accuracy >= p75, latency p50", "energy",
         F.Constraints(accuracy_min=pct("accuracy", 75), latency_max_s=pct("latency_s", 50))),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="mnist5k")
    ap.add_argument("--samples", type=int, default=25)
    ap.add_argument("--holdout", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--hw", default="edge_16x16")
    ap.add_argument("--multiplier", default="mul8u_array")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--cap", type=float, default=20.0, help="seconds per time-to-target run")
    ap.add_argument("--shgo-n", type=int, default=16)
    args = ap.parse_args()

    from rtl_models.library import MultiplierLibrary

    space = F.FlashSpace.for_dataset(args.dataset)
    t = time.perf_counter()
    pred, tr, ho, info = F.build_predictor(
        space, args.dataset, samples=args.samples, holdout=args.holdout, epochs=args.epochs,
        progress=lambda i, n, a, hit: print(f"  sample {i + 1}/{n} {a.key}{' (cached)' if hit else ''}",
                                            file=sys.stderr, flush=True))
    predictor_s = time.perf_counter() - t
    print(f"predictor: {pred.features}, stats {pred.stats}", file=sys.stderr)
    hw = PRESETS[args.hw]
    t = time.perf_counter()
    tables = F.HardwareTables(space, hw)
    tables.evaluate(space.lower())
    tables_s = time.perf_counter() - t
    mult = MultiplierLibrary.default().get(args.multiplier)
    F.flash_optimize(F.FlashProblem(space, tables, pred, mult), n=args.shgo_n)  # warm-up (imports, JIT)
    nsga2(F.FlashProblem(space, tables, pred, mult), 0, time_budget=0.05)

    out = []
    for label, objective, cons in scenarios(None, space, tables, pred, mult):
        pb = F.FlashProblem(space, tables, pred, mult, cons, objective)
        times, res = [], None
        for _ in range(args.repeat):
            res = F.flash_optimize(pb, n=args.shgo_n)
            times.append(res.optimizer_s)
        t_flash = statistics.median(times)
        target = res.objective_value
        print(f"{label}: FLASH {res.arch.key} value {target:.6g} in {t_flash * 1e3:.1f} ms "
              f"({res.evaluations} evaluations, feasible {res.feasible})", file=sys.stderr, flush=True)
        eq = {"random": [random_search(pb, s, time_budget=t_flash)["best"] for s in range(args.seeds)],
              "nsga2": [nsga2(pb, s, time_budget=t_flash)["best"] for s in range(args.seeds)]}
        rnd = [random_search(pb, s, target=target, cap=args.cap) for s in range(args.seeds)]
        ga = [nsga2(pb, s, target=target, cap=args.cap) for s in range(args.seeds)]
        bests = [target] + [r["best"] for r in rnd + ga if r["best"] is not None] + \
            [b for v in eq.values() for b in v if b is not None]
        best_known = max(bests) if objective == "accuracy" else min(bests)
        row = {
            "scenario": label, "objective": objective, "constraints": cons.to_dict(),
            "flash": {"arch": res.arch.key, "objective_value": target, "feasible": res.feasible,
                      "optimizer_s_median": t_flash, "optimizer_s_all": times, "evaluations": res.evaluations,
                      "level1_s": res.level1["time_s"], "level2_s": res.level2["time_s"],
                      "repair_s": res.repair["time_s"], "figures": res.figures},
            "equal_budget": {k: {"budget_s": t_flash, "best_per_seed": v} for k, v in eq.items()},
            "time_to_target": {"random": summarize(rnd), "nsga2": summarize(ga)},
            "best_known": best_known,
        }
        for k in ("random", "nsga2"):
            s = row["time_to_target"][k]
            print(f"   {k}: equal-budget best {eq[k]}; reached FLASH's value {s['reached']}, median "
                  f"{s['median_time_to_target_s']} s, {s['median_evaluations_to_target']} evaluations",
                  file=sys.stderr, flush=True)
        out.append(F.jsonable(row))
    path = write_result("flash", {
        "description": "FLASH (hierarchical SHGO) vs random search vs NSGA-II on the same space, objective, "
                       "limits and evaluator: equal time budget, and time to reach FLASH's predicted objective",
        "dataset": args.dataset, "hardware": hw.name, "multiplier": mult.name, "space": space.to_dict(),
        "predictor": pred.to_dict(), "predictor_from_cache": info["from_cache"], "predictor_s": predictor_s,
        "tables_s": tables_s, "shgo_n": args.shgo_n, "seeds": args.seeds, "cap_s": args.cap,
        "tolerance": {"accuracy_abs": TOL_ACC, "minimized_rel": TOL_REL},
        "scenarios": out})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
