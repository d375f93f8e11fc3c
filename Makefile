# The two commands of the README: `make demo` and `make test`.
# Both create .venv on first use and install the exact verified versions of
# requirements/constraints.txt; later runs find the stamp and skip the install.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.re2tal-installed
CONSTRAINTS := requirements/constraints.txt
PIP := $(BIN)/python -m pip --disable-pip-version-check
PYTEST_ARGS ?=

.PHONY: install lint test demo clean

install: $(STAMP)

# torch first and alone: any other order lets a dependency pull a multi-GB
# CUDA build from the index.
$(STAMP): setup.py $(CONSTRAINTS) requirements/runtime.txt requirements/tests.txt
	@echo "==> setting up $(VENV) (first run only)"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c $(CONSTRAINTS) torch
	$(PIP) install -q -c $(CONSTRAINTS) setuptools wheel
	$(PIP) install -q -c $(CONSTRAINTS) -r requirements/runtime.txt -r requirements/tests.txt
	$(PIP) install -q -c $(CONSTRAINTS) --no-deps --no-build-isolation -e .
	$(BIN)/python -c "import re2tal_mm, mmaction.models"
	touch $(STAMP)

# flake8 with setup.cfg (MMAction2's line length); seconds, so test runs it first
lint: $(STAMP)
	$(BIN)/python -m flake8
	$(BIN)/python -m isort --check-only --diff .

test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

demo: $(STAMP)
	$(BIN)/python tools/demo.py

clean:
	rm -rf $(VENV) work_dirs re2tal_mm/.mim *.egg-info
