#!/usr/bin/env bash
# A dry run of the GPU check, here, in the GPU machine's software without its GPU: a Python 3.12
# venv with the versions its image holds (KINDS.md of the device tool: torch 2.11, transformers
# 5.17, numpy 2.5, tokenizers 0.23.2, Lightning 2.6.6, accelerate 1.15, huggingface_hub 1.33), our
# missing dependencies from the wheels of benchmarks/gpu_wheels.sh, and this tree installed as the
# package `dcase9` (gpu_check.sh does that there). Then the GPU check's smoke run and the test files that cover
# the models, as the GPU machine would run them. A version drift that would break the one GPU run
# shows here first.
#   bash benchmarks/gpu_image_dry_run.sh [VENV]     # default VENV: /tmp/dcase9-gpu-image
# Needs python3.12 and the package registry (about 3 GB: torch 2.11 is a CUDA build).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${1:-${TMPDIR:-/tmp}/dcase9-gpu-image}
py312=$(command -v python3.12 || true)
[ -n "$py312" ] || { echo "python3.12 is needed (the GPU image's Python)" >&2; exit 2; }
compgen -G ".whl/*.whl" >/dev/null || bash benchmarks/gpu_wheels.sh
if [ ! -x "$venv/bin/python" ]; then
  "$py312" -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
fi
"$venv/bin/pip" install -q torch==2.11.0 transformers==5.17.0 numpy==2.5.2 tokenizers==0.23.2 lightning==2.6.6 \
  pytorch-lightning==2.6.6 accelerate==1.15.0 huggingface_hub==1.33.0 safetensors==0.8.0 typer rich pyyaml \
  matplotlib pytest .whl/*.whl 2>&1 | grep -v "^WARNING: Location" || true
"$venv/bin/python" -c "import sys, torch, transformers, numpy; print('python', sys.version.split()[0], '| torch',
torch.__version__, '| transformers', transformers.__version__, '| numpy', numpy.__version__)"
"$venv/bin/pip" uninstall -q -y dcase9 2>/dev/null || true  # gpu_check.sh installs this tree, as on the GPU machine
out=$(mktemp -d "${TMPDIR:-/tmp}/dcase9-gpu-image-smoke.XXXXXX")
PYTHON="$venv/bin/python" bash benchmarks/gpu_check.sh --smoke --out "$out"
site="${TMPDIR:-/tmp}/dcase9-gpu-check-site-tree"
PYTHONPATH="$site" "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_clap.py tests/test_irm_ldm.py \
  tests/test_irm_ldm_frontend.py tests/test_ats.py tests/test_systems.py tests/test_resunet.py \
  tests/test_official_layout.py tests/test_train_run.py
