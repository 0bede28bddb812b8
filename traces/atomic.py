"""Atomic file writes: a temporary file in the target's directory, then a rename.

A reader never sees a half-written file and a failed write leaves the old one in place. The
one copy for `traces`, `cosim` and `nas` (which may import `traces`); `mapping` and
`rtl_models` are leaves beside `traces` and keep their own (see `mapping/_atomic.py`).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same directory and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        umask = os.umask(0)  # mkstemp makes 0600 files; give the usual permissions
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """`atomic_write` of UTF-8 text."""
    atomic_write(path, text.encode("utf-8"))


def atomic_savefig(fig, path: str | Path, **savefig_kw) -> Path:
    """Render a matplotlib figure (format from the suffix, PNG by default) and write it atomically; closes it."""
    import io

    import matplotlib.pyplot as plt

    path = Path(path)
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format=path.suffix.lstrip(".") or "png", **savefig_kw)
    finally:
        plt.close(fig)
    atomic_write(path, buf.getvalue())
    return path
