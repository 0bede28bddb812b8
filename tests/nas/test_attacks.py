"""FGSM / PGD: bounds, seeding, monotone robust accuracy, straight-through gradients, and a cross-check with ART."""

import numpy as np
import pytest
import torch
from torch import nn

from nas.attacks import fgsm, pgd, robust_accuracy
from nas.data import load_dataset
from nas.train import TrainConfig, evaluate, train


@pytest.fixture(scope="module")
def setup():
    ds = load_dataset("digits", seed=0)
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 64, 32), nn.ReLU(), nn.Linear(32, 10)
    )
    train(model, ds.train.x, ds.train.y, TrainConfig(epochs=4, batch_size=32, lr=3e-3), quiet=True)
    x, y = ds.test.x[:200], ds.test.y[:200]
    assert evaluate(model, x, y) > 0.85
    return model, x, y


EPS = [0.0, 0.02, 0.05, 0.1, 0.2, 0.3]


@pytest.mark.parametrize("attack", ["fgsm", "pgd"])
def test_robust_accuracy_decreases_with_eps(setup, attack):
    model, x, y = setup
    clean = evaluate(model, x, y)
    ra = robust_accuracy(model, x, y, EPS, attack=attack, batch_size=64)
    assert list(ra) == EPS
    assert ra[0.0] == clean
    accs = [ra[e] for e in EPS]
    assert all(a >= b for a, b in zip(accs, accs[1:])), accs
    assert accs[-1] < 0.5 * clean


def test_pgd_at_least_as_strong_as_fgsm(setup):
    model, x, y = setup
    ra_f = robust_accuracy(model, x, y, [0.05, 0.1], attack="fgsm")
    ra_p = robust_accuracy(model, x, y, [0.05, 0.1], attack="pgd", steps=10)
    assert ra_p[0.05] <= ra_f[0.05] and ra_p[0.1] <= ra_f[0.1]


@pytest.mark.parametrize("attack", [fgsm, pgd])
def test_perturbation_bounded_clipped_and_model_untouched(setup, attack):
    model, x, y = setup
    model.train()
    model.zero_grad(set_to_none=True)
    flags = [p.requires_grad for p in model.parameters()]
    eps = 0.1
    xa = attack(model, x, y, eps)
    assert xa.shape == x.shape and not xa.requires_grad
    assert float((xa - x).abs().max()) <= eps + 1e-6
    assert float(xa.min()) >= 0.0 and float(xa.max()) <= 1.0
    assert float((xa - x).abs().max()) > 0.5 * eps
    assert model.training and [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(attack(model, x, y, 0.0), x)


def test_pgd_seeding(setup):
    model, x, y = setup
    a = pgd(model, x, y, 0.1, steps=3, seed=1)
    b = pgd(model, x, y, 0.1, steps=3, seed=1)
    c = pgd(model, x, y, 0.1, steps=3, seed=2)
    assert torch.equal(a, b) and not torch.equal(a, c)
    ra1 = robust_accuracy(model, x, y, [0.1, 0.05], steps=3, seed=4)
    ra2 = robust_accuracy(model, x, y, [0.05, 0.1], steps=3, seed=4)
    assert ra1 == ra2  # independent of eps order


def test_errors(setup):
    model, x, y = setup
    with pytest.raises(ValueError, match="eps=-0.1"):
        fgsm(model, x, y, -0.1)
    with pytest.raises(ValueError, match="steps=0"):
        pgd(model, x, y, 0.1, steps=0)
    with pytest.raises(ValueError, match="attack='cw'"):
        robust_accuracy(model, x, y, [0.1], attack="cw")


class _RoundSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return torch.round(x * 255) / 255

    @staticmethod
    def backward(ctx, g):
        return g


class Quantized(nn.Module):
    """Input quantized to 8 bits: a piecewise-constant forward whose true gradient is zero almost everywhere."""

    def __init__(self, inner, ste):
        super().__init__()
        self.inner, self.ste = inner, ste

    def forward(self, x):
        xq = _RoundSTE.apply(x) if self.ste else torch.round(x * 255) / 255
        return self.inner(xq)


def test_attack_goes_through_straight_through_gradients(setup):
    model, x, y = setup
    clean = evaluate(Quantized(model, True), x, y)
    with_ste = robust_accuracy(Quantized(model, True), x, y, [0.1], attack="fgsm")[0.1]
    without = robust_accuracy(Quantized(model, False), x, y, [0.1], attack="fgsm")[0.1]
    assert with_ste < clean - 0.2
    assert without == clean  # zero gradient: sign 0, no perturbation (gradient masking)


# --- cross-check against the adversarial-robustness-toolbox (dev-only dependency) --------------------------------


def _art_classifier(model):
    pytest.importorskip("art")
    from art.estimators.classification import PyTorchClassifier

    return PyTorchClassifier(
        model=model, loss=nn.CrossEntropyLoss(), input_shape=(1, 8, 8), nb_classes=10, clip_values=(0.0, 1.0)
    )


def test_pgd_matches_art(setup):
    from_art = pytest.importorskip("art.attacks.evasion")
    model, x, y = setup
    x, y = x[:100], y[:100]
    eps, step, steps = 0.1, 0.02, 10
    art_pgd = from_art.ProjectedGradientDescent(
        _art_classifier(model), norm=np.inf, eps=eps, eps_step=step, max_iter=steps, num_random_init=0,
        batch_size=100, verbose=False,
    )
    x_art = torch.from_numpy(art_pgd.generate(x.numpy(), y=y.numpy()))
    x_ours = pgd(model, x, y, eps, steps=steps, step_size=step, random_start=False)
    diff = (x_art - x_ours).abs()
    assert float(diff.max()) <= 1e-6
    assert float((diff == 0).float().mean()) > 0.999
    with torch.no_grad():
        assert torch.equal(model(x_art).argmax(1), model(x_ours).argmax(1))
    ra = robust_accuracy(model, x, y, [eps], steps=steps, step_size=step, random_start=False)[eps]
    with torch.no_grad():
        assert ra == int((model(x_art).argmax(1) == y).sum()) / len(y)


def test_fgsm_matches_art(setup):
    from_art = pytest.importorskip("art.attacks.evasion")
    model, x, y = setup
    x, y = x[:100], y[:100]
    art_fgm = from_art.FastGradientMethod(_art_classifier(model), norm=np.inf, eps=0.1, batch_size=100)
    x_art = torch.from_numpy(art_fgm.generate(x.numpy(), y=y.numpy()))
    assert float((x_art - fgsm(model, x, y, 0.1)).abs().max()) <= 1e-6
