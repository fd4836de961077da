# The commands of the README and CONTRIBUTING.md. Everything they need is installed by them.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export NO_MKDOCS_2_WARNING := 1
export MPLBACKEND := Agg
# Tests run tiny models: one thread each is fastest on a shared machine (the chapter tests' run of a page sets two
# itself). Waiting OpenMP threads sleep instead of spinning: two busy processes on two cores stay fast.
# (Benchmarks do not go through these targets; they use every core.)
export OMP_NUM_THREADS := 1
export OMP_WAIT_POLICY := PASSIVE
# Shell blocks in the Markdown (run by pytest-codeblocks) call `python`: the venv's.
export PATH := $(abspath $(BIN)):$(PATH)
# One id per command: the page runs it starts are counted under it in the test report.
ifndef GUIDE_RUN_ID
GUIDE_RUN_ID := $(shell date +%s%N)
endif
export GUIDE_RUN_ID
PYTEST := $(BIN)/python -m pytest -p no:cacheprovider
PHASE = @echo "[$$(date +%T)] $(1)"

.PHONY: install check test test-chapter new-chapter serve serve-all serve-zensical lint build build-zensical \
	pages notebooks clean browser-deps screenshots

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

install: $(VENV)/.installed

lint: install  ## ruff: lint and format check (code shown on pages at the width of its column: snippets/ruff.toml)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

check: lint  ## the fast checks (seconds): lint, structure, notebooks, records, paths; no build, no page run
	$(PYTEST) -q tests/check

pages: install  ## run the pages whose stored runs are stale (build/page-runs/), two at a time
	$(BIN)/python -m site_tools.execution --jobs 2

notebooks: install  ## write docs/notebooks/ (one per chapter, git-ignored) from the pages
	$(BIN)/python -m site_tools.notebooks

test: install browser-deps  ## every check: make check, the pages' runs, tests, both strict builds, code blocks, browser
	$(call PHASE,check)
	$(MAKE) --no-print-directory check
	$(call PHASE,page runs)
	$(MAKE) --no-print-directory pages
	$(call PHASE,tests and builds)
	$(PYTEST) -n 2 --dist loadscope --codeblocks tests README.md CONTRIBUTING.md docs --ignore tests/check
	$(call PHASE,done)

# One chapter end to end: make check, its page's run, its tests (and its benchmark's), its page in both builds (the
# other pages show their stored runs, or a note that they did not run), the paste check, its notebook, its code blocks
# and its browser checks.
test-chapter: install browser-deps  ## one chapter end to end, timed: make test-chapter NAME=tensors
	@test -n "$(NAME)" -a -f "docs/$(NAME).md" || { echo "usage: make test-chapter NAME=<a page in docs/>"; exit 2; }
	@start=$$(date +%s%N); \
	$(MAKE) --no-print-directory check && $(BIN)/python -m site_tools.execution $(NAME) && \
	GUIDE_ONLY_PAGES=$(NAME) $(PYTEST) -n 2 --dist loadscope --codeblocks tests docs/$(NAME).md --ignore tests/check; \
	status=$$?; \
	awk "BEGIN { printf \"make test-chapter NAME=$(NAME): %.1f s\\n\", ($$(date +%s%N) - $$start) / 1e9 }"; \
	exit $$status

new-chapter: install  ## a new chapter's three files, from site_tools/chapter_template/: NAME=x [TITLE=..] [SECTION=..]
	@test -n "$(NAME)" || { echo "usage: make new-chapter NAME=<name> [TITLE=<title>] [SECTION=<nav section>]"; exit 2; }
	$(BIN)/python -m site_tools.new_chapter "$(NAME)" $(if $(TITLE),--title "$(TITLE)") $(if $(SECTION),--section "$(SECTION)")

screenshots: install browser-deps notebooks  ## full-page screenshots of every page, both builds, into build/browser-report/screens/
	GUIDE_SCREENSHOTS=1 $(PYTEST) tests/site/test_browser_pages.py -k page_loads

# Saving a page rebuilds that page alone (--dirty): its stored run is shown, or made when its code changed. --dirty
# needs --no-strict (strict mode turns "a dirty build is inaccurate" into an abort); make test and make build are
# strict. CONTRIBUTING.md, "Serving".
serve: install notebooks  ## the site at http://127.0.0.1:8000; saving a page rebuilds it (a snippet: save its page too)
	$(BIN)/mkdocs serve --dirty --no-strict --dev-addr 127.0.0.1:8000

serve-all: install notebooks  ## the same, rebuilding every page on every save (stored runs: seconds), strictly
	$(BIN)/mkdocs serve --dev-addr 127.0.0.1:8000

serve-zensical: install notebooks  ## the site as Zensical builds it, at http://127.0.0.1:8000
	GUIDE_SITE_DIR=build/zensical-serve $(BIN)/zensical serve -f mkdocs.yml -a 127.0.0.1:8000

build: install notebooks pages  ## the static site into site/ (MkDocs + Material: the publishing build)
	$(BIN)/mkdocs build --strict

# Zensical exits 0 even when an executed block raised: its log is checked for markdown-exec's error message.
build-zensical: install notebooks pages  ## the site as Zensical builds it, into build/zensical-site/
	mkdir -p build
	GUIDE_SITE_DIR=build/zensical-site $(BIN)/zensical build --strict --clean -f mkdocs.yml \
	  > build/zensical.log 2>&1; status=$$?; cat build/zensical.log; test $$status = 0
	@! grep -E "markdown_exec: Execution of .* code block exited with errors" build/zensical.log

# tests/site/test_browser_*.py drive Debian's Chromium (axe-core they install themselves with npm, into build/node/).
# Installed here when missing and we are root (CI); elsewhere those tests skip with the command to run.
browser-deps:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
	  else \
	    echo "no chromium and not root: the browser tests will skip (apt-get install chromium chromium-driver)"; \
	  fi; \
	fi

clean:  ## remove what builds and tests wrote (the venv stays)
	rm -rf site .cache build docs/notebooks
