# Two entry points: `make demo` runs the main job, `make test` runs the tests.
# Each creates .venv if missing and installs the project with its extras under constraints.txt.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

export OMP_NUM_THREADS := 1
export MKL_NUM_THREADS := 1
export OPENBLAS_NUM_THREADS := 1

.PHONY: demo test test-slow bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[ml,scalesim,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/cosim demo

test: $(STAMP)
	$(PY) -m pytest

test-slow: $(STAMP)
	$(PY) -m pytest -m slow

bench: $(STAMP)
	$(PY) benchmarks/bench_multipliers.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
