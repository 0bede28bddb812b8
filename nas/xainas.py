"""XAI-NAS: hardware-aware, explainable NSGA-II over CNN architectures with a multiplier per layer.

What one candidate costs (`evaluate_task`, run by a worker)
-----------------------------------------------------------
The genome (`nas.space`) is built as a plain torch model, seeded from the global seed and its
*training key* (architecture + parent), optionally inherits every exactly-shaped tensor from a
parent (the most similar candidate of an earlier generation), and is trained briefly (`--epochs`,
`--time-budget` seconds at most). Then it is quantized to int8 with its multipliers in place
(`cosim.axtorch.approximate`) and scored on the validation split: accuracy, and robust accuracy
under FGSM or PGD at ``eps`` through the approximate network (straight-through gradients). The
float accuracy is kept too: ``drop = float - approximate`` is what SHAP explains. Candidates that
share a training key (same architecture and parent, other multipliers) train once.

Hardware figures come from the analytical model (`cosim.analytical.estimate`) with the assigned
multipliers, and from the RoHNAS cost model (`cosim.rohnas`) for the baseline; both are kept
for every candidate. Objectives (all minimized): error, robust error, energy (``energy_metric``:
the multipliers' energy "mac", the usual approximate-DNN figure, or the full system "total"),
latency and memory footprint (weights + peak live activations). Optional constraints: an
accuracy floor and an energy cap.

Explainability in the loop
--------------------------
Every ``xai_every`` generations, every candidate evaluated so far becomes a row of a feature
table over layer *positions* of the genome (``S1L2.mult_mre_pct``, ``S1L2.macs``, ...; NaN where
a genome lacks the position) with its accuracy drop as the target; `nas.xai.explain_layers` fits
a gradient-boosted surrogate, explains it with SHAP and names the critical positions (the
smallest set carrying ``xai_share`` of the attributed drop). Their multiplier genes are pinned
to the exact multiplier (or to the low-error set): the genes' options shrink, so mutation
samples only allowed values, and a repair step maps crossover children into the allowed set.
The log says what was pinned and why (score, share, surrogate R²). Pins only accumulate.

Search mechanics
----------------
pymoo NSGA-II with mixed variables, driven by ask/tell so that after every generation the
algorithm (its population and random state), the pins and the history are checkpointed, and
every evaluated candidate is written to the archive the moment its result arrives. `resume`
continues from the last checkpoint; candidates of the interrupted generation come from the
archive, so nothing evaluated is lost. Evaluation is deterministic (seeds from the genome and
the global seed, one torch and one Numba thread per worker, fixed parent choice), so the same
seed gives the same front whatever the runner, unless the per-candidate time budget binds.

Runners (pymoo's): in-process (``serial``), a process pool (``pool``, the default; spawned workers
that fail fast with a SearchError when one dies), or Dask (``dask``: a scheduler address, or a
LocalCluster of ``workers`` processes).

Reproducibility is tested (tests/nas/test_xainas.py): a second run in the same process, a resumed
run, a Dask LocalCluster and a two-worker process pool all give the same archive, pins and front;
and one candidate's evaluation repeated gives bit-identical weights and scores.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import pickle
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from cosim.jsonutil import jsonable
from nas.space import Genome, SearchSpace
from rtl_models.library import pareto_front
from traces.atomic import atomic_savefig, atomic_write

__all__ = [
    "OBJECTIVES",
    "SearchConfig",
    "SearchError",
    "SearchResult",
    "XaiNasSearch",
    "demo_search",
    "evaluate_task",
    "hypervolume",
    "make_runner",
    "position_features",
    "run_search",
]

OBJECTIVES = ("error", "robust_error", "energy_pj", "latency_s", "memory_bytes")
POSITION_FEATURES = ("macs", "weights", "kernel", "in_channels", "out_channels", "out_size", "stride", "mac_share",
                     "residual", "stage", "depth")
CHECKPOINT_VERSION = 1


class SearchError(ValueError):
    """A bad search setting, checkpoint or output directory; the message names the field and the value."""


# ----------------------------------------------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SearchConfig:
    """Every setting of one search (JSON round trip via `to_dict` / `from_dict`)."""

    dataset: str = "mnist5k"
    data_dir: str | None = None
    generations: int = 8
    pop_size: int = 12
    offsprings: int | None = None  # per generation after the first (default pop_size)
    # training per candidate
    epochs: int = 1
    time_budget_s: float | None = None  # wall-clock cap per candidate's training (binding -> not reproducible)
    batch_size: int = 32
    lr: float = 3e-3
    max_train: int | None = None
    val_samples: int = 500
    inherit: bool = True
    # robustness
    attack: str = "fgsm"
    eps: float = 0.1
    pgd_steps: int = 5
    robust_samples: int = 200
    # final front on the test split
    test_samples: int = 1000
    test_robust_samples: int = 200
    test_eps: tuple[float, ...] = (0.05, 0.1, 0.2)
    # hardware
    hw: str = "edge_16x16"
    timing: str = "scalesim"
    cost_model: str = "analytical"  # "analytical" (ours) or "rohnas" (the baseline's model)
    energy_metric: str = "mac"  # "mac" (multiplier energy) or "total" (full system)
    # explainability
    xai: bool = True
    xai_every: int = 2
    xai_share: float = 0.8
    xai_min_r2: float = 0.0
    xai_min_samples: int = 8
    pin_to: str = "exact"  # "exact" or "low-error"
    low_error_mre_pct: float = 1.0
    # constraints
    accuracy_floor: float | None = None
    energy_cap_pj: float | None = None
    # space
    multipliers: tuple[str, ...] | None = None  # default: the library's (MRE, power) Pareto subset
    exact_only: bool = False  # every gene exact (the RoHNAS baseline searches exact networks)
    max_stages: int = 3
    max_layers: int = 3
    channels: tuple[int, ...] = (4, 8, 16, 24)
    front_max: int | None = None  # front members reported (default pop_size)
    seed: int = 0

    def __post_init__(self):
        def bad(name, v, want):
            raise SearchError(f"SearchConfig.{name}={v!r}: expected {want}")

        for name in ("generations", "pop_size", "epochs", "batch_size", "val_samples", "robust_samples",
                     "xai_every", "pgd_steps", "test_samples", "test_robust_samples", "max_stages", "max_layers"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                bad(name, v, "a positive integer")
        if self.pop_size < 2:
            bad("pop_size", self.pop_size, ">= 2")
        if self.offsprings is not None and self.offsprings < 1:
            bad("offsprings", self.offsprings, "a positive integer or None")
        if self.time_budget_s is not None and not self.time_budget_s > 0:
            bad("time_budget_s", self.time_budget_s, "> 0 seconds or None")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            bad("lr", self.lr, "a positive number")
        if self.attack not in ("fgsm", "pgd"):
            bad("attack", self.attack, "'fgsm' or 'pgd'")
        if not (0 <= self.eps <= 1):
            bad("eps", self.eps, "a value in [0, 1] (inputs are in [0, 1])")
        if self.cost_model not in ("analytical", "rohnas"):
            bad("cost_model", self.cost_model, "'analytical' or 'rohnas'")
        if self.energy_metric not in ("mac", "total"):
            bad("energy_metric", self.energy_metric, "'mac' or 'total'")
        if self.timing not in ("scalesim", "pipelined"):
            bad("timing", self.timing, "'scalesim' or 'pipelined'")
        if not 0 < self.xai_share <= 1:
            bad("xai_share", self.xai_share, "a fraction in (0, 1]")
        if self.pin_to not in ("exact", "low-error"):
            bad("pin_to", self.pin_to, "'exact' or 'low-error'")
        if self.accuracy_floor is not None and not 0 <= self.accuracy_floor <= 1:
            bad("accuracy_floor", self.accuracy_floor, "a fraction in [0, 1] or None")
        if self.energy_cap_pj is not None and not self.energy_cap_pj > 0:
            bad("energy_cap_pj", self.energy_cap_pj, "> 0 pJ or None")
        if self.xai_min_samples < 4:
            bad("xai_min_samples", self.xai_min_samples, ">= 4 (the surrogate needs rows)")
        if self.front_max is not None and self.front_max < 1:
            bad("front_max", self.front_max, "a positive integer or None")

    def to_dict(self) -> dict:
        """JSON-ready settings."""
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SearchConfig":
        """Inverse of `to_dict` (unknown keys are an error)."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise SearchError(f"search config has unknown keys {unknown}")
        kw = {}
        for k, v in d.items():
            kw[k] = tuple(v) if isinstance(v, list) else v
        return cls(**kw)

    @property
    def n_constraints(self) -> int:
        """Inequality constraints in use."""
        return int(self.accuracy_floor is not None) + int(self.energy_cap_pj is not None)


def build_space(cfg: SearchConfig) -> SearchSpace:
    """The search space a config describes (exact-only: the exact multiplier alone)."""
    space = SearchSpace.for_dataset(cfg.dataset, multipliers=cfg.multipliers, max_stages=cfg.max_stages,
                                    max_layers=cfg.max_layers, channels=tuple(cfg.channels))
    if cfg.exact_only:
        space = replace(space, multipliers=(space.exact,))
    return space


def _stable_int(*parts: Any) -> int:
    """A 31-bit integer from the text of `parts` (stable across processes and runs, unlike hash())."""
    h = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(h[:4], "little") & 0x7FFFFFFF


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------------------------------------------
# The worker side: train and score one architecture with one or more multiplier assignments
# ----------------------------------------------------------------------------------------------------------------

_WORKER: dict[str, Any] = {}


def _worker_dataset(name: str, root: str | None, seed: int):
    key = ("data", name, root, seed)
    if key not in _WORKER:
        from nas.data import load_dataset

        _WORKER[key] = load_dataset(name, root, seed=seed)
    return _WORKER[key]


def _worker_library() -> dict:
    if "lib" not in _WORKER:
        from rtl_models.library import MultiplierLibrary

        _WORKER["lib"] = {m.name: m for m in MultiplierLibrary.default()}
    return _WORKER["lib"]


@contextlib.contextmanager
def _one_thread():
    """One torch and one Numba thread for the block (determinism, and fair sharing of the cores)."""
    import numba

    from nas.train import torch_threads

    old = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        with torch_threads(1):
            yield
    finally:
        numba.set_num_threads(old)


class _StateHolder:
    """Duck-types the `state_dict()` of a module for `nas.train.inherit_weights`."""

    def __init__(self, state: Mapping[str, Any]):
        self._state = state

    def state_dict(self):
        return self._state


def _subset(split, n: int):
    return split.x[:n], split.y[:n]


def evaluate_task(task: Mapping[str, Any]) -> dict:
    """Worker entry point: train (or load) one architecture, then score each multiplier assignment.

    task keys: kind ("search" or "test"), space, genome, cfg (SearchConfig dict), seed, train_key,
    float_state (trained weights, or None to train), parent_state (or None), assignments [(key, {layer: name})].
    """
    import torch

    from cosim.axtorch import approximate
    from nas.attacks import robust_accuracy
    from nas.train import TrainConfig, evaluate, inherit_weights, train

    t0, c0 = time.perf_counter(), time.process_time()
    cfg = SearchConfig.from_dict(task["cfg"])
    space = SearchSpace.from_dict(task["space"])
    genome = Genome.from_dict(task["genome"])
    seed = int(task["seed"])
    out: dict[str, Any] = {"train_key": task["train_key"], "kind": task["kind"], "pid": os.getpid(), "results": []}
    with _one_thread():
        ds = _worker_dataset(cfg.dataset, cfg.data_dir, cfg.seed)
        lib = _worker_library()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = space.build_model(genome)
        if task.get("float_state") is not None:
            model.load_state_dict(task["float_state"])
            out["trained"] = False
        else:
            inherited = None
            if task.get("parent_state") is not None:
                rep = inherit_weights(model, _StateHolder(task["parent_state"]))
                inherited = {"copied": len(rep.copied), "skipped": len(rep.skipped)}
            xtr, ytr = ds.train.x, ds.train.y
            if cfg.max_train is not None:
                xtr, ytr = xtr[: cfg.max_train], ytr[: cfg.max_train]
            tr = train(model, xtr, ytr, TrainConfig(epochs=cfg.epochs, time_budget_s=cfg.time_budget_s,
                                                    batch_size=cfg.batch_size, lr=cfg.lr, seed=seed, threads=1),
                       quiet=True)
            out.update(trained=True, inherited=inherited, train_s=tr.wall_s, train_steps=tr.steps,
                       stopped_by_budget=tr.stopped_by_budget, final_loss=tr.final_loss)
            out["float_state"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.eval()
        calib = ds.train.x[:256]
        if task["kind"] == "search":
            xv, yv = _subset(ds.val, cfg.val_samples)
            xr, yr = _subset(ds.val, cfg.robust_samples)
        else:
            xv, yv = _subset(ds.test, cfg.test_samples)
            xr, yr = _subset(ds.test, cfg.test_robust_samples)
        float_acc = evaluate(model, xv, yv)
        out["float_acc"] = float_acc
        for key, assignment in task["assignments"]:
            t1 = time.perf_counter()
            ax = approximate(model, {layer: lib[name] for layer, name in assignment.items()}, calibration=calib)
            acc = evaluate(ax, xv, yv)
            aseed = _stable_int(seed, key)
            rec: dict[str, Any] = {"key": key, "acc": acc, "float_acc": float_acc, "drop": float_acc - acc}
            if task["kind"] == "search":
                kw = {"steps": cfg.pgd_steps} if cfg.attack == "pgd" else {}
                rec["robust_acc"] = robust_accuracy(ax, xr, yr, [cfg.eps], cfg.attack, seed=aseed, **kw)[cfg.eps]
            else:
                eps = sorted(set(float(e) for e in cfg.test_eps) | {float(cfg.eps)})
                rec["fgsm"] = {str(e): a for e, a in robust_accuracy(ax, xr, yr, eps, "fgsm").items()}
                rec["pgd"] = {str(e): a for e, a in robust_accuracy(ax, xr, yr, eps, "pgd", seed=aseed,
                                                                    steps=cfg.pgd_steps).items()}
                rec["float_robust"] = {str(cfg.eps): robust_accuracy(model, xr, yr, [cfg.eps], cfg.attack, seed=aseed,
                                                                     **({"steps": cfg.pgd_steps}
                                                                        if cfg.attack == "pgd" else {}))[cfg.eps]}
            rec["eval_s"] = time.perf_counter() - t1
            out["results"].append(rec)
    out["wall_s"] = time.perf_counter() - t0
    out["cpu_s"] = time.process_time() - c0  # the worker's CPU time: comparable across runs on a shared machine
    return out


# ----------------------------------------------------------------------------------------------------------------
# Runners: pymoo's, streaming each result to the driver as it arrives (so the archive never lags)
# ----------------------------------------------------------------------------------------------------------------

from pymoo.core.problem import LoopedElementwiseEvaluation, Problem  # noqa: E402
from pymoo.parallelization import DaskParallelization, StarmapParallelization  # noqa: E402


class SerialRunner(LoopedElementwiseEvaluation):
    """pymoo's in-process loop, reporting each result as it completes."""

    kind = "serial"

    def __init__(self):
        self.on_result: Callable[[int, Any], None] | None = None

    def __call__(self, f, X):
        out = []
        for i, x in enumerate(X):
            r = f(x)
            if self.on_result is not None:
                self.on_result(i, r)
            out.append(r)
        return out

    def close(self) -> None:
        """Nothing to release."""


def _pool_init() -> None:
    import numba
    import torch

    torch.set_num_threads(1)
    numba.set_num_threads(1)


def _warm(_: Any = None) -> int:
    """Import the evaluation stack and load the multiplier library in a worker (before any timing starts)."""
    import cosim.axtorch  # noqa: F401
    import nas.attacks  # noqa: F401
    import nas.train  # noqa: F401

    _worker_library()
    return os.getpid()


class PoolRunner(StarmapParallelization):
    """pymoo's starmap runner over spawned worker processes; results stream back in completion order.

    A `concurrent.futures` pool rather than `multiprocessing.Pool`: when a worker dies (or cannot start, e.g. a
    script without the ``if __name__ == "__main__":`` guard under spawn) it raises BrokenProcessPool at once,
    where `multiprocessing.Pool` silently respawns workers forever and the search hangs.
    """

    kind = "pool"

    def __init__(self, workers: int):
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        # spawn, not fork: a forked torch/OpenMP runtime can deadlock in the child
        self.pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_pool_init)
        self.workers = workers
        super().__init__(self._starmap)
        self.on_result: Callable[[int, Any], None] | None = None
        try:
            for fut in [self.pool.submit(_warm, i) for i in range(workers)]:
                fut.result()
        except Exception as exc:
            self.close()
            raise SearchError(f"process pool of {workers} workers failed to start ({type(exc).__name__}: {exc}); "
                              "a script that starts a search needs the `if __name__ == \"__main__\":` guard "
                              "(workers are spawned), or use runner='serial'") from exc

    def _starmap(self, f, args):
        return list(self.pool.map(f, *zip(*args))) if args else []

    def __call__(self, f, X):
        from concurrent.futures import BrokenExecutor, as_completed

        futures = {self.pool.submit(f, x): i for i, x in enumerate(X)}
        out: list[Any] = [None] * len(X)
        try:
            for fut in as_completed(futures):
                i = futures[fut]
                try:
                    out[i] = fut.result()
                except BrokenExecutor as exc:
                    raise SearchError(f"a pool worker died while evaluating ({exc}); the archive keeps every "
                                      "candidate evaluated so far: resume the search") from exc
                if self.on_result is not None:
                    self.on_result(i, out[i])
        finally:
            for fut in futures:  # after a failure or a kill: queued tasks must not run on
                fut.cancel()
        return out

    def close(self) -> None:
        """Stop the worker processes (running tasks are abandoned, not awaited)."""
        procs = list((getattr(self.pool, "_processes", None) or {}).values())
        self.pool.shutdown(wait=False, cancel_futures=True)
        for proc in procs:  # shutdown() alone would let a running candidate train to its end
            if proc.is_alive():
                proc.terminate()
        for proc in procs:
            proc.join(timeout=10)


class DaskRunner(DaskParallelization):
    """pymoo's Dask runner (a scheduler address or a LocalCluster); results stream back as they complete."""

    kind = "dask"

    def __init__(self, client, cluster=None):
        super().__init__(client)
        self.cluster = cluster
        self.on_result: Callable[[int, Any], None] | None = None

    def __call__(self, f, X):
        from distributed import as_completed

        futures = [self.client.submit(f, x, pure=False) for x in X]
        index = {fut.key: i for i, fut in enumerate(futures)}
        out: list[Any] = [None] * len(X)
        for fut in as_completed(futures):
            i = index[fut.key]
            out[i] = fut.result()
            if self.on_result is not None:
                self.on_result(i, out[i])
        return out

    def close(self) -> None:
        """Close the client (and the LocalCluster this runner started)."""
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def make_runner(kind: str = "pool", workers: int | None = None, scheduler: str | None = None,
                processes: bool = True):
    """A runner: "serial", "pool" (spawned processes), or "dask" (connect to `scheduler` or start a LocalCluster)."""
    if kind == "serial":
        return SerialRunner()
    n = workers if workers is not None else max(1, os.cpu_count() or 1)
    if n < 1:
        raise SearchError(f"workers={workers!r}: expected >= 1")
    if kind == "pool":
        return PoolRunner(n)
    if kind == "dask":
        import logging

        from distributed import Client, LocalCluster

        if scheduler:
            return DaskRunner(Client(scheduler))
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=processes, dashboard_address=None,
                               silence_logs=logging.ERROR)
        client = Client(cluster)
        client.run(_warm)
        return DaskRunner(client, cluster)
    raise SearchError(f"runner kind={kind!r}: expected 'serial', 'pool' or 'dask'")


# ----------------------------------------------------------------------------------------------------------------
# Features for SHAP over layer positions
# ----------------------------------------------------------------------------------------------------------------

def position_features(space: SearchSpace, genomes: Sequence[Genome], library: Mapping[str, Any]):
    """The SHAP input: one row per genome, columns "<position>.<feature>", NaN where a genome lacks the position.

    Features per position: the assigned multiplier's (`nas.xai.multiplier_features`) and the layer's shape
    (MACs, weights, kernel, channels, output size, stride, share of the network's MACs, residual, stage, depth).
    """
    import pandas as pd

    from nas.xai import MULTIPLIER_FEATURES, multiplier_features

    cols = [f"{p}.{f}" for p in space.positions for f in MULTIPLIER_FEATURES + POSITION_FEATURES]
    rows = []
    for g in genomes:
        specs = space.layer_specs(g)
        total = sum(s.macs for s in specs) or 1
        assign = space.assignment(g)
        row: dict[str, float] = {}
        for depth, s in enumerate(specs, 1):
            row.update({f"{s.name}.{k}": v for k, v in multiplier_features(library[assign[s.name]]).items()})
            row.update({f"{s.name}.macs": s.macs, f"{s.name}.weights": s.weights, f"{s.name}.kernel": s.kernel,
                        f"{s.name}.in_channels": s.in_c, f"{s.name}.out_channels": s.out_c,
                        f"{s.name}.out_size": s.out_h * s.out_w, f"{s.name}.stride": s.stride,
                        f"{s.name}.mac_share": s.macs / total, f"{s.name}.residual": float(s.residual),
                        f"{s.name}.stage": s.stage, f"{s.name}.depth": depth})
        rows.append(row)
    return pd.DataFrame(rows, columns=cols, dtype=float)


# ----------------------------------------------------------------------------------------------------------------
# Hypervolume and fronts
# ----------------------------------------------------------------------------------------------------------------

# Indices of the non-dominated rows of F (minimization), in row order; duplicates all kept.
non_dominated = pareto_front


def hypervolume(F_norm: np.ndarray, ref: float = 1.1) -> float:
    """Hypervolume of normalized objective vectors against the point (ref, ..., ref); 0 for no points."""
    F_norm = np.asarray(F_norm, dtype=float)
    if F_norm.size == 0:
        return 0.0
    F_norm = F_norm[np.all(F_norm < ref, axis=1)]
    if len(F_norm) == 0:
        return 0.0
    from pymoo.indicators.hv import HV

    return float(HV(ref_point=np.full(F_norm.shape[1], ref))(F_norm[non_dominated(F_norm)]))


def crowding_distance(F: np.ndarray) -> np.ndarray:
    """NSGA-II crowding distance of each row (inf at the extremes of any objective)."""
    F = np.asarray(F, dtype=float)
    n, m = F.shape
    d = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for j in range(m):
        order = np.argsort(F[:, j], kind="stable")
        span = F[order[-1], j] - F[order[0], j]
        d[order[0]] = d[order[-1]] = np.inf
        if span > 0:
            d[order[1:-1]] += (F[order[2:], j] - F[order[:-2], j]) / span
    return d


# ----------------------------------------------------------------------------------------------------------------
# Small I/O helpers (atomic writes)
# ----------------------------------------------------------------------------------------------------------------

_atomic_bytes = atomic_write  # one atomic writer for the project (traces.atomic)



def _atomic_json(path: Path, data: Any) -> None:
    _atomic_bytes(path, (json.dumps(jsonable(data), indent=1, allow_nan=False) + "\n").encode())


def _torch_bytes(obj: Any) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _torch_load(path: Path) -> Any:
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


# ----------------------------------------------------------------------------------------------------------------
# The pymoo problem and the pinning repair
# ----------------------------------------------------------------------------------------------------------------

from pymoo.core.repair import Repair  # noqa: E402


class PinRepair(Repair):
    """Maps every pinned multiplier gene of a child into its allowed set (crossover can bring old values back)."""

    def _do(self, problem, X, **kwargs):
        pins = getattr(problem, "pins", {}) or {}
        if not pins:
            return X
        for x in X:
            for pos, allowed in pins.items():
                gene = f"m_{pos}"
                if x[gene] not in allowed:
                    x[gene] = allowed[0]
        return X


class SearchProblem(Problem):
    """Mixed-variable problem; evaluation is delegated to the driving `XaiNasSearch` (not pickled)."""

    def __init__(self, space: SearchSpace, n_constr: int):
        super().__init__(vars=space.variables(), n_obj=len(OBJECTIVES), n_ieq_constr=n_constr)
        self.pins: dict[str, tuple[str, ...]] = {}
        self._driver = None

    def _evaluate(self, X, out, *args, **kwargs):
        if self._driver is None:
            raise SearchError("SearchProblem has no driver attached (unpickled without resume?)")
        F, G = self._driver.evaluate_population(list(X))
        out["F"] = F
        if G is not None:
            out["G"] = G

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_driver"] = None
        return state


def _algorithm(cfg: SearchConfig):
    from pymoo.algorithms.moo.nsga2 import NSGA2, binary_tournament
    from pymoo.core.mixed import MixedVariableDuplicateElimination, MixedVariableMating, MixedVariableSampling
    from pymoo.operators.selection.tournament import TournamentSelection

    dup = MixedVariableDuplicateElimination()
    mating = MixedVariableMating(selection=TournamentSelection(func_comp=binary_tournament), repair=PinRepair(),
                                 eliminate_duplicates=dup)
    return NSGA2(pop_size=cfg.pop_size, n_offsprings=cfg.offsprings or cfg.pop_size,
                 sampling=MixedVariableSampling(), mating=mating, eliminate_duplicates=dup)


# ----------------------------------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------------------------------

@dataclass
class SearchResult:
    """What a search produced: the front (records), history, pins and XAI events, timings, file paths."""

    out_dir: Path
    front: list[dict]
    history: list[dict]
    xai_events: list[dict]
    pins: dict[str, list[str]]
    search_s: float
    evaluations: int
    trainings: int
    cache_hits: int
    hypervolume: float
    engine: str
    files: dict[str, str] = field(default_factory=dict)
    config: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return jsonable({"out_dir": str(self.out_dir), "config": self.config, "front": self.front,
                         "history": self.history, "xai_events": self.xai_events, "pins": self.pins,
                         "search_s": self.search_s, "evaluations": self.evaluations, "trainings": self.trainings,
                         "cache_hits": self.cache_hits, "hypervolume": self.hypervolume, "engine": self.engine,
                         "files": self.files})


# ----------------------------------------------------------------------------------------------------------------
# The driver
# ----------------------------------------------------------------------------------------------------------------

class XaiNasSearch:
    """One search in one output directory: evaluation, XAI pinning, checkpoints, outputs."""

    def __init__(self, cfg: SearchConfig, out_dir: str | Path, *, runner=None, explain: Callable | None = None,
                 log: Callable[[str], None] | None = None, quiet: bool = True, progress=None):
        from mapping.hardware import resolve_hardware
        from rtl_models.library import MultiplierLibrary

        self.cfg = cfg
        self.out = Path(out_dir)
        self.space = build_space(cfg)
        self.hw = resolve_hardware(cfg.hw)
        lib = MultiplierLibrary.default()
        self.library = {n: lib.get(n) for n in self.space.multipliers}
        self.runner = runner if runner is not None else SerialRunner()
        self._explain = explain
        self._log_fn = log
        self.quiet = quiet
        self.progress = progress  # callable(done, total, text) or None
        self.archive: dict[str, dict] = {}  # key -> candidate record
        self.float_keys: set[str] = set()  # training keys with stored float weights
        self.history: list[dict] = []
        self.xai_events: list[dict] = []
        self.search_s = 0.0
        self.cache_hits = 0
        self.generation = 0  # generations completed
        self._last_xai = None
        self.algorithm = None
        self.problem: SearchProblem | None = None
        self._refs = self._reference_values()
        self._fail_after: int | None = None  # test hook: raise after this many streamed results
        self._shape_cache: dict[str, dict] = {}

    @property
    def trainings(self) -> int:
        """Architectures trained so far (stored float weights)."""
        return len(self.float_keys)

    # --- paths ----------------------------------------------------------------------------------------------
    @property
    def ckpt(self) -> Path:
        """The checkpoint directory."""
        return self.out / "checkpoint"

    @property
    def archive_dir(self) -> Path:
        """The directory of evaluated candidates (records and float weights)."""
        return self.out / "archive"

    def _float_path(self, train_key: str) -> Path:
        return self.archive_dir / "float" / f"{_hash(train_key)}.pt"

    def log(self, line: str) -> None:
        """Append a line to search.log and pass it to the log callback."""
        self.out.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%H:%M:%S")
        with open(self.out / "search.log", "a", encoding="utf-8") as f:
            f.write(f"{stamp} {line}\n")
        if self._log_fn is not None:
            self._log_fn(line)

    # --- hardware -------------------------------------------------------------------------------------------
    def hardware(self, g: Genome) -> dict:
        """Analytical and RoHNAS figures of genome `g` with its multipliers."""
        from cosim.analytical import estimate
        from cosim.rohnas import rohnas_network

        net = self.space.build_network(g)
        assign = {k: self.library[v] for k, v in self.space.assignment(g).items()}
        tot = estimate(net, self.hw, multipliers=assign, timing=self.cfg.timing).total()
        ro = rohnas_network(net)["total"]
        return {"analytical": {k: tot[k] for k in ("total_energy_pj", "mac_energy_pj", "latency_s", "total_cycles",
                                                   "memory_footprint_bytes", "macs", "params", "dram_bytes")},
                "rohnas": {"energy_pj": ro["energy_pj"], "latency_s": ro["latency_s"],
                           "memory_footprint_bytes": ro["memory_footprint_bytes"], "cycles": ro["cycles"]}}

    def _hw_objectives(self, hw: Mapping[str, Any]) -> tuple[float, float, float]:
        if self.cfg.cost_model == "rohnas":
            r = hw["rohnas"]
            return r["energy_pj"], r["latency_s"], r["memory_footprint_bytes"]
        a = hw["analytical"]
        e = a["mac_energy_pj"] if self.cfg.energy_metric == "mac" else a["total_energy_pj"]
        return e, a["latency_s"], a["memory_footprint_bytes"]

    def _reference_values(self) -> np.ndarray:
        """Normalization of the objectives for the hypervolume: 1 for the errors, the largest genome's costs."""
        big = self.space.largest()
        e, lat, mem = self._hw_objectives(self.hardware(big))
        return np.array([1.0, 1.0, e, lat, mem])

    def objectives(self, rec: Mapping[str, Any]) -> np.ndarray:
        """The objective vector of a candidate record under this search's settings."""
        e, lat, mem = self._hw_objectives(rec["hw"])
        return np.array([1.0 - rec["acc"], 1.0 - rec["robust_acc"], e, lat, mem], dtype=float)

    def constraints(self, rec: Mapping[str, Any]) -> list[float]:
        """Inequality constraint values (<= 0 is feasible)."""
        g = []
        if self.cfg.accuracy_floor is not None:
            g.append(self.cfg.accuracy_floor - rec["acc"])
        if self.cfg.energy_cap_pj is not None:
            g.append(self._hw_objectives(rec["hw"])[0] - self.cfg.energy_cap_pj)
        return g

    def normalized(self, F: np.ndarray) -> np.ndarray:
        """Objectives divided by the reference values."""
        return np.asarray(F, dtype=float) / self._refs

    # --- parents --------------------------------------------------------------------------------------------
    def _shapes(self, g: Genome) -> dict[str, tuple]:
        key = g.arch_key
        if key not in self._shape_cache:
            self._shape_cache[key] = {s.name: (s.kind, s.in_c, s.out_c, s.kernel) for s in self.space.layer_specs(g)}
        return self._shape_cache[key]

    def choose_parent(self, g: Genome, generation: int) -> dict | None:
        """The earlier-generation candidate sharing the most exactly-shaped weights with `g` (None if none)."""
        want = self._shapes(g)
        specs = {s.name: s for s in self.space.layer_specs(g)}
        best, best_score = None, None
        for rec in self.archive.values():
            if rec["generation"] >= generation:
                continue
            have = self._shapes(Genome.from_dict(rec["genome"]))
            shared = sum(specs[n].weights + specs[n].out_c for n, sh in want.items() if have.get(n) == sh)
            if shared == 0:
                continue
            score = (shared, rec["float_acc"], rec["key"])
            if best_score is None or score > best_score:
                best, best_score = rec, score
        return best

    # --- evaluation -----------------------------------------------------------------------------------------
    def evaluate_population(self, X: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, np.ndarray | None]:
        """Objectives (and constraints) of pymoo variable dicts; evaluates what the archive lacks."""
        genomes = [self.space.decode(x) for x in X]
        recs = self.evaluate_genomes(genomes, self.generation)
        F = np.array([self.objectives(r) for r in recs], dtype=float)
        G = np.array([self.constraints(r) for r in recs], dtype=float) if self.cfg.n_constraints else None
        return F, G

    def evaluate_genomes(self, genomes: Sequence[Genome], generation: int) -> list[dict]:
        """Candidate records of `genomes` (archived ones reused; the rest trained and scored through the runner)."""
        keys = [self.space.key(g) for g in genomes]
        groups: dict[str, dict] = {}
        for g, key in zip(genomes, keys):
            if key in self.archive:
                self.cache_hits += 1
                continue
            if any(key == k for grp in groups.values() for k, _ in grp["assignments"]):
                continue
            parent = self.choose_parent(g, generation) if self.cfg.inherit else None
            train_key = f"{g.arch_key}@{parent['train_key'] if parent else '-'}"
            grp = groups.setdefault(train_key, {"genome": g, "parent": parent, "assignments": [], "genomes": {}})
            grp["assignments"].append((key, self.space.assignment(g)))
            grp["genomes"][key] = g
        tasks = []
        for train_key, grp in sorted(groups.items()):
            seed = _stable_int(self.cfg.seed, train_key)
            task = {"kind": "search", "space": self.space.to_dict(), "genome": grp["genome"].to_dict(),
                    "cfg": self.cfg.to_dict(), "seed": seed, "train_key": train_key, "float_state": None,
                    "parent_state": None, "assignments": grp["assignments"]}
            if train_key in self.float_keys:
                task["float_state"] = _torch_load(self._float_path(train_key))
            elif grp["parent"] is not None:
                task["parent_state"] = _torch_load(self._float_path(grp["parent"]["train_key"]))
            tasks.append(task)
        if tasks:
            total = sum(len(t["assignments"]) for t in tasks)
            done = [0]

            def on_result(i: int, res: dict) -> None:
                grp = groups[res["train_key"]]
                self._store(res, grp, generation, tasks[i]["seed"])
                done[0] += len(res["results"])
                if self.progress is not None:
                    self.progress(done[0], total, f"generation {generation + 1}")
                if self._fail_after is not None and len(self.archive) >= self._fail_after:
                    raise KeyboardInterrupt("test hook: simulated kill")

            self.runner.on_result = on_result
            try:
                self.runner(evaluate_task, tasks)
            finally:
                self.runner.on_result = None
        missing = [k for k in keys if k not in self.archive]
        if missing:
            raise SearchError(f"evaluation returned no result for {missing[:3]}")
        return [self.archive[k] for k in keys]

    def _store(self, res: dict, grp: dict, generation: int, seed: int) -> None:
        """Archive one task's results at once (float weights first, then every candidate record)."""
        train_key = res["train_key"]
        if res.get("trained"):
            _atomic_bytes(self._float_path(train_key), _torch_bytes(res["float_state"]))
            self.float_keys.add(train_key)
        parent = grp["parent"]
        for r in res["results"]:
            g = grp["genomes"][r["key"]]
            rec = {"key": r["key"], "hash": self.space.key_hash(g), "generation": generation,
                   "genome": g.to_dict(), "arch_key": g.arch_key, "assignment": self.space.assignment(g),
                   "train_key": train_key, "parent_key": parent["key"] if parent else None, "seed": seed,
                   "acc": r["acc"], "float_acc": r["float_acc"], "drop": r["drop"], "robust_acc": r["robust_acc"],
                   "eval_s": r["eval_s"], "train_s": res.get("train_s"), "trained_here": bool(res.get("trained")),
                   "task_cpu_s": res.get("cpu_s", 0.0) / max(1, len(res["results"])),
                   "inherited": res.get("inherited"), "stopped_by_budget": res.get("stopped_by_budget"),
                   "hw": self.hardware(g)}
            rec["objectives"] = self.objectives(rec).tolist()
            _atomic_json(self.archive_dir / f"{rec['hash']}.json", rec)
            self.archive[rec["key"]] = rec

    def _load_archive(self) -> None:
        self.archive.clear()
        self.float_keys.clear()
        if not self.archive_dir.is_dir():
            return
        for p in sorted(self.archive_dir.glob("*.json")):
            try:
                rec = json.loads(p.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise SearchError(f"{p}: unreadable archive record ({exc})") from None
            self.archive[rec["key"]] = rec
        for rec in self.archive.values():
            if self._float_path(rec["train_key"]).is_file():
                self.float_keys.add(rec["train_key"])

    # --- XAI ------------------------------------------------------------------------------------------------
    def _records_sorted(self) -> list[dict]:
        return sorted(self.archive.values(), key=lambda r: (r["generation"], r["key"]))

    def explain(self, generation: int) -> dict:
        """SHAP criticality over every evaluated candidate; pins critical positions' multiplier genes."""
        recs = self._records_sorted()
        event: dict[str, Any] = {"generation": generation, "samples": len(recs), "pinned": [], "critical": []}
        if len(recs) < self.cfg.xai_min_samples:
            event["reason"] = f"{len(recs)} evaluated candidates < {self.cfg.xai_min_samples}: nothing pinned"
            self.log(f"XAI gen {generation}: {event['reason']}")
            return event
        explain = self._explain
        if explain is None:
            from nas.xai import explain_layers as explain
        X = position_features(self.space, [Genome.from_dict(r["genome"]) for r in recs], self.library)
        # Positions no candidate has are all-NaN columns: nothing to explain there. In the others, "absent" becomes
        # a value below every present one: explain_layers' surrogate (HistGradientBoosting) fails on a column that
        # is all-NaN within its training split, which rare positions often are; trees split a sentinel alike.
        X = X.loc[:, X.notna().any(axis=0)]
        X = X.fillna(X.min(axis=0) - 1.0)
        y = np.array([r["drop"] for r in recs])
        from threadpoolctl import threadpool_limits  # installed with scikit-learn, which nas.xai needs

        # One OpenMP thread: the surrogate (HistGradientBoosting) sums gradients in parallel reductions whose
        # float rounding follows the thread count and scheduling, and a last-bit change can reorder tied layers.
        with threadpool_limits(1):
            res = explain(X, y, share=self.cfg.xai_share, seed=_stable_int(self.cfg.seed, "xai", generation))
        self._last_xai = res
        r2 = float(res.r2_holdout)
        crit = list(res.critical)
        event.update(critical=crit, scores={k: float(v) for k, v in res.scores.items()}, r2_holdout=r2,
                     mean_drop=float(y.mean()), max_drop=float(y.max()))
        top = ", ".join(f"{p} {res.scores[p]:.2f}" for p in crit)
        if not (r2 >= self.cfg.xai_min_r2):  # nan too
            event["reason"] = (f"surrogate held-out R² {r2:.2f} < {self.cfg.xai_min_r2:.2f}: not trusted, "
                               f"nothing pinned (critical would be {top or 'none'})")
            self.log(f"XAI gen {generation}: SHAP over {len(recs)} candidates: {event['reason']}")
            return event
        allowed = self._pin_set()
        new = [p for p in crit if p in self.space.positions and self.problem.pins.get(p) != allowed]
        for p in new:
            self.problem.pins[p] = allowed
            self.problem.vars[f"m_{p}"].options = list(allowed)
        event["pinned"] = new
        event["allowed"] = list(allowed)
        shown = "{" + ", ".join(allowed) + "}"
        covered = sum(res.scores[p] for p in crit)
        if new:
            why = (f"critical positions {top} carry {covered:.0%} of the attributed accuracy drop "
                   f"(share {self.cfg.xai_share:.0%}, surrogate held-out R² {r2:.2f}, mean drop {100 * y.mean():.2f} "
                   f"pts): pinned multiplier genes {', '.join(new)} to {shown}")
        else:
            why = (f"critical positions {top or 'none'} (held-out R² {r2:.2f}) are already pinned to {shown}: "
                   "nothing new pinned")
        event["reason"] = why
        self.log(f"XAI gen {generation}: SHAP over {len(recs)} candidates: {why}")
        try:
            path = self.out / "plots" / "shap_summary.png"
            res.summary_plot(path)
            event["plot"] = str(path)
        except Exception as exc:  # a plot must never stop a search
            self.log(f"XAI gen {generation}: SHAP summary plot failed: {type(exc).__name__}: {exc}")
        return event

    def _pin_set(self) -> tuple[str, ...]:
        if self.cfg.pin_to == "exact":
            return (self.space.exact,)
        low = [n for n in self.space.multipliers if self.library[n].metrics.mre_pct <= self.cfg.low_error_mre_pct]
        if self.space.exact not in low:
            low.append(self.space.exact)
        # cheapest first: the repair maps a pinned gene to allowed[0]
        return tuple(sorted(low, key=lambda n: (self.library[n].power_mw, n)))

    # --- history and checkpoints ----------------------------------------------------------------------------
    def front_indices(self, recs: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Indices (into recs) of the feasible non-dominated records."""
        if not recs:
            return np.zeros(0, dtype=np.int64)
        F = np.array([self.objectives(r) for r in recs])
        feas = np.array([all(c <= 0 for c in self.constraints(r)) for r in recs])
        idx = np.flatnonzero(feas)
        return idx[non_dominated(F[idx])] if len(idx) else idx

    def current_hypervolume(self) -> float:
        """Hypervolume of everything evaluated so far (normalized objectives, reference point 1.1)."""
        recs = self._records_sorted()
        idx = self.front_indices(recs)
        if len(idx) == 0:
            return 0.0
        return hypervolume(self.normalized(np.array([self.objectives(recs[i]) for i in idx])))

    def _checkpoint(self) -> None:
        state = {"version": CHECKPOINT_VERSION, "config": self.cfg.to_dict(), "space": self.space.to_dict(),
                 "generation": self.generation, "history": self.history, "xai_events": self.xai_events,
                 "pins": {k: list(v) for k, v in self.problem.pins.items()}, "search_s": self.search_s,
                 "trainings": self.trainings, "cache_hits": self.cache_hits}
        # one file holds the algorithm and the state, so a kill can never pair one generation's with another's
        _atomic_bytes(self.ckpt / "algorithm.pkl", pickle.dumps({"algorithm": self.algorithm, "state": state}))
        _atomic_json(self.ckpt / "state.json", state)  # the same state, for people

    @staticmethod
    def load_config(out_dir: str | Path) -> SearchConfig:
        """The config a checkpointed search in `out_dir` was started with."""
        p = Path(out_dir) / "checkpoint" / "config.json"
        try:
            return SearchConfig.from_dict(json.loads(p.read_text()))
        except FileNotFoundError:
            raise SearchError(f"{p}: no search to resume (expected a search output directory)") from None
        except json.JSONDecodeError as exc:
            raise SearchError(f"{p}: corrupt checkpoint ({exc})") from None

    def _start(self) -> None:
        self._load_archive()  # empty unless the first generation was killed
        self.problem = SearchProblem(self.space, self.cfg.n_constraints)
        self.problem._driver = self
        self.algorithm = _algorithm(self.cfg)
        self.algorithm.setup(self.problem, termination=("n_gen", self.cfg.generations), seed=self.cfg.seed,
                             verbose=False)

    def _restore(self) -> None:
        p = self.ckpt / "algorithm.pkl"
        try:
            with open(p, "rb") as f:
                saved = pickle.load(f)
            state = saved["state"]
        except (OSError, pickle.UnpicklingError, EOFError, KeyError, TypeError) as exc:
            raise SearchError(f"{p}: unreadable checkpoint ({type(exc).__name__}: {exc})") from None
        if state.get("version") != CHECKPOINT_VERSION:
            raise SearchError(f"{p}: checkpoint version {state.get('version')!r}, expected {CHECKPOINT_VERSION}")
        if state["space"] != self.space.to_dict():
            raise SearchError(f"{p}: the checkpoint's search space differs from this library/config")
        self.algorithm = saved["algorithm"]
        self.problem = self.algorithm.problem
        self.problem._driver = self
        self.generation = int(state["generation"])
        self.history = list(state["history"])
        self.xai_events = list(state["xai_events"])
        self.search_s = float(state["search_s"])
        self.cache_hits = int(state["cache_hits"])
        self._load_archive()

    # --- the loop -------------------------------------------------------------------------------------------
    def run(self, *, resume: bool = False, finalize: bool = True) -> SearchResult:
        """Run (or resume) the search to its last generation, then write the outputs."""
        self.out.mkdir(parents=True, exist_ok=True)
        if resume:
            if (self.ckpt / "algorithm.pkl").is_file():
                self._restore()
            elif (self.ckpt / "config.json").is_file():  # killed during the first generation
                self._start()
            else:
                raise SearchError(f"{self.ckpt}: nothing to resume (no checkpoint/config.json)")
            self.log(f"resumed at generation {self.generation + 1} of {self.cfg.generations} "
                     f"({len(self.archive)} candidates in the archive)")
        else:
            if (self.ckpt / "config.json").exists():
                raise SearchError(f"{self.out}: holds a search already; resume it (--resume) or pick another --out")
            _atomic_json(self.ckpt / "config.json", self.cfg.to_dict())
            self._start()
            self.log(f"search: {self.cfg.generations} generations x {self.cfg.pop_size} on {self.cfg.dataset}, "
                     f"{len(self.space.multipliers)} multipliers, hardware {self.hw.name} ({self.cfg.cost_model}), "
                     f"xai={'every %d' % self.cfg.xai_every if self.cfg.xai else 'off'}, runner {self.runner.kind}, "
                     f"seed {self.cfg.seed}; space of {self.space.count():.3g} networks-with-multipliers")
        while self.algorithm.has_next():
            t0, c0 = time.perf_counter(), time.process_time()
            n_before, hits_before, tr_before = len(self.archive), self.cache_hits, self.trainings
            worker_cpu_before = sum(r.get("task_cpu_s", 0.0) for r in self.archive.values())
            pop = self.algorithm.ask()
            self.algorithm.evaluator.eval(self.problem, pop)
            self.algorithm.tell(infills=pop)
            self.generation += 1
            event = None
            if self.cfg.xai and self.generation % self.cfg.xai_every == 0 and self.generation < self.cfg.generations:
                event = self.explain(self.generation)
                self.xai_events.append(event)
            dt = time.perf_counter() - t0
            self.search_s += dt
            driver_cpu = time.process_time() - c0
            worker_cpu = sum(r.get("task_cpu_s", 0.0) for r in self.archive.values()) - worker_cpu_before
            hv = self.current_hypervolume()
            h = {"generation": self.generation, "evaluated": len(self.archive), "new": len(self.archive) - n_before,
                 "trainings": self.trainings - tr_before, "cache_hits": self.cache_hits - hits_before,
                 "hypervolume": hv, "wall_s": dt, "search_s": self.search_s, "driver_cpu_s": driver_cpu,
                 "worker_cpu_s": worker_cpu,
                 "pinned": sorted(self.problem.pins)}
            self.history.append(h)
            self._checkpoint()
            self.log(f"generation {self.generation}/{self.cfg.generations}: {h['new']} new candidates "
                     f"({h['trainings']} trained, {h['cache_hits']} from the archive), hypervolume {hv:.4f}, "
                     f"{dt:.1f} s")
        result = self.finalize() if finalize else None
        return result

    # --- outputs --------------------------------------------------------------------------------------------
    def select_front(self) -> list[dict]:
        """The reported front: the archive's feasible non-dominated records, thinned by crowding to front_max."""
        recs = self._records_sorted()
        idx = self.front_indices(recs)
        front = [recs[i] for i in idx]
        cap = self.cfg.front_max or self.cfg.pop_size
        if len(front) > cap:
            F = self.normalized(np.array([self.objectives(r) for r in front]))
            d = crowding_distance(F)
            order = sorted(range(len(front)), key=lambda i: (-d[i], front[i]["key"]))[:cap]
            front = [front[i] for i in sorted(order)]
        return sorted(front, key=lambda r: (self.objectives(r)[0], r["key"]))

    def _engine(self, g: Genome):
        """The cycle-level engine's report of `g` on the search's machine (the "hardware-accurate" score)."""
        from cosim.engine import simulate_network

        net = self.space.build_network(g)
        assign = {k: self.library[v] for k, v in self.space.assignment(g).items()}
        return simulate_network(net, self.hw, timing=self.cfg.timing, multipliers=assign).report

    def finalize(self) -> SearchResult:
        """Test-set scores and engine re-scoring of the front; write CSV, JSON, models, reports, plots, summary."""
        front = self.select_front()
        # test split, through the runner (one task per front member)
        tasks = []
        for r in front:
            g = Genome.from_dict(r["genome"])
            tasks.append({"kind": "test", "space": self.space.to_dict(), "genome": r["genome"],
                          "cfg": self.cfg.to_dict(), "seed": r["seed"], "train_key": r["train_key"],
                          "float_state": _torch_load(self._float_path(r["train_key"])), "parent_state": None,
                          "assignments": [(r["key"], self.space.assignment(g))]})
        tests = self.runner(evaluate_task, tasks) if tasks else []
        engine_status = "available"
        models_dir, hw_dir = self.out / "models", self.out / "hardware"
        rows = []
        for rank, (r, t) in enumerate(zip(front, tests), 1):
            g = Genome.from_dict(r["genome"])
            tr = t["results"][0]
            eps = str(float(self.cfg.eps))
            row = {"rank": rank, "key": r["key"], "hash": r["hash"], "arch": r["arch_key"],
                   "assignment": r["assignment"], "generation": r["generation"],
                   "val_acc": r["acc"], "val_robust_acc": r["robust_acc"], "val_float_acc": r["float_acc"],
                   "test_acc": tr["acc"], "test_float_acc": tr["float_acc"],
                   "test_fgsm_acc": tr["fgsm"][eps], "test_pgd_acc": tr["pgd"][eps],
                   "test_robust": {"fgsm": tr["fgsm"], "pgd": tr["pgd"]}, "test_float_robust": tr["float_robust"],
                   "energy_pj": r["hw"]["analytical"]["total_energy_pj"],
                   "mac_energy_pj": r["hw"]["analytical"]["mac_energy_pj"],
                   "latency_s": r["hw"]["analytical"]["latency_s"],
                   "memory_bytes": r["hw"]["analytical"]["memory_footprint_bytes"],
                   "macs": r["hw"]["analytical"]["macs"], "params": r["hw"]["analytical"]["params"],
                   "rohnas": r["hw"]["rohnas"], "objectives": dict(zip(OBJECTIVES, self.objectives(r).tolist())),
                   "exact_layers": sum(1 for v in r["assignment"].values() if v == self.space.exact),
                   "layers": len(r["assignment"])}
            rep = self.hardware_reports(g, hw_dir / r["hash"])
            row["engine"] = rep
            if "error" in rep:
                engine_status = f"engine failed: {rep['error']}"
            model_path = models_dir / f"{rank:02d}-{r['hash']}.pt"
            state = _torch_load(self._float_path(r["train_key"]))
            _atomic_bytes(model_path, _torch_bytes({"state_dict": state, "genome": r["genome"],
                                                    "assignment": r["assignment"], "key": r["key"],
                                                    "space": self.space.to_dict()}))
            row["model_file"] = str(model_path)
            row["hardware_files"] = {"analytical": str(hw_dir / r["hash"] / "analytical.json"),
                                     "engine": str(hw_dir / r["hash"] / "engine.json")
                                     if "error" not in rep else None}
            rows.append(row)
        files = self._write_outputs(rows, engine_status)
        return SearchResult(out_dir=self.out, front=rows, history=self.history, xai_events=self.xai_events,
                            pins={k: list(v) for k, v in self.problem.pins.items()}, search_s=self.search_s,
                            evaluations=len(self.archive), trainings=self.trainings, cache_hits=self.cache_hits,
                            hypervolume=self.history[-1]["hypervolume"] if self.history else 0.0,
                            engine=engine_status, files=files, config=self.cfg.to_dict())

    def hardware_reports(self, g: Genome, directory: Path) -> dict:
        """Write the analytical and engine reports of `g`; the engine totals (or {"error": ...})."""
        from cosim.analytical import estimate

        net = self.space.build_network(g)
        assign = {k: self.library[v] for k, v in self.space.assignment(g).items()}
        rep = estimate(net, self.hw, multipliers=assign, timing=self.cfg.timing)
        _atomic_bytes(directory / "analytical.json", rep.to_json().encode())
        try:
            eng = self._engine(g)
        except Exception as exc:  # one failed re-scoring must not cost a finished search its outputs
            self.log(f"engine re-scoring of {self.space.key(g)} failed: {type(exc).__name__}: {exc}")
            return {"error": f"{type(exc).__name__}: {exc}"}
        _atomic_bytes(directory / "engine.json", eng.to_json().encode())
        tot = eng.total()
        return {k: tot.get(k) for k in ("total_energy_pj", "mac_energy_pj", "latency_s", "total_cycles",
                                        "stall_cycles", "memory_footprint_bytes", "utilization")}

    def _write_outputs(self, rows: list[dict], engine_status: str) -> dict[str, str]:
        import pandas as pd

        files = {}
        flat = []
        for row in rows:
            f = {k: v for k, v in row.items() if not isinstance(v, (dict, list))}
            f["assignment"] = ";".join(f"{k}={v}" for k, v in row["assignment"].items())
            eng = row.get("engine") or {}
            f["engine_latency_s"] = eng.get("latency_s")
            f["engine_energy_pj"] = eng.get("total_energy_pj")
            flat.append(f)
        csv = pd.DataFrame(flat).to_csv(index=False)
        _atomic_bytes(self.out / "front.csv", csv.encode())
        files["front_csv"] = str(self.out / "front.csv")
        doc = {"config": self.cfg.to_dict(), "space": self.space.to_dict(), "hardware": self.hw.name,
               "objectives": list(OBJECTIVES), "reference_values": self._refs.tolist(), "engine": engine_status,
               "search_s": self.search_s, "evaluations": len(self.archive), "trainings": self.trainings,
               "cache_hits": self.cache_hits, "history": self.history, "xai_events": self.xai_events,
               "pins": {k: list(v) for k, v in self.problem.pins.items()}, "front": rows}
        _atomic_json(self.out / "front.json", doc)
        files["front_json"] = str(self.out / "front.json")
        try:
            files.update(self._plots(rows))
        except Exception as exc:  # plots are a convenience; never lose the results over one
            self.log(f"plots failed: {type(exc).__name__}: {exc}")
        shap_png = self.out / "plots" / "shap_summary.png"
        if shap_png.is_file():
            files["shap_summary"] = str(shap_png)
        files["models"] = str(self.out / "models")
        files["hardware"] = str(self.out / "hardware")
        files["log"] = str(self.out / "search.log")
        md = self.summary_markdown(rows, engine_status, files)
        _atomic_bytes(self.out / "summary.md", md.encode())
        files["summary"] = str(self.out / "summary.md")
        return files

    def _plots(self, rows: list[dict]) -> dict[str, str]:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        out = {}
        recs = self._records_sorted()
        F = np.array([self.objectives(r) for r in recs])
        front_keys = {r["key"] for r in rows}
        on = np.array([r["key"] in front_keys for r in recs])
        labels = ["error", "robust error", f"energy ({self.cfg.energy_metric}) [nJ]", "latency [µs]", "memory [KiB]"]
        scale = np.array([1, 1, 1e-3, 1e6, 1 / 1024])
        Fs = F * scale
        pairs = [(i, j) for i in range(5) for j in range(i + 1, 5)]
        fig, axes = plt.subplots(2, 5, figsize=(18, 7))
        for ax, (i, j) in zip(axes.flat, pairs):
            ax.scatter(Fs[~on, i], Fs[~on, j], s=10, c="0.7", label="evaluated")
            ax.scatter(Fs[on, i], Fs[on, j], s=22, c="tab:red", label="front")
            ax.set_xlabel(labels[i])
            ax.set_ylabel(labels[j])
        axes.flat[0].legend(fontsize=8)
        fig.suptitle(f"XAI-NAS objectives ({len(recs)} candidates; front {len(rows)})")
        fig.tight_layout()
        out["pairwise_plot"] = self._save_fig(fig, self.out / "plots" / "pairwise.png")
        fig, ax = plt.subplots(figsize=(6, 4))
        gens = [h["generation"] for h in self.history]
        ax.plot(gens, [h["hypervolume"] for h in self.history], marker="o")
        for ev in self.xai_events:
            if ev.get("pinned"):
                ax.axvline(ev["generation"], color="tab:green", ls="--", lw=1)
        ax.set_xlabel("generation")
        ax.set_ylabel("hypervolume (normalized, ref 1.1)")
        ax.set_title("hypervolume per generation (dashed: SHAP pinned genes after it)")
        fig.tight_layout()
        out["hypervolume_plot"] = self._save_fig(fig, self.out / "plots" / "hypervolume.png")
        return out

    @staticmethod
    def _save_fig(fig, path: Path) -> str:
        atomic_savefig(fig, path, dpi=100)
        return str(path)

    def summary_markdown(self, rows: list[dict], engine_status: str, files: Mapping[str, str]) -> str:
        """A short markdown summary of the search and its front."""
        c = self.cfg
        lines = [f"# XAI-NAS search on {c.dataset}", "",
                 f"- {c.generations} generations x population {c.pop_size}, {c.epochs} epoch(s) per candidate"
                 f"{f' (at most {c.time_budget_s:g} s)' if c.time_budget_s else ''}, seed {c.seed}",
                 f"- hardware {self.hw.name}, cost model {c.cost_model}, energy objective {c.energy_metric}; "
                 f"attack {c.attack} at eps {c.eps:g}",
                 f"- XAI pinning: {'every %d generations, share %.0f%%, pin to %s' % (c.xai_every, 100 * c.xai_share, c.pin_to) if c.xai else 'off'}",
                 f"- search time {self.search_s:.1f} s; {len(self.archive)} candidates evaluated "
                 f"({self.trainings} trainings, {self.cache_hits} archive hits)",
                 f"- final hypervolume {self.history[-1]['hypervolume'] if self.history else 0:.4f}",
                 f"- cycle-level engine: {engine_status}", ""]
        if self.xai_events:
            lines += ["## SHAP pinning", ""]
            lines += [f"- generation {ev['generation']}: {ev.get('reason', '')}" for ev in self.xai_events]
            lines.append("")
        lines += ["## Pareto front (test split)", "",
                  "| # | architecture | exact layers | test acc | FGSM acc | PGD acc | MAC energy [nJ] | "
                  "energy [µJ] | latency [µs] | memory [KiB] |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            lines.append(f"| {r['rank']} | `{r['arch']}` | {r['exact_layers']}/{r['layers']} | "
                         f"{100 * r['test_acc']:.1f}% | {100 * r['test_fgsm_acc']:.1f}% | {100 * r['test_pgd_acc']:.1f}% | "
                         f"{r['mac_energy_pj'] / 1e3:.2f} | {r['energy_pj'] / 1e6:.2f} | {r['latency_s'] * 1e6:.1f} | "
                         f"{r['memory_bytes'] / 1024:.1f} |")
        lines += ["", "## Files", ""] + [f"- {k}: `{v}`" for k, v in files.items()] + [""]
        return "\n".join(lines)


def run_search(cfg: SearchConfig, out_dir: str | Path, *, runner: str = "pool", workers: int | None = None,
               scheduler: str | None = None, resume: bool = False, explain: Callable | None = None,
               log: Callable[[str], None] | None = None, quiet: bool = True, progress=None,
               processes: bool = True) -> SearchResult:
    """Run (or resume) a search with a runner made here and closed afterwards."""
    if resume:
        cfg = XaiNasSearch.load_config(out_dir)
    r = make_runner(runner, workers, scheduler, processes)
    try:
        search = XaiNasSearch(cfg, out_dir, runner=r, explain=explain, log=log, quiet=quiet, progress=progress)
        return search.run(resume=resume)
    finally:
        r.close()


def demo_config(seed: int = 0) -> SearchConfig:
    """The settings of `demo_search`: 12 generations x 16 on mnist5k, 2 epochs each (about 5 minutes on 2 cores)."""
    return SearchConfig(dataset="mnist5k", generations=12, pop_size=16, epochs=2, val_samples=500,
                        robust_samples=150, test_samples=1000, test_robust_samples=150, attack="fgsm", eps=0.1,
                        xai_every=2, max_stages=2, max_layers=2, channels=(4, 8, 16), seed=seed)


def demo_search(out_dir: str | Path, quiet: bool = False) -> SearchResult:
    """The `make demo` XAI-NAS: a short search on mnist5k in `out_dir` (new or empty) with a 2-process pool.

    Prints the log and `format_front(result)` unless quiet. Spawned workers, so a calling script needs the
    __main__ guard (the `cosim` console script has it).
    """
    log = None if quiet else (lambda line: print(line, flush=True))
    res = run_search(demo_config(), out_dir, runner="pool", workers=min(2, os.cpu_count() or 1), log=log,
                     quiet=quiet)
    if not quiet:
        print(format_front(res))
    return res


def _engine_us(row: Mapping[str, Any]) -> str:
    eng = row.get("engine") or {}
    return f"{eng['latency_s'] * 1e6:.1f}" if eng.get("latency_s") is not None else "-"


def format_front(res: SearchResult) -> str:
    """The Pareto front as a plain-text table (test-split accuracies, analytical costs and the engine's
    latency), the pins and the files."""
    arch_w = max([len("architecture")] + [len(r["arch"]) for r in res.front])
    head = (f"{'#':>2}  {'architecture':<{arch_w}}  {'exact':>5}  {'test acc':>8}  {'FGSM acc':>8}  {'PGD acc':>8}  "
            f"{'MAC energy nJ':>13}  {'energy uJ':>9}  {'latency us':>10}  {'engine us':>9}  {'memory KiB':>10}")
    lines = [f"XAI-NAS Pareto front ({len(res.front)} networks; search {res.search_s:.0f} s, "
             f"{res.evaluations} candidates, hypervolume {res.hypervolume:.4f}; engine: {res.engine})",
             head, "-" * len(head)]
    for r in res.front:
        exact = f"{r['exact_layers']}/{r['layers']}"
        lines.append(f"{r['rank']:>2}  {r['arch']:<{arch_w}}  {exact:>5}  {100 * r['test_acc']:>7.1f}%  "
                     f"{100 * r['test_fgsm_acc']:>7.1f}%  {100 * r['test_pgd_acc']:>7.1f}%  "
                     f"{r['mac_energy_pj'] / 1e3:>13.2f}  {r['energy_pj'] / 1e6:>9.2f}  {r['latency_s'] * 1e6:>10.1f}  "
                     f"{_engine_us(r):>9}  {r['memory_bytes'] / 1024:>10.1f}")
    for ev in res.xai_events:
        lines.append(f"SHAP gen {ev['generation']}: {ev.get('reason', '')}")
    lines.append("files: " + ", ".join(f"{k} {v}" for k, v in res.files.items()))
    return "\n".join(lines)
