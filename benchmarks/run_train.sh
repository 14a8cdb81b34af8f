#!/usr/bin/env bash
# Training-step benchmarks, one process each. Figures go to benchmarks/results/train.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -d .cache/random-sd21/unet ] || $PY -m benchmarks.make_random_base .cache/random-sd21
for crop in 256 512; do
  for stage in pix sem; do $PY -m benchmarks.train_bench --stage $stage --crop $crop --gradient_checkpointing --repeats 1 --warmup 1; done
done
$PY -m benchmarks.tagger_bench --crop 512 --batch 4
