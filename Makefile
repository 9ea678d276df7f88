# The two quick-start commands:
#   make run    the service with demonstration data (SQLite, nothing else to install)
#   make test   lint, type checks and the whole test suite (PostgreSQL and Redis)

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 5000

.PHONY: run test

run: $(BIN)/oncall
	$(BIN)/oncall serve --demo --host $(HOST) --port $(PORT)

test:
	bash scripts/test.sh $(ARGS)

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] < (3, 11))' \
		|| { echo "oncall needs Python 3.11 or 3.12 (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(BIN)/oncall: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@
