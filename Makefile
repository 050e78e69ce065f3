# The two commands of the README's quick start:
#   make site   set up, build and serve the site on http://127.0.0.1:8000 (live reload)
#   make test   set up and run every test
# Each step re-runs only when its inputs changed, so repeating a command is fast.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
# mkdocs-material 9.x prints an end-of-life banner about MkDocs 2 on every build
export NO_MKDOCS_2_WARNING := 1

.PHONY: install system-deps test docs site figures notebooks lock clean

# --- set-up -----------------------------------------------------------------------------

## install: the pinned Python environment in .venv, the package (editable) and KaTeX
install: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: requirements/dev.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements/dev.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

# KaTeX comes from the npm registry at build time; the site hosts it itself
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

## system-deps: Debian packages the browser tests need (chromium); installs only what is missing
system-deps:
	bash scripts/system-deps.sh

# --- the two quick-start commands -------------------------------------------------------

## test: every test (unit, build, notebook, real browser)
test: install system-deps
	$(BIN)/python -m pytest

## site: build the site and serve it with live reload
site: install
	$(BIN)/mkdocs serve --strict --dev-addr $(HOST):$(PORT)

# --- other targets ----------------------------------------------------------------------

## docs: build the static site into site/ only
docs: install
	$(BIN)/mkdocs build --strict

## lock: re-freeze requirements/dev.txt from the current .venv
lock:
	bash scripts/lock.sh

clean:
	rm -rf site test-output .pytest_cache

## figures: regenerate every figure of the site into docs/figures/ and the numbers the text
## quotes (minutes on a CPU); `make figures SMOKE=1` makes tiny ones in test-output/figures-smoke/
figures: install
	$(BIN)/python -m labml_nn_bn.figures $(if $(SMOKE),--smoke)

## notebooks: regenerate notebooks/*.ipynb (no outputs) from their jupytext .py sources
notebooks: install
	for py in notebooks/*.py; do $(BIN)/jupytext --quiet --to ipynb "$$py" -o "$${py%.py}.ipynb"; done
