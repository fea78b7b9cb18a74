"""The one tolerance table of the kernel tests (docs/losses.md "Exactness"), and the devices they run on.

TOL[kind][dtype] = (rtol, atol). Unless a test says otherwise, errors are norm-wise: max |ours -
ref| <= rtol * max |ref| + atol, with ref the float64 reference on the same (dtype-rounded) input.
Kinds used by only some files keep their own entries where the files' bounds differ.
Half types are bounded by PyTorch's own error instead: HALF[kind] = (k, ulps): within k times the
error of the reference evaluated by PyTorch in that dtype, plus ulps units of the dtype's rounding
(torch.finfo(dtype).eps) times max |ref|.
"""
import torch

from ddtime import _ops

F16, BF16, F32, F64 = torch.float16, torch.bfloat16, torch.float32, torch.float64

TOL = {
    # value loss / frequency alignment: values; gradients carry the phase D_k / |D_k| of every bin,
    # whose rounding error grows as |D_k| shrinks; phase: unit phase times modulus vs the spectrum
    "value": {F32: (1e-5, 0.0), F64: (1e-12, 0.0)},
    "value_grad": {F32: (1e-4, 0.0), F64: (1e-10, 0.0)},
    "value_fuzz_grad": {F64: (1e-9, 0.0)},
    "phase": {F32: (1e-4, 0.0), F64: (1e-11, 0.0)},
    "spectrum": {F64: (1e-12, 1e-12)},  # torch.testing.assert_close
    # pairwise KL / ISIB: float64 with an absolute floor (the reference's own cancellation of
    # log(L) terms); float32 D within rtol, loss and gradients within rtol + 2 x PyTorch's own error
    "isib": {F32: (1e-5, 0.0), F64: (1e-10, 1e-12)},
    "isib_backward_op": {F64: (1e-10, 1e-14)},  # torch.testing.assert_close
    # near-uniform softmax (logits ~1e-6): D absolute; the gradient's relative error at most rtol and
    # at most ISIB_TINY_VS_EAGER x that of the float32 eager reference. Measured (S = 10 / 100): 3.2% /
    # 3.4% with AVX-512 (eager 11% / 23%); 4.2% / 6.7% on AVX2 through at::mm (eager 11.4% / 22.7%)
    "isib_tiny": {F32: (0.1, 1e-12)},
    "isib_tiny_loss": {F32: (0.0, 1e-6)},  # |loss - 1|
    # identical samples: D and |loss - 1| within ulps x eps (as rtol), the gradient absolute
    "isib_identical": {F32: (8.0, 1e-8), F64: (8.0, 1e-8)},
    # torch.compile(fullgraph=True) vs eager, torch.testing.assert_close
    "compile_value_loss": {F32: (1e-6, 0.0)},
    "compile_isib": {F32: (1e-6, 1e-7)},
    "compile_grad": {F32: (1e-6, 1e-9)},
    # CUDA tests: against the float64 reference, CUDA vs CPU op, torch.compile on CUDA
    "cuda": {F32: (1e-5, 0.0), F64: (1e-12, 0.0)},
    "cuda_vs_cpu_value": {F32: (1e-5, 1e-6)},
    "cuda_vs_cpu_grad": {F32: (1e-5, 1e-7)},
    "cuda_vs_cpu_bins": {F32: (1e-5, 1e-5)},
    "cuda_vs_cpu_isib_grad": {F32: (1e-5, 1e-8)},
    "cuda_long_series": {F32: (1e-5, 0.0)},  # gradient: atol = rtol * max |ref|
    "cuda_compile_value": {F32: (1e-5, 1e-7)},
    "cuda_compile_grad": {F32: (1e-5, 1e-8)},
}

HALF = {
    "value": (2, 1),
    "cuda": (2, 2),
}
ISIB_HALF_FLOOR = 1 / 64  # ISIB half bound: max(2 x PyTorch's error, eps / 64)
ISIB_TINY_VS_EAGER = 0.5
TORCH_ERROR_FACTOR = 2  # float32 ISIB loss and gradients: rtol + 2 x PyTorch's own float32 error

# Host emulator of the CUDA kernels (tests/test_cuda_compile.py), by kernel dtype name: max |error| /
# max |reference| of results in the accumulation dtype and of results stored in the input dtype.
EMULATOR_TOL = {"f64": (1e-12, 1e-12), "f32": (2e-6, 2e-6), "f16": (2e-6, 2e-3), "bf16": (2e-6, 1e-2)}

# Every kernel test that takes `device` runs on each of these.
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() and _ops.cuda_version() >= 0 else [])
