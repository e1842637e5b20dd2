# Fresh machine: `make run` (serve on embedded defaults) and `make test` (the whole suite).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-requirements
PYTEST_ARGS ?=

.PHONY: run test lint bench bench-ledger bench-wallet bench-migration bench-batches bench-load bench-moonshot bench-events install clean

$(STAMP): requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $(STAMP)

install: $(STAMP)

# DEBUG is off unless asked for; the development server asks (DJANGO_DEBUG=false overrides).
# /metrics adds up the web process and its Celery worker (prometheus_client's multiprocess
# mode reads the directory when Python starts, so it is set here).
run: $(STAMP)
	metrics_dir=$${PROMETHEUS_MULTIPROC_DIR:-$(CURDIR)/var/prometheus}; mkdir -p "$$metrics_dir"; \
	DJANGO_DEBUG=$${DJANGO_DEBUG:-true} PROMETHEUS_MULTIPROC_DIR="$$metrics_dir" \
	$(BIN)/python manage.py rundev

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# ruff (style, imports at the top, function size and complexity; the code formatted), mypy
# (types; pyproject.toml says where it is strict) and import-linter (the layers' one direction:
# [tool.importlinter]).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: bench-ledger bench-wallet bench-migration bench-batches

bench-ledger: $(STAMP)
	$(BIN)/python -m bench.ledger_bench $(BENCH_ARGS)

bench-wallet: $(STAMP)
	$(BIN)/python -m bench.wallet_bench $(BENCH_ARGS)

bench-migration: $(STAMP)
	$(BIN)/python -m bench.migration_bench $(BENCH_ARGS)

# 8189-item batches through POST /api/batches beside the raw create_transfers + registry insert.
bench-batches: $(STAMP)
	$(BIN)/python -m bench.batch_bench $(BENCH_ARGS)

# 1,000 locust users for 60 s against gunicorn, then an audit of every balance (not in `bench`).
bench-load: $(STAMP)
	$(BIN)/python -m bench.load_bench $(BENCH_ARGS)

# N legacy wallets moved onto TigerBeetle under W writes/s through the API (issue 25; not in
# `bench`): BENCH_ARGS="--wallets N --writes-per-s W", defaults 1,000,000 and 100.
bench-moonshot: $(STAMP)
	$(BIN)/python -m bench.moonshot_bench $(BENCH_ARGS)

# A burst of API writes, their events delivered as signed webhooks to a local receiver:
# delivery throughput and ack-to-receiver delay beside the write rate (BENCH_ARGS="--writes N").
bench-events: $(STAMP)
	$(BIN)/python -m bench.events_bench $(BENCH_ARGS)

clean:
	rm -rf var .pytest_cache .hypothesis .mypy_cache .import_linter_cache .grimp_cache
