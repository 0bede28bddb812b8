"""SHAP layer criticality: which layers of a network cannot take an approximate multiplier.

The shared core (used by XAI-Gen and XAI-NAS) is `explain_layers(X, y)`:

- ``X`` is a pandas DataFrame with one row per evaluated sample (an assignment of multipliers to
  layers, possibly of a different architecture each) and columns named ``"<layer>.<feature>"``;
  the layer is the text before the first ".", e.g. ``conv1.mult_mre_pct``, ``L3.kernel``. NaN
  means "absent" (a layer position an architecture does not have). Non-numeric columns (object,
  category, bool) are encoded as category codes, their missing values as NaN.
- ``y`` is what the samples lost: the accuracy drop (or robust-accuracy drop) against the exact
  network.

A gradient-boosted surrogate (scikit-learn's `HistGradientBoostingRegressor`, which routes NaN
natively and is deterministic: no early stopping, no subsampling) is fitted on a seeded
``1 - test_fraction`` of the rows and scored (R²) on the rest; the surrogate explained is then
refitted on every row. `shap.TreeExplainer` (path-dependent, exact for trees) gives every
sample's per-feature SHAP values. **Criticality score** of a layer: the SHAP values of its
features are summed per sample (SHAP is additive, so this is the layer's joint attribution,
"group SHAP"), the absolute value is averaged over the samples, and the layer scores are
normalized to sum to 1. **Critical layers**: the smallest set, taken in descending score
order, whose scores add up to at least ``share`` of the total attributed drop (layers with a
zero score are never critical; if nothing is attributed, nothing is critical).

The XAI-Gen side builds those inputs for one trained network: `activation_stats` and
`layer_features` (static per-layer features), `multiplier_features` (the assigned multiplier's
MAE, MRE, WCE, bias and energy), `feature_frame` (the wide ``X``), `sample_assignments` (seeded
random per-layer assignments) and `AssignmentEvaluator` (accuracy and robust accuracy of an
assignment with the functional int8 kernels of `cosim.axtorch`, cached per assignment).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

__all__ = [
    "AssignmentEvaluator",
    "CriticalityResult",
    "Evaluation",
    "LAYER_FEATURES",
    "MULTIPLIER_FEATURES",
    "activation_stats",
    "approximable",
    "explain_layers",
    "feature_frame",
    "layer_features",
    "layer_of",
    "multiplier_features",
    "numba_threads",
    "sample_assignments",
]


# ---------------------------------------------------------------------------------------------------------------
# The shared SHAP core
# ---------------------------------------------------------------------------------------------------------------


def layer_of(column: str) -> str:
    """The layer a feature column belongs to: the text before its first '.'."""
    if not isinstance(column, str) or "." not in column or column.startswith("."):
        raise ValueError(f"feature column {column!r}: expected '<layer>.<feature>' (e.g. 'conv1.mult_mre_pct')")
    return column.split(".", 1)[0]


@dataclass(frozen=True, eq=False)
class CriticalityResult:
    """Per-layer SHAP criticality of a fitted surrogate: scores, critical layers, fit and the raw SHAP values."""

    scores: dict[str, float]  # layer -> normalized score (sums to 1, or all 0), sorted descending
    critical: tuple[str, ...]  # smallest set of layers carrying `share` of the attributed drop
    r2_holdout: float  # surrogate R^2 on the held-out rows (nan when too few rows or constant y there)
    feature_names: tuple[str, ...]
    shap_values: np.ndarray  # (samples, features), surrogate refitted on all rows
    X: pd.DataFrame  # the numeric features explained (categoricals encoded)
    share: float = 0.8
    expected_value: float = 0.0  # surrogate's mean prediction (SHAP base value)
    raw_scores: dict[str, float] = field(default_factory=dict)  # layer -> mean |group SHAP| (units of y)
    signed_scores: dict[str, float] = field(default_factory=dict)  # layer -> mean group SHAP (units of y)
    r2_train: float = float("nan")
    n_train: int = 0
    n_holdout: int = 0
    seed: int = 0
    surrogate: dict = field(default_factory=dict)  # surrogate class and parameters

    @property
    def layers(self) -> tuple[str, ...]:
        """Layers in descending score order."""
        return tuple(self.scores)

    def feature_importance(self) -> dict[str, float]:
        """Mean |SHAP| per feature column, in column order."""
        vals = np.abs(self.shap_values).mean(axis=0) if len(self.shap_values) else np.zeros(len(self.feature_names))
        return {f: float(v) for f, v in zip(self.feature_names, vals)}

    def summary_plot(self, path: str | Path, max_display: int = 20) -> Path:
        """Write the SHAP summary (beeswarm) plot of the features as a PNG, atomically; returns the path."""
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
        import shap

        from traces.atomic import atomic_savefig

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        plt.close("all")
        # Columns that never move the surrogate (constant features of a fixed network) only add empty rows.
        keep = np.flatnonzero(np.abs(self.shap_values).sum(axis=0) > 0) if len(self.shap_values) else np.zeros(0, int)
        if keep.size == 0:
            keep = np.arange(min(1, len(self.feature_names)))
        shown = min(max_display, keep.size)
        shap.summary_plot(self.shap_values[:, keep], self.X.iloc[:, keep], feature_names=[self.feature_names[j] for j in keep],
                          show=False, max_display=max_display, plot_size=(8.0, max(3.0, 0.35 * shown + 1.5)),
                          rng=np.random.default_rng(0))  # the beeswarm's jitter: seeded, and shap leaves the global RNG alone
        fig = plt.gcf()
        top = ", ".join(f"{k} {v:.2f}" for k, v in list(self.scores.items())[:4])
        fig.suptitle(f"SHAP of the surrogate (holdout R² {self.r2_holdout:.2f}); layer scores: {top}", fontsize=9, y=1.02)
        atomic_savefig(fig, path, dpi=110, bbox_inches="tight")
        return path

    def to_dict(self) -> dict:
        """JSON-ready summary (no per-sample SHAP values; non-finite numbers become None)."""
        return {
            "scores": {k: _num(v) for k, v in self.scores.items()},
            "raw_scores": {k: _num(v) for k, v in self.raw_scores.items()},
            "signed_scores": {k: _num(v) for k, v in self.signed_scores.items()},
            "critical": list(self.critical),
            "share": self.share,
            "r2_holdout": _num(self.r2_holdout),
            "r2_train": _num(self.r2_train),
            "n_samples": int(len(self.X)),
            "n_train": self.n_train,
            "n_holdout": self.n_holdout,
            "seed": self.seed,
            "expected_value": _num(self.expected_value),
            "feature_names": list(self.feature_names),
            "feature_importance": {k: _num(v) for k, v in self.feature_importance().items()},
            "surrogate": dict(self.surrogate),
            "method": "HistGradientBoostingRegressor + shap.TreeExplainer; layer score = mean over samples of "
                      "|sum of the layer's feature SHAP values|, normalized to sum 1; critical = smallest top set "
                      "with cumulative score >= share",
        }


def _num(v: float) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


def _numeric_frame(X: pd.DataFrame) -> pd.DataFrame:
    """A float64 copy of X; non-numeric columns become category codes (missing -> NaN)."""
    out = {}
    for c in X.columns:
        s = X[c]
        if pd.api.types.is_bool_dtype(s):
            out[c] = s.astype("float64")
        elif pd.api.types.is_numeric_dtype(s):
            out[c] = pd.to_numeric(s, errors="coerce").astype("float64")
        else:
            codes = s.astype("category").cat.codes.astype("float64")
            out[c] = codes.where(codes >= 0, np.nan)
    df = pd.DataFrame(out, index=X.index, columns=list(X.columns))
    inf = np.isinf(df.to_numpy())
    if inf.any():
        r, c = np.argwhere(inf)[0]
        raise ValueError(f"explain_layers: X[{df.columns[c]!r}] row {r} is infinite; use NaN for absent values")
    return df


def _surrogate(n_train: int, seed: int):
    from sklearn.ensemble import HistGradientBoostingRegressor

    # Small sample counts (tens to hundreds of evaluated assignments): small leaves so the trees can
    # split at all, a slow learning rate and enough iterations instead of early stopping (which would
    # draw a random validation split and make the fit depend on more than `seed`).
    return HistGradientBoostingRegressor(
        max_iter=300, learning_rate=0.05, max_leaf_nodes=15,
        min_samples_leaf=int(max(2, min(20, n_train // 10))), l2_regularization=1e-3,
        early_stopping=False, random_state=seed)


def _r2(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    if len(y_true) < 2:
        return float("nan")
    ss_tot = float(((y_true - y_true.mean()) ** 2).sum())
    if ss_tot <= 0:
        return float("nan")
    return 1.0 - float(((y_true - y_pred) ** 2).sum()) / ss_tot


def explain_layers(X: pd.DataFrame, y, *, share: float = 0.8, seed: int = 0,
                   test_fraction: float = 0.25) -> CriticalityResult:
    """Fit a gradient-boosted surrogate of y on X, explain it with SHAP and score layers (see the module docstring)."""
    import shap

    if not isinstance(X, pd.DataFrame):
        raise TypeError(f"explain_layers: X must be a pandas DataFrame, got {type(X).__name__}")
    if not 0.0 < share <= 1.0:
        raise ValueError(f"explain_layers: share={share!r}: expected a fraction in (0, 1]")
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"explain_layers: test_fraction={test_fraction!r}: expected a fraction in [0, 1)")
    if X.shape[1] == 0:
        raise ValueError("explain_layers: X has no feature columns")
    cols = [str(c) for c in X.columns]
    if len(set(cols)) != len(cols):
        dup = sorted({c for c in cols if cols.count(c) > 1})
        raise ValueError(f"explain_layers: duplicate feature columns {dup}")
    layers_of_cols = [layer_of(c) for c in cols]
    yv = np.asarray(y, dtype=np.float64).reshape(-1)
    n = len(X)
    if yv.shape[0] != n:
        raise ValueError(f"explain_layers: X has {n} rows but y has {yv.shape[0]} values")
    if n < 4:
        raise ValueError(f"explain_layers: {n} samples; need at least 4 to fit a surrogate")
    if not np.all(np.isfinite(yv)):
        bad = int(np.flatnonzero(~np.isfinite(yv))[0])
        raise ValueError(f"explain_layers: y[{bad}] = {yv[bad]!r}: every accuracy drop must be finite")
    Xn = _numeric_frame(X.set_axis(cols, axis=1))
    Xn = Xn.reset_index(drop=True)

    # Held-out fit: a seeded split, at least 2 rows each side when possible.
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    n_test = int(round(test_fraction * n))
    if test_fraction > 0:
        n_test = min(max(n_test, 2), n - 2)
    tr, te = np.sort(perm[n_test:]), np.sort(perm[:n_test])
    r2_holdout = float("nan")
    if n_test >= 2:
        m = _surrogate(len(tr), seed).fit(Xn.iloc[tr], yv[tr])
        r2_holdout = _r2(yv[te], m.predict(Xn.iloc[te]))

    model = _surrogate(n, seed).fit(Xn, yv)
    r2_train = _r2(yv, model.predict(Xn))
    explainer = shap.TreeExplainer(model)
    sv = np.asarray(explainer.shap_values(Xn), dtype=np.float64).reshape(n, len(cols))
    base = float(np.asarray(explainer.expected_value).reshape(-1)[0])

    order = list(dict.fromkeys(layers_of_cols))  # first-appearance order breaks ties
    group = np.zeros((n, len(order)))
    index = {l: i for i, l in enumerate(order)}
    for j, l in enumerate(layers_of_cols):
        group[:, index[l]] += sv[:, j]
    raw = np.abs(group).mean(axis=0)
    signed = group.mean(axis=0)
    total = float(raw.sum())
    norm = raw / total if total > 0 else np.zeros_like(raw)
    rank = sorted(range(len(order)), key=lambda i: (-raw[i], i))
    scores = {order[i]: float(norm[i]) for i in rank}
    critical: list[str] = []
    acc = 0.0
    for i in rank:
        if raw[i] <= 0 or acc >= share - 1e-12:
            break
        critical.append(order[i])
        acc += float(norm[i])
    params = {k: v for k, v in model.get_params().items() if isinstance(v, (int, float, str, bool)) or v is None}
    return CriticalityResult(
        scores=scores, critical=tuple(critical), r2_holdout=r2_holdout, feature_names=tuple(cols), shap_values=sv,
        X=Xn, share=float(share), expected_value=base, raw_scores={order[i]: float(raw[i]) for i in rank},
        signed_scores={order[i]: float(signed[i]) for i in rank}, r2_train=r2_train, n_train=int(len(tr) if n_test >= 2 else n),
        n_holdout=int(n_test if n_test >= 2 else 0), seed=int(seed),
        surrogate={"class": type(model).__name__, **params})


# ---------------------------------------------------------------------------------------------------------------
# XAI-Gen side: per-layer features, sampled assignments and their measured accuracy drops
# ---------------------------------------------------------------------------------------------------------------

#: Static per-layer features (`layer_features`): position among the approximable layers, kind code
#: (`mapping.layer.KIND_CODE`: conv2d 0, depthwise 1, linear 2), MACs and weights per inference,
#: kernel height, channels, output pixels (out_h x out_w), stride, the layer's share of the exact
#: network's full-system energy and its PE utilization (analytical model), and statistics of the
#: layer's float input activations on the calibration batch (mean, std, max |x|, fraction of zeros).
LAYER_FEATURES = ("index", "kind", "macs", "weights", "kernel", "in_channels", "out_channels", "out_size", "stride",
                  "energy_share", "utilization", "act_mean", "act_std", "act_absmax", "act_sparsity")
#: The assigned multiplier (`multiplier_features`): EvoApprox error metrics (MAE and WCE as % of the
#: output range, MRE %), mean error (bias, in product LSBs) and energy per multiply (pJ).
MULTIPLIER_FEATURES = ("mult_mae_pct", "mult_mre_pct", "mult_wce_pct", "mult_bias", "mult_energy_pj")


def multiplier_features(mult: Any) -> dict[str, float]:
    """The feature values of one multiplier (anything with .metrics and .energy_pj, e.g. a library Multiplier)."""
    m = getattr(mult, "metrics", None)
    if m is None:
        raise TypeError(f"multiplier {getattr(mult, 'name', mult)!r}: expected a Multiplier with .metrics and .energy_pj")
    return {"mult_mae_pct": float(m.mae_pct), "mult_mre_pct": float(m.mre_pct), "mult_wce_pct": float(m.wce_pct),
            "mult_bias": float(m.bias), "mult_energy_pj": float(mult.energy_pj)}


def approximable(model) -> list[str]:
    """Names of the model's nn.Conv2d / nn.Linear modules (what `cosim.axtorch.approximate` replaces)."""
    from cosim.axtorch import approximable_layers

    return approximable_layers(model)


def activation_stats(model, x, layers: Sequence[str] | None = None) -> dict[str, dict[str, float]]:
    """Statistics of each conv/linear layer's float input on batch x: mean, std, max |x| and fraction of zeros."""
    import torch

    names = list(layers) if layers is not None else approximable(model)
    modules = dict(model.named_modules())
    missing = [n for n in names if n not in modules]
    if missing:
        raise KeyError(f"activation_stats: model has no module(s) {missing}")
    stats: dict[str, dict[str, float]] = {}
    handles = []

    def hook(name):
        def fn(_mod, args):
            t = args[0].detach().to(torch.float64)
            stats[name] = {"act_mean": float(t.mean()), "act_std": float(t.std()) if t.numel() > 1 else 0.0,
                           "act_absmax": float(t.abs().max()), "act_sparsity": float((t == 0).to(torch.float64).mean())}
        return fn

    for n in names:
        handles.append(modules[n].register_forward_pre_hook(hook(n)))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return stats


def layer_features(network, layers: Sequence[str] | None = None, *, report=None,
                   act_stats: Mapping[str, Mapping[str, float]] | None = None) -> dict[str, dict[str, float]]:
    """Static features (`LAYER_FEATURES`) of each approximable layer of a `mapping.Network`, in execution order.

    `layers` restricts (and orders) the layers; `report` (a `cosim.report.NetworkReport` of the exact network)
    gives energy share and utilization, `act_stats` (from `activation_stats`) the activation statistics; what is
    not given is NaN.
    """
    from mapping.layer import KIND_CODE

    by_name = {l.name: l for l in network.layers}
    if layers is None:
        layers = [l.name for l in network.layers if l.kind in ("conv2d", "depthwise", "linear")]
    missing = [n for n in layers if n not in by_name]
    if missing:
        raise KeyError(f"layer_features: network {network.name!r} has no layer(s) {missing}; "
                       f"its layers: {list(by_name)}")
    share: dict[str, float] = {}
    util: dict[str, float] = {}
    if report is not None:
        total = sum(r.total_energy_pj for r in report.layers)
        for r in report.layers:
            share[r.name] = r.total_energy_pj / total if total > 0 else float("nan")
            util[r.name] = float(r.utilization)
    out: dict[str, dict[str, float]] = {}
    for i, name in enumerate(layers):
        l = by_name[name]
        a = (act_stats or {}).get(name, {})
        out[name] = {
            "index": float(i), "kind": float(KIND_CODE[l.kind]), "macs": float(l.macs), "weights": float(l.weight_elems),
            "kernel": float(l.kernel_h), "in_channels": float(l.in_c), "out_channels": float(l.out_c),
            "out_size": float(l.out_h * l.out_w), "stride": float(l.stride_h),
            "energy_share": share.get(name, float("nan")), "utilization": util.get(name, float("nan")),
            **{k: float(a.get(k, float("nan"))) for k in ("act_mean", "act_std", "act_absmax", "act_sparsity")},
        }
    return out


def feature_frame(static: Mapping[str, Mapping[str, float]], assignments: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The wide X of `explain_layers`: one row per assignment, columns '<layer>.<feature>' (static + multiplier)."""
    layers = list(static)
    mult_cache: dict[int, dict[str, float]] = {}
    rows = []
    for i, a in enumerate(assignments):
        missing = [l for l in layers if l not in a]
        if missing:
            raise KeyError(f"feature_frame: assignment {i} has no multiplier for layer(s) {missing}")
        row: dict[str, float] = {}
        for l in layers:
            m = a[l]
            mf = mult_cache.get(id(m))
            if mf is None:
                mf = mult_cache[id(m)] = multiplier_features(m)
            for k, v in static[l].items():
                row[f"{l}.{k}"] = float(v)
            for k, v in mf.items():
                row[f"{l}.{k}"] = v
        rows.append(row)
    cols = [f"{l}.{k}" for l in layers for k in list(static[l]) + list(MULTIPLIER_FEATURES)]
    return pd.DataFrame(rows, columns=cols, dtype=np.float64)


def sample_assignments(layers: Sequence[str], candidates: Sequence[Any], n: int, *, exact: Any, seed: int = 0,
                       p_range: tuple[float, float] = (0.2, 1.0)) -> list[dict[str, Any]]:
    """n seeded random assignments {layer: multiplier}: each approximates a random subset of the layers.

    Per sample a density p is drawn uniformly from p_range and each layer independently gets a uniformly drawn
    candidate with probability p, else `exact`; at least one layer is approximated. Sparse and dense samples
    together let the surrogate separate the layers' effects.
    """
    if n < 0:
        raise ValueError(f"sample_assignments: n={n!r}: expected >= 0")
    if not candidates:
        raise ValueError("sample_assignments: no candidate multipliers")
    lo, hi = p_range
    if not 0.0 <= lo <= hi <= 1.0:
        raise ValueError(f"sample_assignments: p_range={p_range!r}: expected 0 <= low <= high <= 1")
    layers = list(layers)
    if not layers:
        raise ValueError("sample_assignments: no layers")
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        p = rng.uniform(lo, hi)
        mask = rng.random(len(layers)) < p
        if not mask.any():
            mask[rng.integers(len(layers))] = True
        pick = rng.integers(len(candidates), size=len(layers))
        out.append({l: (candidates[pick[j]] if mask[j] else exact) for j, l in enumerate(layers)})
    return out


@contextlib.contextmanager
def numba_threads(n: int | None) -> Iterator[None]:
    """Run the block with numba.set_num_threads(n) (capped at the pool size), restoring it after; None: unchanged.

    The functional kernels are parallel Numba loops; on a shared, busy machine their worker threads fight the
    other processes (and torch) for cores, and one thread is several times faster. Results do not depend on it.
    """
    if n is None:
        yield
        return
    import numba

    old = numba.get_num_threads()
    numba.set_num_threads(max(1, min(int(n), numba.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        numba.set_num_threads(old)


@dataclass(frozen=True)
class Evaluation:
    """Measured quality of one assignment: accuracy and robust accuracy, and their drops against the exact int8 net."""

    accuracy: float
    robust_accuracy: float  # nan when not measured
    accuracy_drop: float
    robust_drop: float
    seconds: float

    def to_dict(self) -> dict:
        """JSON-ready (nan -> None)."""
        return {k: _num(getattr(self, k)) for k in ("accuracy", "robust_accuracy", "accuracy_drop", "robust_drop",
                                                   "seconds")}


class AssignmentEvaluator:
    """Accuracy (and robust accuracy) of per-layer multiplier assignments of one float model, cached per assignment.

    Every approximable layer runs int8 (`cosim.axtorch.approximate`): layers an assignment does not name get
    `exact`. Activation ranges come from the float model on `calibration`, so they do not depend on the
    assignment. Robust accuracy (when `robust_eps` is given) is `nas.attacks.robust_accuracy` with `robust_attack`
    (white-box through the approximate network, straight-through gradients) on the first `robust_samples` inputs.
    Drops are measured against the all-exact assignment (`baseline`).
    """

    def __init__(self, model, x, y, *, calibration, exact: Any, robust_eps: float | None = None,
                 robust_attack: str = "fgsm", robust_samples: int = 200, backend: str = "auto",
                 threads: int | None = None, seed: int = 0, attack_kwargs: Mapping[str, Any] | None = None):
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"AssignmentEvaluator: {x.shape[0]} inputs but {y.shape[0]} labels")
        if int(y.shape[0]) == 0:
            raise ValueError("AssignmentEvaluator: empty evaluation set")
        self.model = model
        self.x, self.y = x, y
        self.calibration = calibration
        self.exact = exact
        self.layers = approximable(model)
        if not self.layers:
            raise ValueError("AssignmentEvaluator: the model has no nn.Conv2d / nn.Linear layer to approximate")
        self.robust_eps = robust_eps
        self.robust_attack = robust_attack
        self.robust_samples = int(robust_samples)
        self.backend = backend
        self.threads = threads
        self.seed = seed
        self.attack_kwargs = dict(attack_kwargs or {})
        self.cache: dict[tuple, Evaluation] = {}
        self.evaluations = 0  # measured (not cached) evaluations
        self.seconds = 0.0
        self._baseline: Evaluation | None = None

    def full(self, assignment: Mapping[str, Any]) -> dict[str, Any]:
        """The assignment completed with `exact` for every layer it does not name (errors on unknown layers)."""
        unknown = [k for k in assignment if k not in self.layers]
        if unknown:
            raise KeyError(f"assignment names layer(s) {unknown} that are not conv/linear layers of the model; "
                           f"layers: {self.layers}")
        return {l: assignment.get(l, self.exact) for l in self.layers}

    def key(self, assignment: Mapping[str, Any]) -> tuple:
        """Cache key: the multiplier identity per layer, in layer order."""
        full = self.full(assignment)
        return tuple(str(getattr(full[l], "key", getattr(full[l], "name", full[l]))) for l in self.layers)

    def network(self, assignment: Mapping[str, Any]):
        """The int8 approximate torch module of an assignment (calibrated)."""
        from cosim.axtorch import approximate

        return approximate(self.model, self.full(assignment), calibration=self.calibration, backend=self.backend)

    def measure(self, assignment: Mapping[str, Any], x, y, *, robust: bool = True) -> tuple[float, float]:
        """(accuracy, robust accuracy or nan) of an assignment on any (x, y), uncached."""
        from nas.attacks import robust_accuracy
        from nas.train import evaluate, torch_threads

        net = self.network(assignment)
        with torch_threads(self.threads), numba_threads(self.threads):
            acc = evaluate(net, x, y)
            rob = float("nan")
            if robust and self.robust_eps is not None and self.robust_samples > 0:
                k = min(self.robust_samples, int(y.shape[0]))
                res = robust_accuracy(net, x[:k], y[:k], [self.robust_eps], self.robust_attack, seed=self.seed,
                                      **self.attack_kwargs)
                rob = float(res[float(self.robust_eps)])
        return float(acc), rob

    @property
    def baseline(self) -> Evaluation:
        """The all-exact int8 network's evaluation (drops 0)."""
        if self._baseline is None:
            import time

            t0 = time.perf_counter()
            acc, rob = self.measure({}, self.x, self.y)
            dt = time.perf_counter() - t0
            self._baseline = Evaluation(acc, rob, 0.0, 0.0 if math.isfinite(rob) else float("nan"), dt)
            self.cache[self.key({})] = self._baseline
            self.evaluations += 1
            self.seconds += dt
        return self._baseline

    def evaluate(self, assignment: Mapping[str, Any]) -> Evaluation:
        """Measured (or cached) evaluation of an assignment on the evaluation set."""
        import time

        base = self.baseline
        k = self.key(assignment)
        hit = self.cache.get(k)
        if hit is not None:
            return hit
        t0 = time.perf_counter()
        acc, rob = self.measure(assignment, self.x, self.y)
        dt = time.perf_counter() - t0
        ev = Evaluation(acc, rob, base.accuracy - acc, base.robust_accuracy - rob, dt)
        self.cache[k] = ev
        self.evaluations += 1
        self.seconds += dt
        return ev

    def evaluate_many(self, assignments: Sequence[Mapping[str, Any]],
                      progress: Callable[[int, int], None] | None = None) -> list[Evaluation]:
        """Evaluate a list of assignments in order; progress(done, total) after each."""
        out = []
        for i, a in enumerate(assignments):
            out.append(self.evaluate(a))
            if progress is not None:
                progress(i + 1, len(assignments))
        return out
