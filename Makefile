# medfabric — the two set-up commands are `make demo` and `make test`.
# Both create/refresh .venv from requirements.lock with only python3 and the package registries.

PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
DEMO_OUT ?= var/demo-region

.PHONY: demo test lint typecheck unit bench lock clean venv

$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m medfabric.demo --out $(DEMO_OUT)

test: $(STAMP) lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy src

unit: $(STAMP)
	$(BIN)/python -m pytest -q -n 2

bench: $(STAMP)
	$(BIN)/python bench/simulate.py
	$(BIN)/python bench/merkle.py
	$(BIN)/python bench/ledger_state.py
	$(BIN)/python bench/crypto.py
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/ledger.py
	$(BIN)/python bench/govern.py
	$(BIN)/python bench/quality.py --warehouse bench/out/govern/warehouse.duckdb
	$(BIN)/python bench/ads.py
	$(BIN)/python bench/empi.py

# Re-resolve the lock file after changing dependency ranges in pyproject.toml.
lock: $(STAMP)
	$(BIN)/python -m pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --extra dev -o requirements.lock --python $(BIN)/python

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
