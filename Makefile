# One command runs the pipeline, one runs the tests; both create the virtual
# environment in .venv on first use.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Use the shared MNIST copy beside the repository when there is one and the
# caller did not choose a mirror; otherwise the download stage uses the public mirrors.
MNIST_MIRROR ?= $(wildcard $(CURDIR)/../shared/data/mnist)
export MNIST_MIRROR

# dvc runs each stage's `python ...` through the shell: the venv must come first on PATH.
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: install repro test clean-venv

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --progress-bar off -e '.[test]' 2>&1 | grep -v '^WARNING: Location' || true
	$(BIN)/python -c "import shapnoise, torch, dvc, shap"
	touch $@

repro: $(STAMP)
	$(BIN)/dvc repro

test: $(STAMP)
	$(BIN)/python -m pytest

clean-venv:
	rm -rf $(VENV)
