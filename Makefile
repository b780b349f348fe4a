# Two commands a newcomer needs: `make run` and `make test`. Everything is installed
# into .venv by the project's own files.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= config.json

.PHONY: install run test lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/pushy-shard $(CONFIG)

lint: $(STAMP)
	$(BIN)/ruff check pushy_shard tests
	$(BIN)/mypy pushy_shard

test: $(STAMP) lint
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
