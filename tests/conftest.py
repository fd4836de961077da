"""Shared fixtures: the site is built once per test session, strictly, into a temporary folder."""

import contextlib
import functools
import io
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SNIPPETS = ROOT / "snippets"
# Every build in the tests runs with deprecations as errors: a page whose code uses an API that PyTorch (or any
# library) has deprecated fails the build. mkdocs resets Python's DeprecationWarning filter, so only the environment
# variable reaches the executed blocks (tests/test_site.py checks that it does).
BUILD_ENV = {"NO_MKDOCS_2_WARNING": "1", "PYTHONWARNINGS": "error::DeprecationWarning,error::FutureWarning"}
BROWSER_REPORT: list[str] = []  # lines tests/test_browser.py prints at the end of the run (page weights, links ...)


def pytest_terminal_summary(terminalreporter):
    if BROWSER_REPORT:
        terminalreporter.section("browser report (build/browser-report/)")
        for line in BROWSER_REPORT:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def built_site(tmp_path_factory):
    """Build the whole site with ``mkdocs build --strict``; return the folder holding the HTML."""
    site = tmp_path_factory.mktemp("site")
    env = {**os.environ, **BUILD_ENV}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert result.returncode == 0, f"strict build failed:\n{result.stdout[-6000:]}\n{result.stderr[-6000:]}"
    return site


def page_html(site: Path, page: str) -> str:
    """The built HTML of docs/<page>.md."""
    path = site / "index.html" if page == "index" else site / page / "index.html"
    return path.read_text(encoding="utf-8")


SECTION = re.compile(
    r"^(?P<indent>[ \t]*)# --8<-- \[start:(?P<name>[\w-]+)\]\n(?P<code>.*?)"
    r"^(?P=indent)# --8<-- \[end:(?P=name)\]",
    re.M | re.S,
)


@functools.cache
def snippet_sections(module):
    """{section name: code, dedented} of snippets/<module>.py, read independently of pymdownx.snippets."""
    text = (SNIPPETS / f"{module}.py").read_text(encoding="utf-8")
    return {m["name"]: textwrap.dedent(m["code"]) for m in SECTION.finditer(text)}


def run_section(module, name, after=()):
    """Run a section in a fresh namespace, as a reader pasting it into a new session, after the sections it
    continues (their output discarded); return (its names, its stdout)."""
    sections = snippet_sections(module)
    namespace = {"__name__": "__section__"}
    for earlier in after:
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(sections[earlier], f"snippets/{module}.py:{earlier}", "exec"), namespace)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(sections[name], f"snippets/{module}.py:{name}", "exec"), namespace)
    return namespace, out.getvalue()
