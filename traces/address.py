"""SCALE-Sim-format address traces: CSV rows ``cycle, addr, addr, ...`` written as a stream.

SCALE-Sim 3.0.0 writes, per layer, IFMAP/FILTER/OFMAP_SRAM_TRACE.csv (one row per array cycle
before stalls: the cycle the row is served, then one column per array row or column holding
the address demanded there, -1 where nothing is) and IFMAP/FILTER/OFMAP_DRAM_TRACE.csv (one row
per DRAM transfer of B words: its cycle, then B addresses, -1 padded). Addresses carry
SCALE-Sim's offsets: ifmap from 0, filter from 10,000,000, ofmap from 20,000,000. No header.

This module only writes and sizes such files; what goes in them is `cosim.address_traces`'
business. Rows arrive as int64 matrices whose first column is the cycle; the file is written
under a temporary name and renamed when complete, so a reader never sees half a trace.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

SRAM_FILES = {"ifmap": "IFMAP_SRAM_TRACE.csv", "filter": "FILTER_SRAM_TRACE.csv", "ofmap": "OFMAP_SRAM_TRACE.csv"}
DRAM_FILES = {"ifmap": "IFMAP_DRAM_TRACE.csv", "filter": "FILTER_DRAM_TRACE.csv", "ofmap": "OFMAP_DRAM_TRACE.csv"}


def format_rows(rows: np.ndarray) -> bytes:
    """CSV text of an int64 matrix, one line per row, no header (SCALE-Sim's `%i` layout)."""
    rows = np.asarray(rows, dtype=np.int64)
    if rows.ndim != 2:
        raise ValueError(f"address-trace rows: expected a 2-D matrix, got shape {rows.shape}")
    if rows.shape[0] == 0:
        return b""
    # one vectorized pass: str() of every value, joined by commas and newlines
    text = rows.astype(str)
    lines = [",".join(r) for r in text.tolist()]
    return ("\n".join(lines) + "\n").encode("ascii")


class TraceWriter:
    """Stream rows into `path` (SCALE-Sim CSV layout); the file appears only when closed cleanly."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self._tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        self._f = os.fdopen(fd, "wb")
        self.rows = 0
        self.bytes = 0

    def write(self, rows: np.ndarray) -> None:
        """Append rows (first column: cycle)."""
        data = format_rows(rows)
        self._f.write(data)
        self.rows += int(np.shape(rows)[0])
        self.bytes += len(data)

    def close(self) -> Path:
        """Finish the file (rename into place); returns its path."""
        self._f.close()
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self._tmp, 0o666 & ~umask)
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Drop the partial file."""
        self._f.close()
        if os.path.exists(self._tmp):
            os.unlink(self._tmp)

    def __enter__(self) -> "TraceWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def row_bytes(width: int, max_address: int, max_cycle: int) -> int:
    """Upper bound on the bytes of one CSV row of `width` addresses (plus the cycle column)."""
    addr = max(len(str(int(max_address))), 2) + 1  # digits and the comma ("-1," is 3)
    return len(str(int(max_cycle))) + 2 + width * addr


def estimate_bytes(rows: int, width: int, max_address: int, max_cycle: int) -> int:
    """Upper bound on a trace file's size."""
    return int(rows) * row_bytes(width, max_address, max_cycle)
