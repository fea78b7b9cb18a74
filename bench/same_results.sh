#!/usr/bin/env bash
# Deterministic runs of every driver path, for checking that a refactor changes no result:
#   bash bench/same_results.sh OUT_BEFORE     # at the old commit
#   bash bench/same_results.sh OUT_AFTER      # at the new one, on the same machine
#   python bench/same_results.py OUT_BEFORE OUT_AFTER
# With ETTH1=1 (and the shared CSVs) it adds the ETTh1 experts and an MTT + DDTime run under --preset condtsf.
set -u
OUT=$1
mkdir -p "$OUT"
export OMP_NUM_THREADS=1 DDTIME_CACHE_DIR=$OUT/cache
run() {
  local name=$1; shift
  python -m ddtime "$@" --quiet > "$OUT/$name.log" 2>&1
  echo "$name rc=$?" >> "$OUT/status"
}
X=(--experts "$OUT/quick/experts")
run quick distill --out "$OUT/quick"
run quick_ddtime distill --ddtime --out "$OUT/quick_ddtime" "${X[@]}"
run quick_condtsf distill --condtsf --out "$OUT/quick_condtsf" "${X[@]}"
run quick_datm_both distill --method datm --condtsf --ddtime --out "$OUT/quick_datm" "${X[@]}"
run quick_ftd distill --method ftd --ddtime --out "$OUT/quick_ftd" "${X[@]}"
run quick_dm distill --method dm --ddtime --out "$OUT/quick_dm" "${X[@]}"
run quick_tgdd distill --method tgdd --ddtime --out "$OUT/quick_tgdd" "${X[@]}"
run quick_student distill --ddtime --student-side student --term-balance none --out "$OUT/quick_student" "${X[@]}"
run std_windows distill --protocol standard --seq-len 48 --pred-len 24 --iterations 20 --num-experts 2 \
  --expert-epochs 5 --students 2 --samples 6 --ddtime --eval-models mlp --out "$OUT/std_windows"
run compare compare --methods mtt,dm --variants base,ddtime --out "$OUT/compare"
run evaluate evaluate --synthetic "$OUT/quick/synthetic.safetensors" --students 2 --out "$OUT/evaluate.json"
if [ -n "${ETTH1:-}" ]; then
  run etth1_experts experts --preset condtsf --data ETTh1 --out "$OUT/etth1/experts"
  run etth1_mtt_ddtime distill --data ETTh1 --preset condtsf --ddtime --experts "$OUT/etth1/experts" \
    --expert-seed 0 --seed 0 --out "$OUT/etth1/mtt-ddtime-s0" --threads 1
fi
cat "$OUT/status"
