# tokentrail — `make demo` to see it, `make test` to check it. Both build .venv themselves.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip

.PHONY: demo test peers lint bench install install-dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(VENV)/.installed-all: pyproject.toml | $(BIN)/python
	$(PIP) install -q -e '.[all]'
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(PIP) install -q -e '.[dev]'
	touch $@ $(VENV)/.installed-all

install: $(VENV)/.installed-all
install-dev: $(VENV)/.installed-dev

demo: install
	$(BIN)/tokentrail demo

test: install-dev
	$(BIN)/python -m pytest -q -p no:cacheprovider

# langchain-core's own unit tests, plain and instrumented by tokentrail: every difference printed
peers: install-dev
	$(BIN)/python peers/langchain_core_suite.py

lint: install-dev
	$(BIN)/ruff check tokentrail tests bench examples peers
	$(BIN)/mypy
	$(BIN)/lint-imports

$(VENV)/.installed-bench: pyproject.toml | $(BIN)/python
	$(PIP) install -q -e '.[bench]'
	touch $@ $(VENV)/.installed-dev $(VENV)/.installed-all

bench: $(VENV)/.installed-bench
	$(BIN)/python bench/overhead.py
	$(BIN)/python bench/budget_check.py
	$(BIN)/python bench/row_encoding.py
	$(BIN)/python bench/dashboard_queries.py
	$(BIN)/python bench/ledger_load.py
	$(BIN)/python bench/reprice.py

clean:
	rm -rf $(VENV) build *.egg-info
