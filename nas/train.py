"""Short, seeded training of small torch models on CPU, accuracy evaluation and weight inheritance."""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import nn

__all__ = [
    "InheritReport",
    "TrainConfig",
    "TrainResult",
    "evaluate",
    "inherit_weights",
    "predict",
    "torch_threads",
    "train",
]


@dataclass(frozen=True)
class TrainConfig:
    """Training settings: epochs, an optional wall-clock budget (seconds), optimizer and threads."""

    epochs: int = 1
    time_budget_s: float | None = None
    batch_size: int = 64
    lr: float = 1e-3
    optimizer: str = "adam"  # "adam" or "sgd"
    momentum: float = 0.9  # sgd only
    weight_decay: float = 0.0
    seed: int = 0
    threads: int | None = 1  # torch.set_num_threads for the duration; None leaves it alone

    def __post_init__(self) -> None:
        if self.epochs < 0:
            raise ValueError(f"TrainConfig.epochs={self.epochs!r}: expected >= 0")
        if self.time_budget_s is not None and not self.time_budget_s > 0:
            raise ValueError(f"TrainConfig.time_budget_s={self.time_budget_s!r}: expected > 0 or None")
        if self.batch_size < 1:
            raise ValueError(f"TrainConfig.batch_size={self.batch_size!r}: expected >= 1")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"TrainConfig.lr={self.lr!r}: expected a positive number")
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"TrainConfig.optimizer={self.optimizer!r}: expected 'adam' or 'sgd'")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"TrainConfig.threads={self.threads!r}: expected >= 1 or None")


@dataclass(frozen=True)
class TrainResult:
    """What a training run did: steps, completed epochs, mean loss per epoch, wall time, budget stop."""

    steps: int
    epochs_completed: int
    epoch_losses: tuple[float, ...]
    wall_s: float
    stopped_by_budget: bool

    @property
    def final_loss(self) -> float:
        """Mean training loss of the last (possibly partial) epoch; nan if nothing ran."""
        return self.epoch_losses[-1] if self.epoch_losses else float("nan")


@dataclass(frozen=True)
class InheritReport:
    """Which state-dict entries weight inheritance copied, partially copied, or skipped."""

    copied: tuple[str, ...]
    partial: tuple[str, ...]
    skipped: tuple[str, ...]


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with torch.set_num_threads(n), restoring the previous count; None leaves it alone."""
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _progress(quiet: bool):
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        TextColumn("{task.fields[info]}"),
        disable=quiet,
        transient=True,
    )


def train(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    config: TrainConfig = TrainConfig(),
    *,
    quiet: bool = False,
) -> TrainResult:
    """Train `model` in place on (x, y) with cross-entropy; seeded, so equal inputs give equal weights.

    Stops after config.epochs or once config.time_budget_s has elapsed (checked after every batch; a budget stop
    makes the result depend on machine speed). The global torch RNG is forked, so callers' streams are untouched.
    """
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"train: {x.shape[0]} inputs but {y.shape[0]} labels")
    n = int(x.shape[0])
    batches_per_epoch = math.ceil(n / config.batch_size) if n else 0
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    else:
        opt = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(config.seed)
    losses: list[float] = []
    steps = epochs_done = 0
    out_of_time = False
    was_training = model.training
    t0 = time.perf_counter()
    with torch_threads(config.threads), torch.random.fork_rng(devices=[]), _progress(quiet) as bar:
        torch.manual_seed(config.seed)  # dropout and friends draw from the global stream
        task = bar.add_task("train", total=config.epochs * batches_per_epoch, info="")
        model.train()
        for epoch in range(config.epochs):
            order = torch.randperm(n, generator=gen)
            total, count, done = 0.0, 0, 0
            for b in range(batches_per_epoch):
                idx = order[b * config.batch_size : (b + 1) * config.batch_size]
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(model(x[idx]), y[idx])
                loss.backward()
                opt.step()
                steps += 1
                done += 1
                total += float(loss.detach()) * idx.numel()
                count += idx.numel()
                bar.update(task, advance=1, info=f"epoch {epoch + 1} loss {total / count:.4f}")
                if config.time_budget_s is not None and time.perf_counter() - t0 >= config.time_budget_s:
                    out_of_time = True
                    break
            if count:
                losses.append(total / count)
            epochs_done += done == batches_per_epoch
            if out_of_time:
                break
    model.train(was_training)
    return TrainResult(
        steps=steps,
        epochs_completed=epochs_done,
        epoch_losses=tuple(losses),
        wall_s=time.perf_counter() - t0,
        stopped_by_budget=out_of_time and steps < config.epochs * batches_per_epoch,
    )


def predict(
    model: nn.Module, x: torch.Tensor, *, batch_size: int = 512, threads: int | None = None
) -> torch.Tensor:
    """Logits of `model` (in eval mode, no gradients) on x, batched."""
    was_training = model.training
    model.eval()
    outs = []
    with torch_threads(threads), torch.no_grad():
        for i in range(0, int(x.shape[0]), batch_size):
            outs.append(model(x[i : i + batch_size]))
    model.train(was_training)
    if not outs:
        return torch.zeros((0, 0))
    return torch.cat(outs)


def evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 512, threads: int | None = None
) -> float:
    """Top-1 accuracy of `model` on (x, y), in [0, 1]; nan for an empty set."""
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"evaluate: {x.shape[0]} inputs but {y.shape[0]} labels")
    if int(y.shape[0]) == 0:
        return float("nan")
    logits = predict(model, x, batch_size=batch_size, threads=threads)
    return int((logits.argmax(dim=1) == y).sum()) / int(y.shape[0])


def inherit_weights(child: nn.Module, parent: nn.Module, *, partial: bool = False) -> InheritReport:
    """Copy parameters and buffers from `parent` into `child` where names and shapes match.

    With partial=True an entry whose shape differs but has the same rank gets the overlapping leading block
    (e.g. the first 8 of 16 filters), the usual trick when a mutated child is wider or narrower than its parent.
    """
    src = parent.state_dict()
    dst = child.state_dict()
    copied, partly, skipped = [], [], []
    with torch.no_grad():
        for name, t in dst.items():
            s = src.get(name)
            if s is None or s.dtype != t.dtype:
                skipped.append(name)
            elif s.shape == t.shape:
                t.copy_(s)
                copied.append(name)
            elif partial and s.dim() == t.dim() and s.dim() > 0:
                block = tuple(slice(0, min(a, b)) for a, b in zip(s.shape, t.shape))
                t[block].copy_(s[block])
                partly.append(name)
            else:
                skipped.append(name)
    # state_dict() tensors share storage with the module, so the copies above already landed in `child`.
    return InheritReport(copied=tuple(copied), partial=tuple(partly), skipped=tuple(skipped))
