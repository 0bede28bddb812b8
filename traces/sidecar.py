"""NAME.json + NAME.npz pairs: the on-disk form of every trace in `traces` (metadata + int64 arrays)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from .atomic import atomic_write


def pair_paths(path: str | Path) -> tuple[Path, Path]:
    """(NAME.json, NAME.npz) for `path` given with or without either suffix."""
    p = Path(path)
    stem = p.with_suffix("") if p.suffix in (".json", ".npz") else p
    return stem.with_name(stem.name + ".json"), stem.with_name(stem.name + ".npz")


def write_pair(path: str | Path, meta: dict, arrays: dict) -> tuple[Path, Path]:
    """Write the arrays (as int64) and then the sidecar, each atomically; returns (json, npz)."""
    js, npz = pair_paths(path)
    buf = io.BytesIO()
    np.savez(buf, **{k: np.ascontiguousarray(v, dtype=np.int64) for k, v in arrays.items()})
    atomic_write(npz, buf.getvalue())
    atomic_write(js, (json.dumps(meta, indent=1) + "\n").encode("utf-8"))
    return js, npz


def read_pair(path: str | Path, what: str, error: type[Exception]) -> tuple[dict, dict, Path]:
    """(meta, arrays, json path) of a pair; a missing or unreadable file raises `error` naming it and `what`."""
    js, npz = pair_paths(path)
    try:
        meta = json.loads(js.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{js}: no such {what} sidecar") from None
    except json.JSONDecodeError as exc:
        raise error(f"{js}: not valid JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise error(f"{js}: expected a JSON object, got {type(meta).__name__}")
    try:
        with np.load(npz, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise error(f"{npz}: no such {what} array file") from None
    except (ValueError, OSError) as exc:
        raise error(f"{npz}: not a readable .npz: {exc}") from None
    return meta, arrays, js
