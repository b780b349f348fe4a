# Two commands a newcomer needs: `make run` and `make test`. Everything is installed
# into .venv by the project's own files.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= config.json

.PHONY: install run test lint clean bench soak

$(STAMP): pyproject.toml setup.py pushy_shard/front/_sendall.c
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

# Benchmarks (pushy_shard/bench/README.md): BENCH_ARGS picks the scenarios, e.g.
# `make bench BENCH_ARGS="burst --subscribers 2000 --events 200"`; by default every
# scenario, each beside the C reference floor (--floor).
BENCH_STAMP := $(VENV)/.bench-installed
BENCH_OUT ?= bench-results
BENCH_ARGS ?= all --floor

$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	mkdir -p $(BENCH_OUT)
	$(BIN)/python -m pushy_shard.bench $(BENCH_ARGS) --json $(BENCH_OUT)/bench.json --plot $(BENCH_OUT)/bench.png

# Soak (tests/soak/soak.py): churn and presence while a random shard or front is SIGKILLed
# every few seconds; prints a summary table, exits non-zero on a lost event or an
# inconsistent presence view. Then the webhook soak (tests/soak/webhooks.py): every
# occupancy and presence transition announced exactly once through the same kills. Then
# the cluster soak (tests/soak/cluster.py, needs redis-server): three instances on one
# Redis while shards, an instance and Redis are killed.
# `make soak SOAK_ARGS="--minutes 2"` (each of the three runs that long).
SOAK_ARGS ?= --minutes 10

soak: $(STAMP)
	$(BIN)/python -m tests.soak.soak $(SOAK_ARGS)
	$(BIN)/python -m tests.soak.webhooks $(SOAK_ARGS)
	$(BIN)/python -m tests.soak.cluster $(SOAK_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
