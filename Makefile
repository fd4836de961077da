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

.PHONY: install serve serve-all serve-zensical test lint build build-zensical clean notebooks browser-deps screenshots

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

install: $(VENV)/.installed

# Saving a page rebuilds that page alone (--dirty), code included: about 1-2 s. --dirty needs --no-strict (strict mode
# turns "a dirty build is inaccurate" into an abort); make test and make build are strict. CONTRIBUTING.md, "Serving".
serve: install  ## the site at http://127.0.0.1:8000; saving a page rebuilds it (a snippet: save its page too)
	$(SITE_ENV) $(BIN)/mkdocs serve --dirty --no-strict --dev-addr 127.0.0.1:8000

serve-all: install  ## the same, rebuilding every page on every save (about 10 s), strictly
	$(SITE_ENV) $(BIN)/mkdocs serve --dev-addr 127.0.0.1:8000

serve-zensical: install  ## the site as Zensical builds it, at http://127.0.0.1:8000 (every page rebuilt on save)
	$(SITE_ENV) GUIDE_SITE_DIR=build/zensical-serve $(BIN)/zensical serve -f mkdocs.yml -a 127.0.0.1:8000

test: install browser-deps lint  ## every check: lint, unit tests, strict site build, Markdown code blocks, Chromium
	$(SITE_ENV) $(BIN)/python -m pytest -n 2 --dist loadfile --codeblocks tests README.md CONTRIBUTING.md docs

screenshots: install browser-deps  ## full-page screenshots of every page, both builds, into build/browser-report/screens/
	$(SITE_ENV) GUIDE_SCREENSHOTS=1 $(BIN)/python -m pytest tests/site/test_browser.py -k page_loads

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

build: install  ## the static site into site/ (MkDocs + Material: the publishing build)
	$(SITE_ENV) $(BIN)/mkdocs build --strict

# Zensical exits 0 even when an executed block raised: its log is checked for markdown-exec's error message.
build-zensical: install  ## the site as Zensical builds it, into build/zensical-site/
	mkdir -p build
	$(SITE_ENV) GUIDE_SITE_DIR=build/zensical-site $(BIN)/zensical build --strict --clean -f mkdocs.yml \
	  > build/zensical.log 2>&1; status=$$?; cat build/zensical.log; test $$status = 0
	@! grep -E "markdown_exec: Execution of .* code block exited with errors" build/zensical.log

notebooks: install  ## regenerate docs/notebooks/ (one per chapter) from the pages; commit the result
	$(BIN)/python -m site_tools.notebooks

clean:
	rm -rf site .cache build/site-mkdocs build/site-zensical build/zensical-site
