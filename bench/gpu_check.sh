#!/usr/bin/env bash
# One prepared check of the workers on a lent GPU machine (torch only: no Celery, no pydantic).
#
#   bash bench/gpu_check.sh            # from the repository root; results under $OUT
#
# Steps (each under its own timeout; the whole script stays under ~6 minutes):
#   1. the device, driver and torch versions;
#   2. the default corpus prepared once (the stdlib's source, byte-level);
#   3. the GPU tests (tests/workers/test_gpu.py) when pytest is installed, else skipped;
#   4. bench/lm_throughput.py: tokens/s and MFU for GPT-2 small's shape (124M parameters,
#      bf16, torch.compile), the same transformer on the byte vocabulary, and a 25M model.
#      A step that fails with torch.compile is rerun without it.
# Output: $OUT/summary.txt (each step's exit status), $OUT/<step>.log, $OUT/lm_throughput.jsonl.
set -uo pipefail
set -x
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export OUT="${OUT:-$PWD/gpu-check-out}"
export SCALETUNE_DATA_DIR="${SCALETUNE_DATA_DIR:-/tmp/scaletune-data}"
export TORCHINDUCTOR_CACHE_DIR="${TORCHINDUCTOR_CACHE_DIR:-/tmp/scaletune-inductor}"
mkdir -p "$OUT"
BUDGET_S="${BUDGET_S:-330}"  # no step starts after this, none runs past it + 20 s
PY="${PY:-python3}"

step() {  # step NAME TIMEOUT_S COMMAND...: run, log to $OUT/NAME.log, record the exit status
  local name=$1 limit=$2
  shift 2
  if (( SECONDS + 20 > BUDGET_S )); then
    echo "$name skipped (time budget: ${SECONDS}s used)" | tee -a "$OUT/summary.txt"
    return 124
  fi
  local remaining=$((BUDGET_S + 20 - SECONDS))
  (( limit > remaining )) && limit=$remaining  # never run past the budget
  local started=$SECONDS
  timeout --kill-after=10 "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  echo "$name rc=$rc seconds=$((SECONDS - started))" | tee -a "$OUT/summary.txt"
  return $rc
}

bench() {  # bench NAME TIMEOUT_S ARGS...: throughput with compile, else without
  local name=$1 limit=$2
  shift 2
  step "$name" "$limit" $PY bench/lm_throughput.py --json "$OUT/lm_throughput.jsonl" "$@" ||
    step "${name}_nocompile" "$limit" $PY bench/lm_throughput.py --no-compile \
      --json "$OUT/lm_throughput.jsonl" "$@"
}

: >"$OUT/summary.txt"
step env 30 bash -c 'nvidia-smi; '"$PY"' -c "import sys, torch; print(sys.version); print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name())"'
step data 90 $PY -c "from workers.training.data import load_data; d = load_data(); print(d.source, len(d.train), len(d.val))"

if $PY -c "import pytest" 2>/dev/null; then
  # -c /dev/null: ignore pyproject's pytest settings (its plugins may not be installed here).
  step gpu_tests 150 $PY -m pytest -c /dev/null --rootdir=. -p no:cacheprovider -q -rs \
    -o "markers=gpu: needs a CUDA device" \
    tests/workers/test_gpu.py
else
  echo "gpu_tests skipped: pytest is not installed on this machine" | tee -a "$OUT/summary.txt"
fi

bench bench_gpt2_small 150 --preset gpt2-small
bench bench_gpt2_small_bytes 100 --preset gpt2-small-bytes
bench bench_25m 80 --preset gpt-25m
cat "$OUT/summary.txt"
cat "$OUT/lm_throughput.jsonl" 2>/dev/null
echo "total ${SECONDS}s"
