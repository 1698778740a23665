# ispbill: `make run` starts the service with demo data; `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
PG_URL ?= postgresql://postgres@127.0.0.1:5432/test
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test test-sqlite test-postgres bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

run: $(STAMP)
	$(BIN)/ispbill migrate --verbosity 0
	$(BIN)/ispbill demo
	$(BIN)/ispbill serve --host $(HOST) --port $(PORT) --demo-router --demo-gateways

# The whole suite, twice: on the embedded SQLite database, then on PostgreSQL.
# PostgreSQL-only tests (row locks, concurrent writers) run in the second pass; pure
# unit tests, which touch no database, run in the first.
test: test-sqlite test-postgres

test-sqlite: $(STAMP)
	@echo "== test suite on SQLite =="
	$(BIN)/pytest -m "not postgres_only"

test-postgres: $(STAMP)
	@echo "== test suite on PostgreSQL ($(PG_URL)) =="
	DATABASE_URL=$(PG_URL) ISPBILL_REQUIRE_DB=postgresql $(BIN)/pytest --ignore=tests/unit

bench: $(STAMP)
	$(BIN)/python bench/billing_run.py --subscribers 100000
	DATABASE_URL=$(PG_URL) $(BIN)/python bench/billing_run.py --subscribers 100000

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
