"""XAI-Gen: approximate one trained network layer by layer, keeping the layers SHAP finds critical exact.

Pipeline (`run_xaigen`):

1. **Network and data.** A zoo model (`mapping.zoo`) trained here (seeded, short) or loaded from a model file
   (`load_model_file`). Images smaller than the model's input are zero-padded to it (MNIST 28x28 -> LeNet-5's
   32x32, as LeNet-5 was used on MNIST). Splits: ``load_dataset(seed, val_fraction=0.2, test_fraction=0.2)``.
   The search only ever measures the **validation split** (the "evaluation set", optionally subsampled to
   ``eval_samples``); the test split is measured once at the end, for the report.
2. **Multipliers.** One signedness for the whole network, with its quantization scheme: unsigned multipliers with
   the affine uint8 scheme (default; the library's unsigned set is the richer one) or signed ones with symmetric
   int8. Candidates by default: the library's Pareto front on (power, MRE) of that signedness (``pareto``), or
   every multiplier of it (``all``), or a list of names. The **exact int8 baseline** runs every layer on the
   cheapest exact multiplier of that signedness (mul8u_wallace for unsigned), so savings are what approximation
   alone buys.
3. **Criticality** (`nas.xai`). ``samples`` seeded random assignments (`sample_assignments`) are evaluated with
   the functional int8 kernels (accuracy drop on the evaluation set; FGSM robust-accuracy drop on its first
   ``robust_samples`` images); the per-layer features (`layer_features` + `multiplier_features`) and the drops go
   to `explain_layers`; the critical layers (``share`` of the attributed accuracy drop, or of the robust drop, or
   the union, by ``criticality``) are kept exact (``critical_policy="exact"``) or restricted to the low-error set
   (multipliers with MRE <= ``low_error_mre_pct``).
4. **Search.** Every allowed (layer, multiplier) move is first measured alone (single-layer drop). Greedy descent
   from the exact network: moves that save MAC energy are tried in order of energy saved per unit of single-layer
   drop (drops below half an evaluation image count as that), the first whose *combined* assignment stays within
   the budget is accepted, a rejected move is never retried; repeat until no move is left. Minimizing MAC energy
   minimizes full-system energy too (in the analytical model only the multiply energy depends on the multiplier).
   Every sampled assignment that keeps the critical layers' constraint and meets the budget is also a candidate;
   the cheapest verified one wins. The budget is an absolute accuracy loss (0.01 = one percentage point) against
   the exact int8 network on the evaluation set, and every accepted assignment was measured, not predicted.
5. **Report.** Accuracy (float, exact int8, approximate; validation and test), robust accuracy (PGD-L∞ on the
   first ``robust_samples`` test images at each ``robust_eps``), and the analytical model's MAC-only and
   full-system energy, latency and memory footprint of the exact int8 and the approximate network on ``hw``.

`write_outputs` saves assignment.json ({layer: multiplier name}, what `cosim estimate --multipliers` reads),
report.json, report.md, shap_summary.png, samples.csv and model.pt (the trained float model, loadable again),
each written atomically.

Model files (`load_model_file`): ``torch.save``'d dicts ``{"format": "cosim.model", "version": 1, "zoo": name,
"num_classes": k, "input_shape": [c, h, w], "state_dict": {...}}`` (what XAI-Gen writes), or a bare state dict of
a zoo model together with the zoo name. They are read with ``torch.load(weights_only=True)``: no code runs.
TorchScript archives are not accepted (the hardware model needs a torch.fx trace of the Python module).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from cosim.jsonutil import jsonable
from traces.atomic import atomic_write

__all__ = [
    "MODEL_FORMAT",
    "XaiGenConfig",
    "XaiGenError",
    "XaiGenResult",
    "load_model_file",
    "report_markdown",
    "run_xaigen",
    "save_model_file",
    "select_multipliers",
    "write_outputs",
]

MODEL_FORMAT = "cosim.model"
MODEL_VERSION = 1
REPORT_SCHEMA = "cosim.xaigen"
REPORT_VERSION = 1

Progress = Callable[[str, int, "int | None", str], None]  # (stage, done, total, info)


class XaiGenError(ValueError):
    """A bad XAI-Gen configuration, model file or request; the message names what and why."""


@dataclass(frozen=True)
class XaiGenConfig:
    """Everything a run depends on (see the module docstring for the meaning of each step)."""

    model: str | None = "lenet5"  # zoo name; None: the one a cosim.model `weights` file names
    weights: str | None = None  # model file (cosim.model dict or a bare state dict of `model`); None: train
    dataset: str = "mnist5k"
    data_dir: str | None = None
    seed: int = 0
    epochs: int = 10
    lr: float = 3e-3
    batch_size: int = 64
    budget: float = 0.01  # absolute accuracy loss allowed on the evaluation set (0.01 = 1 percentage point)
    samples: int = 48  # sampled assignments for the SHAP surrogate
    share: float = 0.8
    criticality: str = "accuracy"  # accuracy | robust | both
    critical_policy: str = "exact"  # exact | low-error
    low_error_mre_pct: float = 0.5
    signed: bool = False
    candidates: str = "pareto"  # pareto | all | comma-separated library names
    eval_samples: int | None = None  # subsample the validation split
    robust_samples: int = 200
    sample_eps: float = 0.05  # FGSM eps of the robust drop measured per sample
    robust_eps: tuple[float, ...] = (0.05, 0.1)  # PGD eps of the final report
    pgd_steps: int = 10
    hw: str = "edge_16x16"
    timing: str = "scalesim"
    max_evaluations: int = 1000
    calibration_samples: int = 256
    xai: bool = True  # False: the ablation without SHAP (no samples, no critical layers, greedy over every layer)
    threads: int | None = 1  # torch and Numba threads while measuring (1: best on a shared, busy machine)

    def __post_init__(self) -> None:
        def bad(f, v, want):
            raise XaiGenError(f"XaiGenConfig.{f}={v!r}: expected {want}")

        if self.model is None and self.weights is None:
            bad("model", self.model, "a zoo model name when no weights file is given")
        if self.epochs < 0:
            bad("epochs", self.epochs, ">= 0")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            bad("lr", self.lr, "a positive number")
        if self.batch_size < 1:
            bad("batch_size", self.batch_size, ">= 1")
        if not (0.0 <= self.budget < 1.0):
            bad("budget", self.budget, "an accuracy loss in [0, 1) (0.01 = 1 %)")
        if self.samples < 8:
            bad("samples", self.samples, ">= 8 (the surrogate needs data)")
        if not 0.0 < self.share <= 1.0:
            bad("share", self.share, "a fraction in (0, 1]")
        if self.criticality not in ("accuracy", "robust", "both"):
            bad("criticality", self.criticality, "accuracy, robust or both")
        if self.critical_policy not in ("exact", "low-error"):
            bad("critical_policy", self.critical_policy, "exact or low-error")
        if not self.low_error_mre_pct >= 0:
            bad("low_error_mre_pct", self.low_error_mre_pct, ">= 0")
        if self.eval_samples is not None and self.eval_samples < 10:
            bad("eval_samples", self.eval_samples, ">= 10 or None")
        if self.robust_samples < 0:
            bad("robust_samples", self.robust_samples, ">= 0")
        if self.criticality != "accuracy" and (self.robust_samples == 0 or self.sample_eps <= 0):
            bad("criticality", self.criticality, "'accuracy' when robust_samples is 0 or sample_eps is 0")
        if not (self.sample_eps >= 0 and math.isfinite(self.sample_eps)):
            bad("sample_eps", self.sample_eps, "a finite value >= 0")
        if any(not (e >= 0 and math.isfinite(e)) for e in self.robust_eps):
            bad("robust_eps", self.robust_eps, "finite values >= 0")
        if self.pgd_steps < 1:
            bad("pgd_steps", self.pgd_steps, ">= 1")
        if self.timing not in ("scalesim", "pipelined"):
            bad("timing", self.timing, "scalesim or pipelined")
        if self.max_evaluations < 1:
            bad("max_evaluations", self.max_evaluations, ">= 1")
        if self.calibration_samples < 1:
            bad("calibration_samples", self.calibration_samples, ">= 1")
        if self.threads is not None and self.threads < 1:
            bad("threads", self.threads, ">= 1 or None")

    def to_dict(self) -> dict:
        """JSON-ready."""
        d = asdict(self)
        d["robust_eps"] = list(self.robust_eps)
        return d


@dataclass(frozen=True, eq=False)
class XaiGenResult:
    """A finished run: the report document, the assignment, the SHAP results, the samples and the trained model."""

    report: dict
    assignment: dict[str, str]  # layer -> multiplier name
    criticality: Any  # nas.xai.CriticalityResult (accuracy drop)
    robust_criticality: Any  # CriticalityResult of the robust drop, or None
    samples: Any  # pandas DataFrame: features + measured drops
    model: Any  # the trained float torch model
    model_meta: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------------------
# Model files
# ---------------------------------------------------------------------------------------------------------------


def save_model_file(path: str | Path, model, zoo_name: str, *, num_classes: int, input_shape: Sequence[int],
                    extra: Mapping[str, Any] | None = None) -> Path:
    """Write a cosim.model file (zoo name + state dict + shapes), atomically."""
    import io

    import torch

    doc = {"format": MODEL_FORMAT, "version": MODEL_VERSION, "zoo": zoo_name, "num_classes": int(num_classes),
           "input_shape": [int(s) for s in input_shape],
           "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}
    for k, v in (extra or {}).items():
        doc.setdefault(k, v)
    buf = io.BytesIO()
    torch.save(doc, buf)
    atomic_write(Path(path), buf.getvalue())
    return Path(path)


def load_model_file(path: str | Path, zoo_name: str | None = None):
    """(model, zoo name, metadata) from a cosim.model file or a bare state dict of zoo model `zoo_name`."""
    import torch

    from mapping import zoo

    path = Path(path)
    if not path.is_file():
        raise XaiGenError(f"{path}: no such model file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types (pickle, zip, weights-only refusals)
        raise XaiGenError(f"{path}: not a torch.save'd state dict or cosim.model file ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''}); TorchScript archives are not accepted") from None
    if not isinstance(obj, dict):
        raise XaiGenError(f"{path}: holds a {type(obj).__name__}, expected a dict (cosim.model or a state dict)")
    meta: dict = {}
    if obj.get("format") == MODEL_FORMAT:
        if obj.get("version") != MODEL_VERSION:
            raise XaiGenError(f"{path}: cosim.model version {obj.get('version')!r}, expected {MODEL_VERSION}")
        for key in ("zoo", "num_classes", "state_dict"):
            if key not in obj:
                raise XaiGenError(f"{path}: cosim.model file lacks {key!r}")
        if zoo_name is not None and zoo_name != obj["zoo"]:
            raise XaiGenError(f"{path}: holds zoo model {obj['zoo']!r}, but {zoo_name!r} was requested")
        zoo_name = obj["zoo"]
        state = obj["state_dict"]
        num_classes = int(obj["num_classes"])
        meta = {k: v for k, v in obj.items() if k not in ("state_dict",)}
    else:
        if zoo_name is None:
            raise XaiGenError(f"{path}: a bare state dict; name its zoo model too (e.g. --model lenet5)")
        if not all(isinstance(v, torch.Tensor) for v in obj.values()):
            raise XaiGenError(f"{path}: neither a cosim.model file nor a state dict of tensors")
        state = obj
        num_classes = None
        for k, v in state.items():  # the last linear layer's rows give the classes
            if k.endswith(".weight") and v.dim() == 2:
                num_classes = int(v.shape[0])
        meta = {"format": "state_dict", "zoo": zoo_name}
    try:
        model = zoo.model(zoo_name, num_classes)
    except ValueError as exc:
        raise XaiGenError(f"{path}: {exc}") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()
        raise XaiGenError(f"{path}: state dict does not fit zoo model {zoo_name!r}: "
                          f"{' '.join(l.strip() for l in first[:4])}") from None
    meta["num_classes"] = num_classes
    return model, zoo_name, meta


# ---------------------------------------------------------------------------------------------------------------
# Multipliers
# ---------------------------------------------------------------------------------------------------------------


def select_multipliers(spec: str = "pareto", *, signed: bool = False, library=None):
    """(exact, candidates): the cheapest exact multiplier of that signedness and the approximate candidates.

    spec: ``pareto`` (the Pareto front on power and MRE of that signedness), ``all``, or comma-separated names.
    Candidates are the non-exact ones that cost less energy per multiply than the exact baseline, by energy.
    """
    if library is None:
        from rtl_models.library import MultiplierLibrary

        library = MultiplierLibrary.default()
    same = library.filter(signed=signed)
    exacts = sorted((m for m in same if m.is_exact), key=lambda m: (m.energy_pj, m.name))
    kind = "signed" if signed else "unsigned"
    if not exacts:
        raise XaiGenError(f"the multiplier library has no exact {kind} multiplier for the int8 baseline")
    exact = exacts[0]
    if spec == "pareto":
        pool = list(same.pareto("mre", "power"))
    elif spec == "all":
        pool = list(same)
    else:
        pool = []
        for name in (s.strip() for s in spec.split(",")):
            if not name:
                continue
            try:
                m = library.get(name)
            except KeyError as exc:
                raise XaiGenError(f"candidates: {exc}") from None
            if m.signed != signed:
                raise XaiGenError(f"candidates: {m.name} is {'signed' if m.signed else 'unsigned'}, but the run uses "
                                  f"{kind} multipliers (the {'symmetric' if signed else 'affine'} int8 scheme)")
            pool.append(m)
    cands = sorted({m.key: m for m in pool if not m.is_exact and m.energy_pj < exact.energy_pj}.values(),
                   key=lambda m: (m.energy_pj, m.metrics.mre_pct, m.name))
    if not cands:
        raise XaiGenError(f"candidates {spec!r}: no approximate {kind} multiplier cheaper than the exact baseline "
                          f"{exact.name} ({exact.energy_pj:.4g} pJ)")
    return exact, cands


# ---------------------------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------------------------


def _fit_inputs(x, shape: tuple[int, int, int], where: str):
    """Zero-pad images (N, C, h, w) to the model's (C, H, W), centred; error when that is impossible."""
    import torch.nn.functional as F

    c, h, w = shape
    if x.shape[1] != c:
        raise XaiGenError(f"{where}: data has {x.shape[1]} channel(s), the model expects {c}")
    dh, dw = h - x.shape[2], w - x.shape[3]
    if dh == 0 and dw == 0:
        return x
    if dh < 0 or dw < 0:
        raise XaiGenError(f"{where}: data images are {x.shape[2]}x{x.shape[3]}, larger than the model's {h}x{w}")
    return F.pad(x, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2))


def _energy(assignment: Mapping[str, Any], macs: Mapping[str, int]) -> float:
    """MAC-only energy (pJ) of an assignment: sum of MACs x energy per multiply."""
    return float(sum(macs[l] * assignment[l].energy_pj for l in macs))


def run_xaigen(config: XaiGenConfig = XaiGenConfig(), *, progress: Progress | None = None, model=None) -> XaiGenResult:
    """Run XAI-Gen end to end (see the module docstring); `model` overrides config.model/weights with a float module."""
    import torch

    from cosim.analytical import estimate
    from mapping import zoo
    from mapping.hardware import resolve_hardware
    from mapping.layer import MappingError
    from nas.attacks import robust_accuracy
    from nas.data import load_dataset
    from nas.train import TrainConfig, evaluate, torch_threads, train
    from nas.xai import (AssignmentEvaluator, activation_stats, explain_layers, feature_frame, layer_features,
                         multiplier_features, numba_threads, sample_assignments)

    cfg = config
    t_start = time.perf_counter()
    timings: dict[str, float] = {}

    def tick(stage, done=0, total=None, info=""):
        if progress is not None:
            progress(stage, done, total, info)

    # -- data, model ------------------------------------------------------------------------------------------
    t = time.perf_counter()
    ds = load_dataset(cfg.dataset, cfg.data_dir, seed=cfg.seed, val_fraction=0.2, test_fraction=0.2)
    model_meta: dict = {}
    zoo_name = cfg.model
    if model is None and cfg.weights is not None:
        model, zoo_name, model_meta = load_model_file(cfg.weights, cfg.model)
        trained = False
    elif model is None:
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(cfg.seed)
                model = zoo.model(cfg.model, ds.info.classes)
        except MappingError as exc:
            raise XaiGenError(str(exc)) from None
        trained = True
    else:
        trained = False
        model_meta = {"format": "module"}
    try:
        entry = zoo.ZOO[zoo_name]
    except KeyError:
        raise XaiGenError(f"unknown zoo model {zoo_name!r}: expected one of {', '.join(zoo.ZOO)}") from None
    where = f"model {zoo_name!r} on {cfg.dataset}"
    xtr = _fit_inputs(ds.train.x, entry.input_shape, where)
    xval = _fit_inputs(ds.val.x, entry.input_shape, where)
    xte = _fit_inputs(ds.test.x, entry.input_shape, where)
    yval, yte = ds.val.y, ds.test.y
    if cfg.eval_samples is not None:
        xval, yval = xval[: cfg.eval_samples], yval[: cfg.eval_samples]
    timings["data_s"] = time.perf_counter() - t

    t = time.perf_counter()
    train_info = None
    if trained and cfg.epochs > 0:
        tick("train", 0, None, f"{zoo_name}, {cfg.epochs} epochs")
        r = train(model, xtr, ds.train.y, TrainConfig(epochs=cfg.epochs, lr=cfg.lr, batch_size=cfg.batch_size,
                                                      seed=cfg.seed, threads=cfg.threads), quiet=True)
        train_info = {"epochs": r.epochs_completed, "steps": r.steps, "final_loss": r.final_loss, "wall_s": r.wall_s}
    model.eval()
    timings["train_s"] = time.perf_counter() - t
    acc_float_val = evaluate(model, xval, yval)
    acc_float_test = evaluate(model, xte, yte)
    num_classes = int(ds.info.classes)

    # -- multipliers, hardware, features ----------------------------------------------------------------------
    exact, cands = select_multipliers(cfg.candidates, signed=cfg.signed)
    try:
        machine = resolve_hardware(cfg.hw)
        network = zoo.network(zoo_name, num_classes)
    except (MappingError, ValueError) as exc:
        raise XaiGenError(str(exc)) from None
    calib = xtr[: cfg.calibration_samples]
    ev = AssignmentEvaluator(model, xval, yval, calibration=calib, exact=exact,
                             robust_eps=cfg.sample_eps if cfg.robust_samples > 0 and cfg.sample_eps > 0 else None,
                             robust_attack="fgsm", robust_samples=cfg.robust_samples, seed=cfg.seed,
                             threads=cfg.threads)
    layers = ev.layers
    net_names = {l.name for l in network.layers}
    missing = [l for l in layers if l not in net_names]
    if missing:
        raise XaiGenError(f"{where}: layers {missing} of the torch model are not in its mapping.Network")
    macs = {l: int(network[l].macs) for l in layers}
    exact_assignment = {l: exact for l in layers}
    hw_exact = estimate(network, machine, multipliers=exact_assignment, timing=cfg.timing)
    acts = activation_stats(model, calib, layers)
    static = layer_features(network, layers, report=hw_exact, act_stats=acts)

    tick("baseline", 0, None, "exact int8")
    base = ev.baseline

    # -- SHAP criticality ---------------------------------------------------------------------------------------
    t = time.perf_counter()
    sampled = sample_assignments(layers, cands, cfg.samples if cfg.xai else 0, exact=exact, seed=cfg.seed)
    tick("samples", 0, len(sampled), "")
    evs = ev.evaluate_many(sampled, lambda i, n: tick("samples", i, n, f"{ev.evaluations} evaluations"))
    X = feature_frame(static, sampled)
    y_acc = np.array([e.accuracy_drop for e in evs])
    y_rob = np.array([e.robust_drop for e in evs])
    crit = rcrit = None
    if cfg.xai:
        crit = explain_layers(X, y_acc, share=cfg.share, seed=cfg.seed)
        if np.isfinite(y_rob).all():
            rcrit = explain_layers(X, y_rob, share=cfg.share, seed=cfg.seed)
    if crit is None:
        critical = []
    elif cfg.criticality == "accuracy":
        critical = list(crit.critical)
    elif cfg.criticality == "robust":
        critical = list(rcrit.critical) if rcrit is not None else []
    else:
        critical = list(dict.fromkeys(list(crit.critical) + list(rcrit.critical if rcrit is not None else ())))
    critical = [l for l in layers if l in critical]  # network order
    timings["criticality_s"] = time.perf_counter() - t

    # -- allowed multipliers per layer --------------------------------------------------------------------------
    low_error = [m for m in cands if m.metrics.mre_pct <= cfg.low_error_mre_pct]
    allowed: dict[str, list] = {}
    for l in layers:
        if l in critical:
            allowed[l] = [] if cfg.critical_policy == "exact" else list(low_error)
        else:
            allowed[l] = list(cands)

    # -- single-layer drops, then greedy -------------------------------------------------------------------------
    t = time.perf_counter()
    n_eval = int(yval.shape[0])
    eps_drop = 0.5 / n_eval
    moves = [(l, m) for l in layers for m in allowed[l]]
    single: dict[tuple[str, str], float] = {}
    tick("single-layer", 0, len(moves), "")
    for i, (l, m) in enumerate(moves):
        if ev.evaluations >= cfg.max_evaluations:
            break
        single[(l, m.key)] = ev.evaluate({l: m}).accuracy_drop
        tick("single-layer", i + 1, len(moves), f"{l} {m.name}")
    budget = cfg.budget + 1e-9  # accuracies are counts / n: compare with a hair of slack for float rounding
    current = dict(exact_assignment)
    rejected: set[tuple[str, str]] = set()
    steps: list[dict] = []
    tick("greedy", 0, None, "")
    while ev.evaluations < cfg.max_evaluations:
        options = []
        for l, m in moves:
            if (l, m.key) in rejected or (l, m.key) not in single or single[(l, m.key)] > budget:
                continue
            saving = macs[l] * (current[l].energy_pj - m.energy_pj)
            if saving <= 0:
                continue
            options.append((-(saving / max(single[(l, m.key)], eps_drop)), layers.index(l), m.energy_pj, m.name, l, m))
        if not options:
            break
        options.sort(key=lambda o: o[:4])
        accepted = False
        for *_, l, m in options:
            if ev.evaluations >= cfg.max_evaluations:
                break
            trial = dict(current)
            trial[l] = m
            e = ev.evaluate(trial)
            ok = e.accuracy_drop <= budget
            steps.append({"layer": l, "multiplier": m.name, "single_drop": single[(l, m.key)],
                          "combined_drop": e.accuracy_drop, "accepted": ok,
                          "mac_energy_pj": _energy(trial, macs)})
            tick("greedy", len(steps), None, f"{l} -> {m.name} {'ok' if ok else 'rejected'}")
            if ok:
                current = trial
                accepted = True
                break
            rejected.add((l, m.key))
        if not accepted:
            break
    timings["search_s"] = time.perf_counter() - t

    # The cheapest verified assignment: greedy's, or a sample that respects the critical constraint.
    source = "greedy"
    best, best_e = current, _energy(current, macs)
    for a, e in zip(sampled, evs):
        if e.accuracy_drop <= budget and all(a[l] is exact or a[l] in allowed[l] for l in layers):
            ea = _energy(a, macs)
            if ea < best_e - 1e-9:
                best, best_e, source = a, ea, "sample"
    final_eval = ev.evaluate(best)
    if final_eval.accuracy_drop > budget:  # every accepted assignment was measured: this cannot happen
        raise RuntimeError(f"XAI-Gen: the chosen assignment loses {final_eval.accuracy_drop:.4f} > budget {cfg.budget}")

    # -- final report --------------------------------------------------------------------------------------------
    t = time.perf_counter()
    tick("final", 0, None, "test set and PGD")
    test_exact, _ = ev.measure({}, xte, yte, robust=False)
    test_approx, _ = ev.measure(best, xte, yte, robust=False)
    robust: dict = {"attack": "pgd", "steps": cfg.pgd_steps, "samples": 0, "eps": list(cfg.robust_eps),
                    "clean": {}, "float": {}, "exact_int8": {}, "approximate": {},
                    "note": "white-box PGD-Linf on the first test images; gradients through the int8 / approximate "
                            "layers are straight-through (the float layer's), so robust accuracy of an approximate "
                            "network above the exact one's can mean masked gradients rather than robustness"}
    k = min(cfg.robust_samples, int(yte.shape[0]))
    if k > 0 and cfg.robust_eps:
        robust["samples"] = k
        for label, net in (("float", model), ("exact_int8", ev.network({})), ("approximate", ev.network(best))):
            with torch_threads(cfg.threads), numba_threads(cfg.threads):
                res = robust_accuracy(net, xte[:k], yte[:k], [0.0, *cfg.robust_eps], "pgd", seed=cfg.seed,
                                      steps=cfg.pgd_steps)
            robust["clean"][label] = float(res[0.0])  # same images, no attack
            robust[label] = {str(e): float(res[float(e)]) for e in cfg.robust_eps}
    hw_approx = estimate(network, machine, multipliers=best, timing=cfg.timing)
    timings["final_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - t_start

    te, ta = hw_exact.total(), hw_approx.total()

    def ratio(a, b):
        return float(a / b) if b else None

    hardware = {
        "hw": machine.name, "timing": cfg.timing, "source": "analytical",
        "exact_int8": {k2: te[k2] for k2 in ("macs", "mac_energy_pj", "total_energy_pj", "latency_s", "total_cycles",
                                             "memory_footprint_bytes", "sram_footprint_bytes")},
        "approximate": {k2: ta[k2] for k2 in ("macs", "mac_energy_pj", "total_energy_pj", "latency_s", "total_cycles",
                                              "memory_footprint_bytes", "sram_footprint_bytes")},
        "mac_energy_reduction_x": ratio(te["mac_energy_pj"], ta["mac_energy_pj"]),
        "total_energy_reduction_x": ratio(te["total_energy_pj"], ta["total_energy_pj"]),
        "mac_energy_saving_pct": 100.0 * (1 - ta["mac_energy_pj"] / te["mac_energy_pj"]) if te["mac_energy_pj"] else None,
        "total_energy_saving_pct": 100.0 * (1 - ta["total_energy_pj"] / te["total_energy_pj"]) if te["total_energy_pj"] else None,
        "mac_share_of_total_exact": ratio(te["mac_energy_pj"], te["total_energy_pj"]),
        "latency_ratio": ratio(ta["latency_s"], te["latency_s"]),
        "memory_ratio": ratio(ta["memory_footprint_bytes"], te["memory_footprint_bytes"]),
        "note": "the multiplier changes only the multiply energy in the analytical model: latency and memory are "
                "those of the int8 network either way",
    }
    per_layer = []
    rep_a = {r.name: r for r in hw_approx.layers}
    rep_e = {r.name: r for r in hw_exact.layers}
    for l in layers:
        m = best[l]
        per_layer.append({
            "layer": l, "kind": network[l].kind, "macs": macs[l], "multiplier": m.name, "critical": l in critical,
            "score": crit.scores.get(l, 0.0) if crit is not None else None, "robust_score": rcrit.scores.get(l) if rcrit is not None else None,
            "single_drop": single.get((l, m.key), 0.0 if m is exact else None),
            **{k2: v for k2, v in multiplier_features(m).items()},
            "mac_energy_pj_exact": rep_e[l].mac_energy_pj, "mac_energy_pj": rep_a[l].mac_energy_pj,
            "energy_share_exact": static[l]["energy_share"],
        })
    assignment_names = {l: best[l].name for l in layers}
    report = {
        "schema": REPORT_SCHEMA, "version": REPORT_VERSION,
        "model": zoo_name, "dataset": cfg.dataset, "seed": cfg.seed, "trained": trained, "train": train_info,
        "model_file": model_meta or None, "config": cfg.to_dict(),
        "evaluation_set": {"split": "val", "samples": n_eval, "test_samples": int(yte.shape[0])},
        "multipliers": {
            "signed": cfg.signed, "scheme": "symmetric int8" if cfg.signed else "affine uint8",
            "exact": exact.name, "exact_energy_pj": exact.energy_pj, "candidates_spec": cfg.candidates,
            "candidates": [{"name": m.name, "energy_pj": m.energy_pj, "mre_pct": m.metrics.mre_pct,
                            "mae_pct": m.metrics.mae_pct} for m in cands],
            "low_error_set": [m.name for m in low_error],
        },
        "accuracy": {
            "float": {"val": acc_float_val, "test": acc_float_test},
            "exact_int8": {"val": base.accuracy, "test": test_exact},
            "approximate": {"val": final_eval.accuracy, "test": test_approx},
            "loss": {"val": base.accuracy - final_eval.accuracy, "test": test_exact - test_approx},
            "budget": cfg.budget, "within_budget": bool(final_eval.accuracy_drop <= budget),
        },
        "robust": robust,
        "critical_layers": critical, "critical_policy": cfg.critical_policy, "criticality_target": cfg.criticality,
        "xai": cfg.xai,
        "criticality": crit.to_dict() if crit is not None else None,
        "robust_criticality": rcrit.to_dict() if rcrit is not None else None,
        "assignment": assignment_names,
        "layers": per_layer,
        "hardware": hardware,
        "search": {"method": "greedy by MAC energy saved per single-layer accuracy drop, each step verified",
                   "source": source, "samples": len(sampled), "moves": len(moves),
                   "evaluations": ev.evaluations, "evaluation_s": ev.seconds, "steps": steps,
                   "max_evaluations_reached": ev.evaluations >= cfg.max_evaluations},
        "timings": timings,
    }
    samples_df = X.copy()
    samples_df.insert(0, "assignment", [json.dumps({l: a[l].name for l in layers}) for a in sampled])
    samples_df["accuracy_drop"] = y_acc
    samples_df["robust_drop"] = y_rob
    meta = {"zoo": zoo_name, "num_classes": num_classes, "input_shape": list(entry.input_shape),
            "dataset": cfg.dataset, "seed": cfg.seed}
    return XaiGenResult(report=jsonable(report), assignment=assignment_names, criticality=crit,
                        robust_criticality=rcrit, samples=samples_df, model=model, model_meta=meta)


# ---------------------------------------------------------------------------------------------------------------
# Outputs
# ---------------------------------------------------------------------------------------------------------------






def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.2f} %"


def _critical_line(doc: dict) -> str:
    c = doc["criticality"]
    if c is None:
        return "No SHAP criticality (ablation without XAI): every layer was open to approximation."
    r2 = "n/a" if c["r2_holdout"] is None else f"{c['r2_holdout']:.3f}"
    return (f"Critical layers ({doc['criticality_target']} drop, share {c['share']}, surrogate holdout R² {r2}): "
            f"{', '.join(doc['critical_layers']) or 'none'}; kept {doc['critical_policy']}.")


def report_markdown(doc: dict) -> str:
    """A short markdown summary of a report document."""
    a, h = doc["accuracy"], doc["hardware"]
    lines = [
        f"# XAI-Gen: {doc['model']} on {doc['dataset']} (seed {doc['seed']})",
        "",
        f"Multipliers: {doc['multipliers']['scheme']}, exact baseline {doc['multipliers']['exact']}, "
        f"{len(doc['multipliers']['candidates'])} candidates ({doc['multipliers']['candidates_spec']}). "
        f"Budget: {_pct(a['budget'])} accuracy loss on the validation split ({doc['evaluation_set']['samples']} images).",
        "",
        "| | float | exact int8 | approximate | loss |",
        "|---|---|---|---|---|",
        f"| accuracy (val) | {_pct(a['float']['val'])} | {_pct(a['exact_int8']['val'])} | "
        f"{_pct(a['approximate']['val'])} | {_pct(a['loss']['val'])} |",
        f"| accuracy (test) | {_pct(a['float']['test'])} | {_pct(a['exact_int8']['test'])} | "
        f"{_pct(a['approximate']['test'])} | {_pct(a['loss']['test'])} |",
    ]
    r = doc["robust"]
    for e in r["eps"]:
        k = str(e)
        if k in r["exact_int8"]:
            lines.append(f"| PGD-{r['steps']} ε={e} (test, {r['samples']}) | {_pct(r['float'].get(k))} | "
                         f"{_pct(r['exact_int8'][k])} | {_pct(r['approximate'][k])} | "
                         f"{_pct(r['exact_int8'][k] - r['approximate'][k])} |")
    ex, ap = h["exact_int8"], h["approximate"]
    lines += [
        "",
        f"Hardware ({h['hw']}, analytical model):",
        "",
        "| | exact int8 | approximate | ratio |",
        "|---|---|---|---|",
        f"| MAC energy | {ex['mac_energy_pj'] / 1e6:.4g} µJ | {ap['mac_energy_pj'] / 1e6:.4g} µJ | "
        f"{h['mac_energy_reduction_x']:.3g}x lower |",
        f"| full-system energy | {ex['total_energy_pj'] / 1e6:.4g} µJ | {ap['total_energy_pj'] / 1e6:.4g} µJ | "
        f"{h['total_energy_reduction_x']:.3g}x lower |",
        f"| latency | {ex['latency_s'] * 1e3:.4g} ms | {ap['latency_s'] * 1e3:.4g} ms | {h['latency_ratio']:.3g} |",
        f"| memory footprint | {ex['memory_footprint_bytes']:,} B | {ap['memory_footprint_bytes']:,} B | "
        f"{h['memory_ratio']:.3g} |",
        "",
        _critical_line(doc),
        "",
        "| layer | MACs | SHAP score | critical | multiplier | MRE % | single-layer drop |",
        "|---|---|---|---|---|---|---|",
    ]
    for L in doc["layers"]:
        sd = L["single_drop"]
        score = "-" if L["score"] is None else f"{L['score']:.3f}"
        lines.append(f"| {L['layer']} | {L['macs']:,} | {score} | {'yes' if L['critical'] else ''} | "
                     f"{L['multiplier']} | {L['mult_mre_pct']:.3g} | {'-' if sd is None else _pct(sd)} |")
    s = doc["search"]
    lines += ["", f"Search: {s['method']}; {s['samples']} SHAP samples, {s['evaluations']} evaluations "
                  f"({s['evaluation_s']:.1f} s), result from {s['source']}; total {doc['timings']['total_s']:.1f} s.", ""]
    return "\n".join(lines)


def write_outputs(result: XaiGenResult, out: str | Path) -> dict[str, str]:
    """Write assignment.json, report.json, report.md, shap_summary.png, samples.csv and model.pt into `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = {"assignment": out / "assignment.json", "report": out / "report.json", "markdown": out / "report.md",
             "shap_summary": out / "shap_summary.png", "samples": out / "samples.csv", "model": out / "model.pt"}
    doc = dict(result.report)
    doc["files"] = {k: str(v) for k, v in files.items()}
    if result.robust_criticality is not None:
        files["shap_summary_robust"] = out / "shap_summary_robust.png"
        doc["files"]["shap_summary_robust"] = str(files["shap_summary_robust"])
    atomic_write(files["assignment"], (json.dumps(result.assignment, indent=1) + "\n").encode())
    if result.criticality is not None:
        result.criticality.summary_plot(files["shap_summary"])
    else:
        del files["shap_summary"], doc["files"]["shap_summary"]
    if result.robust_criticality is not None:
        result.robust_criticality.summary_plot(files["shap_summary_robust"])
    atomic_write(files["samples"], result.samples.to_csv(index=False).encode())
    m = result.model_meta
    save_model_file(files["model"], result.model, m["zoo"], num_classes=m["num_classes"], input_shape=m["input_shape"],
                    extra={"dataset": m.get("dataset"), "seed": m.get("seed")})
    atomic_write(files["markdown"], report_markdown(doc).encode())
    atomic_write(files["report"], (json.dumps(doc, indent=1, allow_nan=False) + "\n").encode())
    return {k: str(v) for k, v in files.items()}
