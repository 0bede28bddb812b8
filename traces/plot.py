"""PNG timeline of a utilization trace: one band per pod, busy / stalled / idle per window.

Each pod is a horizontal band whose height splits, window by window, into the busy (green),
stalled (red) and idle (grey) share of that window's cycles; PE utilization is drawn as a
black line in the band; layer boundaries are vertical lines, labelled when there is room.
Uses matplotlib's Agg backend (no display needed) and writes the file atomically.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .atomic import atomic_savefig
from .utilization import UtilizationTrace

COLORS = {"busy": "#2ca02c", "stall": "#d62728", "idle": "#d9d9d9"}


def plot_timeline(util: UtilizationTrace, path: str | Path, *, title: str | None = None, max_points: int = 4000,
                  dpi: int = 110) -> Path:
    """Draw the timeline to `path` (PNG); windows are merged to at most `max_points` per pod."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    m = util.meta
    pods, nw, n = util.pods, util.n_windows, util.window_cycles
    factor = max(1, -(-nw // max_points))
    pad = (-nw) % factor

    def merge(a):
        return np.pad(a, [(0, 0)] * (a.ndim - 1) + [(0, pad)]).reshape(*a.shape[:-1], -1, factor).sum(axis=-1)

    L = merge(util["window_lengths"]).astype(float)
    safe = np.where(L > 0, L, 1.0)
    busy, stall = merge(util["busy"]) / safe, merge(util["stall"]) / safe
    pe = merge(util["macs"]) / (safe * int(m["rows"]) * int(m["cols"]))
    x = np.arange(len(L)) * factor * n
    x_edges = np.append(x, x[-1] + L[-1] if len(x) else 0)
    height = max(2.5, 0.55 * pods + 1.4)
    fig, ax = plt.subplots(figsize=(12, height), dpi=dpi)
    for q in range(pods):
        y0 = pods - 1 - q
        b, s = 0.9 * busy[q], 0.9 * stall[q]  # bands 0.9 high, a gap between pods
        ax.stairs(np.full(len(b), y0 + 0.9), x_edges, baseline=y0 + b + s, fill=True, color=COLORS["idle"], lw=0)
        ax.stairs(y0 + b + s, x_edges, baseline=y0 + b, fill=True, color=COLORS["stall"], lw=0)
        ax.stairs(y0 + b, x_edges, baseline=y0, fill=True, color=COLORS["busy"], lw=0)
        ax.stairs(y0 + 0.9 * pe[q], x_edges, baseline=None, color="black", lw=0.6)
    total = int(m["total_cycles"])
    layers = m["layers"]
    label_every = max(1, len(layers) // 24)
    for i, rec in enumerate(layers):
        ax.axvline(rec["start_cycle"], color="#555555", lw=0.4, alpha=0.6)
        if i % label_every == 0 and total:
            ax.text(rec["start_cycle"], pods + 0.05, rec["name"], rotation=60, fontsize=6, ha="left", va="bottom")
    ax.set_xlim(0, max(total, 1))
    ax.set_ylim(0, pods + 0.02 + (1.6 if layers else 0.2))
    ax.set_yticks([pods - 1 - q + 0.45 for q in range(pods)], [f"pod {q}" for q in range(pods)])
    ax.set_xlabel(f"cycle (window {n} cycles{f', {factor} windows merged' if factor > 1 else ''}; "
                  f"{m['clock_mhz']:g} MHz)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=COLORS[k]) for k in ("busy", "stall", "idle")]
    handles.append(plt.Line2D([0], [0], color="black", lw=0.8))
    ax.legend(handles, ["busy", "stalled", "idle", "PE utilization"], loc="lower right", fontsize=7, ncol=4,
              framealpha=0.9, bbox_to_anchor=(1.0, 1.0), borderaxespad=0.2)
    ax.set_title(title or f"{m['network']} on {m['hardware']} ({m['dataflow'].upper()}, {m['timing']} timing)",
                 fontsize=9, loc="left")
    fig.tight_layout()
    path = atomic_savefig(fig, path)
    return path
