#!/usr/bin/env bash
# Download, here, the wheels of what the GPU machine's image lacks (it has PyTorch, transformers,
# lightning, typer, rich, pyyaml, matplotlib, numpy, but cannot reach a package registry) into .whl/,
# which benchmarks/gpu_check.sh installs there. Its python3 is 3.12 on x86-64 Linux; the versions are
# the ones this project is tested with. .whl/ is kept out of git (.git/info/exclude) and travels as
# the device run's `carry` (see BENCHMARKS.md, "GPU check").
set -euo pipefail
cd "$(dirname "$0")/.."
exclude=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$exclude")"
grep -qx '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >> "$exclude"
PY=${PYTHON:-python3}
platforms=()
for n in 2_28 2_27 2_17 2014 1; do
  case $n in 2014|1) platforms+=(--platform "manylinux${n}_x86_64");; *) platforms+=(--platform "manylinux_${n}_x86_64");; esac
done
download() {
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" -d .whl "$@"
}
download soundfile==0.14.0 cffi==2.1.1 pycparser==3.12 soxr==1.1.0 pydantic==2.14.4 pydantic_core==2.50.5 \
  annotated-types==0.8.0 typing-inspection==0.4.5 diffusers==0.42.1 importlib_metadata==10.2.0 julius==0.2.8
ls -1 .whl
du -sh .whl
