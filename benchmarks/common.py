"""Shared benchmark helpers: machine/version metadata and atomic JSON results."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import sys
from importlib import metadata
from pathlib import Path

from traces.atomic import atomic_write

RESULTS = Path(__file__).parent / "results"


def machine_info() -> dict:
    """Machine, Python and key package versions, for every results file."""
    versions = {}
    for pkg in ("cosim", "numpy", "numba", "torch", "scipy", "scalesim", "shap", "pymoo"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "versions": versions,
    }


def write_result(name: str, data: dict) -> Path:
    """Write benchmarks/results/<name>.json atomically, with machine metadata."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"benchmark": name, "machine": machine_info(), **data}
    atomic_write(path, (json.dumps(payload, indent=2) + "\n").encode("utf-8"))
    return path
