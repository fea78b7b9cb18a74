"""Value loss and frequency alignment (ops 1-4): fused kernels against ddtime.reference, on every
device of tests/tolerances.py (whose table holds the bounds: float32 within 1e-5 relative of a
float64 reference; float16 and bfloat16 within twice the error of PyTorch's own half-precision
evaluation of the reference, plus one unit of the dtype's rounding).
"""
import doctest
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tolerances import DEVICES, HALF, TOL

import ddtime
import ddtime.functional
from ddtime.reference import frequency_alignment_loss_reference, value_loss_reference

ops = torch.ops.ddtime

REDUCTIONS = ("mean", "sum", "none")
LENGTHS = (1, 2, 3, 8, 97, 336, 720)
# (shape builder for a time length H, dim): dim=-1 is [B, N, H], dim=1 is [B, H, N], and a middle axis.
LAYOUTS = {
    "last": (lambda h: (3, 5, h), -1),
    "channels_last": (lambda h: (3, h, 5), 1),
    "middle": (lambda h: (2, h, 3, 2), 1),
}
F32_VALUE_RTOL = TOL["value"][torch.float32][0]
F32_GRAD_RTOL = TOL["value_grad"][torch.float32][0]


def gen(seed):
    return torch.Generator().manual_seed(seed)


def pair(shape, dtype=torch.float32, seed=0, scale=1.0, device="cpu"):
    """The same values on every device."""
    g = gen(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64) * scale
    y = torch.randn(shape, generator=g, dtype=torch.float64) * scale
    return x.to(device, dtype), y.to(device, dtype)


def loss_fns(alpha):
    """(fused, reference) pairs with alpha bound; frequency alignment is the alpha = 1 value loss."""
    if alpha is None:
        return ddtime.frequency_alignment_loss, frequency_alignment_loss_reference
    return (
        lambda a, b, **kw: ddtime.value_loss(a, b, alpha=alpha, **kw),
        lambda a, b, **kw: value_loss_reference(a, b, alpha=alpha, **kw),
    )


def assert_rel_close(actual, expected, rtol, what=""):
    actual, expected = actual.double(), expected.double()
    scale = expected.abs().max().clamp_min(1e-300)
    err = ((actual - expected).abs().max() / scale).item()
    assert err <= rtol, f"{what}: relative error {err:.3g} > {rtol:g}"


def grads(fn, x, y, **kw):
    x = x.detach().clone().requires_grad_()
    y = y.detach().clone().requires_grad_()
    out = fn(x, y, **kw)
    gout = torch.ones_like(out) if out.dim() else None
    gx, gy = torch.autograd.grad(out, (x, y), gout)
    return out.detach(), gx, gy


# ---- values and gradients against the reference ---------------------------------------------
@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("alpha", [None, 0.0, 0.3, 0.8, 1.0])
def test_float32_matches_float64_reference(length, layout, alpha, device):
    make_shape, dim = LAYOUTS[layout]
    x, y = pair(make_shape(length), seed=length, device=device)
    fused, reference = loss_fns(alpha)
    for reduction in REDUCTIONS:
        out, gx, gy = grads(fused, x, y, dim=dim, reduction=reduction)
        ref, rx, ry = grads(reference, x.double(), y.double(), dim=dim, reduction=reduction)
        assert out.dtype == torch.float32 and out.shape == ref.shape
        what = f"H={length} {layout} alpha={alpha} {reduction}"
        if reduction == "none" and alpha is None:  # per-bin moduli: absolute error ~ eps * max |D|
            assert_rel_close(out, ref, F32_VALUE_RTOL, what)
        else:
            torch.testing.assert_close(out.double(), ref, rtol=F32_VALUE_RTOL, atol=0.0, msg=what)
        assert_rel_close(gx, rx, F32_GRAD_RTOL, what + " grad input")
        assert_rel_close(gy, ry, F32_GRAD_RTOL, what + " grad target")
        torch.testing.assert_close(gy, -gx, rtol=0, atol=0)


@pytest.mark.parametrize("length", [1, 2, 5, 12, 97, 194, 336, 719])
def test_float64_is_exact(length, device):
    x, y = pair((4, 3, length), torch.float64, seed=length, device=device)
    for alpha in (None, 0.5):
        fused, reference = loss_fns(alpha)
        for reduction in REDUCTIONS:
            out, gx, _ = grads(fused, x, y, reduction=reduction)
            ref, rx, _ = grads(reference, x, y, reduction=reduction)
            assert_rel_close(out, ref, TOL["value"][torch.float64][0], f"H={length} {reduction}")
            assert_rel_close(gx, rx, TOL["value_grad"][torch.float64][0], f"H={length} {reduction} grad")


@pytest.mark.parametrize("length", [6, 7, 11 * 13, 2 * 61, 67, 4 * 67, 1000])
def test_radices_and_bluestein_lengths(length, device):
    """Generic odd-prime butterflies (7, 11, 13, 61) and Bluestein (67) in both real paths."""
    x, y = pair((3, length, 2), seed=length, device=device)
    for reduction in ("sum", "none"):
        out, gx, _ = grads(ddtime.value_loss, x, y, alpha=0.6, dim=1, reduction=reduction)
        ref, rx, _ = grads(value_loss_reference, x.double(), y.double(), alpha=0.6, dim=1, reduction=reduction)
        torch.testing.assert_close(out.double(), ref, rtol=F32_VALUE_RTOL, atol=0.0)
        assert_rel_close(gx, rx, F32_GRAD_RTOL, f"H={length}")


@pytest.mark.parametrize("shape", [(40, 97), (33, 21), (16, 1), (17, 2), (2, 24, 720)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_full_and_partial_blocks(shape, dtype, device):
    """Row counts around the SIMD block size (16 float / 8 double series) and ragged lengths."""
    x, y = pair(shape, dtype, seed=sum(shape), device=device)
    rtol, grad_rtol = TOL["value"][dtype][0], TOL["value_grad"][dtype][0]
    out, gx, _ = grads(ddtime.value_loss, x, y, alpha=0.8, reduction="none")
    ref, rx, _ = grads(value_loss_reference, x.double(), y.double(), alpha=0.8, reduction="none")
    torch.testing.assert_close(out.double(), ref, rtol=rtol, atol=0.0)
    assert_rel_close(gx, rx, grad_rtol, "grad")
    modulus, phase = ops.frequency_alignment_bins(x, y, x.dim() - 1)
    spectrum = torch.fft.rfft((x - y).double(), dim=-1)
    assert_rel_close(modulus, spectrum.abs(), rtol, "modulus")
    phase_rtol = TOL["phase"][dtype][0]
    assert_rel_close(torch.view_as_complex(phase.double()) * modulus.double(), spectrum, phase_rtol, "phase")
    gm = torch.randn(modulus.shape, generator=gen(1), dtype=dtype).to(device)
    back = ops.frequency_alignment_bins_backward(gm, phase, x.dim() - 1, x.shape[-1])
    leaf = x.double().requires_grad_()
    (expected,) = torch.autograd.grad(
        frequency_alignment_loss_reference(leaf, y.double(), reduction="none"), leaf, gm.double()
    )
    assert_rel_close(back, expected, grad_rtol, "bins backward")


@pytest.mark.parametrize("scale", [1e4, 1e-6])
@pytest.mark.parametrize("alpha", [None, 0.8])
def test_extreme_magnitudes(scale, alpha, device):
    x, y = pair((4, 3, 96), seed=3, scale=scale, device=device)
    fused, reference = loss_fns(alpha)
    for reduction in REDUCTIONS:
        out, gx, _ = grads(fused, x, y, reduction=reduction)
        ref, rx, _ = grads(reference, x.double(), y.double(), reduction=reduction)
        assert_rel_close(out, ref, F32_VALUE_RTOL, f"scale={scale} {reduction}")
        assert_rel_close(gx, rx, F32_GRAD_RTOL, f"scale={scale} {reduction} grad")


def test_tiny_spectra_keep_their_phase():
    """|D|^2 below float32's normal range: the kernel recomputes those bins in double."""
    x, y = pair((2, 3, 16), seed=4, scale=1e-21)
    out, gx, _ = grads(ddtime.value_loss, x, y, alpha=1.0, reduction="sum")
    ref, rx, _ = grads(value_loss_reference, x.double(), y.double(), alpha=1.0, reduction="sum")
    assert_rel_close(out, ref, F32_VALUE_RTOL, "value")
    assert_rel_close(gx, rx, F32_GRAD_RTOL, "grad")


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("length", [1, 2, 7, 96])
def test_identical_samples_give_zero_loss_and_gradient(layout, length, device):
    make_shape, dim = LAYOUTS[layout]
    x, _ = pair(make_shape(length), seed=5, device=device)
    for alpha in (None, 0.0, 0.8):
        fused, _ = loss_fns(alpha)
        for reduction in REDUCTIONS:
            out, gx, gy = grads(fused, x, x.clone(), dim=dim, reduction=reduction)
            assert torch.all(out == 0)
            assert torch.isfinite(gx).all() and torch.all(gx == 0) and torch.all(gy == 0)


def test_zero_bins_have_zero_phase(device):
    x, _ = pair((3, 10), seed=6, device=device)
    modulus, phase = ops.frequency_alignment_bins(x, x.clone(), 1)
    assert modulus.shape == (3, 6) and phase.shape == (3, 6, 2)
    assert torch.all(modulus == 0) and torch.all(phase == 0)


def test_bins_reconstruct_the_spectrum(device):
    x, y = pair((2, 24, 3), torch.float64, seed=7, device=device)
    modulus, phase = ops.frequency_alignment_bins(x, y, 1)
    spectrum = torch.fft.rfft(x - y, dim=1)
    rtol, atol = TOL["spectrum"][torch.float64]
    torch.testing.assert_close(torch.view_as_complex(phase) * modulus, spectrum, rtol=rtol, atol=atol)
    torch.testing.assert_close(phase.square().sum(-1), torch.ones_like(modulus))


# ---- layouts and memory -----------------------------------------------------------------------
def test_non_contiguous_and_expanded_inputs(device):
    g = gen(8)
    base = torch.randn(4, 96, 6, generator=g).to(device)
    other = torch.randn(6, 96, 4, generator=g).to(device)
    cases = {
        "transposed": (base.transpose(0, 2), other),
        "sliced with step": (torch.randn(6, 192, 8, generator=g).to(device)[:, ::2, ::2], other),
        "expanded": (torch.randn(1, 96, 4, generator=g).to(device).expand(6, 96, 4), other),
    }
    for name, (a, b) in cases.items():
        assert not a.is_contiguous(), name
        for alpha in (None, 0.8):
            fused, reference = loss_fns(alpha)
            for reduction in REDUCTIONS:
                out = fused(a, b, dim=1, reduction=reduction)
                torch.testing.assert_close(out, fused(a.contiguous(), b, dim=1, reduction=reduction), rtol=0, atol=0)
                ref = reference(a.double(), b.double(), dim=1, reduction=reduction)
                assert_rel_close(out, ref, F32_VALUE_RTOL, f"{name} {reduction}")


def test_gradient_reaches_an_expanded_leaf(device):
    leaf = torch.randn(1, 3, 48, generator=gen(9)).to(device).requires_grad_()
    target = torch.randn(5, 3, 48, generator=gen(10)).to(device)
    ddtime.value_loss(leaf.expand(5, 3, 48), target).backward()
    leaf64 = leaf.detach().double().requires_grad_()
    value_loss_reference(leaf64.expand(5, 3, 48), target.double()).backward()
    assert_rel_close(leaf.grad, leaf64.grad, F32_GRAD_RTOL, "expanded leaf")


def test_thread_count_does_not_change_results():
    """Large enough (3584 series) for the kernels to split the work over threads."""
    x, y = pair((512, 7, 96), seed=11)
    rows = torch.rand(512, 7, generator=gen(12))
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, max(2, threads)):
            torch.set_num_threads(n)
            value = ops.value_loss_fused(x, y, 0.8, 2, True)
            bins = ops.frequency_alignment_bins(x, y, 2)
            results.append(value + bins + (ops.value_loss_backward(rows, value[1], 2),))
    finally:
        torch.set_num_threads(threads)
    for one, many in zip(*results):
        torch.testing.assert_close(one, many, rtol=0, atol=0)


# ---- half precision -----------------------------------------------------------------------------
def assert_half_close(ours, torch_half, exact, what):
    """max |ours - exact| <= 2 max |torch_half - exact| + eps(dtype) max |exact| (HALF["value"])."""
    k, ulps = HALF["value"]
    eps = torch.finfo(ours.dtype).eps
    ours, torch_half = ours.double(), torch_half.double()
    err = (ours - exact).abs().max().item()
    bound = k * (torch_half - exact).abs().max().item() + ulps * eps * exact.abs().max().item()
    assert err <= bound, f"{what}: error {err:.3g} > bound {bound:.3g}"


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("alpha", [None, 0.3, 0.8])
@pytest.mark.parametrize("layout", ["last", "channels_last"])
def test_half_precision_within_twice_torch_error(dtype, alpha, layout, device):
    make_shape, dim = LAYOUTS[layout]
    x, y = pair(make_shape(96), dtype, seed=12, device=device)
    fused, reference = loss_fns(alpha)
    for reduction in REDUCTIONS:
        out, gx, _ = grads(fused, x, y, dim=dim, reduction=reduction)
        half, hx, _ = grads(reference, x, y, dim=dim, reduction=reduction)
        exact, ex, _ = grads(reference, x.double(), y.double(), dim=dim, reduction=reduction)
        assert out.dtype == dtype and gx.dtype == dtype
        assert_half_close(out, half, exact, f"{dtype} {reduction}")
        assert_half_close(gx, hx, ex, f"{dtype} {reduction} grad")


def test_half_output_dtypes(device):
    x, y = pair((2, 3, 16), torch.float16, seed=13, device=device)
    rows, grad = ops.value_loss_fused(x, y, 0.8, 2, True)
    assert rows.dtype == torch.float32 and grad.dtype == torch.float16 and grad.shape == x.shape
    rows, grad = ops.value_loss_fused(x, y, 0.8, 2, False)
    assert grad.shape == (0,) and grad.dtype == torch.float16
    modulus, phase = ops.frequency_alignment_bins(x, y, 2)
    assert modulus.dtype == torch.float16 and phase.dtype == torch.float32
    back = ops.frequency_alignment_bins_backward(modulus, phase, 2, 16)
    assert back.dtype == torch.float16 and back.shape == x.shape
    assert ops.value_loss_backward(rows, ops.value_loss_fused(x, y, 0.8, 2, True)[1], 2).dtype == torch.float16


# ---- autograd, operator registration, torch.compile -------------------------------------------
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape, dim", [((2, 3, 8), -1), ((2, 7, 3), 1), ((5,), 0)])
def test_gradcheck(reduction, shape, dim, device):
    x, y = pair(shape, torch.float64, seed=14, device=device)
    x.requires_grad_()
    y.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda a, b: ddtime.value_loss(a, b, alpha=0.7, dim=dim, reduction=reduction), (x, y)
    )
    assert torch.autograd.gradcheck(
        lambda a, b: ddtime.frequency_alignment_loss(a, b, dim=dim, reduction=reduction), (x, y)
    )


def _opcheck(op, args):
    torch.library.opcheck(op, args)


@pytest.mark.parametrize("compute_grad", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_opcheck_value_loss_fused(compute_grad, dtype, device):
    x, y = pair((3, 9, 4), dtype, seed=15, device=device)
    if compute_grad:
        x.requires_grad_()
        y.requires_grad_()
    _opcheck(ops.value_loss_fused.default, (x, y, 0.8, 1, compute_grad))


def test_opcheck_value_loss_backward(device):
    x, y = pair((3, 9, 4), seed=16, device=device)
    rows, grad = ops.value_loss_fused(x, y, 0.8, 1, True)
    _opcheck(ops.value_loss_backward.default, (torch.randn_like(rows), grad, 1))


@pytest.mark.parametrize("requires_grad", [True, False])
def test_opcheck_frequency_alignment_bins(requires_grad, device):
    x, y = pair((3, 10, 2), seed=17, device=device)
    x.requires_grad_(requires_grad)
    y.requires_grad_(requires_grad)
    _opcheck(ops.frequency_alignment_bins.default, (x, y, 1))


def test_opcheck_frequency_alignment_bins_backward(device):
    x, y = pair((3, 11, 2), seed=18, device=device)
    modulus, phase = ops.frequency_alignment_bins(x, y, 1)
    _opcheck(ops.frequency_alignment_bins_backward.default, (torch.randn_like(modulus), phase, 1, 11))


def test_no_gradient_when_not_requested(device):
    x, y = pair((2, 8), seed=19, device=device)
    x.requires_grad_()
    rows, grad = ops.value_loss_fused(x, y, 0.8, 1, False)
    assert grad.numel() == 0
    with pytest.raises(RuntimeError, match="compute_grad=False"):
        rows.sum().backward()


def test_torch_compile_fullgraph_parity(device):
    def objective(student, teacher):
        value = ddtime.value_loss(student, teacher, alpha=0.3, dim=1)
        bins = ddtime.frequency_alignment_loss(student, teacher, dim=1, reduction="none")
        return value + bins.square().mean()

    compiled = torch.compile(objective, fullgraph=True)
    x, y = pair((4, 24, 3), seed=20, device=device)
    eager, ex, _ = grads(objective, x, y)
    out, cx, _ = grads(compiled, x, y)
    rtol, atol = TOL["compile_value_loss"][torch.float32]
    torch.testing.assert_close(out, eager, rtol=rtol, atol=atol)
    rtol, atol = TOL["compile_grad"][torch.float32]
    torch.testing.assert_close(cx, ex, rtol=rtol, atol=atol)


@pytest.mark.parametrize("device", DEVICES)
@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 5), min_size=0, max_size=2),
    length=st.integers(1, 40),
    position=st.integers(0, 2),
    alpha=st.floats(0.0, 1.0),
    reduction=st.sampled_from(REDUCTIONS),
    scale=st.sampled_from([1e-3, 1.0, 1e3]),
    seed=st.integers(0, 2**31 - 1),
)
def test_fuzz_against_reference(device, sizes, length, position, alpha, reduction, scale, seed):
    position = min(position, len(sizes))
    shape = tuple(sizes[:position]) + (length,) + tuple(sizes[position:])
    dim = position - len(shape)  # negative form
    x, y = pair(shape, torch.float64, seed=seed, scale=scale, device=device)
    for fused, reference in (loss_fns(alpha), loss_fns(None)):
        out, gx, _ = grads(fused, x, y, dim=dim, reduction=reduction)
        ref, rx, _ = grads(reference, x, y, dim=dim, reduction=reduction)
        assert_rel_close(out, ref, TOL["value"][torch.float64][0], f"{shape} dim={dim}")
        assert_rel_close(gx, rx, TOL["value_fuzz_grad"][torch.float64][0], f"{shape} dim={dim} grad")


# ---- argument errors ------------------------------------------------------------------------------
def _r(device, *shape):
    return torch.randn(shape, device=device)


def _x(device):
    return _r(device, 2, 3, 8)


@pytest.mark.parametrize(
    "call, error, pattern",
    [
        (lambda d: ddtime.value_loss(_r(d), _r(d)), ValueError, "student must have at least 1"),
        (lambda d: ddtime.value_loss(_x(d), _r(d, 2, 3, 9)), ValueError, "teacher must have the shape"),
        (lambda d: ddtime.value_loss(_x(d).int(), _x(d).int()), TypeError, "student must be float16"),
        (lambda d: ddtime.value_loss(_x(d), _x(d).double()), TypeError, "teacher must have the dtype"),
        (lambda d: ddtime.value_loss(_x(d).to(torch.complex64), _x(d)), TypeError, "student must be float16"),
        (lambda d: ddtime.value_loss(_x(d), _x(d).to("meta")), ValueError, "teacher must be on the device"),
        (lambda d: ddtime.value_loss(_r(d, 0, 8), _r(d, 0, 8)), ValueError, "student must not be empty"),
        (lambda d: ddtime.value_loss(_x(d), _x(d), alpha=1.5), ValueError, "alpha must be in"),
        (lambda d: ddtime.value_loss(_x(d), _x(d), alpha=-0.1), ValueError, "alpha must be in"),
        (lambda d: ddtime.value_loss(_x(d), _x(d), alpha="0.5"), TypeError, "alpha must be a float"),
        (lambda d: ddtime.value_loss(_x(d), _x(d), reduction="avg"), ValueError, "reduction must be one of"),
        (lambda d: ddtime.value_loss(_x(d), _x(d), dim=3), ValueError, "dim must be in"),
        (lambda d: ddtime.value_loss(_x(d), _x(d), dim=1.0), TypeError, "dim must be an int"),
        (lambda d: ddtime.frequency_alignment_loss(_x(d), _x(d)[:1]), ValueError, "target must have the shape"),
        (lambda d: ddtime.frequency_alignment_loss(_x(d).long(), _x(d).long()), TypeError, "input must be float16"),
        (lambda d: ddtime.frequency_alignment_loss(_x(d), _x(d), dim=-4), ValueError, "dim must be in"),
        (lambda d: ddtime.frequency_alignment_loss(_x(d), _x(d), reduction=None), ValueError, "reduction must be"),
        (lambda d: ddtime.frequency_alignment_loss(_x(d), [1.0]), TypeError, "target must be a torch.Tensor"),
        # direct operator calls are checked in C++ as well (csrc/checks.h), with the same error types
        (lambda d: ops.value_loss_fused(_x(d), _r(d, 2, 3, 9), 0.8, 2, True), ValueError, "target must have the shape"),
        (lambda d: ops.value_loss_fused(_x(d), _x(d), 2.0, 2, True), ValueError, "alpha must be in"),
        (lambda d: ops.value_loss_fused(_x(d), _x(d), 0.8, 3, True), ValueError, "dim must be in"),
        (lambda d: ops.value_loss_fused(_x(d), _x(d).double(), 0.8, 2, True), TypeError, "target must have the dtype"),
        (lambda d: ops.value_loss_fused(_x(d).int(), _x(d).int(), 0.8, 2, True), TypeError, "input must be float16"),
        (lambda d: ops.value_loss_backward(_r(d, 2, 4), _r(d, 2, 3, 8), 2), ValueError, "grad_rows must"),
        (lambda d: ops.frequency_alignment_bins_backward(_r(d, 2, 5), _r(d, 2, 5, 2), 1, 10), ValueError,
         "grad_modulus.size"),
        (lambda d: ops.frequency_alignment_bins_backward(_r(d, 2, 5), _r(d, 2, 5), 1, 8), ValueError,
         "phase must have shape"),
    ],
)
def test_bad_arguments_name_the_argument(call, error, pattern, device):
    with pytest.raises(error, match=pattern):
        call(device)


def test_modules_validate_in_init_and_match_functional():
    with pytest.raises(ValueError, match="alpha"):
        ddtime.ValueLoss(alpha=1.2)
    with pytest.raises(ValueError, match="reduction"):
        ddtime.ValueLoss(reduction="avg")
    with pytest.raises(TypeError, match="dim"):
        ddtime.ValueLoss(dim="1")
    with pytest.raises(ValueError, match="reduction"):
        ddtime.FrequencyAlignmentLoss(reduction="max")
    with pytest.raises(TypeError, match="dim"):
        ddtime.FrequencyAlignmentLoss(dim=0.5)
    x, y = pair((2, 24, 3), seed=21)
    module = ddtime.ValueLoss(alpha=0.4, dim=1, reduction="none")
    torch.testing.assert_close(module(x, y), ddtime.value_loss(x, y, alpha=0.4, dim=1, reduction="none"))
    module = ddtime.FrequencyAlignmentLoss(dim=1, reduction="sum")
    torch.testing.assert_close(module(x, y), ddtime.frequency_alignment_loss(x, y, dim=1, reduction="sum"))


def test_functional_doctests():
    if not torch._C._dispatch_has_kernel_for_dispatch_key("ddtime::isib_loss", "CPU"):
        pytest.skip("the module docstring also runs the ISIB kernels, not built in this checkout")
    result = doctest.testmod(ddtime.functional)
    assert result.attempted > 0 and result.failed == 0


# ---- every compiled instruction set ----------------------------------------------------------------
ISA_CHECK = textwrap.dedent(
    """
    import sys, torch, ddtime
    from ddtime.reference import frequency_alignment_loss_reference, value_loss_reference
    want = sys.argv[1]
    if torch.backends.cpu.get_cpu_capability() != want:
        print("unavailable"); sys.exit(0)
    g = torch.Generator().manual_seed(0)

    def rel(a, b):
        return ((a.double() - b).abs().max() / b.abs().max()).item()

    worst = 0.0
    for h in (1, 2, 7, 96, 97, 143, 336, 719):
        x, y = torch.randn(2, 9, h, generator=g), torch.randn(2, 9, h, generator=g)
        for t in (torch.float32, torch.float64):
            for fused, reference, kw in (
                (ddtime.value_loss, value_loss_reference, dict(alpha=0.7, reduction="none")),
                (ddtime.frequency_alignment_loss, frequency_alignment_loss_reference, dict(reduction="none")),
            ):
                a = x.to(t).detach().clone().requires_grad_()
                out = fused(a, y.to(t), **kw)
                weights = torch.rand(out.shape, generator=g, dtype=torch.float64)
                out.backward(weights.to(t))
                b = x.double().requires_grad_()
                ref = reference(b, y.double(), **kw)
                ref.backward(weights)
                worst = max(worst, rel(out, ref), rel(a.grad, b.grad) / 10)
    print(worst)
    """
)


@pytest.mark.parametrize("isa", ["DEFAULT", "AVX2"])
def test_other_instruction_sets(isa):
    """The portable and AVX2 builds of the kernels, selected like torch's own (ATEN_CPU_CAPABILITY)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, ATEN_CPU_CAPABILITY=isa.lower(), PYTHONPATH=root)
    run = subprocess.run([sys.executable, "-c", ISA_CHECK, isa], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    if run.stdout.strip() == "unavailable":
        pytest.skip(f"this CPU does not run {isa}")
    assert float(run.stdout) <= F32_VALUE_RTOL, run.stdout


@pytest.mark.parametrize("name", ["value_loss", "frequency_alignment_loss", "pairwise_symmetric_kl", "isib_loss"])
def test_double_backward_raises_a_clear_error_and_the_reference_supports_it(name):
    """create_graph=True through a fused op must not return a gradient silently cut from the graph."""
    import ddtime.reference

    x = torch.randn(3, 2, 10, dtype=torch.float64, requires_grad=True)
    t = torch.randn(3, 2, 10, dtype=torch.float64)
    args = (x, t) if name in ("value_loss", "frequency_alignment_loss") else (x,)
    loss = getattr(ddtime, name)(*args).sum()
    with pytest.raises(RuntimeError, match="double backward.*ddtime.reference"):
        torch.autograd.grad(loss, x, create_graph=True)
    (g,) = torch.autograd.grad(getattr(ddtime.reference, f"{name}_reference")(*args).sum(), x, create_graph=True)
    (gg,) = torch.autograd.grad(g.pow(2).sum(), x)
    assert torch.isfinite(gg).all() and gg.abs().sum() > 0
    (first,) = torch.autograd.grad(getattr(ddtime, name)(*args).sum(), x)  # first order still works
    torch.testing.assert_close(first, g.detach())
