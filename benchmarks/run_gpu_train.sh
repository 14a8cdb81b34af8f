#!/usr/bin/env bash
# The GPU training grid in one command; its table replaces the GPU training section of BENCHMARKS.md.
#   bash benchmarks/run_gpu_train.sh                    # stages pix and sem, batch 1/4/8, crop 512, bf16 and fp16,
#                                                       # gradient checkpointing off and on, eager and compiled UNet
#   BATCHES=4 PRECISIONS=bf16 bash benchmarks/run_gpu_train.sh   # a smaller grid
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
BASE=${BASE:-.cache/random-sd21}
[ -d "$BASE/unet" ] || $PY -m benchmarks.make_random_base "$BASE"
rows=$(mktemp)
for precision in ${PRECISIONS:-bf16 fp16}; do  # one process per precision (Accelerate's autocast is per process)
  $PY -m benchmarks.train_bench --base "$BASE" --device cuda --mixed_precision "$precision" --crop "${CROP:-512}" \
      --batches "${BATCHES:-1,4,8}" --gradient_checkpointing both --compile --log "$rows" "$@"
done
cat "$rows" >> benchmarks/results/train_bench.jsonl
$PY - "$rows" <<'PY'
import json, sys
from pathlib import Path
from benchmarks.train_bench import write_section
rows = [json.loads(line) for line in Path(sys.argv[1]).read_text().splitlines() if line.strip()]
write_section(Path("BENCHMARKS.md"), rows, "bash benchmarks/run_gpu_train.sh")
PY
