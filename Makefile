# ATLAS: the two commands are `make demo` and `make test` (see README.md).
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat setup.cfg | sha1sum | cut -c1-12)

.PHONY: setup chromium prometheus docker-compose demo demo-down observe observe-down test test-fast test-faults bench broker-up broker-down broker-status schemas clean

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

CHARTS := web/static/vendor/lightweight-charts.standalone.production.js
# checkov (the Terraform tests) in a virtualenv of its own: its many dependencies are not ATLAS's.
CHECKOV_VERSION := 3.3.30
CHECKOV := .atlas/tools/checkov-$(CHECKOV_VERSION)/.installed

## setup: virtualenv with pinned dependencies, the broker jars from Maven Central, Debian's chromium
## and prometheus, the console's chart library from npm (console/package-lock.json), and checkov
setup: $(STAMP) chromium prometheus docker-compose $(CHARTS) $(CHECKOV)

$(CHECKOV):
	rm -rf .atlas/tools/checkov-$(CHECKOV_VERSION)
	$(PYTHON) -m venv .atlas/tools/checkov-$(CHECKOV_VERSION)
	.atlas/tools/checkov-$(CHECKOV_VERSION)/bin/pip install -q checkov==$(CHECKOV_VERSION)
	touch $(CHECKOV)

$(CHARTS): console/package.json console/package-lock.json
	cd console && npm ci --no-audit --no-fund --loglevel=error
	mkdir -p $(dir $(CHARTS))
	cp console/node_modules/lightweight-charts/dist/$(notdir $(CHARTS)) $(CHARTS)

## chromium: the browser the console tests drive (Debian's package; Playwright uses it, downloads none)
chromium:
	@command -v chromium >/dev/null || $(SUDO) apt-get install -y -q chromium \
		|| { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium; }

## docker-compose: Debian's docker-compose, which checks infra/compose/compose.yml (`config`; no engine needed)
docker-compose:
	@command -v docker-compose >/dev/null || $(SUDO) apt-get install -y -q docker-compose \
		|| { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q docker-compose; }

## prometheus: Debian's Prometheus and promtool (the metrics tests scrape a worker with it; make observe runs it)
prometheus:
	@command -v promtool >/dev/null || $(SUDO) apt-get install -y -q prometheus \
		|| { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q prometheus; }

$(STAMP): setup.cfg pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "needs $(PYTHON)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,bench]'
	$(PY) infra/kafka/broker.py fetch
	touch $(STAMP)

## demo: broker, worker and a sample order flow; leaves them running (make demo-down stops)
demo: setup broker-up
	$(PY) -m atlas.demo

demo-down:
	-$(PY) -m atlas.demo --stop
	$(PY) infra/kafka/broker.py down

## observe: the demo worker with tracing on, beside Prometheus (the repository's alert rules), Jaeger and
## Zipkin; prints their URLs (README: Observability). make observe-down stops the three.
observe: setup broker-up
	$(PY) infra/observe.py up
	-$(PY) -m atlas.demo --stop
	ATLAS_OTEL_ENDPOINT=http://127.0.0.1:4318 $(PY) -m atlas.demo
	$(PY) infra/observe.py urls

observe-down:
	$(PY) infra/observe.py down

## test: every test, live broker included (what CI runs)
test: setup
	$(PY) -m pytest

## test-fast: unit tests only
test-fast: setup
	$(PY) -m pytest tests/unit

## test-faults: only the kill-and-restart tests
test-faults: setup
	$(PY) -m pytest -m faults

## bench: the order-flow, audit, venue-state, OMS-state and restart benchmarks; write bench/REPORT.md
bench: setup
	$(PY) -m bench.orderflow
	$(PY) -m bench.audit
	$(PY) -m bench.venue_state
	$(PY) -m bench.oms_state
	$(PY) -m bench.restart
	$(PY) -m bench.codecs
	$(PY) -m bench.tracing

broker-up: setup
	$(PY) infra/kafka/broker.py up

broker-down:
	$(PY) infra/kafka/broker.py down

broker-status:
	$(PY) infra/kafka/broker.py status

schemas: setup
	$(PY) -m atlas schemas

clean:
	-$(PY) infra/kafka/broker.py down
	rm -rf .atlas .pytest_cache .hypothesis console/node_modules web/static/vendor
