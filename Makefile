# jobmesh: make run | make test | make bench | make lint | make images
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
PIP   := $(VENV)/bin/pip
EXAMPLE ?= examples/paper/workflow.yaml

.PHONY: setup system run test test-unit test-containers images docker-start docker-stop bench lint clean

# Container images (scripts/docker-images.sh): BASES=auto tries the registry's
# python:3.11-slim-bookworm and $(NATS_IMAGE), else builds the bases from Debian packages.
BASES ?= auto
NATS_IMAGE ?= nats:2.10-alpine
PYTHON_IMAGE ?= python:3.11-slim-bookworm
NOTEBOOK ?= 1

# Idempotent: creates .venv with the jobmesh command in .venv/bin. Quiet: -qq keeps pip's
# errors and drops its warnings (a site's pip.conf may name index folders that do not
# exist); setuptools' notice about editable installs (the package-dir map is installed
# through its import finder, on purpose: pyproject.toml) is filtered by its text.
setup: $(VENV)/.installed system

$(VENV)/.installed: export PYTHONWARNINGS = ignore:Editable installation
$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -qq --disable-pip-version-check -U pip 'setuptools>=68'
	$(PIP) install -qq --disable-pip-version-check -e '.[gateway,notebook,dev]'
	@touch $@

# System packages (Graphviz for graphs); installed with apt-get when root and missing.
system:
	@bash scripts/install-system.sh

run: setup
	$(VENV)/bin/jobmesh run $(EXAMPLE) --restart

# unit + integration, the browser, the containers (scripts/test-all.sh: the container
# images build in the background meanwhile; every part runs, and any failure fails).
test: setup
	bash scripts/test-all.sh

# The compose stack on a real Docker engine: scripts/start-docker.sh starts one (root Linux;
# exit 2 elsewhere, and the tests then skip with the reason); the tests build the images.
test-containers: setup
	@bash scripts/start-docker.sh >/dev/null || [ $$? = 2 ]
	$(VENV)/bin/pytest -q -p no:cacheprovider tests/containers

images:
	BASES=$(BASES) NATS_IMAGE=$(NATS_IMAGE) PYTHON_IMAGE=$(PYTHON_IMAGE) NOTEBOOK=$(NOTEBOOK) \
	  bash scripts/docker-images.sh

docker-start:
	@bash scripts/start-docker.sh

docker-stop:
	@bash scripts/docker-stop.sh

test-unit: setup
	$(VENV)/bin/pytest -q -m unit

bench: setup
	$(PY) bench/run.py

lint: setup
	$(VENV)/bin/ruff check libs services tests bench examples scripts
	bash scripts/typecheck.sh

clean:
	rm -rf $(VENV) build *.egg-info
