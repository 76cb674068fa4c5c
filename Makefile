# The two commands a fresh machine needs:  `make demo` (the main job on the demo data) and `make test`.
# Both create the virtual environment on first use.

VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python

.PHONY: demo test clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# The CPU build of PyTorch (a local wheel on the project's build machines); GPU users install
	# their own CUDA build first, the package itself only asks for torch>=2.4.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/dcase9 demo --out demo-run

test: $(VENV)/.installed
	$(PY) -m ruff check .    # lint: pyflakes, bugbear, pyupgrade, simplify (pyproject.toml)
	$(PY) -m mypy           # the public API's types (the files in pyproject.toml)
	$(PY) -m pytest -q

clean:
	rm -rf demo-run .pytest_cache
