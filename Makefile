# The two commands of the README: `make serve` and `make test`. Everything else is installed by them.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export NO_MKDOCS_2_WARNING := 1
export MPLBACKEND := Agg
# Builds and tests run tiny models: one thread is faster than two fighting, and gives the same numbers on any machine.
# (Benchmarks do not go through these targets; they use every core.)
SITE_ENV := OMP_NUM_THREADS=1
# Shell blocks in the Markdown (run by pytest-codeblocks) call `python`: the venv's.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: install serve test lint build clean notebooks browser-deps

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

install: $(VENV)/.installed

serve: install  ## the site at http://127.0.0.1:8000, rebuilt on every change
	$(SITE_ENV) $(BIN)/mkdocs serve --dev-addr 127.0.0.1:8000

test: install browser-deps lint  ## every check: lint, unit tests, strict site build, Markdown code blocks, Chromium
	$(SITE_ENV) $(BIN)/python -m pytest --codeblocks tests README.md CONTRIBUTING.md docs

lint: install  ## ruff: lint and format check (code shown on pages at the width of its column: snippets/ruff.toml)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# tests/test_browser.py drives Debian's Chromium (axe-core it installs itself with npm, into build/node/). Installed
# here when missing and we are root (CI); elsewhere those tests skip with the command to run.
browser-deps:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
	  else \
	    echo "no chromium and not root: tests/test_browser.py will skip (apt-get install chromium chromium-driver)"; \
	  fi; \
	fi

build: install  ## the static site into site/
	$(SITE_ENV) $(BIN)/mkdocs build --strict

notebooks: install  ## regenerate notebooks/ (one per chapter, for Colab) from the pages; commit the result
	$(BIN)/python -m snippets.notebooks --out notebooks

clean:
	rm -rf site .cache
