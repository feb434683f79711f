# One command each for the demo and the full suite; both set themselves up on a fresh machine
# that has only Python, pip and apt.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# The suite runs on one worker per core (pytest-xdist), a test file to a worker: most of
# its time is spent waiting on real outages (a broker down 30 s, a link cut 60 s), which
# overlap. One file stays on one worker, so a module's fixture is built once.
# `make pytest PYTEST_ARGS=-n0` runs it in one process.
PYTEST_ARGS ?= -n auto --dist loadfile

.PHONY: test demo lint typecheck pytest setup system-deps clean

setup: $(STAMP) system-deps

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall whenever the dependency list changes.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[agent,server,sim,test]'
	touch $@

# The integration tests start their own broker from this binary on a free port, link
# two pseudo-terminals with socat to test Modbus RTU over a serial line, and drive the
# web console in Debian's headless chromium (a Chinese font for its text).
system-deps:
	@if command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; then :; else \
		echo "mosquitto not found: installing it with apt-get"; \
		$(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto; \
	fi
	@if command -v socat >/dev/null 2>&1; then :; else \
		echo "socat not found: installing it with apt-get"; \
		$(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq socat; \
	fi
	@if [ -x /usr/bin/chromium ] && fc-list :lang=zh 2>/dev/null | grep -q .; then :; else \
		echo "chromium or a Chinese font not found: installing them with apt-get (console tests)"; \
		$(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-wqy-microhei; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy edge_agent ingest_server simulators

pytest: setup
	$(BIN)/pytest $(PYTEST_ARGS)

test: setup lint typecheck pytest

demo: $(STAMP) system-deps
	$(BIN)/factory-demo

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
