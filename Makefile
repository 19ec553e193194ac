# The two commands of the README: `make demo` and `make test`. Both set everything up themselves.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
DEMO_DIR ?= demo-data

CHROMIUM ?= /usr/bin/chromium

.PHONY: setup demo test bench lab dashboard lint clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(PY) -m parquedb_ibis.cli demo $(DEMO_DIR)

# The dashboard's real-browser test needs Debian's chromium (never a downloaded browser).
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian's chromium for the browser test"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
		echo "the browser test needs Debian's chromium: sudo apt-get install chromium"; exit 1; \
	fi

test: setup $(CHROMIUM)
	$(PY) -m pytest

bench: setup
	$(PY) -m bench

lab: setup
	@test -d $(DEMO_DIR) || $(PY) -m parquedb_ibis.cli demo $(DEMO_DIR)
	PARQUEDB_URL=$(abspath $(DEMO_DIR)) $(VENV)/bin/jupyter lab --ip=127.0.0.1 --no-browser --ServerApp.root_dir=notebooks

dashboard: setup
	@test -d $(DEMO_DIR) || $(PY) -m parquedb_ibis.cli demo $(DEMO_DIR)
	PARQUEDB_URL=$(abspath $(DEMO_DIR)) $(VENV)/bin/voila --Voila.ip=127.0.0.1 --no-browser notebooks/worker-dashboard.ipynb

lint: setup
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(VENV) $(DEMO_DIR) bench/results
