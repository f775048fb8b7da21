# fertrain: `make demo` runs the pipeline on embedded synthetic data, `make test` runs the tests.
# Both create .venv on first use. torch and torchvision come from the package index as one
# consistent build (local find-links would pair a CPU-only torch with a CUDA torchvision).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.fertrain-installed
PIP_ENV := PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS=
FERTRAIN_DATA ?= $(abspath ../shared/datasets)
export FERTRAIN_DATA

.PHONY: demo test lint install clean-venv bench-manifest

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP_ENV) $(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/fertrain demo run --out outputs/demo

# Two test processes (pytest-xdist): the suite is mostly single-threaded Python and subprocesses, so a
# 2-core machine runs it in about three quarters of the time (docs/benchmarks.md); TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 2

test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup

lint: $(STAMP)
	$(BIN)/ruff check fertrain tests benchmarks

bench-manifest: $(STAMP)
	$(BIN)/python benchmarks/manifest_load.py

clean-venv:
	rm -rf $(VENV)
