"""White-box L-infinity attacks (FGSM, PGD) and robust accuracy over several epsilons.

The attacks only call the module and differentiate the loss with respect to its input, so they work through
any module whose backward is defined, including the approximate int8 modules' straight-through gradients.
Inputs live in [0, 1] and adversarial examples are clipped back into it.
"""

from __future__ import annotations

import contextlib
import math
from typing import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nas.train import torch_threads

__all__ = ["ATTACKS", "Attack", "fgsm", "pgd", "robust_accuracy"]

Attack = Callable[..., torch.Tensor]


@contextlib.contextmanager
def _frozen_eval(model: nn.Module) -> Iterator[None]:
    """Eval mode, parameters not requiring grad (backward then skips weight gradients); both restored after."""
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, f in flags:
            p.requires_grad_(f)
        model.train(was_training)


def _check_eps(eps: float) -> float:
    eps = float(eps)
    if not (eps >= 0 and math.isfinite(eps)):
        raise ValueError(f"eps={eps!r}: expected a finite value >= 0 (inputs are in [0, 1])")
    return eps


def _input_grad(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Gradient of the summed cross-entropy with respect to the input (summed, so a sample's gradient is batch-free)."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = F.cross_entropy(model(x), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
    return grad


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """Fast gradient sign method: x + eps * sign(grad of the loss), clipped to [0, 1]."""
    eps = _check_eps(eps)
    if eps == 0:
        return x.detach().clone()
    with _frozen_eval(model):
        grad = _input_grad(model, x, y)
    return (x.detach() + eps * grad.sign()).clamp_(0.0, 1.0)


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    *,
    steps: int = 10,
    step_size: float | None = None,
    random_start: bool = True,
    seed: int | torch.Generator = 0,
) -> torch.Tensor:
    """Projected gradient descent in the L-infinity ball of radius eps around x (Madry et al.), clipped to [0, 1].

    step_size defaults to 2.5 * eps / steps; random_start draws a uniform start in the ball from `seed` (an int
    or a torch.Generator to continue). Each step: x' = clip(x' + step * sign(grad)), then project onto the ball,
    the same order as the adversarial-robustness-toolbox.
    """
    eps = _check_eps(eps)
    if steps < 1:
        raise ValueError(f"steps={steps!r}: expected >= 1")
    step = 2.5 * eps / steps if step_size is None else float(step_size)
    if not (step >= 0 and math.isfinite(step)):
        raise ValueError(f"step_size={step_size!r}: expected a finite value >= 0")
    x0 = x.detach()
    if eps == 0:
        return x0.clone()
    if random_start:
        gen = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(int(seed))
        noise = torch.rand(x0.shape, generator=gen, dtype=x0.dtype) * (2 * eps) - eps
        x_adv = (x0 + noise).clamp_(0.0, 1.0)
    else:
        x_adv = x0.clone()
    with _frozen_eval(model):
        for _ in range(steps):
            grad = _input_grad(model, x_adv, y)
            x_adv = (x_adv + step * grad.sign()).clamp_(0.0, 1.0)
            x_adv = x0 + (x_adv - x0).clamp_(-eps, eps)
    # x0 and the clipped point are both in [0, 1], so this only removes rounding.
    return x_adv.clamp_(0.0, 1.0)


ATTACKS: dict[str, Attack] = {"fgsm": fgsm, "pgd": pgd}


def robust_accuracy(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps_list: Sequence[float],
    attack: str | Attack = "pgd",
    *,
    batch_size: int = 256,
    threads: int | None = None,
    seed: int = 0,
    **attack_kwargs,
) -> dict[float, float]:
    """Accuracy on adversarial examples of (x, y) at each eps, {eps: accuracy in [0, 1]}; eps 0 is clean accuracy.

    `attack` is "fgsm", "pgd" or a callable attack(model, x, y, eps, **attack_kwargs) -> x_adv. PGD's random
    start draws from one generator per eps seeded with `seed`, so results do not depend on the eps order.
    """
    if isinstance(attack, str):
        if attack not in ATTACKS:
            raise ValueError(f"attack={attack!r}: expected one of {', '.join(ATTACKS)} or a callable")
        fn = ATTACKS[attack]
    else:
        fn = attack
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"robust_accuracy: {x.shape[0]} inputs but {y.shape[0]} labels")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r}: expected >= 1")
    n = int(y.shape[0])
    eps_values = [_check_eps(e) for e in eps_list]
    result: dict[float, float] = {}
    with torch_threads(threads):
        for eps in eps_values:
            if eps in result:
                continue
            if n == 0:
                result[eps] = float("nan")
                continue
            kwargs = dict(attack_kwargs)
            if fn is pgd and kwargs.get("random_start", True):
                kwargs["seed"] = torch.Generator().manual_seed(seed)
            correct = 0
            for i in range(0, n, batch_size):
                xb, yb = x[i : i + batch_size], y[i : i + batch_size]
                xa = xb if eps == 0 else fn(model, xb, yb, eps, **kwargs)
                with _frozen_eval(model), torch.no_grad():
                    correct += int((model(xa).argmax(dim=1) == yb).sum())
            result[eps] = correct / n
    return result
