"""Training loop: seeded determinism, time budget, threads, evaluation and weight inheritance (digits, tiny models)."""

import pytest
import torch
from torch import nn

from nas.data import load_dataset
from nas.train import TrainConfig, evaluate, inherit_weights, predict, torch_threads, train


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=0)


def mlp(hidden=32, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Dropout(0.1), nn.Linear(hidden, 10))


def cnn(ch=4, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, ch, 3, padding=1), nn.BatchNorm2d(ch), nn.ReLU(), nn.Flatten(), nn.Linear(ch * 64, 10)
    )


def test_training_learns_and_is_deterministic(digits):
    cfg = TrainConfig(epochs=3, batch_size=32, lr=3e-3, seed=7)
    a, b = mlp(), mlp()
    ra = train(a, digits.train.x, digits.train.y, cfg, quiet=True)
    rb = train(b, digits.train.x, digits.train.y, cfg, quiet=True)
    assert ra.steps == 3 * ((len(digits.train) + 31) // 32) and ra.epochs_completed == 3
    assert not ra.stopped_by_budget and len(ra.epoch_losses) == 3
    assert ra.epoch_losses[-1] < ra.epoch_losses[0]
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)  # same seed (shuffling and dropout): bit-identical weights
    assert evaluate(a, digits.test.x, digits.test.y) > 0.85

    c = mlp()
    train(c, digits.train.x, digits.train.y, TrainConfig(epochs=3, batch_size=32, lr=3e-3, seed=8), quiet=True)
    assert not torch.equal(a[1].weight, c[1].weight)


def test_cnn_with_batchnorm_and_sgd(digits):
    m = cnn()
    r = train(m, digits.train.x, digits.train.y, TrainConfig(epochs=2, optimizer="sgd", lr=0.05), quiet=True)
    assert r.epochs_completed == 2
    assert evaluate(m, digits.val.x, digits.val.y) > 0.8
    assert m.training  # mode restored


def test_global_rng_and_threads_untouched(digits):
    seen = []
    m = mlp()
    state = torch.random.get_rng_state()
    m.register_forward_hook(lambda *_: seen.append(torch.get_num_threads()))
    before = torch.get_num_threads()
    train(m, digits.train.x[:64], digits.train.y[:64], TrainConfig(epochs=1, threads=1), quiet=True)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert set(seen) == {1} and torch.get_num_threads() == before
    with torch_threads(None):
        assert torch.get_num_threads() == before


def test_time_budget_stops_early(digits):
    m = mlp()
    r = train(m, digits.train.x, digits.train.y, TrainConfig(epochs=50, time_budget_s=1e-9), quiet=True)
    assert r.steps == 1 and r.stopped_by_budget and r.epochs_completed == 0 and len(r.epoch_losses) == 1
    # a budget that is not hit is not reported as a stop
    r = train(m, digits.train.x[:32], digits.train.y[:32], TrainConfig(epochs=1, time_budget_s=60), quiet=True)
    assert r.steps == 1 and not r.stopped_by_budget and r.epochs_completed == 1


def test_progress_bar_runs_when_not_quiet(digits):
    r = train(mlp(), digits.train.x[:64], digits.train.y[:64], TrainConfig(epochs=1), quiet=False)
    assert r.steps == 1


def test_config_validation():
    with pytest.raises(ValueError, match="TrainConfig.optimizer='rmsprop'"):
        TrainConfig(optimizer="rmsprop")
    with pytest.raises(ValueError, match="TrainConfig.time_budget_s=0"):
        TrainConfig(time_budget_s=0)
    with pytest.raises(ValueError, match="TrainConfig.batch_size=0"):
        TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="64 inputs but 10 labels"):
        train(mlp(), torch.zeros(64, 1, 8, 8), torch.zeros(10, dtype=torch.int64), quiet=True)


def test_evaluate_and_predict(digits):
    m = mlp()
    m.train()
    x, y = digits.test.x, digits.test.y
    logits = predict(m, x, batch_size=50)
    assert logits.shape == (len(y), 10) and m.training
    assert torch.allclose(logits, m.eval()(x), atol=1e-6)
    assert evaluate(m, x, y, batch_size=7) == pytest.approx(float((logits.argmax(1) == y).float().mean()))
    assert evaluate(m, x[:0], y[:0]) != evaluate(m, x[:0], y[:0])  # nan


def test_inherit_weights_exact_and_partial():
    parent, child = cnn(ch=4, seed=1), cnn(ch=4, seed=2)
    parent[1].running_mean.add_(0.5)  # buffers are inherited too
    rep = inherit_weights(child, parent)
    assert rep.skipped == () and rep.partial == () and "1.running_mean" in rep.copied
    x = torch.rand(5, 1, 8, 8)
    assert torch.equal(parent.eval()(x), child.eval()(x))

    wide = cnn(ch=8, seed=3)
    before = wide[0].weight.detach().clone()
    rep = inherit_weights(wide, parent)
    assert "0.weight" in rep.skipped and rep.partial == ()
    assert torch.equal(wide[0].weight, before)

    rep = inherit_weights(wide, parent, partial=True)
    assert {"0.weight", "0.bias", "1.weight", "4.weight"} <= set(rep.partial)
    assert "4.bias" in rep.copied  # Linear(.., 10) bias has the same shape
    assert torch.equal(wide[0].weight[:4], parent[0].weight)
    assert torch.equal(wide[0].weight[4:], before[4:])
    assert torch.equal(wide[4].weight[:, :256], parent[4].weight)
