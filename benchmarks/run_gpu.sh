#!/usr/bin/env bash
# The GPU inference suite in one command; its table replaces the GPU section of BENCHMARKS.md.
#   bash benchmarks/run_gpu.sh                  # pisasr only
#   OFFICIAL=path/to/PiSA-SR bash benchmarks/run_gpu.sh   # plus the official code side by side, same weights
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
BASE=${BASE:-.cache/random-sd21}
[ -f "$BASE/pisa_sr.pkl" ] || $PY -m benchmarks.make_random_base "$BASE"
table=$(mktemp)
$PY -m benchmarks.gpu_bench --base "$BASE" --weights "$BASE/pisa_sr.pkl" --markdown "$table" \
    ${OFFICIAL:+--official "$OFFICIAL"} "$@"
$PY - "$table" <<'PY'
import re, sys
from pathlib import Path
doc, table = Path("BENCHMARKS.md"), Path(sys.argv[1]).read_text()
section = ("<!-- gpu:start -->\nCommand: `bash benchmarks/run_gpu.sh` (with `OFFICIAL=DIR` for the official column).\n\n"
           + table + "<!-- gpu:end -->")
text = doc.read_text()
text = re.sub(r"<!-- gpu:start -->.*<!-- gpu:end -->", lambda _: section, text, flags=re.S)
doc.write_text(text)
PY
