# `make run` sets everything up and runs the job on examples/; `make test` runs the whole test suite.
# Both create .venv themselves; nothing else is needed but Python 3.11+.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: run test test-airflow lint bench clean

$(BIN)/customer-ratings: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

run: $(BIN)/customer-ratings
	$(BIN)/customer-ratings run --data-dir examples/data --output-dir out --config examples/sources.toml

test: $(BIN)/customer-ratings
	$(BIN)/pytest

test-airflow: $(BIN)/customer-ratings
	$(BIN)/pip install --quiet -e '.[airflow]' -c constraints/airflow-3.3-py3.11.txt
	$(BIN)/pytest tests/airflow

lint: $(BIN)/customer-ratings
	$(BIN)/ruff check src tests dags bench
	$(BIN)/mypy

bench: $(BIN)/customer-ratings
	$(BIN)/python bench/load_vs_copy.py --rows 1000000

clean:
	rm -rf $(VENV) out .customer-ratings
