"""Benchmark: exhaustive evaluation + characterization of one 8x8 netlist, and of the whole library.

Targets (issue 2): one netlist in under 20 ms after JIT warm-up; the whole built-in library
(build + simulate + characterize every design) in under 2 s.
Run: .venv/bin/python benchmarks/bench_multipliers.py
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).parent))

from common import write_result  # noqa: E402

from rtl_models.characterize import characterize  # noqa: E402
from rtl_models.designs import load_all  # noqa: E402
from rtl_models.library import characterize_builtins  # noqa: E402
from rtl_models.simulate import simulate  # noqa: E402


def timed(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    designs = load_all()
    spec = designs["mul8u_array"]
    nl = spec.build()
    characterize(nl, name=spec.name, library="cosim", version="1", signed=False)  # JIT warm-up
    comp = nl.compile()
    sim_only = timed(lambda: simulate(comp), 20)
    one = timed(lambda: characterize(nl, name=spec.name, library="cosim", version="1", signed=False), 20)
    per_design = {}
    for name, s in designs.items():
        n = s.build()
        per_design[name] = statistics.median(
            timed(lambda: characterize(n, name=name, library="cosim", version="1", signed=s.signed), 5)
        )
    whole = timed(characterize_builtins, 3)
    result = {
        "targets": {"one_netlist_s": 0.020, "whole_library_s": 2.0},
        "one_netlist": {
            "design": spec.name,
            "cells": len(nl.cells),
            "simulate_only_median_s": statistics.median(sim_only),
            "characterize_median_s": statistics.median(one),
            "characterize_min_s": min(one),
        },
        "slowest_design": max(per_design, key=per_design.get),
        "slowest_design_characterize_s": max(per_design.values()),
        "whole_library": {
            "designs": len(designs),
            "build_and_characterize_median_s": statistics.median(whole),
            "build_and_characterize_min_s": min(whole),
        },
    }
    result["meets_targets"] = (
        result["one_netlist"]["characterize_median_s"] < 0.020
        and result["whole_library"]["build_and_characterize_median_s"] < 2.0
    )
    path = write_result("multipliers", result)
    print(f"one netlist ({spec.name}, {len(nl.cells)} cells): simulate {1e3 * statistics.median(sim_only):.2f} ms, "
          f"characterize {1e3 * statistics.median(one):.2f} ms (target < 20 ms)")
    print(f"slowest design: {result['slowest_design']} {1e3 * result['slowest_design_characterize_s']:.2f} ms")
    print(f"whole library ({len(designs)} designs): {statistics.median(whole):.3f} s (target < 2 s)")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
