# The README's two commands are `make serve` and `make test`; both create .venv and install.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# Tests run on 2 workers by default (the machine has 2 cores); set PYTEST_WORKERS=0 to disable.
PYTEST_WORKERS ?= 2

.PHONY: install tools serve test test-slow test-all bench bench-quality bench-search bench-onboarding lint format proto clean cluster-demo

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/python -m pip install --quiet "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## serve: install, then start the server on the embedded defaults (port 50051, bundled data,
## SQLite under .oracle/, metrics on 9464). Any `oracle-server serve` flag via ARGS="...".
serve: $(STAMP)
	$(BIN)/oracle-server serve $(ARGS)

## tools: Debian's `prometheus` package (prometheus + promtool) for the monitoring tests
## (tests/integration/test_prometheus_rules.py, tests/e2e/test_prometheus_scrape.py), installed
## when missing and apt-get is usable (root); otherwise those tests skip and say why. Without
## recommends (no node exporter). Containers have no init system, so nothing starts; on a
## systemd host the packaged service (port 9090) is stopped and disabled again: the tests
## start their own Prometheus on a free loopback port.
tools:
	@command -v promtool >/dev/null && command -v prometheus >/dev/null || \
	{ [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus \
	    >/dev/null && \
	  { [ ! -d /run/systemd/system ] || systemctl disable --now prometheus >/dev/null 2>&1 || true; }; } || \
	echo "make: cannot install Debian's prometheus package (needs root and apt-get):" \
	  "the Prometheus rule and scrape tests will be skipped"

## test: install, then the default test suite (slow/benchmark tests excluded).
test: $(STAMP) tools
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -m "not slow" $(if $(filter-out 0,$(PYTEST_WORKERS)),-n $(PYTEST_WORKERS)) $(PYTEST_ARGS)

## test-slow: the slow-marked tests (full published-protocol runs), not part of CI.
test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

test-all: test test-slow

## bench: the serving benchmark (tables printed, JSON under benchmarks/results/).
bench: $(STAMP)
	$(BIN)/python -m benchmarks.serving --json benchmarks/results/serving.json

bench-quality: $(STAMP)
	$(BIN)/python -m benchmarks.quality --json benchmarks/results/quality.json

bench-search: $(STAMP)
	$(BIN)/python -m benchmarks.search_quality --json benchmarks/results/search_quality.json

## bench-onboarding: this CPU at 1 and 2 threads in every space: retest ceiling, oracle, FLOPs.
bench-onboarding: $(STAMP)
	$(BIN)/python -m benchmarks.onboarding --samples 10 --validate 100

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## proto: regenerate the committed gRPC/protobuf code from protos/ (never edit it by hand),
## with the exact generator pinned in pyproject.toml's dev extra (one place for the version).
GRPC_TOOLS_VERSION := $(shell sed -n 's/.*"grpcio-tools==\([^"]*\)".*/\1/p' pyproject.toml)
proto: $(STAMP)
	$(BIN)/python -m pip install --quiet "grpcio-tools==$(GRPC_TOOLS_VERSION)"
	rm -rf client_sdk/proto/latency_oracle
	$(BIN)/python -m grpc_tools.protoc -Iclient_sdk/proto=protos \
		--python_out=. --grpc_python_out=. --pyi_out=. \
		protos/latency_oracle/v1/oracle.proto
	touch client_sdk/proto/latency_oracle/__init__.py client_sdk/proto/latency_oracle/v1/__init__.py

## cluster-demo: 3 replicas on loopback sharing the local PostgreSQL (deploy/local).
cluster-demo: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" deploy/local/cluster_demo.sh $(ARGS)

clean:
	rm -rf $(VENV) .oracle .pytest_cache build *.egg-info
