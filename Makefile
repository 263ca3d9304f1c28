# The two commands the README shows first. Both work from a fresh clone with Python 3.11+ and
# make: they create .venv and install what they need.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip

.PHONY: demo demo-reset test test-django42 test-mysql lint typecheck migrations-check pytest build clean mutation screenshots

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

# Start the demo over: removes its SQLite database, the fake Atlassian's grants and tokens, the
# beat schedule, the broker queue and the logs from .demo/ (DEMO_VAR_DIR); refuses while it runs.
demo-reset: $(VENV)/.demo-installed
	$(BIN)/python manage.py reset_demo

test: lint typecheck migrations-check pytest

lint: $(VENV)/.test-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(VENV)/.test-installed
	$(BIN)/mypy

migrations-check: $(VENV)/.test-installed
	DJANGO_SETTINGS_MODULE=tests.settings $(BIN)/python -m django makemigrations --check --dry-run

pytest: $(VENV)/.test-installed
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The same suite on Django 4.2 LTS, in a virtualenv of its own (lint and mypy run on 5.2 only:
# the type stubs follow the newest Django).
VENV42 ?= .venv-django42
$(VENV42)/.installed: requirements/base.txt requirements/demo.txt requirements/test.txt requirements/django42.txt setup.cfg pyproject.toml
	test -x $(VENV42)/bin/python || $(PYTHON) -m venv $(VENV42)
	$(VENV42)/bin/python -m pip install --quiet --upgrade pip
	$(VENV42)/bin/python -m pip install --quiet -r requirements/django42.txt -e .
	touch $@

test-django42: $(VENV42)/.installed
	$(VENV42)/bin/python -m django --version
	$(VENV42)/bin/python -m pytest $(PYTEST_ARGS)

# The suite on MariaDB/MySQL (DATABASE_URL=mysql://...): the driver needs Debian's
# libmariadb-dev, so it is installed only for this target.
$(VENV)/.mysql-installed: $(VENV)/.test-installed requirements/mysql.txt
	$(PIP) install --quiet -r requirements/mysql.txt
	touch $@

test-mysql: $(VENV)/.mysql-installed
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Mutation testing, outside `make test` and CI (tens of minutes): mutmut 3 over the modules named in
# setup.cfg's [mutmut] section, against the fast suite on SQLite; prints the score at the end.
# It runs in a snapshot of the working tree under build/ (ignored by git and ruff), so edits made
# meanwhile do not change the code under test; mutmut reuses its results there between runs
# (delete $(MUTATION_DIR) for a fresh start). MUTATION_ARGS="--max-children 6" finishes sooner on
# 2 cores: the slowest mutants wait in the suite's lease polls more than they compute.
MUTATION_DIR ?= build/mutation
$(VENV)/.mutation-installed: $(VENV)/.test-installed requirements/mutation.txt
	$(PIP) install --quiet -r requirements/mutation.txt
	touch $@

mutation: $(VENV)/.mutation-installed
	mkdir -p $(MUTATION_DIR)
	git ls-files -z --cached --others --exclude-standard \
		| tar --null --ignore-failed-read -T - -cf - | tar -xf - -C $(MUTATION_DIR)
	cd $(MUTATION_DIR) && env -u DATABASE_URL -u REDIS_URL -u RUN_HEAVY -u REQUIRE_SERVICES \
		nice -n 10 $(abspath $(BIN))/mutmut run $(MUTATION_ARGS)
	$(BIN)/python -m tests.adversarial.test_mutants_harness $(MUTATION_DIR)/mutants

# The README's pictures, taken by the browser tests (Chromium) as they walk the demo and the admin.
SCREENSHOTS_DIR ?= build/screenshots
screenshots: $(VENV)/.test-installed
	rm -rf $(SCREENSHOTS_DIR)
	SCREENSHOTS_DIR=$(abspath $(SCREENSHOTS_DIR)) REQUIRE_SERVICES=1 $(BIN)/python -m pytest -q -p no:randomly \
		tests/test_browser_demo.py::test_the_home_page_lists_the_issues_once_jira_is_connected \
		tests/test_browser_admin.py::test_admin_finds_the_broken_connection_and_refreshes_it
	mkdir -p docs/images
	cp $(SCREENSHOTS_DIR)/home-connected.png $(SCREENSHOTS_DIR)/status-in-the-demo.png \
		$(SCREENSHOTS_DIR)/admin-connections.png docs/images/

build: $(VENV)/.test-installed
	$(BIN)/python -m build

clean:
	rm -rf $(VENV) $(VENV42) .demo build dist *.egg-info

# ---- benchmarks
# `make bench`: every row of docs/performance.md's table, measured side by side, then the table
# (a few minutes; outside `make test` and CI, and never failing on a target). PostgreSQL at
# BENCH_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/perf, created if missing),
# Redis at REDIS_URL (default redis://127.0.0.1:6379/9); BENCH_ARGS="--quick" for a smoke run,
# "--rows sweep,token --databases sqlite" for some rows (python -m bench.run --help).
.PHONY: bench
$(VENV)/.bench-installed: $(VENV)/.test-installed requirements/bench.txt
	$(PIP) install --quiet -r requirements/bench.txt
	touch $@

bench: $(VENV)/.bench-installed
	$(BIN)/python -m bench.run $(BENCH_ARGS)
