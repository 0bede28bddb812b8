"""Benchmark: XAI-NAS against the same NSGA-II without SHAP pinning and against the RoHNAS baseline.

Three searches with the same budget (generations x population, epochs per candidate), the same seed,
data set, space and runner, one after another:

* ``xai-nas``: `nas.xainas` with SHAP pinning every ``--xai-every`` generations;
* ``no-xai``: the same NSGA-II, no pinning (``cosim search --no-xai``);
* ``rohnas``: the RoHNAS setting: exact multipliers only, hardware objectives from the RoHNAS cost
  model (`cosim.rohnas`: 16x16 array, 3 ns, array power x cycles; memory = weights).

Everything is then judged one way: objectives recomputed from each run's archive with our analytical
model (edge_16x16, multiplier energy), errors on the validation split, normalized by the largest genome
of the space; hypervolume (reference point 1.1 per objective) per generation from the archives.

The table:
* search time (the generations' wall time) and the time each run needed to reach the hypervolume
  every run reaches (98 % of the weakest run's final value);
* final hypervolume;
* at matched accuracy, the best each front offers: among front members whose test accuracy is within
  ``--acc-tolerance`` of the lowest of the runs' best test accuracies, the best FGSM and PGD robust
  accuracy, the lowest multiplier (MAC) energy, full-system energy, latency and memory footprint;
* ratios XAI-NAS vs each baseline (robustness: ours / theirs; costs and time: theirs / ours), next to
  the claims of the XAI-NAS paper against RoHNAS (1.5x robustness, 2.1x energy, 4.39x latency,
  2.37x memory, up to 5x search time).

The machine is shared: the load average before and after every run is recorded with its time.

Run: .venv/bin/python benchmarks/bench_search.py [--generations 6] [--pop-size 10] [--workers 2]
(about 20-30 minutes on 2 busy cores); ``--quick`` is a digits smoke test of a couple of minutes.
Writes benchmarks/results/search.json and search.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).parent))

import numpy as np  # noqa: E402
from common import RESULTS, write_result  # noqa: E402

from nas import xainas as X  # noqa: E402

PAPER_CLAIMS_VS_ROHNAS = {"robustness": 1.5, "energy": 2.1, "latency": 4.39, "memory": 2.37, "search_time": 5.0}


def load_records(run_dir: Path) -> list[dict]:
    """Every archived candidate of a run, in (generation, key) order."""
    recs = [json.loads(p.read_text()) for p in (run_dir / "archive").glob("*.json")]
    return sorted(recs, key=lambda r: (r["generation"], r["key"]))


def hv_per_generation(judge: X.XaiNasSearch, recs: list[dict], generations: int) -> list[float]:
    """Hypervolume of everything evaluated up to each generation, under the judge's objectives."""
    out = []
    for g in range(generations):
        sub = [r for r in recs if r["generation"] <= g]
        F = np.array([judge.objectives(r) for r in sub])
        nd = F[X.non_dominated(F)] if len(F) else F
        out.append(X.hypervolume(judge.normalized(nd)))
    return out


def matched_archive(judge: X.XaiNasSearch, recs: list[dict], acc_min: float) -> dict:
    """Best validation figures among every evaluated candidate with validation accuracy >= acc_min."""
    ok = [r for r in recs if r["acc"] >= acc_min - 1e-12]
    if not ok:
        return {"members": 0}
    a = [r["hw"]["analytical"] for r in ok]
    return {"members": len(ok), "best_robust_acc": max(r["robust_acc"] for r in ok),
            "min_mac_energy_pj": min(x["mac_energy_pj"] for x in a), "min_energy_pj": min(x["total_energy_pj"] for x in a),
            "min_latency_s": min(x["latency_s"] for x in a), "min_memory_bytes": min(x["memory_footprint_bytes"] for x in a)}


def matched(front: list[dict], acc_min: float) -> dict:
    """Best figures among front members with test accuracy >= acc_min."""
    ok = [r for r in front if r["test_acc"] >= acc_min - 1e-12]
    if not ok:
        return {"members": 0}
    return {"members": len(ok),
            "best_fgsm_acc": max(r["test_fgsm_acc"] for r in ok),
            "best_pgd_acc": max(r["test_pgd_acc"] for r in ok),
            "min_mac_energy_pj": min(r["mac_energy_pj"] for r in ok),
            "min_energy_pj": min(r["energy_pj"] for r in ok),
            "min_latency_s": min(r["latency_s"] for r in ok),
            "min_memory_bytes": min(r["memory_bytes"] for r in ok),
            "min_rohnas_energy_pj": min(r["rohnas"]["energy_pj"] for r in ok),
            "min_rohnas_latency_s": min(r["rohnas"]["latency_s"] for r in ok)}


def ratio(a, b):
    """a / b, None when undefined."""
    if a is None or b is None or b == 0:
        return None
    return float(a) / float(b)


def loadavg() -> list[float]:
    """The 1, 5 and 15 minute load averages."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="mnist5k")
    ap.add_argument("--generations", type=int, default=6)
    ap.add_argument("--pop-size", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--xai-every", type=int, default=2)
    ap.add_argument("--max-stages", type=int, default=3)
    ap.add_argument("--max-layers", type=int, default=2)
    ap.add_argument("--channels", default="4,8,16")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--acc-tolerance", type=float, default=0.01, help="matched accuracy: within this of the target")
    ap.add_argument("--work", type=Path, default=None, help="directory for the runs (default: a temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the run directories")
    ap.add_argument("--quick", action="store_true", help="digits, 2 generations of 4: a smoke test")
    ap.add_argument("--name", default="search", help="results file name (benchmarks/results/<name>.json)")
    ap.add_argument("--render", action="store_true", help="only rewrite <name>.md from <name>.json")
    args = ap.parse_args()
    if args.render:
        doc = json.loads((RESULTS / f"{args.name}.json").read_text())
        (RESULTS / f"{args.name}.md").write_text(markdown(doc))
        print(markdown(doc))
        return
    if args.quick:
        args.dataset, args.generations, args.pop_size, args.max_stages = "digits", 2, 4, 2
        args.xai_every = 1
    base = X.SearchConfig(dataset=args.dataset, generations=args.generations, pop_size=args.pop_size,
                          epochs=args.epochs, xai_every=args.xai_every, max_stages=args.max_stages,
                          max_layers=args.max_layers, channels=tuple(int(c) for c in args.channels.split(",")),
                          robust_samples=150, test_robust_samples=150, seed=args.seed,
                          **({"val_samples": 150, "test_samples": 200, "xai_min_samples": 4} if args.quick else {}))
    runs = {
        "xai-nas": base,
        "no-xai": X.SearchConfig.from_dict({**base.to_dict(), "xai": False}),
        "rohnas": X.SearchConfig.from_dict({**base.to_dict(), "xai": False, "exact_only": True,
                                            "cost_model": "rohnas"}),
    }
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_search_"))
    work.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict] = {}
    for name, cfg in runs.items():
        d = work / name
        if d.exists():
            shutil.rmtree(d)
        print(f"== {name}: {cfg.generations} generations x {cfg.pop_size} on {cfg.dataset} "
              f"(load {loadavg()})", flush=True)
        before = loadavg()
        t0 = time.perf_counter()
        res = X.run_search(cfg, d, runner="pool", workers=args.workers,
                           log=lambda line, n=name: print(f"  [{n}] {line}", flush=True))
        wall = time.perf_counter() - t0
        results[name] = {"result": res, "wall_s": wall, "load_before": before, "load_after": loadavg(), "dir": d}

    # one judge for all: analytical model, multiplier energy, errors on the validation split
    judge = X.XaiNasSearch(base, work / "judge")
    table: dict[str, dict] = {}
    for name, r in results.items():
        res = r["result"]
        recs = load_records(r["dir"])
        hv = hv_per_generation(judge, recs, runs[name].generations)
        cpu = [h["driver_cpu_s"] + h["worker_cpu_s"] for h in res.history]
        trained = [sum(1 for x in recs if x["generation"] <= g and x["trained_here"]) for g in range(len(hv))]
        table[name] = {"search_s": res.search_s, "end_to_end_s": r["wall_s"], "evaluations": res.evaluations,
                       "cpu_s": sum(cpu), "cpu_s_per_generation": list(np.cumsum(cpu)),
                       "trainings_per_generation": trained, "best_val_acc": max(x["acc"] for x in recs),
                       "records": recs,
                       "trainings": res.trainings, "cache_hits": res.cache_hits, "hypervolume": hv[-1],
                       "hypervolume_per_generation": hv,
                       "search_s_per_generation": [h["search_s"] for h in res.history],
                       "pins": res.pins, "xai_events": [{k: v for k, v in ev.items() if k != "scores"}
                                                        for ev in res.xai_events],
                       "front_size": len(res.front), "best_test_acc": max(f["test_acc"] for f in res.front),
                       "load_before": r["load_before"], "load_after": r["load_after"], "engine": res.engine,
                       "front": [{k: f[k] for k in ("arch", "assignment", "test_acc", "test_fgsm_acc", "test_pgd_acc",
                                                    "mac_energy_pj", "energy_pj", "latency_s", "memory_bytes",
                                                    "rohnas", "exact_layers", "layers")} for f in res.front]}
    target_hv = 0.98 * min(t["hypervolume"] for t in table.values())
    for t in table.values():
        reach = next(i for i, h in enumerate(t["hypervolume_per_generation"]) if h >= target_hv - 1e-12)
        t["time_to_target_s"] = t["search_s_per_generation"][reach]
        t["cpu_to_target_s"] = t["cpu_s_per_generation"][reach]
        t["trainings_to_target"] = t["trainings_per_generation"][reach]
        t["generations_to_target"] = reach + 1
    acc_target = min(t["best_test_acc"] for t in table.values()) - args.acc_tolerance
    val_target = min(t["best_val_acc"] for t in table.values()) - args.acc_tolerance
    for name, t in table.items():
        t["matched"] = matched(results[name]["result"].front, acc_target)
        t["matched_archive"] = matched_archive(judge, t.pop("records"), val_target)
    ours = table["xai-nas"]
    ratios = {}
    for name in ("no-xai", "rohnas"):
        th = table[name]
        m0, m1 = ours["matched"], th["matched"]
        ratios[name] = {
            "robustness_fgsm": ratio(m0.get("best_fgsm_acc"), m1.get("best_fgsm_acc")),
            "robustness_pgd": ratio(m0.get("best_pgd_acc"), m1.get("best_pgd_acc")),
            "mac_energy": ratio(m1.get("min_mac_energy_pj"), m0.get("min_mac_energy_pj")),
            "energy": ratio(m1.get("min_energy_pj"), m0.get("min_energy_pj")),
            "latency": ratio(m1.get("min_latency_s"), m0.get("min_latency_s")),
            "memory": ratio(m1.get("min_memory_bytes"), m0.get("min_memory_bytes")),
            "search_time": ratio(th["search_s"], ours["search_s"]),
            "search_cpu": ratio(th["cpu_s"], ours["cpu_s"]),
            "time_to_target": ratio(th["time_to_target_s"], ours["time_to_target_s"]),
            "cpu_to_target": ratio(th["cpu_to_target_s"], ours["cpu_to_target_s"]),
            "trainings_to_target": ratio(th["trainings_to_target"], ours["trainings_to_target"]),
            "hypervolume": ratio(ours["hypervolume"], th["hypervolume"]),
        }
        a0, a1 = ours["matched_archive"], th["matched_archive"]
        ratios[name]["archive_val"] = {
            "robustness": ratio(a0.get("best_robust_acc"), a1.get("best_robust_acc")),
            "mac_energy": ratio(a1.get("min_mac_energy_pj"), a0.get("min_mac_energy_pj")),
            "energy": ratio(a1.get("min_energy_pj"), a0.get("min_energy_pj")),
            "latency": ratio(a1.get("min_latency_s"), a0.get("min_latency_s")),
            "memory": ratio(a1.get("min_memory_bytes"), a0.get("min_memory_bytes")),
        }
    doc = {"settings": {**base.to_dict(), "workers": args.workers, "acc_tolerance": args.acc_tolerance,
                        "runs": {n: {"xai": c.xai, "exact_only": c.exact_only, "cost_model": c.cost_model}
                                 for n, c in runs.items()}},
           "judge": {"cost_model": "analytical", "hardware": base.hw, "energy_objective": base.energy_metric,
                     "reference_values": judge._refs.tolist(), "hypervolume_target": target_hv,
                     "matched_test_accuracy": acc_target, "matched_val_accuracy": val_target},
           "runs": table, "ratios_xai_vs": ratios, "paper_claims_vs_rohnas": PAPER_CLAIMS_VS_ROHNAS,
           "work_dir": str(work) if args.keep else None}
    path = write_result(args.name, X.jsonable(doc))
    md = markdown(doc)
    (RESULTS / f"{args.name}.md").write_text(md)
    print(md)
    print(f"wrote {path} and {RESULTS / (args.name + '.md')}")
    if not args.keep and args.work is None:
        shutil.rmtree(work, ignore_errors=True)


def _f(v, fmt):
    return "n/a" if v is None else format(v, fmt)


def markdown(doc: dict) -> str:
    """The claim table as markdown."""
    s, runs, rat, j = doc["settings"], doc["runs"], doc["ratios_xai_vs"], doc["judge"]
    lines = [f"# XAI-NAS vs baselines on {s['dataset']}", "",
             f"{s['generations']} generations x {s['pop_size']}, {s['epochs']} epoch(s) per candidate, one seed "
             f"({s['seed']}), {s['workers']} pool workers on a shared 2-core machine; every run judged by the "
             f"analytical model on {j['hardware']} (multiplier energy objective, validation errors). Wall times "
             "move with the other users' load (recorded); CPU seconds (driver + workers) and trainings do not.", "",
             "## Search cost and quality", "",
             "| run | wall s | CPU s | evaluated (trained) | final HV | generations / trainings / CPU s to target HV | "
             "load before/after |", "|---|---|---|---|---|---|---|"]
    for name, t in runs.items():
        lines.append(f"| {name} | {t['search_s']:.0f} | {t['cpu_s']:.0f} | {t['evaluations']} ({t['trainings']}) | "
                     f"{t['hypervolume']:.4f} | {t['generations_to_target']} / {t['trainings_to_target']} / "
                     f"{t['cpu_to_target_s']:.0f} | {t['load_before'][:1]}/{t['load_after'][:1]} |")
    lines += ["", f"Target hypervolume: {j['hypervolume_target']:.4f} (98% of the weakest run's final value).", "",
              f"## At matched accuracy: the front on the test split (test accuracy >= "
              f"{100 * j['matched_test_accuracy']:.1f}%)", "",
              "Each front is the run's non-dominated set thinned by crowding distance to the population size, so a "
              "cheap, accurate network can be missing from it; the next table (every candidate) has no such thinning "
              "and is the fairer comparison.", "",
              "| run | front members | best FGSM acc | best PGD acc | MAC energy nJ | energy µJ | latency µs | "
              "memory KiB |", "|---|---|---|---|---|---|---|---|"]

    def pct(v):
        return "n/a" if v is None else f"{100 * v:.1f}%"

    def sc(v, k, fmt):
        return "n/a" if v is None else format(v * k, fmt)

    for name, t in runs.items():
        m = t["matched"]
        lines.append(f"| {name} | {m['members']} | {pct(m.get('best_fgsm_acc'))} | {pct(m.get('best_pgd_acc'))} | "
                     f"{sc(m.get('min_mac_energy_pj'), 1e-3, '.2f')} | {sc(m.get('min_energy_pj'), 1e-6, '.2f')} | "
                     f"{sc(m.get('min_latency_s'), 1e6, '.1f')} | {sc(m.get('min_memory_bytes'), 1 / 1024, '.1f')} |")
    lines += ["", f"## At matched accuracy: every evaluated candidate, validation split (accuracy >= "
              f"{100 * j['matched_val_accuracy']:.1f}%)", "",
              "| run | candidates | best robust acc | MAC energy nJ | energy µJ | latency µs | memory KiB |",
              "|---|---|---|---|---|---|---|"]
    for name, t in runs.items():
        m = t["matched_archive"]
        lines.append(f"| {name} | {m['members']} | {pct(m.get('best_robust_acc'))} | "
                     f"{sc(m.get('min_mac_energy_pj'), 1e-3, '.2f')} | {sc(m.get('min_energy_pj'), 1e-6, '.2f')} | "
                     f"{sc(m.get('min_latency_s'), 1e6, '.1f')} | {sc(m.get('min_memory_bytes'), 1 / 1024, '.1f')} |")
    lines += ["", "## Ratios, XAI-NAS vs each baseline (robustness: ours/theirs; costs and time: theirs/ours; "
              "> 1 favours XAI-NAS)", "",
              "| vs | figures | robustness (FGSM / PGD) | MAC energy | full energy | latency | memory |",
              "|---|---|---|---|---|---|---|"]
    for name, r in rat.items():
        a = r["archive_val"]
        lines.append(f"| {name} | front, test | {_f(r['robustness_fgsm'], '.2f')} / {_f(r['robustness_pgd'], '.2f')} | "
                     f"{_f(r['mac_energy'], '.2f')} | {_f(r['energy'], '.2f')} | {_f(r['latency'], '.2f')} | "
                     f"{_f(r['memory'], '.2f')} |")
        lines.append(f"| {name} | all, validation | {_f(a['robustness'], '.2f')} (val attack) | "
                     f"{_f(a['mac_energy'], '.2f')} | {_f(a['energy'], '.2f')} | {_f(a['latency'], '.2f')} | "
                     f"{_f(a['memory'], '.2f')} |")
    lines += ["", "| vs | wall time | CPU time | wall to target | CPU to target | trainings to target | hypervolume |",
              "|---|---|---|---|---|---|---|"]
    for name, r in rat.items():
        lines.append(f"| {name} | " + " | ".join(_f(r[k], ".2f") for k in (
            "search_time", "search_cpu", "time_to_target", "cpu_to_target", "trainings_to_target", "hypervolume"))
            + " |")
    c = doc["paper_claims_vs_rohnas"]
    lines += ["", f"The paper's claims vs RoHNAS: robustness {c['robustness']}x, energy {c['energy']}x, latency "
              f"{c['latency']}x, memory {c['memory']}x, search time up to {c['search_time']}x.", ""]
    for name, t in runs.items():
        for ev in t["xai_events"]:
            lines.append(f"- {name}, SHAP after generation {ev['generation']}: {ev.get('reason', '')}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
