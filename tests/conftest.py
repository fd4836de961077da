"""Shared fixtures: each page's run (site_tools/execution.py), the site built from those runs by each builder, the
chapter tests' run of a page, and the test report's summaries.

A chapter test file is ``tests/test_<chapter>.py``; its fixtures ``page`` (the names the page's shown blocks define)
and ``printed`` (what they printed) come from one run of the page's blocks in this process, and
``test_the_page_prints_what_its_build_shows`` (imported by every chapter test file) compares that run with the page's
own run (one thread there, two here: an output that depends on the thread count fails).
"""

import builtins
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
import types
import uuid
from importlib import metadata
from pathlib import Path

import pytest

from site_tools import execution, records

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SNIPPETS = ROOT / "snippets"
BUILD_ENV = {"NO_MKDOCS_2_WARNING": "1"}
# Where the tests build the site: build/ (another folder inside the repository lets two test runs build side by side).
BUILDS = ROOT / os.environ.get("GUIDE_BUILDS_DIR", "build")
CHAPTER_TEST_THREADS = 2  # the page's own run uses execution.THREADS (1)
# The browser tests' fixtures (one served site, one Chromium and one visit of each page per build), shared by the
# browser test files of tests/site/.
pytest_plugins = ["browser_visit"]


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
# successor. Every test that takes `built_site` runs against each output. Neither runs a page's code: both render
# the page's run (site_tools/execution.py).
BUILDERS = ["mkdocs", "zensical"]
# Zensical passes a build whose executed block raised (it logs the error, says "No issues found" and exits 0):
# its log is searched for markdown-exec's message instead.
EXEC_ERROR = re.compile(r"markdown_exec: Execution of .* code block exited with errors")
# `make test` runs the tests in two pytest-xdist workers (one test file, or one group, per worker); the site is built
# once per test run, by whichever worker needs it first, and the other waits for it and reuses it. The run's id
# (set by the Makefile for the page runs it starts before pytest) labels the page runs in the report.
RUN_ID = os.environ.get("GUIDE_RUN_ID") or os.environ.get("PYTEST_XDIST_TESTRUNUID") or uuid.uuid4().hex
os.environ["GUIDE_RUN_ID"] = RUN_ID
# `make test-chapter NAME=x` sets this: only that page runs, and only its tests run (see pytest_collection_modifyitems)
ONLY_PAGES = [name for name in os.environ.get(execution.ONLY_PAGES, "").split(",") if name]


class SummaryLines:
    """Lines for the end of the test report, from whichever xdist worker writes them: each worker appends to its own
    file in build/test-summary/, and the main process prints them all (a worker's own terminal summary is not
    shown)."""

    folder = BUILDS / "test-summary"

    def __init__(self, section):
        self.section = section

    def append(self, line):
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / f"{os.getpid()}.txt", "a", encoding="utf-8") as file:
            for part in str(line).split("\n"):
                file.write(f"{self.section}\t{part}\n")


BROWSER_REPORT = SummaryLines("browser report (build/browser-report/)")
BUILD_REPORT = SummaryLines("site builds")


def pytest_sessionstart(session):
    if not hasattr(session.config, "workerinput"):  # the main process, before any worker starts
        shutil.rmtree(SummaryLines.folder, ignore_errors=True)


def executions_this_run():
    """{page: {kind: [seconds, ...]}} of the page code runs of this test run (build/page-runs/executions.jsonl)."""
    runs: dict = {}
    if execution.EXECUTIONS_LOG.exists():
        for line in execution.EXECUTIONS_LOG.read_text(encoding="utf-8").splitlines():
            entry = json.loads(line)
            if entry.get("run") == RUN_ID:
                runs.setdefault(entry["page"], {}).setdefault(entry["kind"], []).append(entry["seconds"])
    return runs


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
    runs = executions_this_run()
    if runs:
        terminalreporter.section("how many times each page's code ran in this test run")
        terminalreporter.write_line("(a page run feeds both builds, the paste check and the notebook; a chapter test")
        terminalreporter.write_line("run is the chapter test's own, for the objects it asserts on)")
        for page in sorted(runs):
            parts = [f"{len(seconds)} {kind} ({sum(seconds):.1f} s)" for kind, seconds in sorted(runs[page].items())]
            terminalreporter.write_line(f"{page:24} " + ", ".join(parts))
        pages = [page for page in execution.executed_pages() if not ONLY_PAGES or page in ONLY_PAGES]
        stored = [page for page in pages if "page run" not in runs.get(page, {})]
        current = [
            page
            for page in stored
            if execution.stale_reason(execution.stored_run(page), execution.page_blocks(page)) is None
        ]
        if current:
            terminalreporter.write_line(f"not run again, their stored runs being current: {', '.join(current)}")
        if set(stored) - set(current):
            terminalreporter.write_line(
                f"stale and not run in this test run: {', '.join(sorted(set(stored) - set(current)))}"
            )


# --- scheduling: one xdist worker per test file, except the groups below


def pytest_collection_modifyitems(config, items):
    """With GUIDE_ONLY_PAGES (make test-chapter), keep only what concerns those pages."""
    if ONLY_PAGES:
        kept = [item for item in items if _concerns_only_pages(item)]
        deselected = [item for item in items if item not in kept]
        if deselected:
            config.hook.pytest_deselected(items=deselected)
            items[:] = kept


def work_unit(nodeid):
    """The xdist work unit of a test: its file, except that the browser tests of one build are one unit (each page
    is visited once per build)."""
    path = nodeid.split("::", 1)[0]
    if Path(path).name.startswith("test_browser_"):
        params = nodeid.rpartition("[")[2].rstrip("]").split("-") if nodeid.endswith("]") else []
        return "browser-" + next((builder for builder in BUILDERS if builder in params), "any")
    return path


def pytest_xdist_make_scheduler(config, log):
    """`--dist loadscope` with the work units of ``work_unit``: a test file's tests in one worker (their module
    fixtures are computed once), the browser tests of one build in one worker. (pytest-xdist's `loadgroup` would do
    this with marks, but its marks are lost with pytest 9.2: pytest-xdist#1386.)"""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ByFileAndBuild(LoadScopeScheduling):
        def _split_scope(self, nodeid):
            return work_unit(nodeid)

    return ByFileAndBuild(config, log)


PAGE_PARAMETERS = ("page", "doc", "chapter")


def _concerns_only_pages(item):
    """Under make test-chapter: the chapter's test file and its benchmark's, the code blocks of its page, and the
    site tests parametrized by one of its pages."""
    if item.path.parent == ROOT / "tests":
        return item.path.stem.removeprefix("test_") in ONLY_PAGES
    if item.path.parent == ROOT / "tests" / "benchmarks":
        return item.path.stem.removeprefix("test_").removesuffix("_benchmark") in ONLY_PAGES
    if item.path.suffix == ".md":
        return item.path.parent == DOCS and item.path.stem in ONLY_PAGES
    params = getattr(getattr(item, "callspec", None), "params", {})
    named = [str(params[key]).removesuffix(".md") for key in PAGE_PARAMETERS if key in params]
    return bool(named) and all(name in ONLY_PAGES for name in named)


# --- the site, built from the pages' runs


def start_build(builder, site):
    """Start a strict build of the whole site by ``builder`` into ``site`` (inside the repository, as Zensical
    requires); returns the running process."""
    env = {**os.environ, **BUILD_ENV, "GUIDE_SITE_DIR": str(site)}
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


def site_built_by(builder):
    """The site built by ``builder``. The first call in a test run writes the notebooks, brings every page's run up
    to date (two at a time) and builds with both builders at once; they only render the runs."""
    if builder not in _SITES:
        sites = {name: BUILDS / f"site-{name}" for name in BUILDERS}

        def build_all():
            from site_tools import notebooks

            notebooks.main([])
            started = time.perf_counter()
            pages = [page for page in execution.executed_pages() if not ONLY_PAGES or page in ONLY_PAGES]
            execution.run_pages(pages, report=lambda line: None)
            BUILD_REPORT.append(f"page runs up to date after {time.perf_counter() - started:.1f} s")
            started = time.perf_counter()
            processes = {name: start_build(name, site) for name, site in sites.items()}
            try:
                for name, process in processes.items():
                    finish_build(name, sites[name], process, started)
            finally:  # a failed build leaves no builder running
                for process in processes.values():
                    process.kill()
                    process.wait()

        once_per_run("site-build", build_all)  # the other worker waits for the builds, then reads their HTML
        _SITES.update(sites)
    return _SITES[builder]


def once_per_run(name, make):
    """make()'s result (JSON), computed once per test run by whichever xdist worker asks first; the other waits for
    it and reads it back from build/<name>.json (in GUIDE_BUILDS_DIR when set). A failure is kept too: every later
    caller gets it at once instead of trying again."""
    path = BUILDS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        saved = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
        if saved.get("run") != RUN_ID:
            try:
                saved = {"run": RUN_ID, "result": make()}
            except Exception as error:
                saved = {"run": RUN_ID, "error": f"{type(error).__name__}: {error}"}
                raise
            finally:
                partial = path.with_suffix(".partial")
                partial.write_text(json.dumps(saved), encoding="utf-8")
                partial.replace(path)
    if "error" in saved:
        raise RuntimeError(f"{name} failed earlier in this test run: {saved['error'][-4000:]}")
    return saved["result"]


def page_html(site: Path, page: str) -> str:
    """The built HTML of docs/<page>.md."""
    path = site / "index.html" if page == "index" else site / page / "index.html"
    return path.read_text(encoding="utf-8")


# --- what a page printed, compared up to run-to-run noise

RUN_TO_RUN = [  # (pattern, replacement): what may differ between two runs of the same code on the same machine
    # (with the spaces that align them in a column: their width changes with the number)
    (re.compile(r"[ \t]*\b\d[\d,]*(?:\.\d+)? (?:items|images|samples|batches)/s\b"), " <rate>"),
    (re.compile(r"[ \t]*\b\d[\d,]*(?:\.\d+)?(?:e[-+]?\d+)? ?(?:ms|µs|us|ns|s|seconds?)\b"), " <time>"),
    (re.compile(r"\b\d{4}-\d{2}-\d{2}(?:[T ][\d:.+]+Z?)?"), "<date>"),
    (re.compile(r"\b0x[0-9a-fA-F]+\b"), "<address>"),
    (re.compile(r"/tmp/[\w./-]+|/var/folders/[\w./-]+"), "<temporary path>"),
    # memory a process measured it wrote to (the workers page): the pages it touched vary by a page or two
    (re.compile(r"\bcopied \d[\d,]*(?:\.\d+)? ?[KMG]B\b"), "copied <memory>"),
]


def normalise(text):
    """``text`` without trailing spaces, and with timings, rates, dates, addresses and temporary paths replaced."""
    lines = [line.rstrip() for line in text.strip("\n").split("\n")]
    text = "\n".join(lines).strip()
    for pattern, replacement in RUN_TO_RUN:
        text = pattern.sub(replacement, text)
    return text


# --- what a reader installs: the Install page's commands and what they pull in


def distribution_name(name):
    """A distribution's name as pip compares names (PEP 503): case and runs of ``-_.`` do not matter."""
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_by(commands, tool):
    """The package names that the `<tool> install`/`create` lines of ``commands`` name (options and paths left
    out)."""
    names = set()
    for line in re.sub(r"\\\n\s*", " ", commands).split("\n"):
        words = line.split("#")[0].split()
        if words[:2] in ([tool, "install"], [tool, "create"]):
            names |= {distribution_name(w) for w in words[2:] if re.fullmatch(r"[A-Za-z][\w.-]*", w)}
    return names


def install_page_packages():
    """The distributions the Install page tells a reader to pip install."""
    return installed_by((DOCS / "install.md").read_text(encoding="utf-8"), "pip")


def with_requirements(distributions):
    """The distributions' names and those of everything they require, as installed here (extras left out)."""
    found, todo = set(), [distribution_name(name) for name in distributions]
    while todo:
        name = todo.pop()
        if name in found:
            continue
        found.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        todo += [distribution_name(re.match(r"[\w.-]+", r)[0]) for r in requires if "extra ==" not in r]
    return found


def importable_from(distributions):
    """Top-level module names that the distributions and everything they depend on provide."""
    found = with_requirements(distributions)
    provided = metadata.packages_distributions()  # {module: [distribution, ...]}
    return {module for module, owners in provided.items() if {distribution_name(o) for o in owners} & found}


# --- a chapter test's run of its page


class PageRunHere:
    """The blocks a page shows, run here in page order in one namespace (a module ``__main__``, as in a paste), with
    two threads: ``names`` is that namespace at the end, ``outputs`` what each block printed; ``printed_by`` and
    ``names_after`` give one section's output and the names as they were right after it."""

    def __init__(self, page, threads=CHAPTER_TEST_THREADS):
        import matplotlib.pyplot as plt
        import torch

        self.page = page
        self.blocks = [block for block in execution.page_blocks(page) if block.shown]
        module = types.ModuleType("__main__")
        module.__dict__["__builtins__"] = builtins
        saved_main, saved_threads = sys.modules.get("__main__"), torch.get_num_threads()
        self.outputs, self.snapshots = [], []
        started = time.perf_counter()
        torch.set_num_threads(threads)
        sys.modules["__main__"] = module  # dataclasses and pickle look their module up there
        try:
            for number, block in enumerate(self.blocks, start=1):
                out = io.StringIO()
                with contextlib.redirect_stdout(out):
                    exec(compile(block.code, f"<docs/{page}.md, block {number}>", "exec"), module.__dict__)
                self.outputs.append(out.getvalue())
                self.snapshots.append(dict(module.__dict__))  # the names, not copies of the objects
        finally:
            sys.modules["__main__"] = saved_main
            torch.set_num_threads(saved_threads)
            plt.close("all")
        execution.log_execution(page, "chapter test run", time.perf_counter() - started)
        self.names = self._namespace(module.__dict__)
        self.printed = "".join(self.outputs)

    @staticmethod
    def _namespace(names):
        return types.SimpleNamespace(**{k: v for k, v in names.items() if not k.startswith("__")})

    def _block_of(self, section, module):
        code = snippet_sections(module or self.page)[section].strip()
        found = [number for number, block in enumerate(self.blocks) if code in block.code]
        assert len(found) == 1, f"section {section} is in {len(found)} of the blocks docs/{self.page}.md shows"
        return found[0]

    def printed_by(self, section, module=None):
        """What the block showing ``section`` (of snippets/<page>.py, or of ``module``) printed."""
        return self.outputs[self._block_of(section, module)]

    def printed_by_the_build(self, section, module=None):
        """What the page's own run (site_tools/execution.py, one thread: the run the site renders) printed for
        ``section``: for claims about timings and other processes, checked on what the page shows."""
        run = execution.page_run(self.page)
        stored = [stdout for block, stdout, _ in execution.block_results(run) if block["shown"]]
        return stored[self._block_of(section, module)]

    def names_after(self, section, module=None):
        """The page's names right after the block showing ``section`` (later blocks may rebind them)."""
        return self._namespace(self.snapshots[self._block_of(section, module)])


def chapter_of(module):
    """'test_tensors' -> 'tensors': a chapter's test file is tests/test_<chapter>.py."""
    return module.__name__.rpartition(".")[2].removeprefix("test_")


@pytest.fixture(scope="module")
def page_run(request):
    """The chapter test's run of its page (tests/test_<page>.py): a PageRunHere."""
    return PageRunHere(chapter_of(request.module))


@pytest.fixture(scope="module")
def page(page_run):
    """The names the page's shown blocks define (the page's namespace after its last block)."""
    return page_run.names


@pytest.fixture(scope="module")
def section(page_run):
    """section(name) -> (the page's names right after that section, what its block printed)."""
    return lambda name: (vars(page_run.names_after(name)), page_run.printed_by(name))


@pytest.fixture(scope="module")
def printed(page_run):
    """Everything the page's shown blocks printed, in page order."""
    return page_run.printed


def test_the_page_prints_what_its_build_shows(page_run):
    """Every chapter test file imports this test: each block printed here, with two threads, what the page's run
    (site_tools/execution.py, one thread) printed and the built page shows, up to timings, dates and addresses."""
    run = execution.page_run(page_run.page)
    shown = [(block, stdout) for block, stdout, _ in execution.block_results(run) if block["shown"]]
    assert [block["code"] for block, _ in shown] == [block.code for block in page_run.blocks]
    problems = []
    for number, ((block, stdout), here) in enumerate(zip(shown, page_run.outputs), start=1):
        if normalise(here) != normalise(stdout):
            head = block["code"].strip().splitlines()[0][:70]
            problems.append(f"block {number} ({head}) printed here\n{here}\n--- the page's run printed ---\n{stdout}")
    assert not problems, f"docs/{page_run.page}.md:\n" + "\n\n".join(problems)


# --- sections of a module, read independently of pymdownx.snippets

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
    continues (their output discarded); return (its names, its stdout). For a test that needs a fresh state (the
    page's own run is the ``page`` fixture)."""
    sections = snippet_sections(module)
    namespace = {"__name__": "__section__"}
    for earlier in after:
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(sections[earlier], f"snippets/{module}.py:{earlier}", "exec"), namespace)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(sections[name], f"snippets/{module}.py:{name}", "exec"), namespace)
    return namespace, out.getvalue()


def read_record_or_skip(name):
    """docs/records/<name>.json, for the tests that check a page's claims against it; a skip that says how to make it
    while it is not recorded yet."""
    try:
        return records.read_record(name)
    except FileNotFoundError:
        pytest.skip(f"docs/records/{name}.json is not recorded yet: python -m benchmarks.{name} --record")


def report_without_record(monkeypatch, report):
    """[what each block of ``report`` (benchmarks/reports/<name>.py) prints] while no record can be read."""

    def missing(name, records_dir=None):
        raise FileNotFoundError(name)

    monkeypatch.setattr(records, "read_record", missing)
    return run_sections(report, list(snippet_sections(report)))[1]


@pytest.fixture
def keep_threads():
    """Restores torch's thread count after a test that changes it (a benchmark's main() sets it)."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def run_sections(module, names):
    """Run sections one after another in one fresh namespace (a report's hidden blocks, as the page runs them);
    return (the namespace at the end, [what each section printed])."""
    sections = snippet_sections(module)
    namespace, outputs = {"__name__": "__section__"}, []
    for name in names:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(sections[name], f"{module}:{name}", "exec"), namespace)
        outputs.append(out.getvalue())
    return namespace, outputs


# --- a tiny MNIST in the real format: the chapters' and benchmarks' tests never need the real data


def synthetic_digits(n, seed):
    """n images (uint8, n x 28 x 28) whose class is a 6x6 bright block at one of 10 places, and their labels."""
    import torch

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
    write_synthetic_mnist(root, train=200, test=100)
    return root


def write_synthetic_mnist(root, train, test):
    """``train`` and ``test`` synthetic digits as MNIST's four files, in root/MNIST/raw where torchvision reads them."""
    import torch

    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, n, seed in (("train", train, 0), ("t10k", test, 1)):
        images, labels = synthetic_digits(n, seed)
        write_idx(raw / f"{prefix}-images-idx3-ubyte.gz", images, 0x00000803)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte.gz", labels.to(torch.uint8), 0x00000801)


def check_chosen_on_validation(result, limit=None, best=max):
    """A record's ``choose_and_test`` result (snippets/cnn.py): the best mean validation score (``best``: max, or min
    for a loss) among the candidates whose choice runs all fit ``limit`` seconds, run again with the fresh seeds, each
    of those runs read on the test set once; the summary is of those runs."""
    from snippets.cnn import CHOICE_SEEDS, SEEDS

    candidates = result["candidates"]
    for candidate in candidates:
        runs = candidate["runs"]
        assert [run["seed"] for run in runs] == list(CHOICE_SEEDS) and all("test" not in run for run in runs)
        assert candidate["validation"] == pytest.approx(sum(run["validation"] for run in runs) / len(runs))
        fits = all(run["train_seconds"] <= (limit or float("inf")) for run in runs)
        assert candidate["within_time_limit"] == fits
    fitting = [t for t in candidates if t["within_time_limit"]]
    assert fitting, "no candidate fits the time limit"
    assert result["chosen"] == best(fitting, key=lambda t: t["validation"])["name"]
    assert result["time_limit"] == limit
    runs = result["runs"]
    assert [run["seed"] for run in runs] == list(SEEDS)
    tests = [run["test"] for run in runs]
    assert result["test"]["values"] == tests and result["test"]["mean"] == pytest.approx(sum(tests) / len(tests))
    assert result["test"]["min"] == min(tests) and result["test"]["max"] == max(tests)
    if limit is not None:
        assert all(run["train_seconds"] <= limit for run in runs)  # the page: "at most a minute" / "five minutes"
