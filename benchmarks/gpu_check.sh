#!/usr/bin/env bash
# The GPU check in one unattended command; see benchmarks/gpu_check.py for what it measures.
#   bash benchmarks/gpu_check.sh                 # on a GPU machine (under 8 minutes)
#   bash benchmarks/gpu_check.sh --smoke --out D # the same code paths on the CPU, tiny sizes
# Python: $PYTHON, else the repository's .venv, else python3. When that Python lacks this project's
# dependencies, the wheels in .whl/ (benchmarks/gpu_wheels.sh downloads them) go into a private folder first;
# when it lacks the package `dcase9`, this tree is installed there too (pyproject.toml maps its folders).
set -euo pipefail
cd "$(dirname "$0")/.."
site="${TMPDIR:-/tmp}/dcase9-gpu-check-site"
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ] && .venv/bin/python -c "import torch" 2>/dev/null; then PYTHON=.venv/bin/python
  else PYTHON=python3; fi
fi
if compgen -G ".whl/*.whl" >/dev/null \
   && ! "$PYTHON" -c "import soundfile, soxr, julius, pydantic, diffusers" 2>/dev/null; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/*.whl
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
if ! "$PYTHON" -c "import dcase9" 2>/dev/null; then
  rm -rf "$site-tree"
  "$PYTHON" -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --no-cache-dir --target "$site-tree" .
  export PYTHONPATH="$site-tree${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1
exec "$PYTHON" benchmarks/gpu_check.py --python "$PYTHON" "$@"
