"""Report of what ddtime was built with: ``python -m ddtime.info``."""
import platform
import sys

import torch

import ddtime
from ddtime import _ops


def _kernel_ops() -> tuple:
    """The ``ddtime::`` ops registered from csrc/ddtime.cpp's schema list, sorted; ``cuda_version``
    (a plain function, CompositeImplicitAutograd) is left out."""
    has = torch._C._dispatch_has_kernel_for_dispatch_key
    names = [n for n in torch._C._dispatch_get_all_op_names() if n.startswith("ddtime::")]
    return tuple(sorted(n.removeprefix("ddtime::") for n in names if not has(n, "CompositeImplicitAutograd")))


OPS = _kernel_ops()


def kernels(op: str) -> dict:
    """Which dispatch keys hold a real kernel for ``ddtime::op``."""
    built_cuda = _ops.cuda_version() >= 0
    has = torch._C._dispatch_has_kernel_for_dispatch_key
    return {
        "CPU": has(f"ddtime::{op}", "CPU"),
        "CUDA": built_cuda and has(f"ddtime::{op}", "CUDA"),
        "Autograd": has(f"ddtime::{op}", "Autograd"),
    }


def report() -> str:
    cuda = _ops.cuda_version()
    lines = [
        f"ddtime {ddtime.__version__} ({ddtime.__file__})",
        f"python {sys.version.split()[0]} on {platform.machine()} {platform.system()}",
        f"torch {torch.__version__} (CUDA {torch.version.cuda or 'none'}), threads {torch.get_num_threads()}",
        f"ddtime._C built with CUDA: {'%d.%d' % (cuda // 1000, cuda % 1000 // 10) if cuda >= 0 else 'no (CPU only)'}",
        f"CUDA device visible: {torch.cuda.is_available()}"
        + (f" ({torch.cuda.get_device_name()})" if torch.cuda.is_available() else ""),
        "",
        f"{'op':<36}{'CPU':<6}{'CUDA':<6}{'Autograd':<8}",
    ]
    for op in OPS:
        k = kernels(op)
        lines.append(f"{op:<36}" + "".join(f"{'yes' if k[key] else '-':<{w}}" for key, w in (("CPU", 6), ("CUDA", 6), ("Autograd", 8))))
    return "\n".join(lines)


if __name__ == "__main__":
    print(report())
