"""Shared fixtures: the site, built once per test session by each builder, strictly; the chapters' helpers."""

import contextlib
import fcntl
import functools
import gzip
import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SNIPPETS = ROOT / "snippets"
# Every build in the tests runs with deprecations as errors: a page whose code uses an API that PyTorch (or any
# library) has deprecated fails the build. mkdocs resets Python's DeprecationWarning filter, so only the environment
# variable reaches the executed blocks (tests/test_site.py checks that it does).
BUILD_ENV = {"NO_MKDOCS_2_WARNING": "1", "PYTHONWARNINGS": "error::DeprecationWarning,error::FutureWarning"}


def site_config():
    """mkdocs.yml as plain YAML: !!python/name tags as their names, !ENV as its default."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("tag:yaml.org,2002:python/name:", lambda loader, suffix, node: suffix)
    Loader.add_constructor("!ENV", lambda loader, node: loader.construct_sequence(node)[-1])
    return yaml.load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"), Loader=Loader)


# The pages that teach (not the home page, resources or the contributor guide): each has its module, its test, the
# chapter structure and a notebook.
CHAPTERS = site_config()["extra"]["notebooks"]["chapters"]

# Both site generators build the site in the tests: MkDocs with Material (the publishing build) and Zensical, its
# successor. Every test that takes `built_site` runs against each output.
BUILDERS = ["mkdocs", "zensical"]
# Zensical passes a build whose executed block raised (it logs the error, says "No issues found" and exits 0):
# its log is searched for markdown-exec's message instead.
# (Not any "Traceback" in the log: a DataLoader worker process of the data page may print one from a helper thread of
# multiprocessing as it shuts down, which is no error of the page. The pages themselves are checked for tracebacks.)
EXEC_ERROR = re.compile(r"markdown_exec: Execution of .* code block exited with errors")


class SummaryLines:
    """Lines for the end of the test report, from whichever xdist worker writes them: each worker appends to its own
    file in build/test-summary/, and the main process prints them all (a worker's own terminal summary is not
    shown)."""

    folder = ROOT / "build" / "test-summary"

    def __init__(self, section):
        self.section = section

    def append(self, line):
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / f"{os.getpid()}.txt", "a", encoding="utf-8") as file:
            for part in str(line).split("\n"):
                file.write(f"{self.section}\t{part}\n")


BROWSER_REPORT = SummaryLines("browser report (build/browser-report/)")
BUILD_REPORT = SummaryLines("site builds (side by side)")


def pytest_sessionstart(session):
    if not hasattr(session.config, "workerinput"):  # the main process, before any worker starts
        shutil.rmtree(SummaryLines.folder, ignore_errors=True)


def pytest_terminal_summary(terminalreporter, config):
    if hasattr(config, "workerinput"):
        return
    sections: dict[str, list[str]] = {}
    for path in sorted(SummaryLines.folder.glob("*.txt")):
        for entry in path.read_text(encoding="utf-8").splitlines():
            section, line = entry.split("\t", 1)
            sections.setdefault(section, []).append(line)
    for section, lines in sections.items():
        terminalreporter.section(section)
        for line in lines:
            terminalreporter.write_line(line)


def start_build(builder, site):
    """Start a strict build of the whole site by ``builder`` into ``site`` (inside the repository, as Zensical
    requires); returns the running process."""
    env = {**os.environ, **BUILD_ENV, "GUIDE_SITE_DIR": str(site)}
    # two threads for Zensical, one for MkDocs: test_paste.py compares what the two builds print
    env["OMP_NUM_THREADS"] = "2" if builder == "zensical" else "1"
    if builder == "mkdocs":
        command = [sys.executable, "-m", "mkdocs", "build", "--strict"]
    else:
        command = [str(Path(sys.executable).with_name("zensical")), "build", "--strict", "--clean", "-f", "mkdocs.yml"]
    shutil.rmtree(site, ignore_errors=True)
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish_build(builder, site, process, started):
    """Wait for a build; fail on any warning, on any executed block that raised, and on a page showing a traceback."""
    log, _ = process.communicate(timeout=1800)
    BUILD_REPORT.append(f"{builder}: strict build done {time.perf_counter() - started:.1f} s after the builds started")
    assert process.returncode == 0, f"{builder}: strict build failed:\n{log[-8000:]}"
    assert not EXEC_ERROR.search(log), f"{builder}: an executed block raised:\n{log[-8000:]}"
    for html in site.rglob("*.html"):
        text = re.sub(r"<[^>]+>", "", html.read_text(encoding="utf-8"))
        assert "Traceback (most recent call last)" not in text, f"{builder}: {html.relative_to(site)} shows a traceback"
    return log


@pytest.fixture(scope="session", params=BUILDERS)
def builder(request):
    return request.param


@pytest.fixture(scope="session")
def built_site(builder):
    """The whole site, built strictly by ``builder`` (once per test session); the folder holding the HTML."""
    return site_built_by(builder)


@pytest.fixture(scope="session")
def mkdocs_site():
    """The publishing build alone, for checks whose result cannot differ between the builders' HTML."""
    return site_built_by("mkdocs")


_SITES: dict[str, Path] = {}


# `make test` runs the tests in two pytest-xdist workers (`-n 2 --dist loadfile`: each test file in one worker); the
# site is built once per test run, by whichever worker needs it first, and the other waits for it and reuses it.
RUN_ID = os.environ.get("PYTEST_XDIST_TESTRUNUID") or uuid.uuid4().hex


def site_built_by(builder):
    """The site built by ``builder``. The first call in a test run builds with every builder at once (MkDocs runs the
    pages' code on one thread, Zensical on two: side by side, about the time of one build on a 2-core machine)."""
    if builder not in _SITES:
        sites = {name: ROOT / "build" / f"site-{name}" for name in BUILDERS}

        def build_all():
            started = time.perf_counter()
            processes = {name: start_build(name, site) for name, site in sites.items()}
            for name, process in processes.items():
                finish_build(name, sites[name], process, started)

        once_per_run("site-build", build_all)  # the other worker waits for the builds, then reads their HTML
        _SITES.update(sites)
    return _SITES[builder]


def once_per_run(name, make):
    """make()'s result (JSON), computed once per test run by whichever xdist worker asks first; the other waits for
    it and reads it back from build/<name>.json."""
    path = ROOT / "build" / f"{name}.json"
    path.parent.mkdir(exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.exists():
            saved = json.loads(path.read_text(encoding="utf-8"))
            if saved["run"] == RUN_ID:
                return saved["result"]
        result = make()
        partial = path.with_suffix(".partial")
        partial.write_text(json.dumps({"run": RUN_ID, "result": result}), encoding="utf-8")
        partial.replace(path)
    return result


def page_html(site: Path, page: str) -> str:
    """The built HTML of docs/<page>.md."""
    path = site / "index.html" if page == "index" else site / page / "index.html"
    return path.read_text(encoding="utf-8")


SECTION = re.compile(
    r"^(?P<indent>[ \t]*)# --8<-- \[start:(?P<name>[\w-]+)\]\n(?P<code>.*?)"
    r"^[ \t]*# --8<-- \[end:(?P=name)\]",  # the end may be indented further (ruff moves it into a function)
    re.M | re.S,
)


@functools.cache
def snippet_sections(module):
    """{section name: code, dedented} of snippets/<module>.py (or of a file a page includes, given by its path from
    the repository root, such as benchmarks/mnist.py), read independently of pymdownx.snippets."""
    path = ROOT / module if module.endswith(".py") else SNIPPETS / f"{module}.py"
    text = path.read_text(encoding="utf-8")
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


# --- a tiny MNIST in the real format: the chapters' and benchmarks' tests never need the real data


def synthetic_digits(n, seed):
    """n images (uint8, n x 28 x 28) whose class is a 6x6 bright block at one of 10 places, and their labels."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 10
    images = torch.randint(0, 40, (n, 28, 28), generator=generator)
    for i, label in enumerate(labels.tolist()):
        row, col = 3 + (label // 5) * 12, 2 + (label % 5) * 5
        jitter = torch.randint(0, 2, (2,), generator=generator).tolist()
        images[i, row + jitter[0] : row + jitter[0] + 6, col + jitter[1] : col + jitter[1] + 5] = 230
    return images.to(torch.uint8), labels


def write_idx(path, tensor, magic):
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", size) for size in tensor.shape)
    with gzip.open(path, "wb") as file:
        file.write(header + tensor.numpy().tobytes())


@pytest.fixture(scope="session")
def mnist_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("mnist")
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, n, seed in (("train", 200, 0), ("t10k", 100, 1)):
        images, labels = synthetic_digits(n, seed)
        write_idx(raw / f"{prefix}-images-idx3-ubyte.gz", images, 0x00000803)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte.gz", labels.to(torch.uint8), 0x00000801)
    return root


def run_examples(module):
    """A chapter module's ``examples()``, run once in page order: the names they define and what they printed.

    A test module defines its ``run`` fixture as ``run_examples(its module)``; ``page`` and ``printed`` read it."""
    from types import SimpleNamespace

    import matplotlib.pyplot as plt

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        names = module.examples()
    plt.close("all")
    return SimpleNamespace(**names), out.getvalue()


@pytest.fixture(scope="module")
def page(run):
    """The names the page's examples define."""
    return run[0]


@pytest.fixture(scope="module")
def printed(run):
    """Everything the page's examples printed."""
    return run[1]


def prints_nothing_on_import(module_name):
    """True when ``import module_name`` in a fresh interpreter succeeds and prints nothing."""
    result = subprocess.run(
        [sys.executable, "-c", f"import {module_name}"], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    return result.returncode == 0 and result.stdout == ""
