#!/usr/bin/env bash
# One call on a CUDA machine (written for an H200): build ddtime with its CUDA kernels, run the
# CUDA tests, benchmark, and collect everything under bench/results/ (and $OUT when set).
#
#   bench/gpu.sh [all|build|test|bench] [bench_gpu.py options, e.g. --quick]
#
# Environment: TORCH_CUDA_ARCH_LIST (default 9.0), MAX_JOBS (default: all cores),
# DDTIME_PIP=1 installs with `pip install --no-build-isolation -e .` instead of building in place,
# DDTIME_FULL_SUITE=1 runs the whole test suite instead of the CUDA test files.
# Needs a CUDA build of torch and nvcc (CUDA_HOME or PATH); nothing is downloaded.
set -euo pipefail

cd "$(dirname "$0")/.."
stage="${1:-all}"
shift || true
tag="gpu_$(date -u +%Y%m%d_%H%M%S)"
results="bench/results"
mkdir -p "$results"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}"
export MAX_JOBS="${MAX_JOBS:-$(nproc)}"

log() { echo "[gpu.sh $(date -u +%H:%M:%S)] $*"; }

collect() {  # copy this run's results to $OUT, the folder the device runner brings back
  if [[ -n "${OUT:-}" && -d "${OUT}" ]]; then
    cp "$results/$tag"* "$OUT"/ 2>/dev/null || true
  fi
}
trap collect EXIT

environment() {
  log "environment"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv || true
  command -v nvcc >/dev/null && nvcc --version | tail -n 2 || echo "nvcc not on PATH (CUDA_HOME=${CUDA_HOME:-unset})"
  python - <<'PY'
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
if torch.version.cuda is None or not torch.cuda.is_available():
    raise SystemExit("gpu.sh needs a CUDA build of torch and a visible GPU")
print("device", torch.cuda.get_device_name(0), torch.cuda.get_device_capability(0))
PY
}

build() {
  log "build (TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST, MAX_JOBS=$MAX_JOBS)"
  local start=$SECONDS
  if [[ "${DDTIME_PIP:-0}" == "1" ]]; then
    DDTIME_WITH_CUDA=1 pip install --no-build-isolation -e . 2>&1 | tee "$results/${tag}_build.log"
  else
    DDTIME_WITH_CUDA=1 python setup.py build_ext --inplace 2>&1 | tee "$results/${tag}_build.log"
  fi
  python -c "from ddtime import _ops; v = _ops.cuda_version(); print('ddtime._C CUDA version', v); assert v > 0, 'built without CUDA'"
  log "build took $((SECONDS - start)) s"
}

run_tests() {
  log "tests"
  local files=(tests/test_cuda_ops.py tests/test_cuda_compile.py)
  [[ "${DDTIME_FULL_SUITE:-0}" == "1" ]] && files=(tests)
  local start=$SECONDS status=0
  python -m pytest -q -rs -p no:cacheprovider "${files[@]}" 2>&1 | tee "$results/${tag}_tests.log" || status=$?
  log "tests took $((SECONDS - start)) s (exit $status)"
  return "$status"
}

bench() {
  log "benchmark"
  local start=$SECONDS
  python bench/bench_gpu.py --out "$results/$tag" "$@" 2>&1 | tee "$results/${tag}_bench.log"
  log "benchmark took $((SECONDS - start)) s"
}

environment
case "$stage" in
  all)
    build
    test_status=0
    run_tests || test_status=$?
    bench "$@"
    exit "$test_status"
    ;;
  build) build ;;
  test) run_tests ;;
  bench) bench "$@" ;;
  *) echo "usage: bench/gpu.sh [all|build|test|bench] [bench_gpu.py options]" >&2; exit 2 ;;
esac
