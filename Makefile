# slimserve: one command to serve, one to test. Everything else is a building block of those two.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
REGISTRY ?= registry
ARGS ?=
FAMILY ?= mnist
FAMILIES ?= mnist wdbc
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: serve test setup system-deps registry lint typecheck unit bench-compression bench-serving soak clean

## serve: set up, build the default registry if it is missing, run the service on it
serve: registry
	$(BIN)/python -m service --registry.path $(REGISTRY) $(ARGS)

## test: set up, then lint, type-check and run the whole suite
test: setup system-deps lint typecheck unit

setup: $(VENV)/.installed

system-deps:
	scripts/system-deps.sh test

# scripts/install.sh is also what the Dockerfile runs: one install procedure for the venv and the image
$(VENV)/.installed: pyproject.toml scripts/install.sh
	PYTHON=$(PYTHON) scripts/install.sh --editable $(VENV) dev
	touch $@

# every built-in family into one registry; each build is a no-op when that family is up to date
registry: setup
	for family in $(FAMILIES); do $(BIN)/python -m models build $$family --registry $(REGISTRY) || exit 1; done

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

unit: setup .triton-venv/.slimserve-triton-ready
	$(BIN)/python -m pytest

# tests/triton run a real Triton Inference Server from its own venv (nvidia-pytriton pins numpy<2)
.triton-venv/.slimserve-triton-ready: scripts/triton-venv.sh
	PYTHON=$(PYTHON) scripts/triton-venv.sh .triton-venv >/dev/null

## benchmarks: separate commands, never part of the tests
# One report per family: benchmarks/compression.md (mnist), benchmarks/compression-<family>.md (the others)
BENCH_OUT = benchmarks/compression$(if $(filter mnist,$(FAMILY)),,-$(FAMILY)).md
bench-compression: setup
	$(BIN)/python -m models bench $(FAMILY) --seeds 3 --out $(BENCH_OUT)

bench-serving: registry
	scripts/system-deps.sh bench
	$(BIN)/python -m benchmarks.serving --registry $(REGISTRY) --out benchmarks/serving.md $(if $(BEFORE),--before $(BEFORE))

soak: registry
	scripts/system-deps.sh bench
	$(BIN)/python -m benchmarks.soak --registry $(REGISTRY) --minutes 3 --out benchmarks/soak.md

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

## loadtest: locust (HTTP JSON, binary, gRPC and the A/B user with feedback) against `make serve` when it answers
## on SERVE_URL, so the trade-off page at SERVE_URL/ui moves; else against a service it starts on the default
## registry (built if missing); report folder in reports/loadtest-<UTC time>/ (ARGS: --duration 2m --users 32 ...)
## SCENARIO=cascade: the cascade against teacher-only and student-only (ARGS: --rows 32 --seconds 20 ...);
## SCENARIO=rollout: a good candidate rolled out to 100 %, a worse one rolled back (ARGS: --restart --plot x.png)
SERVE_URL ?= http://127.0.0.1:8000
SCENARIO ?= run
.PHONY: loadtest
loadtest: registry
	@if [ "$(SCENARIO)" = run ] && $(BIN)/python -c 'import sys, httpx; sys.exit(httpx.get("$(SERVE_URL)/v2/health/ready", timeout=2).status_code != 200)' 2>/dev/null; then \
		echo "loading the running service at $(SERVE_URL) (watch $(SERVE_URL)/ui)"; \
		$(BIN)/python -m loadtests run --host $(SERVE_URL) $(ARGS); \
	else \
		$(BIN)/python -m loadtests $(SCENARIO) --registry $(REGISTRY) $(ARGS); \
	fi
