"""torch integration: int8 networks through multiplier tables, back-ends agree, straight-through grads."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cosim import axkernels as ak
from cosim import axtorch as at
from rtl_models.metrics import exact_table

try:
    from mapping.zoo import LeNet5
except Exception:  # the zoo is optional here
    class LeNet5(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.conv2 = nn.Conv2d(1, 6, 5), nn.Conv2d(6, 16, 5)
            self.fc1, self.fc2, self.fc3 = nn.Linear(400, 120), nn.Linear(120, 84), nn.Linear(84, 10)

        def forward(self, x):
            x = F.avg_pool2d(F.relu(self.conv1(x)), 2)
            x = F.avg_pool2d(F.relu(self.conv2(x)), 2)
            return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x.flatten(1))))))


EXACT_U = (exact_table(False).astype(np.uint16), False)
EXACT_S = (exact_table(True).astype(np.int16), True)


def trunc_table(t=5):
    b = ((np.arange(256)[:, None] >> np.arange(8)) & 1).astype(np.int64)
    ij = np.add.outer(np.arange(8), np.arange(8))
    return (b @ ((ij >= t).astype(np.int64) << ij) @ b.T).astype(np.uint16), False


def random_table(seed=0):
    return np.random.default_rng(seed).integers(0, 65536, (256, 256)).astype(np.uint16), False


@pytest.fixture(scope="module")
def lenet():
    torch.manual_seed(0)
    return LeNet5().eval()


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(1)
    return torch.rand(48, 1, 32, 32, generator=g)


@pytest.mark.parametrize("mult", [EXACT_U, EXACT_S], ids=["unsigned-affine", "signed-symmetric"])
def test_exact_multiplier_equals_plain_integer_network(lenet, images, mult):
    """The int8 network through the exact table gives exactly the int-arithmetic network's outputs."""
    ax = at.approximate(lenet, mult, calibration=images[:16])
    with torch.no_grad():
        y_numba = ax(images)
        y_int = at.set_backend(ax, "integer")(images)
        y_torch = at.set_backend(ax, "torch")(images)
    assert torch.equal(y_numba, y_int) and torch.equal(y_numba, y_torch)
    assert torch.equal(y_numba.argmax(1), y_int.argmax(1))
    with torch.no_grad():
        assert (y_numba - lenet(images)).abs().max() < 0.05  # and it is a faithful int8 network


@pytest.mark.parametrize("mult,kind", [(trunc_table(), "bitplane"), (random_table(), "lookup")],
                         ids=["truncated", "random-table"])
def test_backends_agree_on_approximate_multipliers(lenet, images, mult, kind):
    ax = at.approximate(lenet, mult, calibration=images[:16], backend="numba")
    with torch.no_grad():
        a = ax(images)
        b = at.set_backend(ax, "torch")(images)
    assert torch.equal(a, b)
    assert {r["kind"] for r in at.describe(ax)} == {kind}


def test_per_channel_affine_and_depthwise_groups():
    torch.manual_seed(3)
    net = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, groups=4),
                        nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2, dilation=2, padding=2, groups=8), nn.Flatten(),
                        nn.Linear(8 * 4 * 4, 5))
    x = torch.randn(3, 4, 8, 8)
    for mult in (EXACT_U, EXACT_S):
        ax = at.approximate(net, mult, calibration=x, per_channel=True)
        with torch.no_grad():
            assert torch.equal(ax(x), at.set_backend(ax, "integer")(x))
    ax = at.approximate(net, trunc_table(3), calibration=x)
    with torch.no_grad():
        assert torch.equal(ax(x), at.set_backend(ax, "torch")(x))


def test_straight_through_gradient_is_the_float_layers_gradient():
    torch.manual_seed(4)
    conv = nn.Conv2d(3, 5, 3, padding=1)
    ax = at.approximate(nn.Sequential(conv), random_table(1), calibration=torch.randn(2, 3, 6, 6))[0]
    x1 = torch.randn(2, 3, 6, 6, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_(True)
    g = torch.randn(2, 5, 6, 6)
    y_ax = ax(x1)
    (y_ax * g).sum().backward()
    (conv(x2) * g).sum().backward()
    assert torch.equal(x1.grad, x2.grad)
    assert ax.weight is not conv.weight and torch.equal(ax.weight.grad, conv.weight.grad)
    with torch.no_grad():
        assert torch.equal(y_ax, ax(x1))  # the forward value is the approximate one


def test_fine_tuning_updates_the_quantized_weights(lenet, images):
    ax = at.approximate(lenet, trunc_table(), calibration=images[:16])
    opt = torch.optim.SGD(ax.parameters(), lr=0.5)
    with torch.no_grad():
        before = ax(images)
    loss = F.cross_entropy(ax(images), torch.arange(48) % 10)
    loss.backward()
    opt.step()
    with torch.no_grad():
        after = ax(images)
        assert not torch.equal(before, after)
        assert torch.equal(after, at.set_backend(ax, "torch")(images))


def test_torch_gather_reference_matches_kernel_reference():
    rng = np.random.default_rng(5)
    t, s = random_table(2)
    A = rng.integers(0, 256, (30, 70)).astype(np.uint8)
    B = rng.integers(0, 256, (70, 11)).astype(np.uint8)
    got = at.lut_gemm_torch(torch.from_numpy(A), torch.from_numpy(B), torch.from_numpy(t.astype(np.int64)))
    assert np.array_equal(got.numpy(), ak.lut_gemm_reference(A, B, (t, s)))
    x = rng.integers(0, 256, (2, 3, 7, 6)).astype(np.uint8)
    cols = at.unfold_codes(torch.from_numpy(x), (3, 2), (2, 1), (1, 2), (1, 1), 17).numpy()
    assert np.array_equal(cols, ak.im2col(x, 3, 2, (2, 1), (1, 2), 1, 17))


def test_assignment_errors_and_partial_assignment(lenet, images):
    with pytest.raises(KeyError, match="conv9"):
        at.approximate(lenet, {"conv9": EXACT_U})
    ax = at.approximate(lenet, {"conv1": EXACT_U, "fc3": trunc_table(), "fc1": None})
    assert [n for n, _ in at.ax_layers(ax)] == ["conv1", "fc3"]
    assert isinstance(ax.fc1, nn.Linear)
    with pytest.raises(RuntimeError, match="conv1.*not calibrated"):
        ax(images[:2])
    at.calibrate(ax, [images[:8], images[8:16]])
    with torch.no_grad():
        assert ax(images[:2]).shape == (2, 10)
    rep = at.describe(ax)
    # the exact design may run as BLAS or, where the cost model finds it cheaper (LeNet's conv1
    # has 6 output channels), as a lookup; either way the report names it
    assert rep[0]["layer"] == "conv1" and rep[0]["kind"] == "exact" and rep[0]["path"] in ("exact", "lookup")
    assert rep[1]["kind"] == "bitplane"
    with pytest.raises(ValueError, match="backend"):
        at.approximate(lenet, EXACT_U, backend="cuda-magic")


def test_library_names_resolve():
    lib = pytest.importorskip("rtl_models.library")
    try:
        m = lib.MultiplierLibrary.default(include_imported=False).get("mul8u_trunc_t4")
    except Exception as exc:  # library not characterized on this checkout
        pytest.skip(f"multiplier library unavailable: {exc}")
    assert at.resolve_multiplier("mul8u_trunc_t4").sha256 == ak.as_multiplier(m).sha256
