"""The CUDA kernels on a GPU: CUDA op vs CPU op vs float64 reference, gradients, opcheck,
torch.compile (including CUDA graphs), bitwise determinism and the memory bound of ISIB.

Tolerances follow SPEC section 2: float32 within 1e-5 (relative to the largest reference value) of
the float64 reference; float16 / bfloat16 within twice the error of PyTorch's own computation of
the reference in that dtype (plus two units in the last place, for when PyTorch happens to be
exact).
"""
import pytest
import torch

import ddtime
from ddtime import _ops
from ddtime.reference import (
    frequency_alignment_loss_reference,
    isib_loss_reference,
    pairwise_symmetric_kl_reference,
    value_loss_reference,
)

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
ULP = {torch.float16: 2.0**-10, torch.bfloat16: 2.0**-7, torch.float32: 2.0**-23, torch.float64: 2.0**-52}


@pytest.fixture(scope="module", autouse=True)
def cuda_build():
    if _ops.cuda_version() < 0:
        pytest.skip("ddtime._C was built without CUDA kernels (DDTIME_WITH_CUDA=1 to build them)")


def _gen(seed, device="cuda"):
    return torch.Generator(device=device).manual_seed(seed)


def _randn(shape, seed, dtype=torch.float32, device="cuda", scale=1.0):
    return (scale * torch.randn(shape, generator=_gen(seed, device), device=device, dtype=torch.float64)).to(dtype)


def _assert_accurate(got, reference_fn, args64, args_same, dtype):
    """got vs reference_fn(*args64) (float64) within the SPEC tolerance for dtype."""
    exact = reference_fn(*args64).double()
    err = (got.double() - exact).abs().max().item()
    scale = exact.abs().max().item()
    if dtype in (torch.float32, torch.float64):
        bound = (1e-5 if dtype == torch.float32 else 1e-12) * max(scale, 1e-30)
    else:
        torch_err = (reference_fn(*args_same).double() - exact).abs().max().item()
        bound = 2 * torch_err + 2 * ULP[dtype] * scale
    assert err <= bound, f"error {err:.3g} > bound {bound:.3g} (scale {scale:.3g}, {dtype})"


# ---- value loss / frequency alignment -------------------------------------------------------------
# shape, dim: [B, N, H] and [B, H, N] layouts, odd / prime / tiny horizons
VALUE_SHAPES = [
    ((4, 7, 96), -1),
    ((4, 96, 7), 1),
    ((3, 5, 720), 2),
    ((2, 336, 3), 1),
    ((3, 37), -1),
    ((2, 194), 1),  # H/2 = 97: generic prime stage
    ((5, 1), 1),
    ((6, 2), -1),
    ((2, 3, 24, 2), 2),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape,dim", VALUE_SHAPES, ids=lambda v: str(v))
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_value_loss_matches_reference(shape, dim, dtype, reduction):
    x, y = _randn(shape, 1, dtype), _randn(shape, 2, dtype)
    for alpha in (0.0, 0.8, 1.0):
        got = ddtime.value_loss(x, y, alpha=alpha, dim=dim, reduction=reduction)
        assert got.dtype == dtype and got.device == x.device

        def ref(a, b):
            return value_loss_reference(a, b, alpha=alpha, dim=dim, reduction=reduction)

        _assert_accurate(got, ref, (x.double(), y.double()), (x, y), dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape,dim", VALUE_SHAPES, ids=lambda v: str(v))
def test_value_loss_gradient_matches_reference(shape, dim, dtype):
    x, y = _randn(shape, 3, dtype), _randn(shape, 4, dtype)
    xr, yr = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
    ddtime.value_loss(xr, yr, dim=dim, reduction="sum").backward()

    def grad_of(a, b):
        a = a.clone().requires_grad_(True)
        value_loss_reference(a, b, dim=dim, reduction="sum").backward()
        return a.grad

    _assert_accurate(xr.grad, grad_of, (x.double(), y.double()), (x, y), dtype)
    torch.testing.assert_close(yr.grad, -xr.grad, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape,dim", VALUE_SHAPES, ids=lambda v: str(v))
def test_frequency_alignment_bins_match_reference(shape, dim, dtype):
    x, y = _randn(shape, 5, dtype), _randn(shape, 6, dtype)
    got = ddtime.frequency_alignment_loss(x, y, dim=dim, reduction="none")

    def ref(a, b):
        return frequency_alignment_loss_reference(a, b, dim=dim, reduction="none")

    _assert_accurate(got, ref, (x.double(), y.double()), (x, y), dtype)
    g = _randn(got.shape, 7, dtype)
    xr = x.clone().requires_grad_(True)
    (ddtime.frequency_alignment_loss(xr, y, dim=dim, reduction="none") * g).sum().backward()

    def grad_of(a, b):
        a = a.clone().requires_grad_(True)
        (ref(a, b) * g.to(a.dtype)).sum().backward()
        return a.grad

    _assert_accurate(xr.grad, grad_of, (x.double(), y.double()), (x, y), dtype)


def test_value_loss_cuda_matches_cpu_op():
    x, y = _randn((8, 7, 96), 8), _randn((8, 7, 96), 9)
    for reduction in ("none", "mean"):
        for dim in (-1, 1):
            gpu = ddtime.value_loss(x, y, dim=dim, reduction=reduction)
            cpu = ddtime.value_loss(x.cpu(), y.cpu(), dim=dim, reduction=reduction)
            torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-5, atol=1e-6)
    xr, xc = x.clone().requires_grad_(True), x.cpu().requires_grad_(True)
    ddtime.value_loss(xr, y).backward()
    ddtime.value_loss(xc, y.cpu()).backward()
    torch.testing.assert_close(xr.grad.cpu(), xc.grad, rtol=1e-5, atol=1e-7)
    bins = ddtime.frequency_alignment_loss(x, y, reduction="none")
    torch.testing.assert_close(bins.cpu(), ddtime.frequency_alignment_loss(x.cpu(), y.cpu(), reduction="none"),
                               rtol=1e-5, atol=1e-5)


def test_value_loss_non_contiguous_and_broadcast_layouts():
    base = _randn((4, 7, 96), 10)
    x = base.transpose(1, 2)  # [B, H, N] view of a [B, N, H] tensor, time axis strided by 1
    y = torch.zeros(1, 96, 1, device="cuda").expand(4, 96, 7)  # stride-0 target
    got = ddtime.value_loss(x, y, dim=1, reduction="none")
    ref = value_loss_reference(x.double(), y.double(), dim=1, reduction="none")
    torch.testing.assert_close(got.double(), ref, rtol=1e-5, atol=1e-6)
    sliced = _randn((4, 7, 200), 11)[..., ::2]  # time stride 2
    flat = torch.ones(1, 1, 100, device="cuda").expand(4, 7, 100)
    torch.testing.assert_close(ddtime.value_loss(sliced, flat).double(),
                               value_loss_reference(sliced.double(), flat.double()), rtol=1e-5, atol=1e-7)


# 30030 = 2*3*5*7*11*13 exceeds shared memory (global-workspace path); 9602 = 2 * 4801 (prime) needs
# opt-in shared memory and one 4801-point generic stage
@pytest.mark.parametrize("H", [30030, 9602])
def test_value_loss_long_series(H):
    x, y = _randn((2, H), 12), _randn((2, H), 13)
    xr = x.clone().requires_grad_(True)
    loss = ddtime.value_loss(xr, y, reduction="sum")
    loss.backward()
    x64 = x.double().requires_grad_(True)
    ref = value_loss_reference(x64, y.double(), reduction="sum")
    ref.backward()
    torch.testing.assert_close(loss.double(), ref.detach(), rtol=1e-5, atol=0)
    torch.testing.assert_close(xr.grad.double(), x64.grad, rtol=0, atol=1e-5 * x64.grad.abs().max().item())


def test_zero_difference_has_zero_gradient():
    x = _randn((3, 7, 48), 14).requires_grad_(True)
    ddtime.value_loss(x, x.detach().clone(), alpha=1.0).backward()
    assert torch.count_nonzero(x.grad) == 0


def test_value_gradcheck():
    x = _randn((2, 3, 12), 15, torch.float64).requires_grad_(True)
    y = _randn((2, 3, 12), 16, torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: ddtime.value_loss(a, b, alpha=0.6, reduction="none"), (x, y))
    assert torch.autograd.gradcheck(lambda a, b: ddtime.value_loss(a, b, dim=1), (x, y))
    assert torch.autograd.gradcheck(lambda a, b: ddtime.frequency_alignment_loss(a, b, reduction="none"), (x, y))
    z = _randn((2, 11, 3), 17, torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: ddtime.frequency_alignment_loss(a, a.detach() * 0, dim=1), (z,))


# ---- pairwise symmetric KL / ISIB --------------------------------------------------------------------
ISIB_SHAPES = [(10, 7, 192), (1, 3, 5), (2, 1, 1), (100, 7, 24), (130, 2, 50), (5, 33)]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", ISIB_SHAPES, ids=str)
@pytest.mark.parametrize("tau", [0.5, 1.0])
def test_pairwise_kl_and_isib_match_reference(shape, dtype, tau):
    x = _randn(shape, 20, dtype, scale=2.0)
    d = ddtime.pairwise_symmetric_kl(x, tau=tau)
    assert d.dtype == dtype and d.shape == (shape[0], shape[0])
    assert torch.equal(d, d.T) and torch.count_nonzero(torch.diagonal(d)) == 0

    def kl_ref(a):
        return pairwise_symmetric_kl_reference(a, tau=tau)

    def isib_ref(a):
        return isib_loss_reference(a, tau=tau)

    _assert_accurate(d, kl_ref, (x.double(),), (x,), dtype)
    _assert_accurate(ddtime.isib_loss(x, tau=tau), isib_ref, (x.double(),), (x,), dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", ISIB_SHAPES, ids=str)
def test_pairwise_kl_and_isib_gradients_match_reference(shape, dtype):
    x = _randn(shape, 21, dtype, scale=2.0)
    g = _randn((shape[0], shape[0]), 22, torch.float64)

    def grad_of(fn, weight=None):
        def run(a):
            a = a.clone().requires_grad_(True)
            out = fn(a)
            (out if weight is None else (out * weight.to(out.dtype)).sum()).backward()
            return a.grad

        return run

    got = grad_of(ddtime.pairwise_symmetric_kl, g)(x)
    _assert_accurate(got, grad_of(pairwise_symmetric_kl_reference, g), (x.double(),), (x,), dtype)
    got = grad_of(ddtime.isib_loss)(x)
    _assert_accurate(got, grad_of(isib_loss_reference), (x.double(),), (x,), dtype)


def test_isib_cuda_matches_cpu_op():
    x = _randn((10, 7, 192), 23, scale=2.0)
    torch.testing.assert_close(ddtime.pairwise_symmetric_kl(x).cpu(), ddtime.pairwise_symmetric_kl(x.cpu()),
                               rtol=1e-5, atol=1e-6)
    xr, xc = x.clone().requires_grad_(True), x.cpu().requires_grad_(True)
    ddtime.isib_loss(xr).backward()
    ddtime.isib_loss(xc).backward()
    torch.testing.assert_close(xr.grad.cpu(), xc.grad, rtol=1e-5, atol=1e-8)


def test_isib_gradcheck():
    x = _randn((4, 3, 6), 24, torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: ddtime.pairwise_symmetric_kl(a, tau=0.7), (x,))
    assert torch.autograd.gradcheck(lambda a: ddtime.isib_loss(a, tau=1.3), (x,))
    one = _randn((1, 3, 6), 25, torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(ddtime.isib_loss, (one,))


def test_isib_memory_is_linear_in_x():
    S, N, L = 64, 16, 4096
    x = _randn((S, N, L), 26).requires_grad_(True)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    ddtime.isib_loss(x).backward()
    torch.cuda.synchronize()
    extra = torch.cuda.max_memory_allocated() - before
    # workspace: one S*N*L opmath buffer in the backward plus grad_x, and at most 128 S*S partials
    assert extra <= 3 * x.numel() * 4 + 130 * S * S * 4 + (1 << 20), extra


# ---- determinism -------------------------------------------------------------------------------------
def test_results_are_bitwise_reproducible():
    x, y = _randn((64, 321, 336), 27), _randn((64, 321, 336), 28)
    s = _randn((300, 7, 96), 29)

    def run():
        xr, sr = x.clone().requires_grad_(True), s.clone().requires_grad_(True)
        v = ddtime.value_loss(xr, y, reduction="none")
        v.sum().backward()
        b = ddtime.frequency_alignment_loss(x, y, dim=1, reduction="none")
        i = ddtime.isib_loss(sr)
        i.backward()
        return v.detach(), xr.grad, b, i.detach(), sr.grad, ddtime.pairwise_symmetric_kl(s)

    first, second = run(), run()
    for a, b in zip(first, second):
        assert torch.equal(a, b)


# ---- operator checks and torch.compile ------------------------------------------------------------------
def _op_samples():
    x, y = _randn((3, 4, 24), 30), _randn((3, 4, 24), 31)
    xg, yg = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
    s = _randn((5, 3, 16), 32).requires_grad_(True)
    ops = torch.ops.ddtime
    return [
        (ops.value_loss_fused.default, (xg, yg, 0.8, 2, True)),
        (ops.value_loss_fused.default, (x, y, 0.3, 1, False)),
        (ops.frequency_alignment_bins.default, (xg, yg, 2)),
        (ops.frequency_alignment_bins.default, (x.transpose(1, 2), y.transpose(1, 2), 1)),
        (ops.pairwise_symmetric_kl.default, (s, 0.7)),
        (ops.isib_loss.default, (s, 1.0)),
    ]


@pytest.mark.parametrize("index", range(6))
def test_opcheck(index):
    op, args = _op_samples()[index]
    torch.library.opcheck(op, args)


def _objective(pred, target, syn):
    return ddtime.value_loss(pred, target, dim=1) + 0.6 * ddtime.isib_loss(syn)


@pytest.mark.parametrize("mode", [None, "reduce-overhead"])
def test_torch_compile_matches_eager(mode):
    torch._dynamo.reset()
    compiled = torch.compile(_objective, fullgraph=True, mode=mode)
    target = _randn((8, 96, 7), 33)
    for step in range(3):  # reduce-overhead: warm-up, capture, replay
        pred = _randn((8, 96, 7), 34 + step).requires_grad_(True)
        syn = _randn((10, 7, 192), 40 + step).requires_grad_(True)
        eager_pred, eager_syn = pred.detach().clone().requires_grad_(True), syn.detach().clone().requires_grad_(True)
        got = compiled(pred, target, syn)
        got.backward()
        want = _objective(eager_pred, target, eager_syn)
        want.backward()
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(pred.grad, eager_pred.grad, rtol=1e-5, atol=1e-8)
        torch.testing.assert_close(syn.grad, eager_syn.grad, rtol=1e-5, atol=1e-8)


def test_errors_name_the_argument():
    x = _randn((2, 3, 8), 50)
    with pytest.raises(RuntimeError, match="target must be on the device"):
        torch.ops.ddtime.value_loss_fused(x, x.cpu(), 0.5, 2, False)
    with pytest.raises(RuntimeError, match="grad_D must have shape"):
        torch.ops.ddtime.pairwise_symmetric_kl_backward(torch.zeros(3, 3, device="cuda"), x, 1.0)
