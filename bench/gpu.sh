#!/usr/bin/env bash
# One call on a CUDA machine (written for an H200): build ddtime with its CUDA kernels, run the
# CUDA tests, time DDTime's terms in a distillation iteration on the GPU, benchmark the kernels, and
# collect everything under bench/results/ (and, packed into at most 8 files, $OUT when set).
#
#   bench/gpu.sh [all|build|test|distill|bench] [bench_gpu.py options, e.g. --quick]
#
# Environment: TORCH_CUDA_ARCH_LIST (default 9.0), MAX_JOBS (default: all cores),
# DDTIME_PIP=1 installs with `pip install --no-build-isolation -e .` instead of building in place,
# DDTIME_FULL_SUITE=1 runs the whole test suite instead of the CUDA tests,
# DDTIME_SHARED_DATA (the folder holding ETTh1.csv) and GPU_EXPERTS (CondTSF-preset experts of ETTh1,
# 40 x 80 epochs; trained there when missing) for the distillation stage,
# GPU_DEADLINE_S (default 520): `all` sizes the benchmark's --budget-s to end by then.
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

collect() {  # this run's results to $OUT, the folder the device runner brings back (at most 8 files)
  if [[ -n "${OUT:-}" && -d "${OUT}" ]]; then
    tar czf "$OUT/$tag.tar.gz" "$results/$tag"* 2>/dev/null || true
    cp "$results/$tag"*.md "$OUT"/ 2>/dev/null || true
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
  python -m ddtime.info 2>&1 | tee "$results/${tag}_info.log"
  log "build took $((SECONDS - start)) s"
}

run_tests() {  # the CUDA tests and the CUDA cases of the device-parametrised kernel tests
  log "tests"
  local start=$SECONDS status=0 parallel=()
  python -c "import xdist" 2>/dev/null && parallel=(-n 8)
  if [[ "${DDTIME_FULL_SUITE:-0}" == "1" ]]; then
    python -m pytest -q -rs -p no:cacheprovider "${parallel[@]}" tests 2>&1 | tee "$results/${tag}_tests.log" || status=$?
  else
    { python -m pytest -q -rs -p no:cacheprovider "${parallel[@]}" tests/test_cuda_ops.py \
        && python -m pytest -q -rs -p no:cacheprovider "${parallel[@]}" -k cuda tests/test_isib.py tests/test_value_loss.py
    } 2>&1 | tee "$results/${tag}_tests.log" || status=$?
  fi
  log "tests took $((SECONDS - start)) s (exit $status)"
  return "$status"
}

distill() {  # DDTime's terms in an MTT iteration on the GPU, and the command line end to end on CUDA
  log "distillation on cuda"
  local start=$SECONDS experts="${GPU_EXPERTS:-runs/gpu_experts_condtsf_etth1}" status=0
  python bench/bench_gpu_distill.py --experts "$experts" --out "$results/${tag}_distill" 2>&1 \
    | tee "$results/${tag}_distill.log" || status=$?
  for terms in "" "--ddtime"; do
    python -m ddtime distill --device cuda --preset condtsf --data ETTh1 --experts "$experts" --method mtt $terms \
      --iterations 100 --select-every 50 --students 1 --eval-epochs 20 --out "runs/gpu_cli_mtt${terms}" --quiet \
      2>&1 | tee -a "$results/${tag}_distill_cli.log" || status=$?
    python -c "import json, sys; r = json.load(open(sys.argv[1])); print('ms per iteration (distillation minus selection):', \
round(1e3 * (r['distill_seconds'] - r['select_seconds']) / r['settings']['iterations'], 2), '| test MSE', round(r['test_mse'], 4))" \
      "runs/gpu_cli_mtt${terms}/results.json" 2>&1 | tee -a "$results/${tag}_distill_cli.log" || status=$?
  done
  log "distillation took $((SECONDS - start)) s (exit $status)"
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
    status=0
    run_tests || status=$?
    distill || status=$?
    budget=$(( ${GPU_DEADLINE_S:-520} - SECONDS ))
    (( budget < 60 )) && budget=60
    bench --budget-s "$budget" "$@" || status=$?
    exit "$status"
    ;;
  build) build ;;
  test) run_tests ;;
  distill) distill ;;
  bench) bench "$@" ;;
  *) echo "usage: bench/gpu.sh [all|build|test|distill|bench] [bench_gpu.py options]" >&2; exit 2 ;;
esac
