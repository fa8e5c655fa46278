# Dynamic Risk Assessment System: the commands the README gives.
# `make help` lists the targets with their one-line descriptions.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CONFIG ?= config.json
HOST ?= 127.0.0.1
PORT ?= 8000

.DEFAULT_GOAL := help
.PHONY: help run run-db serve test test-fast cron uncron lint check-course data system-deps system-test-deps clean bench

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(VENV)/.runtime-stamp: requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@touch $@

$(VENV)/.dev-stamp: requirements-dev.txt $(VENV)/.runtime-stamp
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

run: $(VENV)/.runtime-stamp system-deps ## set up .venv, then the life cycle on the bundled data (API up meanwhile); ends with how to open the page
	HOST=$(HOST) PORT=$(PORT) tools/lifecycle.sh

DB_FILE := db/clients.sqlite

run-db: $(VENV)/.runtime-stamp system-deps ## the same life cycle from a database table: config.database.json, SQLite in db/
	$(PY) datagen.py --sqlite $(DB_FILE) --market practice
	HOST=$(HOST) PORT=$(PORT) LIFECYCLE_FIRST_CONFIG=config.database.json LIFECYCLE_CONFIG=config.database.json \
	  LIFECYCLE_PROD=db/production_deployment \
	  LIFECYCLE_NEW_DATA="$(PY) datagen.py --sqlite $(DB_FILE) --market source" tools/lifecycle.sh

CRON_SCHEDULE ?= */10 * * * *
CRON_CONFIG ?= $(CURDIR)/$(CONFIG)
CRON_LOG ?= $(CURDIR)/logs/cron.log

cron: $(VENV)/.runtime-stamp system-deps ## install the cronjob.txt line for this user (idempotent; paths quoted)
	@mkdir -p "$$(dirname "$(CRON_LOG)")"
	@$(PYTHON) tools/cronjob.py install --project "$(CURDIR)" --config "$(CRON_CONFIG)" --log "$(CRON_LOG)" \
	  --schedule "$(CRON_SCHEDULE)"

uncron: ## remove this project's cron line for CONFIG
	@$(PYTHON) tools/cronjob.py uninstall --config "$(CRON_CONFIG)"

serve: $(VENV)/.runtime-stamp ## the API and the web page with gunicorn on HOST:PORT (default http://127.0.0.1:8000/), serving CONFIG
	HOST=$(HOST) PORT=$(PORT) RISK_CONFIG=$(abspath $(CONFIG)) $(VENV)/bin/gunicorn -c gunicorn.conf.py wsgi:app

# The PDF report's fonts (riskcore.report.pdf_layout): DejaVu Sans, Droid Sans Fallback for Chinese and
# Japanese, NanumGothic for Korean and Symbola for emoji. Without them a report is still written, and says
# which characters print as boxes.
REPORT_FONTS := /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf:fonts-dejavu-core \
  /usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf:fonts-droid-fallback \
  /usr/share/fonts/truetype/nanum/NanumGothic.ttf:fonts-nanum \
  /usr/share/fonts/truetype/ancient-scripts/Symbola_hint.ttf:fonts-symbola

system-deps: ## install (as root) the fonts the PDF report draws every script with (DejaVu, Droid fallback, Nanum, Symbola)
	@missing=""; for pair in $(REPORT_FONTS); do test -f "$${pair%%:*}" || missing="$$missing $${pair##*:}"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "The PDF report lacks fonts: run as root: apt-get install$$missing"; fi; \
	fi

system-test-deps: system-deps ## install (as root) and start what the tests use: cron, poppler-utils, postgresql, chromium(-driver), iproute2 (ss)
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  missing=""; \
	  command -v cron >/dev/null || missing="$$missing cron"; \
	  command -v pdftoppm >/dev/null || missing="$$missing poppler-utils"; \
	  command -v chromium >/dev/null || missing="$$missing chromium"; \
	  command -v chromedriver >/dev/null || missing="$$missing chromium-driver"; \
	  command -v ss >/dev/null || missing="$$missing iproute2"; \
	  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	  if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi; \
	  pgrep -x cron >/dev/null || cron || true; \
	fi

# The tests run with bytecode caching on, whatever PYTHONDONTWRITEBYTECODE says: pytest then keeps its rewritten
# test modules in tests/__pycache__ (git ignores it) instead of rewriting all of them on every run (collecting the
# fast tests took 5.9 s of CPU without the cache, 3.6 s with it).
# As root, system-test-deps has installed and started what the slow tests use: a test that still finds one missing
# fails rather than skips (RISK_TESTS_NEED_SYSTEM, tests/conftest.py), so a failed install cannot pass for a pass.
test: $(VENV)/.dev-stamp system-test-deps ## set up .venv (and, as root, the system packages), then run the whole test suite (several minutes)
	PYTHONDONTWRITEBYTECODE= RISK_TESTS_NEED_SYSTEM=$$([ "$$(id -u)" = 0 ] && echo 1) $(PY) -m pytest -q

test-fast: $(VENV)/.dev-stamp ## the tests not marked slow (no subprocess, no server): under a minute on a quiet machine
	PYTHONDONTWRITEBYTECODE= $(PY) -m pytest -q -m "not slow"

bench: $(VENV)/.dev-stamp ## run the benchmarks on generated data (a few minutes): a table, and bench/results.json
	@if ! command -v wrk >/dev/null && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; } \
	    || echo "wrk could not be installed; the Python load client (bench/loadgen.py) stands in"; \
	fi
	$(PY) bench/run.py

lint: $(VENV)/.dev-stamp ## check the code with ruff
	$(PY) -m ruff check .

data: $(VENV)/.runtime-stamp ## regenerate the bundled data (byte-identical to the committed files)
	$(PY) datagen.py

COURSE_DATA ?= ../shared/reference/udacity

check-course: $(VENV)/.runtime-stamp ## reproduce the course's figures on COURSE_DATA (default ../shared/reference/udacity)
	$(PY) checks/course_figures.py --data "$(COURSE_DATA)"

clean: ## remove generated outputs (keeps the bundled data and .venv)
	rm -rf ingesteddata models practicemodels production_deployment logs db
