"""Benchmark: the analytical model's two speed targets (issue 3).

1. ResNet-18 (ImageNet, 224x224) on `tpu_v4_like` (8 pods of 128x128), all layers, in under
   1 ms after warm-up: the vectorized core (`estimate_arrays`: split choice over 5 candidate
   splits x 8 pods, cycles, accesses, footprints, energy) and, for reference, the full report
   with per-layer dataclasses (`estimate`).
2. A batch of 10,000 (network, multiplier assignment) evaluations in under 1 s
   (`estimate_batch`): (a) 10,000 distinct random CNNs, each with its own per-layer
   assignment, on `tpu_v4_like` and on `edge_16x16`; (b) 100 networks x 100 assignments.
   Networks are given as `LayerArrays` (what a search space would emit); building them from
   `Layer` objects is timed separately.

Run: .venv/bin/python benchmarks/bench_analytical.py
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).parent))

import numpy as np  # noqa: E402
from common import write_result  # noqa: E402

from cosim.analytical import estimate, estimate_arrays, estimate_batch  # noqa: E402
from mapping import zoo  # noqa: E402
from mapping.hardware import PRESETS  # noqa: E402
from mapping.layer import Layer  # noqa: E402
from mapping.network import LayerArrays  # noqa: E402


def timed(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def random_cnn(rng: np.random.Generator) -> list[Layer]:
    """A random CIFAR-sized CNN: 3 stages of 2-8 convs (widths 8-128), pools, an FC head."""
    layers, h, c = [], 32, 3
    for s in range(3):
        w = int(rng.choice([8, 16, 24, 32, 48, 64, 96, 128]))
        for j in range(int(rng.integers(2, 9))):
            k = int(rng.choice([1, 3, 5]))
            if rng.random() < 0.2 and c > 1 and j > 0:
                layers.append(Layer(f"s{s}dw{j}", "depthwise", h, h, c, c, 3, 3, 1, 1, 1, 1, groups=c))
            else:
                layers.append(Layer(f"s{s}c{j}", "conv2d", h, h, c, w, k, k, 1, 1, k // 2, k // 2))
                c = w
        layers.append(Layer(f"s{s}pool", "pool", h, h, c, c, 2, 2, 2, 2, pool_op="max"))
        h //= 2
    layers.append(Layer("fc", "linear", 1, 1, c * h * h, 10))
    return layers


def main() -> None:
    res: dict = {"targets": {"resnet18_tpu_v4_like_s": 1e-3, "batch_10000_s": 1.0}}
    net = zoo.network("resnet18")
    arrays = net.arrays()
    for hw_name in ("tpu_v4_like",):
        hw = PRESETS[hw_name]
        for timing in ("scalesim", "pipelined"):
            estimate_arrays(arrays, hw, timing=timing)  # JIT warm-up (compiled kernels are cached on disk)
            core = timed(lambda: estimate_arrays(arrays, hw, timing=timing), 300)
            full = timed(lambda: estimate(net, hw, timing=timing), 100)
            res[f"resnet18_{hw_name}_{timing}"] = {
                "layers": len(net), "macs": net.macs,
                "core_median_s": statistics.median(core), "core_min_s": min(core),
                "full_report_median_s": statistics.median(full),
                "total_cycles": int(estimate(net, hw, timing=timing).total()["total_cycles"]),
            }

    rng = np.random.default_rng(0)
    t = time.perf_counter()
    layer_lists = [random_cnn(rng) for _ in range(10_000)]
    t_layers = time.perf_counter() - t
    t = time.perf_counter()
    nets = [LayerArrays.from_layers(ls) for ls in layer_lists]
    t_arrays = time.perf_counter() - t
    n_layers = sum(len(a) for a in nets)
    mult_pj = np.array([0.05, 0.08, 0.12, 0.2, 0.3])  # a library's worth of per-multiply energies
    assign = [rng.choice(mult_pj, len(a)) for a in nets]
    batch = {"networks": len(nets), "layers_total": n_layers, "build_layer_objects_s": t_layers,
             "layer_objects_to_arrays_s": t_arrays}
    for hw_name in ("tpu_v4_like", "edge_16x16"):
        hw = PRESETS[hw_name]
        estimate_batch(nets[:10], hw, assign[:10])  # warm-up
        runs = timed(lambda: estimate_batch(nets, hw, assign, timing="pipelined"), 3)
        batch[f"distinct_10000_{hw_name}_s"] = min(runs)
        batch[f"distinct_10000_{hw_name}_median_s"] = statistics.median(runs)
    hw = PRESETS["tpu_v4_like"]
    idx = np.repeat(np.arange(100), 100)
    assign100 = [rng.choice(mult_pj, len(nets[i])) for i in idx]
    runs = timed(lambda: estimate_batch(nets[:100], hw, assign100, network_index=idx, timing="pipelined"), 5)
    batch["100_networks_x_100_assignments_tpu_v4_like_s"] = min(runs)
    res["batch"] = batch
    path = write_result("analytical", res)
    print(path.read_text())


if __name__ == "__main__":
    main()
