# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DS_BUILD_OPS := 0
export TOKENIZERS_PARALLELISM := false

.PHONY: install test test-fast lint demo bench clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first: the pinned CPU wheel; an unpinned resolver would pull a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check bayling tests benchmarks scripts
	$(BIN)/python -m pytest -q tests $(PYTEST_ARGS)

# The fast tests on every core (pytest-xdist; TEST_JOBS=0: one process).
TEST_JOBS ?= auto
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_JOBS) -m "not slow" tests $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check bayling tests benchmarks scripts

demo: $(STAMP)
	$(BIN)/python scripts/demo.py $(DEMO_ARGS)

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py $(BENCH_ARGS)  # BENCH_ARGS=--quick: each at a small setting

clean:
	rm -rf runs .pytest_cache
