#!/usr/bin/env bash
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p benchmarks/results
${PYTHON:-.venv/bin/python} -m benchmarks.degradation_bench --batch 16 --size 512 | tee benchmarks/results/degradation.md
