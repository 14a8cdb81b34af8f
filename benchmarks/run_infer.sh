#!/usr/bin/env bash
# Every inference benchmark, one process each (peak memory per mode). Figures go to benchmarks/results/infer.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -d .cache/random-sd21/unet ] || $PY -m benchmarks.make_random_base .cache/random-sd21
for pair in 1,1 1,0 0.5,1.5; do $PY -m benchmarks.infer_bench --suite single --pair $pair; done
$PY -m benchmarks.infer_bench --suite single --pair 1,1 --dtype bf16
$PY -m benchmarks.infer_bench --suite single --pair 1,1 --channels_last
$PY -m benchmarks.infer_bench --suite sweep --repeats 1 --warmup 1
$PY -m benchmarks.infer_bench --suite large --out_size 2048
$PY -m benchmarks.infer_bench --suite large --out_size 4096 --dtype bf16  # fp32 takes about an hour on 2 cores
