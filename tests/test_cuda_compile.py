"""The CUDA kernels without a GPU: nvcc builds them for sm_90 without register spills, and a host
emulator runs their block programs against float64 references.

The kernels in csrc/cuda/*_kernel.cu are block programs written against an execution context
(csrc/cuda/kernel_common.cuh). The emulator (tests/cuda_emulator/) supplies a host context -- one
std::thread per CUDA thread, std::barrier for __syncthreads and for the warp shuffles, shared
memory pre-filled with NaN and fenced by a canary -- and runs the identical code on the CPU. It checks the FFT
plans, the real-FFT packing, the layouts, the split/tile bookkeeping and the reductions; it cannot
check what only hardware shows (timing, memory coalescing, the CUDA math library, launch limits),
which tests/test_cuda_ops.py covers on a GPU.
"""
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from tolerances import EMULATOR_TOL

ROOT = Path(__file__).resolve().parents[1]
CUDA_SRC = ROOT / "csrc" / "cuda"
KERNELS = sorted(CUDA_SRC.glob("*_kernel.cu"))
EMULATOR_SRC = Path(__file__).resolve().parent / "cuda_emulator"  # host_ctx.h, value_emu.cu, isib_emu.cu


def _find_nvcc():
    found = shutil.which("nvcc")
    if found:
        return found
    for home in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if home and (Path(home) / "bin" / "nvcc").is_file():
            return str(Path(home) / "bin" / "nvcc")
    return None


NVCC = _find_nvcc()
pytestmark = pytest.mark.skipif(NVCC is None, reason="nvcc not found (put it on PATH or set CUDA_HOME)")

SM90 = ["-std=c++17", "-gencode=arch=compute_90,code=sm_90"]


def _start(args, cwd):
    return subprocess.Popen(args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(proc, timeout=900):
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


# ---- nvcc / ptxas -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ptxas_reports(tmp_path_factory):
    """nvcc -c -Xptxas -v output of every *_kernel.cu (compiled in parallel)."""
    out_dir = tmp_path_factory.mktemp("ptxas")
    procs = {
        k.name: _start([NVCC, *SM90, "-O3", "-Xptxas", "-v", "-c", str(k), "-o", str(out_dir / (k.stem + ".o"))], ROOT)
        for k in KERNELS
    }
    return {name: _finish(p) for name, p in procs.items()}


def test_kernel_sources_present():
    assert {k.name for k in KERNELS} == {"isib_kernel.cu", "value_loss_kernel.cu"}


@pytest.mark.parametrize("kernel", [k.name for k in KERNELS])
def test_kernel_compiles_for_sm90_without_spills(ptxas_reports, kernel):
    rc, out = ptxas_reports[kernel]
    assert rc == 0, out
    assert "warning" not in out.lower(), out
    entries = re.findall(r"Compiling entry function '(\w+)' for 'sm_90'", out)
    assert entries, out
    spills = re.findall(r"(\d+) bytes spill stores, (\d+) bytes spill loads", out)
    assert len(spills) >= len(entries), out
    assert all(s == "0" and l == "0" for s, l in spills), out


# ---- host emulator ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def emulators(tmp_path_factory):
    """Paths of the value-loss and ISIB emulators (built in parallel)."""
    build = tmp_path_factory.mktemp("emulator")
    flags = [
        "-std=c++20", "-O1", "-DDDTIME_KERNELS_HOST_EMULATION", f"-I{CUDA_SRC}", f"-I{EMULATOR_SRC}",
        "-gencode=arch=compute_90,code=sm_90", "-diag-suppress", "20011,20014",
    ]
    procs = {}
    for name in ("value", "isib"):
        procs[name] = _start([NVCC, *flags, str(EMULATOR_SRC / f"{name}_emu.cu"), "-o", f"{name}_emu"], build)
    for name, proc in procs.items():
        rc, out = _finish(proc)
        assert rc == 0, f"building the {name} emulator failed:\n{out}"
    return {name: build / f"{name}_emu" for name in procs}


def _emulate(exe, args, arrays, tmp_path):
    src, dst = tmp_path / "in.bin", tmp_path / "out.bin"
    np.concatenate([np.ravel(a) for a in arrays]).astype(np.float64).tofile(src)
    proc = subprocess.run([str(exe), *map(str, args), src, dst], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return np.fromfile(dst, dtype=np.float64)


def _rel(a, b):
    scale = np.abs(b).max()
    return np.abs(a - b).max() / (scale if scale > 0 else 1.0)


TORCH_DTYPE = {"f16": torch.float16, "bf16": torch.bfloat16, "f32": torch.float32, "f64": torch.float64}


def _rounded(a, dtype):
    """a as the kernel sees it: rounded to the input dtype, as float64."""
    return torch.from_numpy(a).to(TORCH_DTYPE[dtype]).double().numpy()


def _value_reference(x, y, alpha):
    xt = torch.from_numpy(x).requires_grad_(True)
    d = xt - torch.from_numpy(y)
    spec = torch.fft.rfft(d, dim=1)
    rows = alpha * spec.abs().mean(1) + (1 - alpha) * d.square().mean(1)
    (grad,) = torch.autograd.grad(rows.sum(), xt)
    return rows.detach().numpy(), grad.numpy(), spec.detach().numpy()


# outer, H, inner, time-contiguous storage, series per block, threads, block cap
VALUE_CASES = [
    (3, 96, 1, 0, 2, 64, 100),  # radix 8 * 4 * ... on a [.., H] layout
    (2, 24, 5, 0, 4, 64, 2),  # [B, H, N]: time-major loads; 3 tiles on 2 blocks
    (2, 24, 5, 1, 3, 96, 100),  # [B, N, H] storage with inner > 1
    (4, 1, 1, 0, 2, 64, 100),  # H = 1
    (3, 2, 2, 0, 2, 64, 100),  # H = 2: no FFT stage
    (2, 7, 3, 0, 2, 64, 100),  # odd H, radix 7
    (2, 336, 1, 0, 2, 128, 100),  # M = 168 = 8 * 3 * 7
    (1, 720, 2, 0, 2, 256, 100),  # M = 360 = 8 * 3 * 3 * 5
    (2, 45, 1, 0, 2, 64, 100),  # odd, 3 * 3 * 5
    (2, 338, 1, 0, 1, 64, 100),  # M = 169 = 13 * 13: generic prime stages
    (2, 143, 1, 1, 2, 32, 100),  # odd, 11 * 13, one warp
]


@pytest.mark.parametrize("dtype", ["f64", "f32"])
@pytest.mark.parametrize("case", VALUE_CASES, ids=lambda c: "x".join(map(str, c[:3])))
def test_emulated_value_kernels(emulators, tmp_path, case, dtype):
    _check_value_case(emulators["value"], tmp_path, case, dtype, seed=sum(case))


@pytest.mark.parametrize("dtype", ["f16", "bf16"])
def test_emulated_value_kernels_half(emulators, tmp_path, dtype):
    _check_value_case(emulators["value"], tmp_path, (3, 48, 2, 0, 4, 64, 100), dtype, seed=7)


def _check_value_case(exe, tmp_path, case, dtype, seed):
    outer, H, inner, time_contig, tile, threads, grid = case
    rng = np.random.default_rng(seed)
    x = _rounded(rng.standard_normal((outer, H, inner)), dtype)
    y = _rounded(rng.standard_normal((outer, H, inner)), dtype)
    if outer * inner > 1:
        y[0, :, 0] = x[0, :, 0]  # one all-zero series: every bin takes the zero subgradient
    alpha = 0.7
    rows, grad, spec = _value_reference(x, y, alpha)
    tol_op, tol_io = EMULATOR_TOL[dtype]
    args = [dtype, outer, H, inner, time_contig, alpha, tile, threads, grid]
    out = _emulate(exe, ["value", *args], [x, y], tmp_path)
    nser = outer * inner
    assert _rel(out[:nser], rows.ravel()) < tol_op
    assert _rel(out[nser:], grad.ravel()) < tol_io
    if outer * inner > 1:
        assert np.all(out[nser:].reshape(outer, H, inner)[0, :, 0] == 0)
    no_grad = _emulate(exe, ["value_nograd", *args], [x, y], tmp_path)
    np.testing.assert_array_equal(no_grad, out[:nser])

    F = H // 2 + 1
    bins = _emulate(exe, ["bins", *args], [x, y], tmp_path)
    modulus, phase = bins[: outer * F * inner].reshape(outer, F, inner), bins[outer * F * inner :].reshape(outer, F, inner, 2)
    assert _rel(modulus, np.abs(spec)) < tol_io
    mag = np.abs(spec)
    unit = np.where(mag > 0, spec / np.where(mag > 0, mag, 1), 0)
    strong = mag > 1e-3 * mag.max()  # the phase of a nearly zero bin is ill-conditioned
    assert np.abs(phase[..., 0] - unit.real)[strong].max() < 1e3 * tol_op + 1e-12
    assert np.abs(phase[..., 1] - unit.imag)[strong].max() < 1e3 * tol_op + 1e-12
    if outer * inner > 1:
        assert np.all(phase[0, :, 0] == 0)

    grad_modulus = _rounded(rng.standard_normal((outer, F, inner)), dtype)
    unit_pair = np.stack([unit.real, unit.imag], -1)
    back = _emulate(exe, ["bins_bwd", *args[:4], 0, *args[5:]], [grad_modulus, unit_pair], tmp_path)
    t, k = np.arange(H)[:, None], np.arange(F)[None, :]
    expected = np.einsum("tk,okn->otn", np.exp(2j * np.pi * k * t / H), grad_modulus * unit).real
    assert _rel(back, expected.ravel()) < tol_io


def _isib_reference(x, tau):
    xt = torch.from_numpy(x).requires_grad_(True)
    s, n, _ = xt.shape
    logp = torch.log_softmax(xt / tau, -1).reshape(s, -1)
    p = logp.exp()
    cross = p @ logp.T
    h = (p * logp).sum(1)
    d = (h[:, None] + h[None, :] - cross - cross.T) / n
    d = d * (1 - torch.eye(s, dtype=d.dtype))
    i, j = torch.triu_indices(s, s, 1)
    loss = torch.exp(-d[i, j]).mean() if s > 1 else xt.sum() * 0
    return xt, d, loss


# S, N, L, tau, SM count (sets the K split)
ISIB_CASES = [
    (1, 3, 5, 1.0, 4),
    (2, 1, 1, 1.0, 4),
    (5, 3, 7, 0.7, 132),
    (10, 7, 24, 1.0, 132),  # 6 to 11 splits of the N*L axis
    (70, 2, 40, 2.0, 8),  # two sample tiles: off-diagonal tile, transposed finalize
    (33, 5, 50, 1.0, 1),  # several chunks per split
]


@pytest.mark.parametrize("dtype", ["f64", "f32"])
@pytest.mark.parametrize("case", ISIB_CASES, ids=lambda c: "x".join(map(str, c[:3])))
def test_emulated_isib_kernels(emulators, tmp_path, case, dtype):
    _check_isib_case(emulators["isib"], tmp_path, case, dtype, seed=sum(case[:3]))


@pytest.mark.parametrize("dtype", ["f16", "bf16"])
def test_emulated_isib_kernels_half(emulators, tmp_path, dtype):
    _check_isib_case(emulators["isib"], tmp_path, (6, 3, 20, 1.0, 132), dtype, seed=3)


def _check_isib_case(exe, tmp_path, case, dtype, seed):
    S, N, L, tau, sms = case
    rng = np.random.default_rng(seed)
    x = _rounded(2.0 * rng.standard_normal((S, N, L)), dtype)
    xt, d, loss = _isib_reference(x, tau)
    tol_op, tol_io = EMULATOR_TOL[dtype]
    args = [dtype, S, N, L, tau, sms]
    out = _emulate(exe, ["fwd", *args], [x], tmp_path)
    D = out[: S * S].reshape(S, S)
    np.testing.assert_array_equal(D, D.T)
    assert np.all(np.diag(D) == 0)
    assert _rel(D, d.detach().numpy()) < 5 * tol_op
    assert abs(out[-1] - loss.item()) <= 5 * tol_op * max(abs(loss.item()), 1e-300)

    grad_D = rng.standard_normal((S, S))
    (expected,) = torch.autograd.grad((d * torch.from_numpy(grad_D)).sum(), xt, retain_graph=True)
    got = _emulate(exe, ["bwd_pair", *args], [x, grad_D], tmp_path)
    assert _rel(got, expected.numpy().ravel()) < 5 * tol_io

    grad_loss = 1.7
    expected = torch.autograd.grad(loss * grad_loss, xt)[0] if S > 1 else torch.zeros_like(xt)
    got = _emulate(exe, ["bwd_isib", *args], [x, [grad_loss], d.detach().numpy()], tmp_path)
    if S == 1:
        assert np.all(got == 0)
    else:
        assert _rel(got, expected.numpy().ravel()) < 5 * tol_io
