# Each target sets up .venv itself from a bare Python 3 (torch comes from the local wheel cache).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test test-slow test-all lint format docs bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/classpattern demo --out classpattern_output

# The tests marked slow (end-to-end runs, the examples, models trained and scanned) are left out
# of `make test`, so that it stays a few minutes; `make test-slow` runs just them (CI runs both
# halves) and `make test-all` everything in one run.
test: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow

test-all: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Runs the examples (quick settings) and the quick start for the gallery: a few minutes on a
# CPU; scripts unchanged since the last build are not run again (``make clean`` forgets them).
docs: $(STAMP)
	$(BIN)/python -m sphinx -E -W --keep-going -q -b html docs docs/_build/html
	$(BIN)/python -m docs._tools.check_rendered docs/_build/html

bench: $(STAMP)
	$(BIN)/python -m benchmarks.bench_search --quick

clean:
	rm -rf docs/_build docs/examples docs/tutorials classpattern_output examples_output .pytest_cache
