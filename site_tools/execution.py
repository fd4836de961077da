"""Each page's code runs once; both site builders, the paste check and the chapter tests read that run.

A page's executed fences (```` ```python exec="on" session="<page>" ````) are run in page order by
``page_driver.py``, in a fresh interpreter, in an empty temporary folder, with one thread: the blocks the page shows
as a reader pastes them (they cannot import this repository), its hidden blocks (figures, recorded results) beside
them. The result is kept in ``build/page-runs/<page>.json`` with everything it depends on:

- the code of every executed block of the page, as the builders see it (pymdownx.snippets expanded);
- the interpreter, the platform and every installed distribution with its version, and the driver's own code;
- every file the run opened or folder it listed (an audit hook records them, and every imported module's source), by
  content and by the path it used: a snippet module a hidden block imports, a record it reads, a page a chapter reads
  as its corpus. Files of the interpreter and of the installed distributions are covered by their versions; the run's
  own temporary folder is its own;
- the run's settings (thread count, interpreter flags), the environment variables that choose devices, locale or
  library behaviour (OUTPUT_VARIABLES), and the accelerator device files present.

A stored run is used only while all of these are unchanged; anything else runs the page again. What remains outside
the key is what changes from run to run anyway (the time, the machine's load), which the comparisons ignore. Nothing
executed is committed: a fresh clone runs every page once.

The builders render a run through markdown-exec (``formatter``, configured in mkdocs.yml as the ``python`` custom
fence of pymdownx.superfences): the same HTML as markdown-exec's own execution, without executing. ``python -m
site_tools.execution [PAGE ...]`` runs the pages whose runs are stale, two at a time (``make test`` and ``make build``
do this first, so that the builders only render).
"""

import argparse
import contextlib
import fcntl
import functools
import hashlib
import importlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
RUNS_DIR = ROOT / "build" / "page-runs"
DRIVER = Path(__file__).with_name("page_driver.py")
THREADS = 1  # the pages' code runs on one thread: the same output on every machine (the chapter tests use two)
EXECUTIONS_LOG = RUNS_DIR / "executions.jsonl"  # one line per run, read by the test report
# Only these pages run when set (make test-chapter): the others show their stored run, or a note that they did not run.
ONLY_PAGES = "GUIDE_ONLY_PAGES"
NOT_RUN = "(not run: this build runs only {pages}; `make build` runs every page)"
# deprecations are errors: a page whose code calls a deprecated API fails its build
DRIVER_FLAGS = ("-I", "-W", "error::DeprecationWarning", "-W", "error::FutureWarning")
# except one that torch 2.13's own ONNX export raises (2.14 does not): the deployment page says so
DRIVER_FLAGS += ("-W", "ignore:isinstance(treespec, LeafSpec) is deprecated:FutureWarning")
# environment variables a page's output may depend on (inherited by the run), and the device files of accelerators
OUTPUT_VARIABLES = ("CUDA_", "HIP_", "ROCR_", "NVIDIA_", "TORCH", "PYTORCH_", "MKL_", "KMP_", "OPENBLAS_", "LC_")
OUTPUT_VARIABLES += ("MPLCONFIGDIR", "LANG", "TZ")  # not MPLBACKEND, OMP_NUM_THREADS: the run sets them
# set by libraries inside a process that imported them (scikit-learn; inductor's cache folder), which a test
# process has and a shell has not: not a reason to run a page again
SET_BY_LIBRARIES = ("KMP_DUPLICATE_LIB_OK", "KMP_INIT_AT_FORK", "TORCHINDUCTOR_CACHE_DIR")
DEVICE_FILES = ("nvidia[0-9]*", "kfd", "dri/renderD*", "accel/accel*")


@dataclass(frozen=True)
class Block:
    """One executed fence: its code as the builders see it, whether the page shows it, and its session."""

    code: str
    shown: bool
    session: str


class PageError(RuntimeError):
    """A page cannot be run: an executed fence without the page's session, or a missing page."""


# --- what a page runs


def _yaml_loader():
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def python_name(loader, suffix, node):
        module, _, name = suffix.rpartition(".")
        return getattr(importlib.import_module(module), name)

    Loader.add_multi_constructor("tag:yaml.org,2002:python/name:", python_name)
    Loader.add_constructor("!ENV", lambda loader, node: loader.construct_sequence(node)[-1])
    return Loader


@functools.cache
def markdown_settings():
    """The Markdown extensions of mkdocs.yml and their configuration, as both builders load them."""
    import yaml

    config = yaml.load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"), Loader=_yaml_loader())
    extensions, configs = [], {}
    for entry in config.get("markdown_extensions", []):
        name, options = next(iter(entry.items())) if isinstance(entry, dict) else (entry, None)
        extensions.append(name)
        configs[name] = dict(options or {})
    snippets = configs.setdefault("pymdownx.snippets", {})
    snippets["base_path"] = [os.fspath(ROOT / path) for path in snippets.get("base_path", ["."])]
    return extensions, configs


def page_blocks(page, text=None):
    """The executed fences of docs/<page>.md in page order, read by Python-Markdown with the site's extensions (so
    includes, nesting and options are exactly what the builders see)."""
    import markdown
    import markdown_exec

    if text is None:
        path = DOCS / f"{page}.md"
        if not path.is_file():
            raise PageError(f"no page docs/{page}.md")
        text = path.read_text(encoding="utf-8")
    blocks = []

    def record(source, language, class_name, options, md, **kwargs):
        blocks.append(Block(source, bool(options.get("source")), options.get("session", "")))
        return ""

    extensions, configs = markdown_settings()
    superfences = dict(configs.get("pymdownx.superfences", {}))
    fences = [fence for fence in superfences.get("custom_fences", []) if fence.get("name") != "python"]
    fences.append({"name": "python", "class": "python", "validator": markdown_exec.validator, "format": record})
    configs = {**configs, "pymdownx.superfences": {**superfences, "custom_fences": fences}}
    markdown.Markdown(extensions=extensions, extension_configs=configs).convert(text)
    wrong = [block for block in blocks if block.session != page]
    if wrong:
        raise PageError(f'docs/{page}.md: every executed fence needs session="{page}" (found {wrong[0].session!r})')
    return blocks


# --- what a run depends on


@functools.cache
def environment():
    """What every page's output depends on besides its code and the files it reads."""
    import site
    from importlib import metadata

    # the installed ones (not a project's *.egg-info that the current folder happens to hold)
    installed = metadata.distributions(path=site.getsitepackages())
    distributions = sorted({f"{d.metadata['Name']}=={d.version}".lower() for d in installed if d.metadata["Name"]})
    variables = sorted(
        f"{k}={v}" for k, v in os.environ.items() if k.startswith(OUTPUT_VARIABLES) and k not in SET_BY_LIBRARIES
    )
    devices = sorted(str(path) for pattern in DEVICE_FILES for path in Path("/dev").glob(pattern))
    return {
        "python": sys.version,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "threads": THREADS,
        "driver": hashlib.sha256(DRIVER.read_bytes() + " ".join(DRIVER_FLAGS).encode()).hexdigest(),
        "distributions": hashlib.sha256("\n".join(distributions).encode()).hexdigest(),
        "variables": hashlib.sha256("\n".join(variables).encode()).hexdigest(),  # device choice, locale, time zone
        "devices": devices,  # a GPU appearing or going away
    }


def _outside_dependencies():
    """Folders whose files are not a run's dependencies: the interpreter's and the distributions' (their versions
    are) and the kernel's."""
    import site

    prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix, "/proc", "/sys", "/dev", *site.getsitepackages()}
    return tuple(os.path.realpath(p) + os.sep for p in prefixes)


_DIGESTS: dict = {}


def file_digest(path):
    """SHA-256 of a file's bytes ("absent" when there is none; for a folder, of its sorted names)."""
    try:
        stat = os.stat(path)
    except OSError:
        return "absent"
    key = (path, stat.st_mtime_ns, stat.st_size, stat.st_ino)
    if key not in _DIGESTS:
        if os.path.isdir(path):
            data = "\n".join(sorted(os.listdir(path))).encode()
        else:
            with open(path, "rb") as handle:
                data = handle.read()
        _DIGESTS[key] = hashlib.sha256(data).hexdigest()
    return _DIGESTS[key]


def dependencies(opened, listed, workdir):
    """{path: digest} of the files a run opened and the folders it listed, by the path it used (a symbolic link
    re-pointed changes the digest), except the run's own folder and the interpreter's and distributions' files."""
    skip = _outside_dependencies() + (os.path.realpath(workdir) + os.sep,)
    found = {}
    for path, folder in [*((p, False) for p in opened), *((p, True) for p in listed)]:
        real = os.path.realpath(path)
        if real.startswith(skip) or "__pycache__" in real or os.path.isdir(real) != folder:
            continue
        shown = os.path.relpath(path, ROOT) if path.startswith(str(ROOT) + os.sep) else path
        found[shown] = file_digest(path)
    return found


def stale_reason(stored, blocks):
    """Why the stored run of a page cannot be shown any more, or None when it can."""
    if stored is None:
        return "no earlier run"
    if stored["blocks"] != [asdict(block) for block in blocks]:
        return "its code changed"
    if stored["environment"] != environment():
        changed = [key for key, value in environment().items() if stored["environment"].get(key) != value]
        return f"the environment changed ({', '.join(changed)})"
    for path, digest in stored["dependencies"].items():
        if file_digest(str(ROOT / path) if not os.path.isabs(path) else path) != digest:
            return f"{path} changed"
    return None


# --- running a page


def run_blocks(blocks, timeout=1800):
    """Run ``blocks`` in a fresh interpreter (page_driver.py); the driver's result with the run's dependencies."""
    workdir = Path(tempfile.mkdtemp(prefix="page-run-"))
    try:
        (workdir / "blocks.json").write_text(json.dumps([asdict(b) for b in blocks]), encoding="utf-8")
        env = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
        dead = "http://127.0.0.1:9"  # offline: a download fails at once instead of reaching the network
        env.update(OMP_NUM_THREADS=str(THREADS), MPLBACKEND="Agg", http_proxy=dead, https_proxy=dead)
        env.update(HTTP_PROXY=dead, HTTPS_PROXY=dead)
        command = [sys.executable, *DRIVER_FLAGS, str(DRIVER), "blocks.json", "result.json"]
        process = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)
        result_path = workdir / "result.json"
        if process.returncode != 0 or not result_path.exists():
            raise RuntimeError(f"the page driver failed (exit status {process.returncode}):\n{process.stderr[-4000:]}")
        result = json.loads(result_path.read_text(encoding="utf-8"))
        result["dependencies"] = dependencies(result.pop("opened"), result.pop("listed"), workdir)
        result["stderr"] = process.stderr[-4000:]
        return result
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


_LOCKS: dict = {}
_LOCKS_GUARD = threading.Lock()


@contextlib.contextmanager
def page_lock(page):
    """Held while a page's run is checked or made: by one thread of this process, and one process on this machine."""
    with _LOCKS_GUARD:
        lock = _LOCKS.setdefault(page, threading.Lock())
    RUNS_DIR.mkdir(parents=True, exist_ok=True)
    with lock, open(RUNS_DIR / f"{page}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def stored_run(page):
    path = RUNS_DIR / f"{page}.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def log_execution(page, kind, seconds, reason=""):
    """One line of build/page-runs/executions.jsonl: the test report counts how often each page's code ran."""
    RUNS_DIR.mkdir(parents=True, exist_ok=True)
    line = {"page": page, "kind": kind, "seconds": round(seconds, 2), "reason": reason}
    line["run"] = os.environ.get("GUIDE_RUN_ID", "")
    with open(EXECUTIONS_LOG, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(line) + "\n")


def page_run(page, run_if_stale=True):
    """The run of docs/<page>.md: {"blocks": [{code, shown, session}], "outputs": [{stdout, error}], ...}, stored or
    made now (with ``run_if_stale`` false, a stale page gives None instead)."""
    return _page_run(page, run_if_stale)[0]


def _page_run(page, run_if_stale):
    """(the run, why it was made now or None)."""
    blocks = page_blocks(page)
    with page_lock(page):
        stored = stored_run(page)
        reason = stale_reason(stored, blocks)
        if reason is None or not run_if_stale:
            return (stored if reason is None else None), None
        result = run_blocks(blocks)
        run = {"page": page, "blocks": [asdict(block) for block in blocks], "environment": environment(), **result}
        from site_tools.records import atomic_write_text

        atomic_write_text(RUNS_DIR / f"{page}.json", json.dumps(run, indent=1) + "\n")
        log_execution(page, "page run", run["seconds"], reason)
        return run, reason


def executed_pages():
    """The pages with executed fences."""
    return sorted(path.stem for path in DOCS.glob("*.md") if 'exec="on"' in path.read_text(encoding="utf-8"))


def run_pages(pages, jobs=2, report=print):
    """Bring the runs of ``pages`` up to date, ``jobs`` at a time; return {page: run}."""

    def one(page):
        run, reason = _page_run(page, run_if_stale=True)
        report(f"{page}: ran in {run['seconds']:.1f} s ({reason})" if reason else f"{page}: up to date")
        return page, run

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return dict(pool.map(one, pages))


def block_results(run):
    """[(block, stdout, error)] of a run in page order: a block after one that raised was not run."""
    outputs = run["outputs"]
    results = []
    for number, block in enumerate(run["blocks"]):
        if number < len(outputs):
            results.append((block, outputs[number]["stdout"], outputs[number]["error"]))
        else:
            results.append((block, "", f"not run: block {len(outputs)} of docs/{run['page']}.md raised"))
    return results


# --- rendering a run in a build


class _PageInBuild:
    """One page's run, consumed block by block as a builder converts the page."""

    def __init__(self, page):
        only = [name for name in os.environ.get(ONLY_PAGES, "").split(",") if name]
        run = page_run(page, run_if_stale=not only or page in only)
        self.page = page
        self.placeholder = None if run else NOT_RUN.format(pages=", ".join(only))
        self.results = block_results(run) if run else []
        self.next = 0

    def output(self, code):
        """What the block with ``code`` printed (the next block of the page whose code it is)."""
        if self.placeholder:
            return self.placeholder
        for number in range(self.next, len(self.results)):
            block, stdout, error = self.results[number]
            if block["code"] == code:
                self.next = number + 1
                if error:
                    from markdown_exec import ExecutionError, code_block

                    raise ExecutionError(code_block("python", error))
                return stdout
        raise PageError(f"docs/{self.page}.md: a block the builder shows is not in the page's run:\n{code[:500]}")


def formatter(source, language, css_class, options, md, **kwargs):
    """The pymdownx.superfences formatter of executed ``python`` fences: markdown-exec's rendering of the page's run.

    A block that raised in the run is reported by markdown-exec as if it had raised here (the strict build fails)."""
    from markdown_exec import base_format
    from pymdownx.superfences import SuperFencesException

    try:
        session = options.get("session") or ""
        pages = md.__dict__.setdefault("_guide_page_runs", {})  # one Markdown instance converts one page
        if session not in pages:
            pages[session] = _PageInBuild(session)
        page = pages[session]
        if page.placeholder and options.get("html"):
            return ""

        def run(code, **_):
            return page.output(code)

        return base_format(language="python", run=run, code=source, md=md, **options)
    except Exception as error:  # superfences would leave the fence as text and the build would pass
        raise SuperFencesException(f"executed fence of docs/{options.get('session')}.md: {error}") from error


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("pages", nargs="*", help="pages to run (default: every page with executed fences)")
    parser.add_argument("--jobs", type=int, default=2, help="pages run at the same time (default 2)")
    args = parser.parse_args(argv)
    pages = args.pages or executed_pages()
    runs = run_pages(pages, jobs=args.jobs)
    failed = [
        f"{page}: block {n} raised" for page, run in runs.items() for n, (_, _, e) in enumerate(block_results(run), 1)
        if e and not e.startswith("not run")
    ]  # fmt: skip
    for line in failed:
        print(line, file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
