"""What only the CUDA kernels have: every dtype against the float64 reference, CUDA op vs CPU op,
the global-workspace path of long series, CUDA graphs, bitwise determinism, the memory bound of
ISIB and cross-device errors. The CPU cases of tests/test_value_loss.py and tests/test_isib.py
(reference values, gradcheck, opcheck, torch.compile, layouts, argument errors) run on CUDA too.

Tolerances (tests/tolerances.py, docs/losses.md "Exactness"): float32 within 1e-5 (relative to the largest
reference value) of the float64 reference; float16 / bfloat16 within twice the error of PyTorch's
own computation of the reference in that dtype (plus two units in the last place, for when PyTorch
happens to be exact).
"""
import pytest
import torch
from tolerances import HALF, TOL

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


@pytest.fixture(scope="module", autouse=True)
def cuda_build():
    if _ops.cuda_version() < 0:
        pytest.skip("ddtime._C was built without CUDA kernels (DDTIME_WITH_CUDA=1 to build them)")


def _gen(seed, device="cuda"):
    return torch.Generator(device=device).manual_seed(seed)


def _randn(shape, seed, dtype=torch.float32, device="cuda", scale=1.0):
    return (scale * torch.randn(shape, generator=_gen(seed, device), device=device, dtype=torch.float64)).to(dtype)


def _assert_accurate(got, reference_fn, args64, args_same, dtype):
    """got vs reference_fn(*args64) (float64) within the tolerance of tests/tolerances.py for dtype."""
    exact = reference_fn(*args64).double()
    err = (got.double() - exact).abs().max().item()
    scale = exact.abs().max().item()
    if dtype in (torch.float32, torch.float64):
        bound = TOL["cuda"][dtype][0] * max(scale, 1e-30)
    else:
        k, ulps = HALF["cuda"]
        torch_err = (reference_fn(*args_same).double() - exact).abs().max().item()
        bound = k * torch_err + ulps * torch.finfo(dtype).eps * scale
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
            rtol, atol = TOL["cuda_vs_cpu_value"][torch.float32]
            torch.testing.assert_close(gpu.cpu(), cpu, rtol=rtol, atol=atol)
    xr, xc = x.clone().requires_grad_(True), x.cpu().requires_grad_(True)
    ddtime.value_loss(xr, y).backward()
    ddtime.value_loss(xc, y.cpu()).backward()
    rtol, atol = TOL["cuda_vs_cpu_grad"][torch.float32]
    torch.testing.assert_close(xr.grad.cpu(), xc.grad, rtol=rtol, atol=atol)
    bins = ddtime.frequency_alignment_loss(x, y, reduction="none")
    rtol, atol = TOL["cuda_vs_cpu_bins"][torch.float32]
    torch.testing.assert_close(bins.cpu(), ddtime.frequency_alignment_loss(x.cpu(), y.cpu(), reduction="none"),
                               rtol=rtol, atol=atol)


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
    rtol, atol = TOL["cuda_long_series"][torch.float32]
    torch.testing.assert_close(loss.double(), ref.detach(), rtol=rtol, atol=atol)
    torch.testing.assert_close(xr.grad.double(), x64.grad, rtol=0, atol=rtol * x64.grad.abs().max().item())


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
    rtol, atol = TOL["cuda_vs_cpu_value"][torch.float32]
    torch.testing.assert_close(ddtime.pairwise_symmetric_kl(x).cpu(), ddtime.pairwise_symmetric_kl(x.cpu()),
                               rtol=rtol, atol=atol)
    xr, xc = x.clone().requires_grad_(True), x.cpu().requires_grad_(True)
    ddtime.isib_loss(xr).backward()
    ddtime.isib_loss(xc).backward()
    rtol, atol = TOL["cuda_vs_cpu_isib_grad"][torch.float32]
    torch.testing.assert_close(xr.grad.cpu(), xc.grad, rtol=rtol, atol=atol)


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
def _objective(pred, target, syn):
    return ddtime.value_loss(pred, target, dim=1) + 0.6 * ddtime.isib_loss(syn)


def test_torch_compile_cuda_graphs_match_eager():
    """mode="reduce-overhead" (CUDA graphs); the default mode runs in the device-parametrised tests."""
    torch._dynamo.reset()
    compiled = torch.compile(_objective, fullgraph=True, mode="reduce-overhead")
    target = _randn((8, 96, 7), 33)
    rtol, atol = TOL["cuda_compile_value"][torch.float32]
    grad_rtol, grad_atol = TOL["cuda_compile_grad"][torch.float32]
    for step in range(3):  # reduce-overhead: warm-up, capture, replay
        pred = _randn((8, 96, 7), 34 + step).requires_grad_(True)
        syn = _randn((10, 7, 192), 40 + step).requires_grad_(True)
        eager_pred, eager_syn = pred.detach().clone().requires_grad_(True), syn.detach().clone().requires_grad_(True)
        got = compiled(pred, target, syn)
        got.backward()
        want = _objective(eager_pred, target, eager_syn)
        want.backward()
        torch.testing.assert_close(got, want, rtol=rtol, atol=atol)
        torch.testing.assert_close(pred.grad, eager_pred.grad, rtol=grad_rtol, atol=grad_atol)
        torch.testing.assert_close(syn.grad, eager_syn.grad, rtol=grad_rtol, atol=grad_atol)


def test_tensors_on_two_devices_are_a_value_error():
    """csrc/checks.h: the error types of the CPU ops; only here can the devices of two arguments differ."""
    x, s = _randn((2, 3, 8), 50), _randn((4, 2, 5), 51)
    ops = torch.ops.ddtime
    with pytest.raises(ValueError, match="target must be on the device of input"):
        ops.value_loss_fused(x, x.cpu(), 0.5, 2, False)
    with pytest.raises(ValueError, match="grad_rows must be on the device of grad"):
        ops.value_loss_backward(torch.ones(2, 3), x, 2)
    with pytest.raises(ValueError, match="grad_D must be on the device of x"):
        ops.pairwise_symmetric_kl_backward(torch.zeros(4, 4), s, 1.0)
    with pytest.raises(ValueError, match="D must be on the device of x"):
        ops.isib_loss_backward(torch.tensor(1.0, device="cuda"), torch.zeros(4, 4), s, 1.0)
