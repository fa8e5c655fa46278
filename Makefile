# Dynamic Risk Assessment System: the commands the README gives.
# `make help` lists the targets with their one-line descriptions.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CONFIG ?= config.json
HOST ?= 127.0.0.1
PORT ?= 8000

.DEFAULT_GOAL := help
.PHONY: help run test test-fast serve cron uncron bench lint check-course data system-test-deps clean

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(VENV)/.runtime-stamp: requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@touch $@

$(VENV)/.dev-stamp: requirements-dev.txt $(VENV)/.runtime-stamp
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

run: $(VENV)/.runtime-stamp ## set up .venv and run the main job on the bundled data
	$(PY) ingestion.py --config config.practice.json
	$(PY) training.py --config config.practice.json
	$(PY) scoring.py --config config.practice.json
	$(PY) deployment.py --config config.practice.json

system-test-deps: ## install the Debian packages the tests use (cron, poppler-utils) when missing
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  missing=""; \
	  command -v cron >/dev/null || missing="$$missing cron"; \
	  command -v pdftoppm >/dev/null || missing="$$missing poppler-utils"; \
	  if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi; \
	fi

test: $(VENV)/.dev-stamp system-test-deps ## set up .venv and run the whole test suite
	$(PY) -m pytest -q

test-fast: $(VENV)/.dev-stamp ## run the tests not marked slow
	$(PY) -m pytest -q -m "not slow"

lint: $(VENV)/.dev-stamp ## check the code with ruff
	$(PY) -m ruff check .

data: $(VENV)/.runtime-stamp ## regenerate the bundled data (byte-identical to the committed files)
	$(PY) datagen.py

check-course: $(VENV)/.runtime-stamp ## reproduce the course's figures on ../shared/reference/udacity
	$(PY) checks/course_figures.py

clean: ## remove generated outputs (keeps the bundled data and .venv)
	rm -rf ingesteddata models practicemodels production_deployment logs
