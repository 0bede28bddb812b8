"""The multiplier library: built-in designs plus imported ones, cached on disk, queryable.

Cache layout (under `cache_dir()`, default `$COSIM_CACHE_DIR` or `~/.cache/cosim`):

    multipliers/builtin-<fingerprint>/<name>.npz   built-in designs, keyed by a fingerprint of
                                                   the design sources and the cost table
    multipliers/imported/<library>/<version>/<name>-<hash12>.npz   imported designs

Each `.npz` holds the table and the record (JSON) of one multiplier. Writes go to a temporary
directory first and are renamed into place, so an interrupted import leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from .metrics import ErrorMetrics
from .multiplier import Multiplier, table_sha256

BUILTIN_LIBRARY = "cosim"
BUILTIN_VERSION = "1"  # bump when a built-in design's function changes

ERROR_METRICS = {"mae": "mae_pct", "mre": "mre_pct", "wce": "wce_pct", "ep": "ep_pct", "wcre": "wcre_pct", "mse": "mse"}
COST_METRICS = {"power": "power_mw", "area": "area_um2", "delay": "delay_ns", "energy": "energy_pj"}


class LibraryError(KeyError):
    """A lookup that matched no multiplier, or more than one."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0]) if self.args else ""


def cache_dir() -> Path:
    """Root of cosim's on-disk cache."""
    env = os.environ.get("COSIM_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "cosim"


# -- (de)serialization --------------------------------------------------------------------
def _to_npz_bytes(m: Multiplier) -> bytes:
    import io

    buf = io.BytesIO()
    rec = m.record()
    rec["published"] = dict(m.published)
    rec["disagreements"] = list(m.disagreements)
    np.savez_compressed(buf, table=m.table, record=np.array(json.dumps(rec)))
    return buf.getvalue()


def _from_npz(path: Path) -> Multiplier:
    with np.load(path, allow_pickle=False) as z:
        table = z["table"]
        rec = json.loads(str(z["record"]))
    metrics = ErrorMetrics(**{k: rec[k] for k in ErrorMetrics.__dataclass_fields__})
    m = Multiplier(
        name=rec["name"],
        library=rec["library"],
        version=rec["version"],
        signed=bool(rec["signed"]),
        table=table,
        sha256=rec["sha256"],
        metrics=metrics,
        area_um2=rec["area_um2"],
        delay_ns=rec["delay_ns"],
        power_mw=rec["power_mw"],
        energy_pj=rec["energy_pj"],
        family=rec.get("family", ""),
        params=rec.get("params", {}),
        description=rec.get("description", ""),
        source=rec.get("source", ""),
        cells=rec.get("cells", {}),
        published=rec.get("published", {}),
        disagreements=tuple(rec.get("disagreements", ())),
        cost_model=rec.get("cost_model", ""),
    )
    if table_sha256(m.table, m.signed) != m.sha256:
        raise ValueError(f"{path}: table does not match its recorded sha256 (corrupt cache file)")
    return m


def save_multipliers(multipliers: Iterable[Multiplier], directory: Path, name_fn: Callable[[Multiplier], str]) -> list[Path]:
    """Write multipliers into `directory` all-or-nothing (a temp dir renamed file by file)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".incoming-", dir=directory))
    written: list[Path] = []
    try:
        staged = []
        for m in multipliers:
            fname = name_fn(m)
            (tmp / fname).write_bytes(_to_npz_bytes(m))
            staged.append(fname)
        for fname in staged:
            os.replace(tmp / fname, directory / fname)
            written.append(directory / fname)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return written


# -- built-ins ----------------------------------------------------------------------------
def _builtin_fingerprint() -> str:
    here = Path(__file__).parent
    h = hashlib.sha256(BUILTIN_VERSION.encode())
    files = sorted(here.glob("designs/*.py")) + [here / f for f in ("builder.py", "costs.py", "simulate.py", "netlist.py", "metrics.py", "characterize.py", "multiplier.py")]
    for f in files:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def characterize_builtins(progress: Callable[[str], None] | None = None) -> list[Multiplier]:
    """Build, simulate and characterize every built-in design (about 10 ms each)."""
    from .characterize import characterize
    from .designs import load_all

    out = []
    for spec in load_all().values():
        if progress:
            progress(spec.name)
        out.append(
            characterize(
                spec.build(),
                name=spec.name,
                library=BUILTIN_LIBRARY,
                version=BUILTIN_VERSION,
                signed=spec.signed,
                family=spec.family,
                params=spec.params,
                description=spec.description,
                source="built-in",
            )
        )
    return out


def load_builtins(use_cache: bool = True) -> list[Multiplier]:
    """Built-in multipliers, from the cache when its fingerprint matches the sources."""
    if not use_cache:
        return characterize_builtins()
    d = cache_dir() / "multipliers" / f"builtin-{_builtin_fingerprint()}"
    files = sorted(d.glob("*.npz")) if d.is_dir() else []
    if files:
        try:
            return [_from_npz(f) for f in files]
        except (ValueError, KeyError, OSError):
            shutil.rmtree(d, ignore_errors=True)
    mults = characterize_builtins()
    try:
        save_multipliers(mults, d, lambda m: f"{m.name}.npz")
    except OSError:  # a read-only home is no reason to fail
        pass
    return mults


def imported_dir() -> Path:
    """Where imported multipliers are stored."""
    return cache_dir() / "multipliers" / "imported"


def load_imported() -> list[Multiplier]:
    """Every imported multiplier in the cache."""
    root = imported_dir()
    if not root.is_dir():
        return []
    return [_from_npz(f) for f in sorted(root.glob("*/*/*.npz"))]


def stale_cost_models(multipliers: Iterable[Multiplier]) -> list[Multiplier]:
    """Multipliers whose costs came from another cost model than today's (re-import to refresh)."""
    from .costs import cost_model_id

    current = cost_model_id()
    return [m for m in multipliers if m.cost_model != current]


def store_imported(multipliers: list[Multiplier]) -> list[Path]:
    """Add imported multipliers to the cache, all-or-nothing per (library, version) group."""
    groups: dict[tuple[str, str], list[Multiplier]] = {}
    for m in multipliers:
        groups.setdefault((m.library, m.version), []).append(m)
    paths: list[Path] = []
    for (lib, ver), ms in groups.items():
        safe = lambda s: "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in s)  # noqa: E731
        paths += save_multipliers(ms, imported_dir() / safe(lib) / safe(ver), lambda m: f"{safe(m.name)}-{m.sha256[:12]}.npz")
    return paths


# -- the queryable library ------------------------------------------------------------------
def pareto_front(points: np.ndarray) -> np.ndarray:
    """Indices of the non-dominated rows of `points` (every column minimized)."""
    pts = np.asarray(points, dtype=float)
    keep = []
    for i in range(len(pts)):
        dominated = np.all(pts <= pts[i], axis=1) & np.any(pts < pts[i], axis=1)
        if not dominated.any():
            keep.append(i)
    return np.asarray(keep, dtype=np.int64)


class MultiplierLibrary:
    """An ordered, queryable collection of multipliers."""

    def __init__(self, multipliers: Iterable[Multiplier]):
        self._items: list[Multiplier] = []
        seen: set[str] = set()
        for m in multipliers:
            if m.key not in seen:
                seen.add(m.key)
                self._items.append(m)

    @classmethod
    def default(cls, include_imported: bool = True) -> "MultiplierLibrary":
        """Built-in designs (cached) plus, by default, everything imported into the cache."""
        items = load_builtins()
        if include_imported:
            items = items + load_imported()
        return cls(items)

    def __iter__(self) -> Iterator[Multiplier]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: str) -> bool:
        try:
            self.get(key)
            return True
        except LibraryError:
            return False

    @property
    def names(self) -> list[str]:
        """Names in library order."""
        return [m.name for m in self._items]

    def get(self, key: str) -> Multiplier:
        """Look up by name, by `library/version/name`, by full key, or by a sha256 prefix (>= 8 hex)."""
        key = key.strip()
        matches = [m for m in self._items if key in (m.name, m.key, f"{m.library}/{m.version}/{m.name}")]
        if not matches and len(key) >= 8 and all(c in "0123456789abcdef" for c in key.lower()):
            matches = [m for m in self._items if m.sha256.startswith(key.lower())]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            close = [n for n in self.names if key.lower() in n.lower()][:8]
            hint = f"; similar: {', '.join(close)}" if close else ""
            raise LibraryError(f"no multiplier named {key!r} in the library ({len(self)} multipliers){hint}")
        raise LibraryError(
            f"{key!r} is ambiguous ({len(matches)} matches: {', '.join(m.key for m in matches)}); "
            "use a full key (library/version/name@hash)"
        )

    def filter(
        self,
        signed: bool | None = None,
        library: str | None = None,
        family: str | None = None,
        predicate: Callable[[Multiplier], bool] | None = None,
        **max_values: float,
    ) -> "MultiplierLibrary":
        """A sub-library; `max_values` bound record fields, e.g. mre_pct=5.0, power_mw=0.2."""
        out = []
        for m in self._items:
            if signed is not None and m.signed != signed:
                continue
            if library is not None and m.library != library:
                continue
            if family is not None and m.family != family:
                continue
            if predicate is not None and not predicate(m):
                continue
            rec = m.record()
            if any(rec[k] > v for k, v in max_values.items()):
                continue
            out.append(m)
        return MultiplierLibrary(out)

    def pareto(self, error: str = "mre", cost: str = "power") -> "MultiplierLibrary":
        """The non-dominated subset on (cost, error), sorted by cost; e.g. pareto("mre", "power")."""
        if error not in ERROR_METRICS:
            raise ValueError(f"pareto error metric must be one of {', '.join(ERROR_METRICS)}, got {error!r}")
        if cost not in COST_METRICS:
            raise ValueError(f"pareto cost must be one of {', '.join(COST_METRICS)}, got {cost!r}")
        if not self._items:
            return MultiplierLibrary([])
        recs = [m.record() for m in self._items]
        pts = np.array([[r[COST_METRICS[cost]], r[ERROR_METRICS[error]]] for r in recs])
        idx = pareto_front(pts)
        idx = sorted(idx, key=lambda i: (pts[i, 0], pts[i, 1]))
        return MultiplierLibrary(self._items[i] for i in idx)

    def records(self) -> list[dict]:
        """JSON-ready records, one per multiplier."""
        return [m.record() for m in self._items]
