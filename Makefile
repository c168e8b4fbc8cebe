# Valerix: `make up` runs the whole system locally (no Docker, no AWS account);
# `make test` runs every test, bringing up (and down) whatever they need.
SHELL := /bin/bash
# The interpreter both virtualenvs are made from: the first Python 3.11+ among python3,
# python3.11, python3.12 on PATH (Debian 12's own /usr/bin/python3 3.11.2 will do).
# `make PYTHON=/path/to/python3` picks another; scripts/system-deps.sh checks it.
ifeq ($(origin PYTHON),undefined)
PYTHON := $(shell for p in python3 python3.11 python3.12; do \
  $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && { command -v $$p; break; }; done)
endif
VENV := .venv
LS_VENV := .valerix/localstack-venv
STEP := scripts/step.sh
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1
export CDK_DISABLE_CLI_TELEMETRY := true

.PHONY: up down status logs admin-key test test-unit lint lock deps test-deps system-deps system-deps-test hot-reload \
        synth clean verify bench backup backup-list backup-sync restore reconcile gameday

up: deps
	@$(VENV)/bin/python -m valerix_localcloud up

hot-reload: deps
	@$(VENV)/bin/python -m valerix_localcloud up --hot-reload

down:
	@if [ -x $(VENV)/bin/python ]; then $(VENV)/bin/python -m valerix_localcloud down; \
	 else echo "nothing to stop (no .venv)"; fi

status:
	@$(VENV)/bin/python -m valerix_localcloud status

# Every function's logs, followed until ctrl-C (FN=order-api for one; LOGS_ARGS="--since 1h --no-follow").
logs:
	@$(VENV)/bin/python -m valerix_localcloud logs $(if $(FN),--function $(FN)) $(LOGS_ARGS)

# `make up` never prints the admin key; this does, on request.
admin-key:
	@if [ -r .valerix/admin-api-key ]; then cat .valerix/admin-api-key; echo; \
	 else echo "no admin key yet: \`make up\` creates it in .valerix/admin-api-key" >&2; exit 1; fi

# One session on TEST_WORKERS workers (pytest-xdist): one worker runs every local-cloud test
# against one local cloud, the lifecycle test (make up twice, make down leaves nothing) last;
# the fresh-clone tests and the rest run on the other (placement: tests/conftest.py). Two workers
# for two cores: a full run takes ~12½ min of test time (measured from a clean clone; one by one it was ~28).
# TEST_WORKERS=0 runs them one by one. Lint first: a tree that does not pass it fails in
# seconds, not after the suite.
TEST_WORKERS ?= 2
test: deps test-deps lint
	@$(VENV)/bin/python -m pytest -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder $(PYTEST_ARGS)

# ruff (lint + format check) and mypy, as configured in pyproject.toml; .pre-commit-config.yaml
# runs the same. localcloud/ is type-checked a second time against LocalStack's virtualenv (its
# plugin half runs inside LocalStack): localcloud/pyproject.toml says how.
lint: deps
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .
	@$(VENV)/bin/mypy
	@$(VENV)/bin/mypy --config-file localcloud/pyproject.toml

# Rewrite the lock files (with hashes) from the dependencies declared in pyproject.toml,
# localcloud/pyproject.toml and observability/exporter/pyproject.toml. Resolved for every
# platform and Python 3.11+ at once: the same requirements.txt installs the project venv
# (CPython 3.11 here) and the AWS bundle (manylinux, CPython 3.12; infra/bundling.py).
UV_COMPILE := $(VENV)/bin/uv pip compile --quiet --universal --python-version 3.11 --generate-hashes \
              --custom-compile-command "make lock"
lock: $(VENV)/.installed
	$(UV_COMPILE) pyproject.toml -o requirements.txt
	$(UV_COMPILE) pyproject.toml --extra dev -c requirements.txt -o requirements-dev.txt
	$(UV_COMPILE) localcloud/pyproject.toml --extra localstack -o requirements-localstack.txt
	$(UV_COMPILE) observability/exporter/pyproject.toml -c requirements-dev.txt -o observability/exporter/requirements.txt
	echo uv | $(UV_COMPILE) - -c requirements-dev.txt -o requirements-uv.txt

# Fast feedback: everything that needs neither the local cloud nor a browser.
test-unit: deps
	@$(VENV)/bin/python -m pytest -m "not e2e and not browser" -n 2 --dist loadgroup $(PYTEST_ARGS)

# Load under a deterministic gremlin, then the invariants (report in .valerix/verify-report.md).
verify: deps
	@$(VENV)/bin/python scripts/verify.py $(VERIFY_ARGS)

# Latency/throughput numbers, written to .valerix/bench.json.
bench: deps
	@$(VENV)/bin/python scripts/bench.py $(BENCH_ARGS)

# A scripted game day (scripts/gameday.toml): steady load, faults incl. a database outage,
# recovery; then the SLOs and a scorecard (.valerix/gameday-scorecard.md, on the dashboard).
# GAMEDAY_ARGS="--scale 0.2" for a short one, "--scenario FILE" for another; exit 1 names a failed SLO.
gameday: deps
	@$(VENV)/bin/python scripts/gameday.py $(GAMEDAY_ARGS)

# Both databases against each other + the DLQs, through the deployed reconcile function; exit 1
# naming each problem (report in .valerix/reconcile-report.md). RECONCILE_ARGS="--stale-minutes 10".
reconcile: deps
	@$(VENV)/bin/python scripts/reconcile.py $(RECONCILE_ARGS)

backup: deps
	@$(VENV)/bin/python scripts/backup.py backup

backup-list: deps
	@$(VENV)/bin/python scripts/backup.py list

backup-sync: deps
	@$(VENV)/bin/python scripts/backup.py sync

restore: deps
	@test -n "$(POINT)" || { echo "usage: make restore POINT=points/<service>/<stamp>.vbk | external:bundles/<day>.tar:points/<service>/<stamp>.vbk"; exit 2; }
	@$(VENV)/bin/python scripts/backup.py restore "$(POINT)"

synth: deps
	@umask 077 && npx --no-install cdk synth -c target=local -q && npx --no-install cdk synth -c target=aws -q

deps: system-deps $(VENV)/.installed $(LS_VENV)/.installed node_modules/.installed

test-deps: system-deps-test

system-deps:
	@$(STEP) "system packages (Python 3.11+ with venv, PostgreSQL, JDK, Prometheus)" "do what the line above says, then \`make up\` again" env PYTHON="$(PYTHON)" scripts/system-deps.sh up

system-deps-test:
	@$(STEP) "test system packages (Chromium)" "do what the line above says, then \`make test\` again" env PYTHON="$(PYTHON)" scripts/system-deps.sh test

# Every virtualenv installs from a lock file with hashes (anything else is refused), then this
# tree's own packages as editable installs (no sys.path edits anywhere). pip installs uv (its own
# lock, requirements-uv.txt), uv installs the locks: the same hash checking, ~10x faster than pip
# (the two venvs of a fresh `make up`: ~2.5 min with pip, ~15 s with uv). No bytecode is compiled
# ahead: Python writes it for the modules that are imported, the first time they are.
# The project venv builds its editable packages with its locked setuptools, without build
# isolation: nothing unlocked is downloaded. LocalStack's venv cannot: plux, installed there,
# hooks setuptools' editable builds and fails on a fresh checkout; there pip's isolated build
# environment fetches setuptools (build time only).
EDITABLE := pip install -q --no-deps --no-build-isolation -e
UV_INSTALL = $(VENV)/bin/uv pip install --quiet --require-hashes --python

$(VENV)/.installed: requirements-uv.txt requirements-dev.txt pyproject.toml localcloud/pyproject.toml observability/exporter/pyproject.toml
	@$(STEP) "project virtualenv (.venv, requirements-dev.txt)" "check that PyPI is reachable, then re-run" \
	  bash -c '$(PYTHON) -m venv $(VENV) && $(VENV)/bin/pip install -q --require-hashes -r requirements-uv.txt && $(UV_INSTALL) $(VENV)/bin/python -r requirements-dev.txt && $(VENV)/bin/$(EDITABLE) . -e localcloud -e observability/exporter && touch $@'

$(LS_VENV)/.installed: requirements-localstack.txt localcloud/pyproject.toml | $(VENV)/.installed
	@$(STEP) "LocalStack virtualenv (pinned localstack-core + Valerix executor plugin)" "check that PyPI is reachable, then re-run" \
	  bash -c 'mkdir -p -m 700 .valerix && $(PYTHON) -m venv $(LS_VENV) && $(UV_INSTALL) $(LS_VENV)/bin/python -r requirements-localstack.txt && $(LS_VENV)/bin/pip install -q --no-deps -e localcloud && touch $@'

node_modules/.installed: package.json package-lock.json
	@$(STEP) "node_modules (aws-cdk@2, aws-cdk-local)" "check that the npm registry is reachable, then re-run" \
	  bash -c 'npm ci --no-audit --no-fund --loglevel=error && touch $@'

clean: down
	@if [ -x $(VENV)/bin/python ]; then $(VENV)/bin/python -m valerix_localcloud clean; fi
	rm -rf .valerix cdk.out
