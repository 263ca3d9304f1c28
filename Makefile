# The two commands the README shows first. Both work from a fresh clone with Python 3.11+ and
# make: they create .venv and install what they need.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip

.PHONY: demo test lint typecheck migrations-check pytest build clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# A stamp per requirement set: rerunning reuses the venv until a requirements file changes.
$(VENV)/.demo-installed: $(BIN)/python requirements/base.txt requirements/demo.txt setup.cfg pyproject.toml
	$(PIP) install --quiet -r requirements/demo.txt -e .
	touch $@

$(VENV)/.test-installed: $(VENV)/.demo-installed requirements/test.txt
	$(PIP) install --quiet -r requirements/test.txt -e .
	touch $@

demo: $(VENV)/.demo-installed
	$(BIN)/python manage.py rundemo

test: lint typecheck migrations-check pytest

lint: $(VENV)/.test-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.test-installed
	$(BIN)/mypy

migrations-check: $(VENV)/.test-installed
	DJANGO_SETTINGS_MODULE=tests.settings $(BIN)/python -m django makemigrations --check --dry-run

pytest: $(VENV)/.test-installed
	$(BIN)/python -m pytest $(PYTEST_ARGS)

build: $(VENV)/.test-installed
	$(BIN)/python -m build

clean:
	rm -rf $(VENV) .demo build dist *.egg-info
