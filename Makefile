# jobmesh: make run | make test | make bench | make lint
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
PIP   := $(VENV)/bin/pip
EXAMPLE ?= examples/paper/workflow.yaml

.PHONY: setup system run test test-unit bench lint clean

# Idempotent: creates .venv with the jobmesh command in .venv/bin.
setup: $(VENV)/.installed system

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --disable-pip-version-check -U pip 'setuptools>=68'
	$(PIP) install -q --disable-pip-version-check -e '.[gateway,notebook,dev]'
	@touch $@

# System packages (Graphviz for graphs); installed with apt-get when root and missing.
system:
	@bash scripts/install-system.sh

run: setup
	$(VENV)/bin/jobmesh run $(EXAMPLE) --restart

# The browser tests run in their own pytest process: Playwright's sync API keeps an event
# loop running in the main thread for the whole session.
test: setup
	$(VENV)/bin/pytest -q -p no:cacheprovider tests/unit tests/integration
	$(VENV)/bin/pytest -q -p no:cacheprovider tests/browser

test-unit: setup
	$(VENV)/bin/pytest -q -m unit

bench: setup
	$(PY) bench/run.py

lint: setup
	$(VENV)/bin/ruff check libs services tests bench

clean:
	rm -rf $(VENV) build *.egg-info
