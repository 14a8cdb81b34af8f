#!/usr/bin/env bash
set -euo pipefail
cd "$(dirname "$0")/.."
${PYTHON:-.venv/bin/python} -m benchmarks.degradation_bench --batch 16 --size 512
