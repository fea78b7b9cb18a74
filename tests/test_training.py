"""train_model / evaluate / SAM on the built-in generated dataset."""
import copy

import pytest
import torch

import ddtime.driver.data
from ddtime.driver.models import build_model, flat_params
from ddtime.driver.training.sam import GSAM, SAM
from ddtime.driver.training import evaluate, train_model


pytestmark = pytest.mark.usefixtures("one_thread")


def test_evaluate_matches_direct_metrics(data):
    model = build_model("dlinear", seq_len=24, pred_len=12, channels=7, seed=0)
    windows = data.windows("test")
    with torch.no_grad():
        err = model(windows[..., :24]) - windows[..., 24:]
    metrics = evaluate(model, windows, seq_len=24, batch_size=100)
    assert metrics["mse"] == pytest.approx(err.pow(2).mean().item(), rel=1e-5)
    assert metrics["mae"] == pytest.approx(err.abs().mean().item(), rel=1e-5)
    model.train()
    evaluate(model, windows, seq_len=24)
    assert model.training  # mode restored
    with pytest.raises(ValueError, match="windows must have shape"):
        evaluate(model, windows[..., :20], seq_len=24)
    with pytest.raises(ValueError, match="do not fit the model"):
        evaluate(build_model("linear", seq_len=24, pred_len=12, channels=3), windows, seq_len=24)


@pytest.mark.parametrize("optimizer,lr", [("adam", 1e-3), ("sgd", 1e-2), ("sam", 1e-2)])
def test_training_reduces_loss(data, optimizer, lr):
    model = build_model("dlinear", seq_len=24, pred_len=12, channels=7, seed=0)
    before = evaluate(model, data.windows("test"), seq_len=24)
    result = train_model(model, data, optimizer=optimizer, lr=lr, epochs=2, batch_size=64, patience=None,
                         seed=0, quiet=True)
    assert result["epochs"] == 2 and result["val_mse"] is None
    assert result["train_loss"][1] < result["train_loss"][0]
    assert result["test_mse"] < 0.5 * before["mse"]
    after = evaluate(model, data.windows("test"), seq_len=24)
    assert result["test_mse"] == pytest.approx(after["mse"]) and result["test_mae"] == pytest.approx(after["mae"])


def test_early_stopping_restores_best_weights(data):
    # a large learning rate makes the validation error move around so that early stopping triggers
    model = build_model("mlp", seq_len=24, pred_len=12, channels=7, seed=0, hidden=32)
    snapshots = {}
    result = train_model(model, data, optimizer="sgd", lr=0.3, epochs=6, batch_size=256, patience=1, seed=0,
                         quiet=True, on_epoch_end=lambda e, m: snapshots.__setitem__(e, flat_params(m)))
    history = result["val_history"]
    assert len(history) == result["epochs"] == len(snapshots)
    best = min(range(len(history)), key=history.__getitem__) + 1
    assert result["best_epoch"] == best and result["val_mse"] == min(history)
    assert result["epochs"] < 6 and result["epochs"] == best + 1  # stopped after one bad epoch
    torch.testing.assert_close(flat_params(model), snapshots[best])
    val = evaluate(model, data.windows("val"), seq_len=24)["mse"]
    assert val == pytest.approx(result["val_mse"])


def test_condtsf_trains_all_epochs_without_validation():
    data = ddtime.driver.data.load_forecasting(None, protocol="condtsf", seq_len=24, pred_len=24)
    model = build_model("linear", seq_len=24, pred_len=24, channels=1, seed=0)
    windows = data.windows("train")[::40]  # a thinned training set keeps the test fast
    test = data.windows("test")
    untrained = evaluate(model, test, seq_len=24)["mse"]
    snapshots = {}
    result = train_model(model, data, optimizer="adam", lr=1e-2, epochs=3, patience=3, quiet=True,
                         train_windows=windows, on_epoch_end=lambda e, m: snapshots.__setitem__(e, flat_params(m)))
    assert result["epochs"] == 3 and result["val_mse"] is None and result["val_history"] == []
    # all 3 epochs ran (patience has nothing to watch) and the final weights are the third epoch's, not a "best"
    assert sorted(snapshots) == [1, 2, 3] and not torch.equal(snapshots[2], snapshots[3])
    torch.testing.assert_close(flat_params(model), snapshots[3], rtol=0, atol=0)
    # the reported test MSE is the trained model's on the test windows, below the untrained model's
    assert result["test_mse"] == pytest.approx(evaluate(model, test, seq_len=24)["mse"], rel=1e-5)
    assert result["test_mse"] < untrained


def test_train_windows_and_determinism(data):
    synthetic = data.windows("train")[:10].clone()
    runs = []
    for _ in range(2):
        model = build_model("cnn", seq_len=24, pred_len=12, channels=7, seed=3, hidden=4)
        train_model(model, data, optimizer="adam", lr=1e-3, epochs=2, batch_size=4, seed=5, quiet=True,
                    train_windows=synthetic, patience=None)
        runs.append(flat_params(model))
    torch.testing.assert_close(runs[0], runs[1], rtol=0, atol=0)
    with pytest.raises(ValueError, match="do not fit the model"):
        train_model(build_model("linear", seq_len=24, pred_len=12, channels=7), data, epochs=1, quiet=True,
                    train_windows=synthetic[:, :3])


def test_argument_errors(data):
    model = build_model("linear", seq_len=24, pred_len=12, channels=7)
    with pytest.raises(ValueError, match=r"optimizer: expected one of \('adam', 'sgd', 'sam', 'gsam'\)"):
        train_model(model, data, optimizer="rmsprop", epochs=1)
    with pytest.raises(ValueError, match="epochs: expected an int >= 1, got 0"):
        train_model(model, data, epochs=0)
    with pytest.raises(ValueError, match="lr: expected a positive number, got -1.0"):
        train_model(model, data, lr=-1.0, epochs=1)
    with pytest.raises(ValueError, match="patience: expected an int >= 1, got 0"):
        train_model(model, data, epochs=1, patience=0)
    with pytest.raises(ValueError, match="lr_schedule: expected one of"):
        train_model(model, data, epochs=1, lr_schedule="cosine")
    with pytest.raises(TypeError, match="epochs: expected an int, got bool True"):
        train_model(model, data, epochs=True)
    with pytest.raises(ValueError, match="do not fit the model"):
        train_model(build_model("linear", seq_len=48, pred_len=12, channels=7), data, epochs=1)


def test_sam_step_matches_definition():
    torch.manual_seed(0)
    w0 = torch.randn(5, dtype=torch.float64)
    a = torch.randn(5, 5, dtype=torch.float64)

    def loss_fn(w):
        return (a @ w).sin().pow(2).sum()

    w = torch.nn.Parameter(w0.clone())
    opt = SAM([w], torch.optim.SGD, rho=0.1, lr=0.01)

    def closure():
        opt.zero_grad()
        loss = loss_fn(w)
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert loss.item() == pytest.approx(loss_fn(w0).item())
    g = torch.autograd.functional.jacobian(loss_fn, w0)
    w_adv = w0 + 0.1 * g / g.norm()
    expected = w0 - 0.01 * torch.autograd.functional.jacobian(loss_fn, w_adv)
    torch.testing.assert_close(w.detach(), expected)
    with pytest.raises(ValueError, match="closure must be given"):
        opt.step()
    with pytest.raises(ValueError, match="rho must be a float > 0"):
        SAM([w], rho=0.0, lr=0.1)


def _hand_written_gsam_step(loss_fn, ws, *, rho, alpha, lr):
    """One GSAM step as RafaDD/CondTSF's gsam/gsam.py takes it (adaptive, first SGD-momentum step: v = g)."""
    def grads(at):
        at = [w.detach().clone().requires_grad_(True) for w in at]
        return [g.detach() for g in torch.autograd.grad(loss_fn(*at), at)]

    g = grads(ws)
    norm = torch.sqrt(sum(((w.abs() * gi) ** 2).sum() for w, gi in zip(ws, g)))  # weight_adaptive=True
    e = [gi * (rho / (norm + 1e-12)) * w.pow(2) for w, gi in zip(ws, g)]  # perturb_weights(adaptive)
    gp = grads([w + ei for w, ei in zip(ws, e)])
    inner = sum((gi * gpi).sum() for gi, gpi in zip(g, gp))  # gradient_decompose
    new_norm, old_norm = torch.sqrt(sum((x ** 2).sum() for x in gp)), torch.sqrt(sum((x ** 2).sum() for x in g))
    cosine = inner / (new_norm * old_norm + 1e-12)
    vertical = [gi - cosine * old_norm * gpi / (new_norm + 1e-12) for gi, gpi in zip(g, gp)]
    return [w - lr * (gpi - alpha * v) for w, gpi, v in zip(ws, gp, vertical)]


def test_gsam_step_matches_condtsf_hand_written_step():
    torch.manual_seed(0)
    w0, b0 = torch.randn(5, 3, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    x = torch.randn(8, 5, dtype=torch.float64)

    def loss_fn(w, b):
        return (x @ w + b).sin().pow(2).mean()

    w, b = torch.nn.Parameter(w0.clone()), torch.nn.Parameter(b0.clone())
    opt = GSAM([w, b], torch.optim.SGD, rho=2.0, alpha=0.4, lr=0.01, momentum=0.9)

    def closure():
        opt.zero_grad()
        loss = loss_fn(w, b)
        loss.backward()
        return loss

    assert opt.step(closure).item() == pytest.approx(loss_fn(w0, b0).item())
    want = _hand_written_gsam_step(loss_fn, [w0, b0], rho=2.0, alpha=0.4, lr=0.01)
    torch.testing.assert_close([w.detach(), b.detach()], want)
    no_decomposition = _hand_written_gsam_step(loss_fn, [w0, b0], rho=2.0, alpha=0.0, lr=0.01)
    assert not torch.allclose(no_decomposition[0], want[0])  # alpha matters at this point
    with pytest.raises(ValueError, match="alpha must be a float in"):
        GSAM([w], alpha=1.5, lr=0.1)


def test_gsam_stacked_matches_the_hand_written_step(data):
    """The lockstep (vmapped) GSAM of the expert recipe: one batch, first step, against the hand-written step."""
    from torch.func import functional_call

    from ddtime.driver.training.lockstep import train_stacked

    model = build_model("dlinear", seq_len=24, pred_len=12, channels=7, seed=1)
    start = [p.detach().clone().double() for p in model.parameters()]
    after = []
    train_stacked([model], data, seeds=[0], optimizer="gsam", lr=5e-4, epochs=1, batch_size=100_000,
                  on_epoch_end=lambda _e, flats: after.append(flats[0]))
    windows = data.windows("train").double()
    x, y = windows[..., :24], windows[..., 24:]
    names = [n for n, _ in model.named_parameters()]

    def loss_fn(*ps):
        return torch.nn.functional.mse_loss(functional_call(model.double(), dict(zip(names, ps)), (x,)), y)

    want = torch.cat([w.reshape(-1) for w in _hand_written_gsam_step(loss_fn, start, rho=2.0, alpha=0.4, lr=5e-4)])
    torch.testing.assert_close(after[0].double(), want, rtol=1e-4, atol=1e-6)
    assert not torch.allclose(after[0].double(), torch.cat([w.reshape(-1) for w in start]), atol=1e-6)


def test_test_stride_scores_every_kth_test_window(data):
    model = build_model("linear", seq_len=24, pred_len=12, channels=7, seed=0)
    out = train_model(model, data, optimizer="sgd", lr=1e-3, epochs=1, patience=None, quiet=True, test_stride=12)
    assert out["test_mse"] == pytest.approx(evaluate(model, data.windows("test", stride=12), seq_len=24)["mse"])
    assert out["test_mse"] != pytest.approx(evaluate(model, data.windows("test", stride=1), seq_len=24)["mse"])


def test_type1_schedule_halves_adam_rate(data):
    model = build_model("linear", seq_len=24, pred_len=12, channels=7, seed=0)
    rates = []
    original = torch.optim.Adam.step

    def spy(self, *args, **kwargs):
        rates.append(self.param_groups[0]["lr"])
        return original(self, *args, **kwargs)

    small = copy.copy(data)
    small.train = data.train[:, :60]  # 25 windows: one batch per epoch
    torch.optim.Adam.step = spy
    try:
        train_model(model, small, optimizer="adam", lr=0.08, epochs=4, patience=None, quiet=True)
        train_model(model, small, optimizer="adam", epochs=1, patience=None, quiet=True)  # model's adam_lr
    finally:
        torch.optim.Adam.step = original
    assert rates == [0.08, 0.08, 0.04, 0.02, 5e-3]
