# MedServe: two commands matter. `make run` serves everything; `make test` passes every test.
# Every target installs what it needs itself (fresh machine, no Docker, no AWS account).
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Lambda runs python3.12 (x86_64). Find a 3.12 interpreter that really runs (a pyenv shim
# may exist and still refuse); fall back to python3 with a warning.
PY312 ?= $(shell for p in $$(command -v python3.12 2>/dev/null) $$(ls -d /root/.pyenv/versions/3.12*/bin/python3.12 \
	$$HOME/.pyenv/versions/3.12*/bin/python3.12 /usr/bin/python3.12 /usr/local/bin/python3.12 2>/dev/null); do \
	if "$$p" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' >/dev/null 2>&1; then echo "$$p"; break; fi; \
	done)
ifeq ($(strip $(PY312)),)
PY312 := $(shell command -v python3)
$(warning python3.12 not found: using $(PY312); Lambda runs 3.12, so results may differ)
endif
PIP_FLAGS ?= --disable-pip-version-check --quiet --no-warn-script-location

VENV        := .venv
EXPORT_VENV := .venv-export
TOOLS_VENV  := .venv-tools
PY          := $(VENV)/bin/python
BUILD       := .build

export PYTHONDONTWRITEBYTECODE := 1

.PHONY: help setup setup-export setup-tools run test test-fast test-slow lint models promote golden layer bench clean

help:
	@echo "make run     serve the API on http://127.0.0.1:3000 and S3 on http://127.0.0.1:4566"
	@echo "make test    install what is needed and run every test"
	@echo "make models  retrain and re-export every model (TensorFlow, offline)"
	@echo "make promote MODEL=<id> VERSION=<x.y.z>  gate a candidate against the live version (docs/lifecycle.md)"
	@echo "make bench   run the benchmarks and rewrite bench/RESULTS.md"
	@echo "make golden  re-record every model version's golden requests (golden.json)"
	@echo "make layer   build the python3.12 x86_64 runtime layer into $(BUILD)/runtime"

# --- environments ---------------------------------------------------------------
$(VENV)/.stamp: requirements/dev.txt layers/runtime/requirements.txt clients/python/pyproject.toml
	$(PY312) -m venv $(VENV)
	$(VENV)/bin/pip install $(PIP_FLAGS) --upgrade pip 2>&1 | grep -v "is ignored" || true
	$(VENV)/bin/pip install $(PIP_FLAGS) -r requirements/dev.txt 2>&1 | grep -v "is ignored" ; test $${PIPESTATUS[0]} -eq 0
	$(VENV)/bin/pip install $(PIP_FLAGS) -e clients/python 2>&1 | grep -v "is ignored" ; test $${PIPESTATUS[0]} -eq 0
	touch $@

$(EXPORT_VENV)/.stamp: model_export/requirements.txt
	$(PY312) -m venv $(EXPORT_VENV)
	$(EXPORT_VENV)/bin/pip install $(PIP_FLAGS) --upgrade pip 2>&1 | grep -v "is ignored" || true
	$(EXPORT_VENV)/bin/pip install $(PIP_FLAGS) -r model_export/requirements.txt 2>&1 | grep -v "is ignored" ; test $${PIPESTATUS[0]} -eq 0
	touch $@

$(TOOLS_VENV)/.stamp: requirements/tools.txt
	$(PY312) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/pip install $(PIP_FLAGS) --upgrade pip 2>&1 | grep -v "is ignored" || true
	$(TOOLS_VENV)/bin/pip install $(PIP_FLAGS) -r requirements/tools.txt 2>&1 | grep -v "is ignored" ; test $${PIPESTATUS[0]} -eq 0
	touch $@

setup: $(VENV)/.stamp
setup-export: $(EXPORT_VENV)/.stamp
setup-tools: $(TOOLS_VENV)/.stamp

# --- the runtime layer, built for Lambda without Docker ----------------------------
$(BUILD)/runtime/.stamp: layers/runtime/requirements.txt layers/runtime/Makefile
	rm -rf $(BUILD)/runtime && mkdir -p $(BUILD)/runtime
	$(MAKE) -C layers/runtime build-RuntimeLayer ARTIFACTS_DIR=$(abspath $(BUILD)/runtime) PIP="$(abspath $(VENV))/bin/pip" PYTHON="$(PY312)"
	touch $@

layer: setup $(BUILD)/runtime/.stamp

# --- the two commands -----------------------------------------------------------
run: setup
	$(PY) -m local

test: setup setup-tools setup-export layer
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/python -m pytest -m "not slow"
	$(EXPORT_VENV)/bin/python -m pytest -m slow -p no:cacheprovider tests/export

test-fast: setup
	$(VENV)/bin/python -m pytest -m "not slow" -x -q

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# --- offline work ---------------------------------------------------------------
models: setup-export
	$(EXPORT_VENV)/bin/python -m model_export --all

# The promotion gate (NumPy + ONNX Runtime, no TensorFlow): the only writer of layers/models/<id>/live.json.
promote: setup
	@if [ -z "$(MODEL)" ] || [ -z "$(VERSION)" ]; then echo "usage: make promote MODEL=<id> VERSION=<x.y.z>" >&2; exit 2; fi
	$(PY) -m model_export.promote --model "$(MODEL)" --version "$(VERSION)"

golden: setup
	$(PY) -m local.golden --write

bench: setup setup-export layer
	$(PY) -m bench

clean:
	rm -rf $(BUILD) .pytest_cache .mypy_cache .ruff_cache
