# Blacklist Sync: `make demo` runs the main job, `make test` the whole suite; both set themselves up.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test install lint unit schemas up down clean

$(BIN)/blacklist-sync: pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (Python 3.11) on PATH"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --progress-bar off -e ".[dev]"
	@touch $@

install: $(BIN)/blacklist-sync

demo: install
	$(BIN)/blacklist-sync demo

test: install
	bash scripts/test.sh

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

unit: install
	$(BIN)/python -m pytest tests/unit -q

schemas: install
	$(BIN)/python -m schemas.generate

up: install
	$(BIN)/blacklist-sync up

down: install
	$(BIN)/blacklist-sync down

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
