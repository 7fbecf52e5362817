# Two commands on a fresh machine with Python 3.11+ and make:  `make demo`, `make test`.
# The virtual environment is built from requirements.lock (hash-pinned) the first time.
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && { echo $$p; break; }; done)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-scale test-fast lint lock bench clean

$(STAMP): requirements.lock pyproject.toml
	@test -n "$(PYTHON)" || { echo "tickethub needs Python 3.11 or newer on PATH (python3.11, python3.12, python3.13 or python3)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

demo: $(STAMP)  ## the hub between five sandbox systems, a scripted day with a live display; keeps serving (Ctrl-C stops)
	$(BIN)/tickethub demo --keep

test: $(STAMP)  ## the whole suite: unit, integration (PostgreSQL/Redis/RabbitMQ on 127.0.0.1), e2e
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-scale: $(STAMP)  ## the long scale-out proof (PostgreSQL + RabbitMQ, several processes; not in `make test`)
	$(BIN)/python -m pytest -m scale $(PYTEST_ARGS)

test-fast: $(STAMP)  ## only the tests that need nothing
	$(BIN)/python -m pytest -m unit $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check hub connectors mappings reconcile demo tests bench
	$(BIN)/mypy hub connectors mappings reconcile demo
	$(BIN)/lint-imports  # the layers and the plug-in boundaries (pyproject.toml [tool.importlinter])

bench: $(STAMP)
	$(BIN)/python bench/apply.py

lock:  ## refresh requirements.lock after changing dependencies in pyproject.toml
	uv pip compile pyproject.toml --extra dev --generate-hashes --universal --python-version 3.11 -o requirements.lock

clean:
	rm -rf $(VENV) var
