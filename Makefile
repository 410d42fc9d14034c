# The two set-up commands (README): `make run` and `make test`. Each installs what it needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test demo serve bench system-deps thirdparty

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	@$(PYTHON) -c 'import ensurepip' 2>/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq python3-venv; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@# xds-protos ships its own (older) copy of the opentelemetry/proto modules; whichever package
	@# pip unpacks last wins. Lay opentelemetry-proto's files down again so the OTLP exporter finds
	@# the messages it imports (the newer protos are a superset of what Envoy's configs use).
	$(PY) -m pip install --quiet --force-reinstall --no-deps \
	  "opentelemetry-proto==$$($(PY) -c 'import importlib.metadata as m; print(m.version("opentelemetry-proto"))')"
	touch $(STAMP)

# Debian packages the tests start for real: Prometheus and Redis; Java and Maven fetch and run Kafka.
system-deps:
	@command -v prometheus >/dev/null && command -v redis-server >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq prometheus redis-server; }
	@command -v java >/dev/null && command -v mvn >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq openjdk-17-jre-headless maven; }

# Programs built from source with Go (on PATH) into $XDG_CACHE_HOME or ~/.cache, under mixer/, once (minutes
# when cold): Jaeger v2 and an OpenTelemetry Collector; and Apache Kafka's broker, fetched with Maven
# (Java 17 and mvn, see system-deps). Tests and the demo start them on loopback.
thirdparty: $(STAMP) system-deps
	$(PY) -m mixer.thirdparty jaeger otelcol kafka

run: $(STAMP) system-deps thirdparty
	$(VENV)/bin/mixer demo

serve: $(STAMP)
	$(VENV)/bin/mixer serve

test: $(STAMP) system-deps thirdparty
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) bench/dispatch.py
