"""Packaging: the build's source list, the light top-level import, the build report."""
import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import ddtime
from ddtime import _ops, info

ROOT = Path(__file__).resolve().parents[1]


def listed_sources():
    lines = (ROOT / "csrc" / "sources.txt").read_text().splitlines()
    return {line.strip() for line in lines if line.strip() and not line.startswith("#")}


def test_source_list_matches_tree():
    on_disk = {
        str(p.relative_to(ROOT))
        for p in (ROOT / "csrc").rglob("*")
        if p.suffix in {".cpp", ".cu"}
    }
    assert listed_sources() == on_disk


def test_setup_builds_the_listed_sources():
    """setup.py's read_sources() returns the list, and extension() calls it (not a comment naming it)."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    namespace = {"ROOT": ROOT}
    exec(compile(ast.Module([functions["read_sources"]], []), "setup.py", "exec"), namespace)
    assert set(namespace["read_sources"]()) == listed_sources()
    calls = {n.func.id for n in ast.walk(functions["extension"]) if isinstance(n, ast.Call) and
             isinstance(n.func, ast.Name)}
    assert "read_sources" in calls


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not found")
def test_cmake_builds_the_listed_sources(tmp_path):
    """A CPU configure of CMakeLists.txt compiles exactly the listed non-CUDA sources."""
    subprocess.run(["cmake", "-S", str(ROOT), "-B", str(tmp_path), f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}",
                    f"-DPython3_EXECUTABLE={sys.executable}"], check=True, capture_output=True, timeout=300)
    build = (tmp_path / "CMakeFiles" / "ddtime_C.dir" / "build.make").read_text()
    compiled = set(re.findall(r"csrc/[\w/]+\.(?:cpp|cu)\b", build))
    assert compiled == {s for s in listed_sources() if not s.startswith("csrc/cuda/")}


def test_import_is_light():
    # tqdm is left out: `import torch` itself loads it.
    code = (
        "import sys, ddtime; heavy = [m for m in ('pandas', 'matplotlib', 'safetensors', "
        "'sklearn', 'ddtime.driver') if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


def test_info_lists_the_ops_of_the_schema_list():
    """ddtime.info reads the ops from the dispatcher: exactly those of csrc/ddtime.cpp's kOpSchemas."""
    block = (ROOT / "csrc" / "ddtime.cpp").read_text().split("kOpSchemas[] = {")[1].split("};")[0]
    schemas = re.findall(r'^\s*"(\w+)\(', block, re.M)
    assert len(schemas) == 8
    assert info.OPS == tuple(sorted(schemas))


def test_info_reports_every_op_kernel():
    text = info.report()
    assert f"torch {torch.__version__}" in text
    for op in info.OPS:
        assert op in text
        assert info.kernels(op)["CPU"], f"ddtime::{op} has no CPU kernel"
    for op in ("value_loss_fused", "frequency_alignment_bins", "pairwise_symmetric_kl", "isib_loss"):
        assert info.kernels(op)["Autograd"]


def test_info_module_runs():
    out = subprocess.run([sys.executable, "-m", "ddtime.info"], capture_output=True, text=True, cwd=ROOT, check=True)
    rows = [line.split()[0] for line in out.stdout.splitlines()[7:]]
    assert rows == list(info.OPS)


@pytest.mark.skipif(_ops.cuda_version() >= 0, reason="a CUDA build has real CUDA kernels")
def test_cpu_only_build_explains_how_to_rebuild_for_cuda():
    """Every op's CUDA kernel of a CPU-only build raises the rebuild message. A CUDA tensor can't be made
    without CUDA torch, so each op is dispatched to its CUDA slot directly (dummy arguments from its schema)."""
    dummy = {"Tensor": torch.zeros(1), "float": 0.5, "int": 0, "bool": False}
    cuda = torch._C.DispatchKeySet(torch._C.DispatchKey.CUDA)
    for name in info.OPS:
        op = getattr(torch.ops.ddtime, name).default
        args = [dummy[str(arg.type)] for arg in op._schema.arguments]
        with pytest.raises(RuntimeError, match=rf"ddtime::{name} got CUDA tensors, but ddtime was built without "
                                               r"CUDA kernels\. Rebuild with CUDA torch"):
            op.redispatch(cuda, *args)


def test_version_has_one_source():
    """The distribution's version is read from ddtime.__version__ (pyproject: dynamic)."""
    from importlib.metadata import version

    assert version("ddtime") == ddtime.__version__


def test_loss_library_never_imports_the_driver():
    """The top level of ddtime/ is the loss library; nothing in it names ddtime.driver (__main__, the
    ``python -m ddtime`` entry of the command line, is the one bridge)."""
    for path in sorted((ROOT / "ddtime").glob("*.py")):
        if path.name == "__main__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [f"{node.module}.{a.name}" for a in node.names] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.startswith("ddtime.driver") for n in names), f"{path.name} imports {names}"
