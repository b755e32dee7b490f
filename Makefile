# One command to set up and run the main job, one to set up and pass the tests.
# Every target creates .venv on first use; nothing here phones home.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
PYTHON ?= python3

export DO_NOT_TRACK := 1
export KEDRO_DISABLE_TELEMETRY := 1
export MLFLOW_DISABLE_TELEMETRY := true
export DVC_NO_ANALYTICS := 1
export PYTHONUNBUFFERED := 1

.PHONY: install run test repro viz viz-build graph-image mlflow-ui serve benchmarks clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

run: $(VENV)/.installed   ## generate the embedded dataset, train, evaluate
	$(BIN)/kedro run

test: $(VENV)/.installed  ## the whole test suite
	$(BIN)/pytest

repro: $(VENV)/.installed  ## the same stages through DVC (reruns only what changed)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dvc repro

viz: $(VENV)/.installed       ## Kedro-Viz on http://127.0.0.1:4141
	$(BIN)/kedro viz run --host 127.0.0.1 --port 4141 --no-browser

viz-build: $(VENV)/.installed ## static Kedro-Viz site in build/, offline
	$(BIN)/kedro viz build

graph-image: $(VENV)/.installed ## docs/images/pipeline.png from the Kedro-Viz build, via headless Chromium
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)
	$(PY) tools/render_pipeline_graph.py

mlflow-ui: $(VENV)/.installed
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port 5000

SERVE_MODEL ?= models:/animvfi-vfi@champion
SERVE_PORT ?= 5001
serve: $(VENV)/.installed  ## the registry's champion over HTTP on 127.0.0.1 (docs/registry.md); no conda, no download
	PATH="$(abspath $(BIN)):$$PATH" MLFLOW_TRACKING_URI=sqlite:///mlflow.db \
	  $(BIN)/mlflow models serve -m $(SERVE_MODEL) --env-manager local --host 127.0.0.1 --port $(SERVE_PORT)

benchmarks: $(VENV)/.installed
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf data/02_intermediate/* data/06_models/* data/08_reporting/*
