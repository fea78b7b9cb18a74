"""Build ddtime._C from the sources listed in csrc/sources.txt.

The CUDA kernels are compiled when the toolchain allows it -- CUDA torch and nvcc -- not when a GPU
happens to be visible. `DDTIME_WITH_CUDA=1` insists on CUDA (and fails loudly without the
toolchain), `DDTIME_WITH_CUDA=0` forces a CPU-only build. `DDTIME_DEBUG=1` builds with -O0 -g.
"""
import os
from pathlib import Path

from setuptools import setup

import torch
from torch.utils import cpp_extension

ROOT = Path(__file__).resolve().parent


def read_sources():
    lines = (ROOT / "csrc" / "sources.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def want_cuda():
    flag = os.environ.get("DDTIME_WITH_CUDA", "").strip()
    toolchain = torch.version.cuda is not None and cpp_extension.CUDA_HOME is not None
    if flag == "0":
        return False
    if flag == "1":
        if not toolchain:
            raise RuntimeError(
                "DDTIME_WITH_CUDA=1 but the CUDA toolchain is incomplete: torch.version.cuda="
                f"{torch.version.cuda!r}, CUDA_HOME={cpp_extension.CUDA_HOME!r}. Install a CUDA build "
                "of torch and put nvcc on PATH (or set CUDA_HOME)."
            )
        return True
    if flag:
        raise ValueError(f"DDTIME_WITH_CUDA must be '0' or '1', got {flag!r}")
    return toolchain


def extension():
    with_cuda = want_cuda()
    sources = [s for s in read_sources() if with_cuda or not s.startswith("csrc/cuda/")]
    debug = os.environ.get("DDTIME_DEBUG") == "1"
    cxx = ["-O0", "-g"] if debug else ["-O3"]
    cxx += ["-fopenmp", "-std=c++20"]  # std::bit_cast and friends; torch's default is older on some versions
    define_macros = []
    extra = {"cxx": cxx}
    if with_cuda:
        major, minor = (int(v) for v in torch.version.cuda.split(".")[:2])
        define_macros.append(("DDTIME_CUDA_VERSION", str(major * 1000 + minor * 10)))
        extra["nvcc"] = (["-O0", "-g", "-G"] if debug else ["-O3", "-lineinfo"]) + ["-std=c++20"]
        kind = cpp_extension.CUDAExtension
    else:
        kind = cpp_extension.CppExtension
    return kind(
        name="ddtime._C",
        sources=sources,
        include_dirs=[str(ROOT / "csrc")],
        define_macros=define_macros,
        extra_compile_args=extra,
        extra_link_args=["-fopenmp"],
    )


setup(
    ext_modules=[extension()],
    cmdclass={"build_ext": cpp_extension.BuildExtension.with_options(use_ninja=True)},
)
