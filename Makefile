# The two commands of the README: `make demo` and `make test`; `make test-fast` is the subset to run while working.
# Each creates (or reuses) .venv in the checkout and installs what it needs.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast install browser bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Debian's Chromium for the browser test of the HTML report (never a Playwright download):
# tests/test_browser.py drives /usr/bin/chromium through Playwright's Python package.
CHROMIUM := /usr/bin/chromium
browser:
	@test -x $(CHROMIUM) || { \
	  echo "installing Debian's chromium for the report's browser test"; \
	  SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
	  $$SUDO apt-get update -qq && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	@$(CHROMIUM) --version 2>/dev/null

demo: $(STAMP)
	$(VENV)/bin/decaylab demo --out decaylab-report

test: $(STAMP) browser
	$(VENV)/bin/ruff check src tests benchmarks
	$(PY) -m pytest -n 2 -q

# Every test not marked slow (tests/conftest.py says which those are): under a minute on two idle cores.
test-fast: $(STAMP) browser
	$(VENV)/bin/ruff check src tests benchmarks
	$(PY) -m pytest -m "not slow" -n 2 -q

bench: $(STAMP)
	$(PY) benchmarks/optim_step.py
	$(PY) benchmarks/muon_step.py
	$(PY) benchmarks/lion_step.py

clean:
	rm -rf $(VENV) decaylab-report .pytest_cache
