# The two commands of the README: `make serve` and `make test`. Everything else is installed by them.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export NO_MKDOCS_2_WARNING := 1
export MPLBACKEND := Agg

.PHONY: install serve test build clean

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

install: $(VENV)/.installed

serve: install  ## the site at http://127.0.0.1:8000, rebuilt on every change
	$(BIN)/mkdocs serve --dev-addr 127.0.0.1:8000

test: install  ## every check: unit tests, strict site build, Markdown code blocks
	$(BIN)/python -m pytest --codeblocks tests README.md CONTRIBUTING.md docs

build: install  ## the static site into site/
	$(BIN)/mkdocs build --strict

clean:
	rm -rf site .cache
