"""Forecasting backbones: shapes, registry, flat-parameter functional forward, double backward."""
import pytest
import torch
import torch.nn.functional as F

from ddtime.driver.models import (
    MODELS,
    DLinear,
    assign_flat_params,
    build_model,
    flat_params,
    functional_forward,
    model_options,
    num_params,
    param_spec,
    unflatten_params,
)
from ddtime.driver.models.linear import moving_average

# (seq_len, pred_len, channels): standard, condtsf, look-back shorter than a patch / the DLinear
# kernel, horizon longer than the look-back.
CONFIGS = [(96, 96, 7), (24, 24, 1), (5, 3, 1), (12, 30, 7)]

# Small settings for the second-order checks, per model.
TINY = {
    "mlp": {"hidden": 8},
    "cnn": {"hidden": 3},
    "lstm": {"hidden": 4},
    "patchtst": {"patch_len": 4, "stride": 2, "d_model": 8, "n_heads": 2, "d_ff": 8, "layers": 1},
    "itransformer": {"d_model": 8, "n_heads": 2, "d_ff": 8, "layers": 1},
}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("seq_len,pred_len,channels", CONFIGS)
def test_forward_backward_shapes(name, seq_len, pred_len, channels):
    model = build_model(name, seq_len=seq_len, pred_len=pred_len, channels=channels, seed=0)
    assert list(model.buffers()) == []
    x = torch.randn(3, channels, seq_len, generator=torch.Generator().manual_seed(1), requires_grad=True)
    out = model(x)
    assert out.shape == (3, channels, pred_len)
    emb = model.embed(x)
    assert emb.dim() == 2 and emb.shape[0] == 3
    (out.pow(2).mean() + emb.pow(2).mean()).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("name", list(MODELS))
def test_samples_are_independent(name):
    """Each window's forecast depends on that window only (no batch statistics)."""
    model = build_model(name, seq_len=16, pred_len=8, channels=2, seed=0, **TINY.get(name, {}))
    x = torch.randn(4, 2, 16, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(model(x)[1:2], model(x[1:2]), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("seq_len,pred_len,channels", [(96, 96, 7), (5, 3, 1)])
def test_functional_forward_matches_module(name, seq_len, pred_len, channels):
    model = build_model(name, seq_len=seq_len, pred_len=pred_len, channels=channels, seed=0)
    x = torch.randn(2, channels, seq_len, generator=torch.Generator().manual_seed(0))
    flat = flat_params(model)
    assert flat.shape == (num_params(model),) and not flat.requires_grad
    torch.testing.assert_close(functional_forward(model, flat, x), model(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(functional_forward(model, flat, x, method="embed"), model.embed(x),
                               rtol=1e-5, atol=1e-5)
    # other parameters give another forecast, and the module itself is left unchanged
    other = functional_forward(model, flat + 0.1, x)
    assert not torch.allclose(other, model(x))
    torch.testing.assert_close(flat_params(model), flat)


def _unrolled_loss(model, flat, x_syn, y_syn, x_real, y_real, steps=2, lr=0.05):
    """Two differentiable SGD steps on the synthetic batch, then the loss on real data."""
    w = flat
    for _ in range(steps):
        loss = F.mse_loss(functional_forward(model, w, x_syn), y_syn)
        (grad,) = torch.autograd.grad(loss, w, create_graph=True)
        w = w - lr * grad
    return F.mse_loss(functional_forward(model, w, x_real), y_real)


@pytest.mark.parametrize("name", list(MODELS))
def test_double_backward_through_unrolled_steps(name):
    g = torch.Generator().manual_seed(0)
    model = build_model(name, seq_len=24, pred_len=12, channels=3, seed=0)
    flat = flat_params(model).requires_grad_(True)
    x_syn = torch.randn(4, 3, 24, generator=g, requires_grad=True)
    y_syn = torch.randn(4, 3, 12, generator=g, requires_grad=True)
    x_real, y_real = torch.randn(8, 3, 24, generator=g), torch.randn(8, 3, 12, generator=g)
    loss = _unrolled_loss(model, flat, x_syn, y_syn, x_real, y_real)
    g_flat, g_x, g_y = torch.autograd.grad(loss, [flat, x_syn, y_syn])
    for grad in (g_flat, g_x, g_y):
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0


@pytest.mark.parametrize("name", list(MODELS))
def test_second_order_gradient_is_exact(name):
    """gradcheck (float64) of the real loss after two unrolled steps w.r.t. the synthetic inputs:
    the second-order terms through every layer are correct, not only present."""
    g = torch.Generator().manual_seed(0)
    model = build_model(name, seq_len=8, pred_len=4, channels=2, seed=0, **TINY.get(name, {})).double()
    flat = flat_params(model).requires_grad_(True)
    y_syn = torch.randn(2, 2, 4, generator=g, dtype=torch.float64)
    x_real = torch.randn(3, 2, 8, generator=g, dtype=torch.float64)
    y_real = torch.randn(3, 2, 4, generator=g, dtype=torch.float64)
    x_syn = torch.randn(2, 2, 8, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: _unrolled_loss(model, flat, x, y_syn, x_real, y_real), (x_syn,),
                                    eps=1e-6, atol=1e-5, rtol=1e-4)


def test_param_layout_roundtrip():
    model = build_model("patchtst", seq_len=24, pred_len=12, channels=2, seed=0)
    spec = param_spec(model)
    assert [name for name, _ in spec] == [name for name, _ in model.named_parameters()]
    flat = flat_params(model)
    params = unflatten_params(model, flat)
    for name, p in model.named_parameters():
        torch.testing.assert_close(params[name], p.detach())
    other = build_model("patchtst", seq_len=24, pred_len=12, channels=2, seed=1)
    assert not torch.equal(flat_params(other), flat)
    assign_flat_params(other, flat)
    torch.testing.assert_close(flat_params(other), flat)
    with pytest.raises(ValueError, match="flat must be a vector of"):
        unflatten_params(model, flat[:-1])
    with pytest.raises(TypeError, match="flat must be a torch.Tensor"):
        unflatten_params(model, flat.tolist())
    with pytest.raises(ValueError, match="method must name"):
        functional_forward(model, flat, torch.zeros(1, 2, 24), method="nope")


def test_registry_builds_and_validates():
    assert set(MODELS) == {"linear", "nlinear", "dlinear", "rlinear", "mlp", "cnn", "lstm", "patchtst", "itransformer"}
    assert isinstance(build_model("DLinear", seq_len=8, pred_len=4, channels=1), DLinear)
    with pytest.raises(ValueError, match=r"unknown model 'transformer'.*dlinear.*itransformer"):
        build_model("transformer", seq_len=8, pred_len=4, channels=1)
    with pytest.raises(ValueError, match="seq_len: expected an int >= 1, got 0"):
        build_model("linear", seq_len=0, pred_len=4, channels=1)
    with pytest.raises(TypeError, match="pred_len: expected an int, got float 4.0"):
        build_model("linear", seq_len=8, pred_len=4.0, channels=1)
    with pytest.raises(TypeError, match="channels: expected an int, got NoneType None"):
        build_model("linear", seq_len=8, pred_len=4, channels=None)
    with pytest.raises(TypeError, match=r"unknown option\(s\) hidden for model 'dlinear'; accepted: individual"):
        build_model("dlinear", seq_len=8, pred_len=4, channels=1, hidden=3)
    with pytest.raises(ValueError, match="d_model .* must be divisible by n_heads"):
        build_model("itransformer", seq_len=8, pred_len=4, channels=1, d_model=10, n_heads=3)
    with pytest.raises(ValueError, match=r"dropout: expected a finite number >= 0.0, < 1.0, got 1.5"):
        build_model("mlp", seq_len=8, pred_len=4, channels=1, dropout=1.5)
    with pytest.raises(TypeError, match="individual: expected a bool, got str 'yes'"):
        build_model("nlinear", seq_len=8, pred_len=4, channels=1, individual="yes")
    assert model_options("patchtst")["patch_len"] == 16
    model = build_model("linear", seq_len=8, pred_len=4, channels=2)
    with pytest.raises(ValueError, match=r"x: expected shape \(batch, 2, 8\)"):
        model(torch.zeros(1, 3, 8))


def test_seed_is_reproducible_and_leaves_global_rng():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = build_model("mlp", seq_len=16, pred_len=8, channels=2, seed=7)
    assert torch.equal(torch.get_rng_state(), before)
    b = build_model("mlp", seq_len=16, pred_len=8, channels=2, seed=7)
    c = build_model("mlp", seq_len=16, pred_len=8, channels=2, seed=8)
    assert torch.equal(flat_params(a), flat_params(b))
    assert not torch.equal(flat_params(a), flat_params(c))


def test_individual_linear_heads():
    shared = build_model("dlinear", seq_len=16, pred_len=8, channels=3)
    individual = build_model("dlinear", seq_len=16, pred_len=8, channels=3, individual=True)
    assert num_params(individual) == 3 * num_params(shared)
    x = torch.randn(2, 3, 16)
    # per-channel weights: channel 0's forecast does not change when channel 1's weights do
    out = individual(x)
    with torch.no_grad():
        individual.seasonal.weight[1] += 1.0
    out2 = individual(x)
    torch.testing.assert_close(out2[:, 0], out[:, 0])
    assert not torch.allclose(out2[:, 1], out[:, 1])


def test_linear_models_match_their_definitions():
    x = torch.randn(2, 3, 10, generator=torch.Generator().manual_seed(0))
    lin = build_model("linear", seq_len=10, pred_len=4, channels=3)
    w, b = lin.linear.weight, lin.linear.bias
    torch.testing.assert_close(lin(x), x @ w.T + b)
    torch.testing.assert_close(lin.embed(x), lin(x).flatten(1))
    nl = build_model("nlinear", seq_len=10, pred_len=4, channels=3)
    w, b = nl.linear.weight, nl.linear.bias
    last = x[..., -1:]
    torch.testing.assert_close(nl(x), (x - last) @ w.T + b + last)
    dl = build_model("dlinear", seq_len=10, pred_len=4, channels=3, kernel_size=5)
    trend = moving_average(x, 5)
    expected = (x - trend) @ dl.seasonal.weight.T + dl.seasonal.bias + trend @ dl.trend.weight.T + dl.trend.bias
    torch.testing.assert_close(dl(x), expected)


def test_rlinear_matches_revin_around_a_linear_map():
    x = 3.0 + 5.0 * torch.randn(2, 3, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    model = build_model("rlinear", seq_len=10, pred_len=4, channels=3).double()
    with torch.no_grad():
        model.affine_weight.copy_(torch.tensor([[0.5], [2.0], [1.5]]))
        model.affine_bias.copy_(torch.tensor([[0.1], [-0.2], [0.3]]))
    a, c = model.affine_weight, model.affine_bias
    mean = x.mean(-1, keepdim=True)
    std = (x.var(-1, keepdim=True, unbiased=False) + 1e-5).sqrt()
    z = (x - mean) / std * a + c
    y = z @ model.linear.weight.T + model.linear.bias
    expected = (y - c) / (a + 1e-10) * std + mean
    torch.testing.assert_close(model(x), expected)
    # the forecast is equivariant to shifting and scaling the input series
    torch.testing.assert_close(model(2.0 * x + 7.0), 2.0 * model(x) + 7.0, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("length,kernel", [(10, 5), (5, 25), (1, 25), (7, 4)])
def test_moving_average_replicates_edges(length, kernel):
    x = torch.randn(2, 3, length, dtype=torch.float64)
    front, back = (kernel - 1) // 2, kernel - 1 - (kernel - 1) // 2
    padded = torch.cat([x[..., :1].repeat(1, 1, front), x, x[..., -1:].repeat(1, 1, back)], dim=-1)
    expected = torch.stack([padded[..., t : t + kernel].mean(-1) for t in range(length)], dim=-1)
    torch.testing.assert_close(moving_average(x, kernel), expected)


def test_dropout_is_off_by_default_and_optional():
    x = torch.randn(2, 1, 16)
    model = build_model("patchtst", seq_len=16, pred_len=4, channels=1, seed=0)
    model.train()
    torch.testing.assert_close(model(x), model(x))
    noisy = build_model("mlp", seq_len=16, pred_len=4, channels=1, seed=0, dropout=0.5).train()
    assert not torch.allclose(noisy(x), noisy(x))
    noisy.eval()
    torch.testing.assert_close(noisy(x), noisy(x))
