#!/usr/bin/env bash
# DATM's window on the standard preset, ETTh1, 10 experts, 3 students (issue 18: DATM base above its random start)
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 DDTIME_SHARED_DATA=${DDTIME_SHARED_DATA:-../shared/data}
E=runs/standard_preset/ETTh1/experts-3a6394cb6eb3
run() {  # name seed options...
  local name=$1 seed=$2; shift 2
  local out=runs/datm_trials/$name-seed$seed
  [[ -f $out/results.json ]] && return
  python -m ddtime distill --preset standard --data ETTh1 --method datm --seed $seed --num-experts 10 --students 3 \
    --experts $E --expert-seed 0 --out $out --threads 1 --quiet --resume "$@" 2>&1 | tail -1
}
for seed in 1 2 0; do run fixed02 $seed --method-option window_every=1000; done
for seed in 1 2 0; do run w04every100 $seed --method-option "initial_window=(0,4)"; done
for seed in 1 2 0; do run nosoft $seed --method-option soft_labels=False; done
