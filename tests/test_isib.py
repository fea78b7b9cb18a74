"""ddtime.pairwise_symmetric_kl / ddtime.isib_loss (ops 5-8) against the references in ddtime.reference.

Runs on every device of tests/tolerances.py. Errors are norm-wise: max|ours - ref64| / max|ref64|,
where ref64 is the float64 reference evaluated on the same (dtype-rounded) input. Tolerances (the
values are in tests/tolerances.py):

=================  ===========================================================================
dtype              bound
=================  ===========================================================================
float64            1e-10, plus 1e-12 absolute: the float64 reference forms D from terms of size
                   log(L) that cancel, so its own error does not shrink with D
float32            D: 1e-5. loss and gradients: 1e-5 + 2 x PyTorch's own float32 error (exp(-D)
                   turns an absolute error of D into a relative error of the loss, so at small tau,
                   where D reaches hundreds, the reference's own error shows the conditioning)
float16/bfloat16   2 x the error of the reference computed by PyTorch on the half input
=================  ===========================================================================
"""
import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tolerances import DEVICES, ISIB_HALF_FLOOR, ISIB_TINY_VS_EAGER, TOL, TORCH_ERROR_FACTOR

import ddtime
from ddtime.reference import isib_loss_reference, pairwise_symmetric_kl_reference

ops = torch.ops.ddtime
HALF = (torch.float16, torch.bfloat16)


def rand(shape, seed, *, dtype=torch.float32, scale=1.0, device="cpu"):
    """The same values on every device."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g, dtype=torch.float64) * scale).to(device, dtype)


def rel_err(value, ref, floor=0.0):
    """max|value - ref| / max|ref|; floor: an absolute error that counts as zero."""
    diff = max((value.double() - ref).abs().max().item() - floor, 0.0)
    scale = ref.abs().max().item()
    return diff / scale if scale > 0 else diff


def evaluate(fn, x, tau, weight=None):
    """(fn(x, tau=tau), d/dx of fn(x) or of sum(weight * fn(x)))."""
    x = x.detach().clone().requires_grad_()
    out = fn(x, tau=tau)
    (out if weight is None else (out * weight.to(out.dtype)).sum()).backward()
    return out.detach(), x.grad


def assert_matches(fused, reference, x, *, tau=1.0, weight=None, strict_value=False):
    """Value and gradient of `fused` on x within the tolerance table of its dtype."""
    dtype = x.dtype
    value, grad = evaluate(fused, x, tau, weight)
    ref_value, ref_grad = evaluate(reference, x.double(), tau, weight)
    if dtype == torch.float64:
        torch_value, torch_grad = ref_value, ref_grad
    else:
        torch_value, torch_grad = evaluate(reference, x, tau, weight)
    assert value.dtype == dtype and grad.dtype == dtype and grad.shape == x.shape
    for name, ours, theirs, ref, strict in (
        ("value", value, torch_value, ref_value, strict_value),
        ("grad", grad, torch_grad, ref_grad, False),
    ):
        rtol, floor = TOL["isib"].get(dtype, (None, 0.0))
        err, torch_err = rel_err(ours, ref, floor), rel_err(theirs, ref)
        if dtype == torch.float64:
            bound = rtol
        elif dtype == torch.float32:
            bound = rtol if strict else rtol + TORCH_ERROR_FACTOR * torch_err
        else:
            bound = max(TORCH_ERROR_FACTOR * torch_err, torch.finfo(dtype).eps * ISIB_HALF_FLOOR)
        assert err <= bound, f"{name}: error {err:.3g} > {bound:.3g} (PyTorch's own: {torch_err:.3g})"


def check_both(x, *, tau=1.0, seed=0):
    s = x.shape[0]
    weight = rand((s, s), seed + 1000, dtype=torch.float64, device=x.device)  # asymmetric, with a diagonal
    assert_matches(ddtime.pairwise_symmetric_kl, pairwise_symmetric_kl_reference, x, tau=tau, weight=weight,
                   strict_value=True)
    assert_matches(ddtime.isib_loss, isib_loss_reference, x, tau=tau)


SHAPES = [
    (1, 1, 1), (1, 3, 5), (2, 1, 1), (2, 1, 2), (3, 2, 4),
    (10, 7, 192), (10, 1, 7), (10, 7, 8), (16, 2, 13),  # direct path: L odd, even, prime
    (17, 7, 31), (100, 7, 48), (100, 1, 97), (130, 3, 11), (255, 2, 5),  # small GEMMs (float32, AVX-512)
    (257, 2, 5),  # at::mm
    (10, 24), (100, 96),  # (S, L): N = 1
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_matches_reference(shape, dtype, device):
    check_both(rand(shape, sum(shape), dtype=dtype, device=device))


def test_benchmark_shape(device):
    check_both(rand((100, 7, 192), 1, device=device))


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("shape", [(2, 1, 2), (10, 7, 192), (100, 7, 48), (10, 24)], ids=str)
def test_half_precision(shape, dtype, device):
    check_both(rand(shape, 7, dtype=dtype, device=device))


@pytest.mark.parametrize("tau", [0.05, 100.0])
@pytest.mark.parametrize("s", [10, 100])
def test_temperature_extremes(s, tau, device):
    check_both(rand((s, 7, 48), s, dtype=torch.float32, device=device), tau=tau)


@pytest.mark.parametrize("s", [10, 100])
def test_large_magnitudes_stay_finite(s, device):
    x = rand((s, 7, 48), 3, scale=1e4, device=device)  # softmax is one-hot to float precision
    d = ddtime.pairwise_symmetric_kl(x)
    loss, grad = evaluate(ddtime.isib_loss, x, 1.0)
    assert torch.isfinite(d).all() and torch.isfinite(loss) and torch.isfinite(grad).all()
    check_both(x)


@pytest.mark.parametrize("s", [10, 100])
def test_tiny_magnitudes(s):
    """Near-uniform softmax: D ~ 1e-13. The float32 result stays accurate in absolute terms."""
    x = rand((s, 7, 48), 4, scale=1e-6)
    d, d_grad = evaluate(ddtime.pairwise_symmetric_kl, x, 1.0, rand((s, s), 5, dtype=torch.float64))
    ref, ref_grad = evaluate(pairwise_symmetric_kl_reference, x.double(), 1.0, rand((s, s), 5, dtype=torch.float64))
    grad_rtol, atol = TOL["isib_tiny"][torch.float32]
    assert (d.double() - ref).abs().max() < atol
    # float32 logits of 1e-6 leave p - q with few significant bits (measured errors: tests/tolerances.py)
    _, eager_grad = evaluate(pairwise_symmetric_kl_reference, x, 1.0, rand((s, s), 5, dtype=torch.float64))
    assert rel_err(d_grad, ref_grad) < min(grad_rtol, ISIB_TINY_VS_EAGER * rel_err(eager_grad, ref_grad))
    loss, grad = evaluate(ddtime.isib_loss, x, 1.0)
    assert abs(loss.item() - 1.0) < TOL["isib_tiny_loss"][torch.float32][1] and torch.isfinite(grad).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("s", [2, 10, 100])
def test_identical_samples(s, dtype):
    x = rand((1, 7, 48), 6, dtype=dtype).expand(s, 7, 48)
    d = ddtime.pairwise_symmetric_kl(x)
    loss, grad = evaluate(ddtime.isib_loss, x, 1.0)
    ulps, atol = TOL["isib_identical"][dtype]
    eps = torch.finfo(dtype).eps
    assert d.abs().max() <= ulps * eps and abs(loss.item() - 1.0) <= ulps * eps
    assert torch.isfinite(grad).all() and grad.abs().max() <= atol
    if s <= 16:  # the direct path computes differences: exactly zero
        assert (d == 0).all() and loss.item() == 1.0 and (grad == 0).all()


def test_single_sample():
    x = rand((1, 3, 5), 8)
    assert ddtime.pairwise_symmetric_kl(x).tolist() == [[0.0]]
    loss, grad = evaluate(ddtime.isib_loss, x, 1.0)
    assert loss.item() == 0.0 and (grad == 0).all()


@pytest.mark.parametrize("s", [10, 100])
def test_symmetric_with_zero_diagonal(s, device):
    d = ddtime.pairwise_symmetric_kl(rand((s, 7, 24), 9, device=device))
    assert torch.equal(d, d.T) and (d.diagonal() == 0).all() and (d >= 0).all()


@pytest.mark.parametrize("s", [10, 100])
def test_noncontiguous_and_expanded(s, device):
    base = rand((7, s, 40), 10, device=device)
    check_both(base.permute(1, 0, 2))  # [S, N, L] view of a channel-major tensor
    check_both(base.permute(1, 0, 2)[:, ::2, 1::3])  # strided in every dimension
    check_both(rand((s, 1, 40), 11, device=device).expand(s, 5, 40))  # channels share memory (stride 0)


def test_multiple_channel_blocks_and_gradient_panels():
    """Shapes past the workspace budgets: several channel blocks, and Gs by row panels."""
    check_both(rand((300, 3, 2000), 12))  # [S, 2L] float32 is 4.8 MB: one channel per block
    x = rand((1500, 2, 200), 13, dtype=torch.float64)  # float64 S^2 = 18 MB: isib gradient by panels
    assert_matches(ddtime.isib_loss, isib_loss_reference, x)


@pytest.mark.parametrize("shape", [(3, 2, 5), (18, 1, 3)], ids=["direct", "gemm"])
def test_gradcheck(shape, device):
    x = rand(shape, 14, dtype=torch.float64, device=device).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: ddtime.pairwise_symmetric_kl(t, tau=0.7), (x,))
    assert torch.autograd.gradcheck(lambda t: ddtime.isib_loss(t, tau=0.7), (x,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("s", [5, 20])
def test_opcheck(s, dtype, device):
    x = rand((s, 3, 7), 15, dtype=dtype, device=device)
    d = ops.pairwise_symmetric_kl(x, 0.7)
    opmath = torch.float32 if dtype in HALF else dtype
    for op, args in (
        (ops.pairwise_symmetric_kl.default, (x, 0.7)),
        (ops.pairwise_symmetric_kl_backward.default, (rand((s, s), 16, dtype=opmath, device=device), x, 0.7)),
        (ops.isib_loss.default, (x, 0.7)),
        (ops.isib_loss_backward.default, (torch.tensor(0.5, dtype=opmath, device=device), d, x, 0.7)),
    ):
        torch.library.opcheck(op, args)


def test_backward_ops_directly(device):
    x = rand((12, 3, 9), 17, dtype=torch.float64, device=device)
    weight = rand((12, 12), 18, dtype=torch.float64, device=device)
    rtol, atol = TOL["isib_backward_op"][torch.float64]
    _, grad = evaluate(pairwise_symmetric_kl_reference, x, 0.7, weight)
    torch.testing.assert_close(ops.pairwise_symmetric_kl_backward(weight, x, 0.7), grad, rtol=rtol, atol=atol)
    loss, d = ops.isib_loss(x, 0.7)
    _, grad = evaluate(isib_loss_reference, x, 0.7)
    grad_loss = torch.tensor(-2.5, dtype=x.dtype, device=device)
    torch.testing.assert_close(ops.isib_loss_backward(grad_loss, d, x, 0.7), -2.5 * grad, rtol=rtol, atol=atol)


def test_isib_d_output_carries_no_gradient(device):
    """isib_loss's D output (kept for the backward) is marked non-differentiable by the autograd kernel
    (csrc/autograd.cpp); the loss output is differentiable. (Double backward: test_value_loss.py.)"""
    x = rand((6, 2, 9), 22, dtype=torch.float64, device=device).requires_grad_()
    loss, d = ops.isib_loss(x, 1.0)
    assert loss.requires_grad and not d.requires_grad and d.grad_fn is None


def test_compile_parity(device):
    x = rand((20, 3, 16), 19, device=device)
    weight = rand((20, 20), 20, device=device)
    for fn, w in ((ddtime.isib_loss, None), (ddtime.pairwise_symmetric_kl, weight)):
        compiled = torch.compile(lambda t, fn=fn: fn(t, tau=0.7), fullgraph=True)
        eager_value, eager_grad = evaluate(fn, x, 0.7, w)
        value, grad = evaluate(lambda t, tau: compiled(t), x, 0.7, w)
        rtol, atol = TOL["compile_isib"][torch.float32]
        torch.testing.assert_close(value, eager_value, rtol=rtol, atol=atol)
        rtol, atol = TOL["compile_grad"][torch.float32]
        torch.testing.assert_close(grad, eager_grad, rtol=rtol, atol=atol)


@pytest.mark.parametrize("device", DEVICES)
@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    s=st.integers(1, 24),
    n=st.integers(1, 4),
    length=st.integers(1, 12),
    tau=st.floats(0.05, 20.0),
    scale=st.sampled_from([1e-3, 1.0, 30.0]),
    seed=st.integers(0, 2**16),
)
def test_fuzz_float64(device, s, n, length, tau, scale, seed):
    check_both(rand((s, n, length), seed, dtype=torch.float64, scale=scale, device=device), tau=tau, seed=seed)


def test_module_matches_functional():
    x = rand((6, 2, 9), 21)
    module = ddtime.ISIBLoss(tau=0.5)
    assert module(x).item() == ddtime.isib_loss(x, tau=0.5).item()
    assert "tau=0.5" in repr(module)


# ---- bad input ----------------------------------------------------------------------------------
FUNCTIONS = [ddtime.pairwise_symmetric_kl, ddtime.isib_loss, lambda x, tau=1.0: ddtime.ISIBLoss(tau=tau)(x)]


@pytest.mark.parametrize("fn", FUNCTIONS)
@pytest.mark.parametrize(
    "x, error",
    [
        (torch.randn(5), ValueError),
        (torch.randn(2, 3, 4, 5), ValueError),
        (torch.ones(2, 3, 4, dtype=torch.int64), TypeError),
        (torch.randn(0, 3, 4), ValueError),
        (torch.randn(2, 0, 4), ValueError),
        ([[1.0, 2.0]], TypeError),
    ],
    ids=["rank1", "rank4", "int", "empty-samples", "empty-channels", "list"],
)
def test_bad_x(fn, x, error):
    with pytest.raises(error, match=r"^x must "):  # the message names the argument first
        fn(x)


@pytest.mark.parametrize("fn", FUNCTIONS)
@pytest.mark.parametrize(
    "tau, error",
    [(0.0, ValueError), (-1.0, ValueError), (math.nan, ValueError), (math.inf, ValueError),
     ("1.0", TypeError), (True, TypeError), (None, TypeError)],
)
def test_bad_tau(fn, tau, error):
    with pytest.raises(error, match="tau"):
        fn(torch.randn(3, 2, 4), tau=tau)


@pytest.mark.parametrize("tau, error", [(0.0, ValueError), (math.nan, ValueError), ("1", TypeError)])
def test_module_validates_in_init(tau, error):
    with pytest.raises(error, match="tau"):
        ddtime.ISIBLoss(tau=tau)


# Direct operator calls are checked in C++ as well (csrc/checks.h), with the error types of the Python layer.
@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda d: ops.isib_loss(torch.randn(4, 5, device=d), 1.0), ValueError, "x must have shape"),
        (lambda d: ops.pairwise_symmetric_kl(torch.randn(4, 2, 5, device=d), -1.0), ValueError, "tau"),
        (lambda d: ops.pairwise_symmetric_kl(torch.randn(4, 2, 5, device=d), math.inf), ValueError, "tau"),
        (lambda d: ops.isib_loss(torch.ones(4, 2, 5, dtype=torch.int32, device=d), 1.0), TypeError,
         "x must be float"),
        (lambda d: ops.isib_loss(torch.randn(4, 0, 5, device=d), 1.0), ValueError, "x must not be empty"),
        (lambda d: ops.pairwise_symmetric_kl_backward(torch.randn(3, 3, device=d), torch.randn(4, 2, 5, device=d),
                                                      1.0), ValueError, "grad_D must have shape"),
        (lambda d: ops.pairwise_symmetric_kl_backward(torch.ones(4, 4, dtype=torch.int64, device=d),
                                                      torch.randn(4, 2, 5, device=d), 1.0), TypeError, "grad_D must be"),
        (lambda d: ops.isib_loss_backward(torch.tensor(1.0, device=d), torch.randn(3, 3, device=d),
                                          torch.randn(4, 2, 5, device=d), 1.0), ValueError, "D must"),
        (lambda d: ops.isib_loss_backward(torch.ones(2, device=d), torch.randn(4, 4, device=d),
                                          torch.randn(4, 2, 5, device=d), 1.0), ValueError, "grad_loss"),
    ],
)
def test_ops_reject_bad_arguments(call, error, match, device):
    with pytest.raises(error, match=match):
        call(device)
