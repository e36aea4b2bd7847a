# The router's everyday commands. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON312 := $(shell scripts/find-python312 2>/dev/null)
VENV := .venv
PY := $(VENV)/bin/python
SAM_VENV := .venv-sam
SAM := $(SAM_VENV)/bin/sam
CHECKOV_VENV := .venv-checkov

export PYTHONPATH := $(CURDIR):$(CURDIR)/layers/common
# SAM needs a region even offline; the stack is meant for eu-west-2 (London).
export AWS_REGION ?= eu-west-2
export AWS_DEFAULT_REGION ?= $(AWS_REGION)
export SAM_CLI_TELEMETRY := 0

.PHONY: help install dev invoke send replay privacy reconcile test test-browser lint format validate build bench deploy migrate generate clean

help: ## list the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements.txt layers/common/requirements.txt
	@test -n "$(PYTHON312)" || scripts/find-python312
	$(PYTHON312) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

$(SAM_VENV)/.installed: requirements-sam.txt
	@test -n "$(PYTHON312)" || scripts/find-python312
	$(PYTHON312) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-sam.txt
	touch $@

$(CHECKOV_VENV)/.installed: requirements-checkov.txt
	@test -n "$(PYTHON312)" || scripts/find-python312
	$(PYTHON312) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
	touch $@

install: $(VENV)/.installed ## create .venv with everything the app and its tests need

dev: $(VENV)/.installed ## run the whole pipeline locally on 127.0.0.1:3000 (PORT, DATABASE_URL); Ctrl-C stops it
	$(PY) -m devstack dev

invoke: $(VENV)/.installed ## run one function against the running stack: FUNCTION=<logical id> EVENT=events/<file>.json
	$(PY) -m devstack invoke "$(FUNCTION)" "$(EVENT)"

send: $(VENV)/.installed ## send every signed sample webhook to the running stack, then show /stats
	$(PY) -m devstack send

replay: $(VENV)/.installed ## replay against the running stack: ARGS='{"mode": "dlq"}'
	$(PY) -m devstack replay '$(ARGS)'

privacy: $(VENV)/.installed ## erase or export a student on the running stack: ARGS='{"action": "export", "student": {"email": "..."}}'
	$(PY) -m devstack privacy '$(ARGS)'

reconcile: $(VENV)/.installed ## import and reconcile on the running stack: ARGS='{"dry_run": true}' (docs/first-day.md)
	$(PY) -m devstack reconcile '$(ARGS)'

test: $(VENV)/.installed ## run the test suite (embedded Postgres unless TEST_DATABASE_URL is set)
	$(PY) -m pytest $(PYTEST_ARGS)

test-browser: $(VENV)/.installed ## the console in Debian's Chromium (installed if missing) against make dev's stack; screenshots into docs/images/console/
	scripts/install-chromium
	$(PY) -m pytest -m browser tests/browser $(PYTEST_ARGS)

lint: $(VENV)/.installed $(CHECKOV_VENV)/.installed ## ruff (lint + format check), mypy, the import directions, and Checkov on template.yaml
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy scripts/preflight.py
	PYTHONPATH=layers/common:. $(VENV)/bin/lint-imports --no-cache
	$(CHECKOV_VENV)/bin/checkov --quiet --compact --skip-download --framework cloudformation --file template.yaml

format: $(VENV)/.installed ## apply ruff's formatting and safe fixes
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

validate: $(SAM_VENV)/.installed ## sam validate and sam validate --lint (offline)
	$(SAM) validate --template template.yaml
	$(SAM) validate --lint --template template.yaml

# sam build looks for python3.12 on PATH; put the one we found first. It ships no bytecode, so
# every cold start would compile the imports first: compile them here, valid whatever the mtimes.
build: $(SAM_VENV)/.installed $(VENV)/.installed ## sam build into .aws-sam/, with compiled bytecode
	PATH="$(dir $(PYTHON312)):$$PATH" $(SAM) build --template template.yaml
	$(PY) -m compileall -q -j 0 --invalidation-mode unchecked-hash .aws-sam/build

ENV ?= dev
bench: $(VENV)/.installed $(SAM_VENV)/.installed ## benchmarks: one table of figures, ratios to floors and targets
	$(PY) -m bench.run $(BENCH_ARGS)

# Credentials and samconfig.toml's placeholders are checked before the minutes of building.
deploy: $(VENV)/.installed $(SAM_VENV)/.installed ## deploy with samconfig.toml's ENV (dev or prod): make deploy ENV=prod
	$(PY) scripts/preflight.py $(ENV)
	$(MAKE) build
	$(SAM) deploy --config-env $(ENV)

migrate: $(VENV)/.installed ## apply the database migrations to DATABASE_URL
	$(PY) -m event_router.operate.migrate

generate: $(VENV)/.installed ## regenerate the sample events of events/ (a test fails when they are stale)
	$(PY) -m devstack.samples

clean: ## remove build output and virtual environments
	rm -rf .aws-sam $(VENV) $(SAM_VENV) $(CHECKOV_VENV) .pytest_cache .mypy_cache .ruff_cache
