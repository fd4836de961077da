"""Recorded runs: results too slow or hardware-bound to produce at every build, saved with their provenance.

A record is a JSON file in ``docs/records/`` (published with the site, so readers can download it) holding the
metrics a page shows and where they came from: torch version, device, date, command, and a hash of the code that
produced them. Pages render from the record; ``check_fresh`` fails when that code changed and the record did not, so
a record can never silently go stale.

The hash covers what runs, not file bytes (``code_hash``): the benchmark module, and in this repository's modules it
uses (``snippets``, ``benchmarks``) the top-level definitions it uses, followed through the names they use; a module
the benchmark launches as a program (its file or module name is in the benchmark's code) counts from its ``main`` and
its ``if __name__ == "__main__":`` block. A benchmark imports a module with a name (``import snippets.mnist as m``)
or imports names from it; other forms are refused, so that nothing it uses escapes the hash. Each is
hashed as its syntax tree without docstrings: comments, blank lines, docstrings, formatting and the code the benchmark
does not use (a page's demonstrations, another function) can change without making the record stale. Names reached
only by ``getattr``, ``globals()`` or a string are not seen: a benchmark uses a chapter's code by name.
"""

import ast
import datetime
import hashlib
import html
import io
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RECORDS_DIR = ROOT / "docs" / "records"


class StaleRecordError(RuntimeError):
    """The code that produced a record has changed since the record was made."""


HASHED_PACKAGES = ("snippets", "benchmarks")  # site_tools and the reports show results; they do not make them


def _canonical(node):
    """A syntax tree as nested lists, stable across Python versions (no positions, contexts or empty fields)."""
    if isinstance(node, ast.JoinedStr):  # Python 3.12 keeps empty pieces of an f-string that 3.11 and 3.13 drop
        node = ast.JoinedStr([v for v in node.values if not (isinstance(v, ast.Constant) and v.value == "")])
    if isinstance(node, ast.AST):
        fields = [
            (name, _canonical(value))
            for name, value in ast.iter_fields(node)
            if value not in (None, []) and name not in {"ctx", "type_comment", "kind"}
        ]
        return [type(node).__name__, fields]
    if isinstance(node, list):
        return [_canonical(item) for item in node]
    return repr(node)


def _without_docstrings(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                if isinstance(body[0].value.value, str):
                    node.body = body[1:] or [ast.Pass()]
    return tree


def _guarded_name(statement):
    """ "__main__" for `if __name__ == "__main__":`."""
    comparators = statement.test.comparators
    return comparators[0].value if len(comparators) == 1 and isinstance(comparators[0], ast.Constant) else None


def _is_main_guard(statement):
    """``if __name__ == "__main__":`` (or another name than the module's): code that importing does not run."""
    test = statement.test if isinstance(statement, ast.If) else None
    return isinstance(test, ast.Compare) and isinstance(test.left, ast.Name) and test.left.id == "__name__"


def _bound_names(statement):
    """The names a top-level statement binds (an import binds its alias or first name)."""
    if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return {statement.name}
    if isinstance(statement, ast.Import | ast.ImportFrom):
        return {(alias.asname or alias.name).split(".")[0] for alias in statement.names}
    if isinstance(statement, ast.Assign | ast.AnnAssign | ast.AugAssign):
        targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
        return {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    return set()


class _Module:
    """One source file of the repository: its top-level statements and the names they bind."""

    def __init__(self, relative, text):
        self.relative = relative
        self.statements = _without_docstrings(ast.parse(text)).body
        self.binders = {}  # name -> indices of the statements binding it
        self.repository_imports = {}  # name -> (module file, attribute or None)
        for index, statement in enumerate(self.statements):
            for name in _bound_names(statement):
                self.binders.setdefault(name, []).append(index)
        # imports of this repository's modules, at top level or inside a function, in the two forms the hash follows
        for node in ast.walk(ast.Module(self.statements, [])):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] in HASHED_PACKAGES:
                        if not alias.asname:
                            raise ValueError(f"{relative}:{node.lineno}: write `import {alias.name} as <name>`")
                        self.repository_imports[alias.asname] = (_module_file(alias.name), None)
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in HASHED_PACKAGES:
                for alias in node.names:
                    if alias.name == "*":
                        raise ValueError(f"{relative}:{node.lineno}: import names from {node.module}, not *")
                    imported = f"{node.module}.{alias.name}"
                    target = (_module_file(imported), None) if _module_file(imported) else None
                    target = target or (_module_file(node.module), alias.name)
                    self.repository_imports[alias.asname or alias.name] = target

    def side_effects(self):
        """Top-level statements that bind nothing and are not the main guard: they run on import."""
        return [i for i, s in enumerate(self.statements) if not _bound_names(s) and not _is_main_guard(s)]


def _module_file(dotted):
    """'snippets.mnist' -> 'snippets/mnist.py' when that file exists in the repository, else None."""
    relative = dotted.replace(".", "/") + ".py"
    return relative if (ROOT / relative).is_file() else None


def _references(node):
    """(name, attribute or None) for every name a piece of code loads, with the attribute read from it."""
    found = set()
    for child in ast.walk(node):
        if isinstance(child, ast.Attribute) and isinstance(child.value, ast.Name):
            found.add((child.value.id, child.attr))
        elif isinstance(child, ast.Name):
            found.add((child.id, None))
    return found


def used_code(entry, sources=None):
    """{(file, statement index or None for the whole file): statement} of the code a benchmark runs.

    ``entry`` is the benchmark's file (relative to the repository); ``sources`` maps files to replacement texts
    (the tests edit code without touching the files)."""
    sources = sources or {}
    modules = {}

    def module(relative):
        if relative not in modules:
            text = sources.get(relative)
            modules[relative] = _Module(relative, text if text is not None else (ROOT / relative).read_text("utf-8"))
        return modules[relative]

    used, todo = {}, []

    def use_statement(mod, index):
        if (mod.relative, index) not in used:
            used[(mod.relative, index)] = mod.statements[index]
            todo.append((mod, mod.statements[index]))
            for side in mod.side_effects():
                use_statement(mod, side)

    def use_name(mod, name, attribute):
        if name in mod.repository_imports:
            target, imported = mod.repository_imports[name]
            if imported is None and attribute is not None:  # `m.fit` with `import snippets.mnist as m`
                use_name(module(target), attribute, None)
            elif imported is not None:  # `from snippets.mnist import fit`
                use_name(module(target), imported, None)
        for index in mod.binders.get(name, []):
            use_statement(mod, index)

    entry_module = module(entry)
    for index in range(len(entry_module.statements)):
        use_statement(entry_module, index)  # the benchmark runs as a whole
    constants = {n.value for n in ast.walk(ast.Module(entry_module.statements, [])) if isinstance(n, ast.Constant)}
    for target, imported in list(entry_module.repository_imports.values()):
        dotted = target.removesuffix(".py").replace("/", ".")
        if imported is None and ({Path(target).name, dotted} & constants):  # launched as a program
            launched = module(target)
            use_name(launched, "main", None)
            for index, statement in enumerate(launched.statements):  # and what its `__main__` runs
                if _is_main_guard(statement) and _guarded_name(statement) == "__main__":
                    use_statement(launched, index)
    while todo:
        mod, statement = todo.pop()
        for name, attribute in _references(statement):
            use_name(mod, name, attribute)
    return used


def code_hash(entry, sources=None):
    """SHA-256 of the code a benchmark runs (``used_code``), and the list of what it covers."""
    used = used_code(entry, sources)
    digest = hashlib.sha256()
    covered = []
    # by file and content, not position: moving a definition, or adding one the benchmark does not use, changes nothing
    for part in sorted(f"{relative}\0{json.dumps(_canonical(statement))}" for (relative, _), statement in used.items()):
        digest.update(part.encode() + b"\0")
    for relative, index in sorted(used):
        names = sorted(_bound_names(used[(relative, index)])) or [f"line {used[(relative, index)].lineno}"]
        if relative != entry:
            covered += [f"{relative}:{name}" for name in names]
    return digest.hexdigest(), [entry, *sorted(set(covered))]


def benchmark_entry(producers):
    """The benchmark module among a record's producers (the file under benchmarks/)."""
    entries = [p for p in producers if p.startswith("benchmarks/")]
    if len(entries) != 1:
        raise ValueError(f"a record needs exactly one benchmark module among its producers, not {entries}")
    return entries[0]


def _threads(count):
    return f"{count} thread{'s' if count != 1 else ''}"


def device_description(device):
    """A human-readable name of the device the run used, e.g. 'NVIDIA H100 80GB HBM3' or the CPU model."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        model = platform.processor() or platform.machine()
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
        return f"{model} ({_threads(torch.get_num_threads())})"
    return device.type


def provenance(producers, device, command):
    """Where a result came from: versions, device, date, command and the hash of the producing code."""
    producers = sorted(Path(p).resolve().relative_to(ROOT).as_posix() for p in producers)
    digest, covered = code_hash(benchmark_entry(producers))
    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(torch.device(device)),
        "device_name": device_description(device),
        "date": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
        "command": command,
        "producers": producers,
        "code_hash": digest,
        "hashed": covered,
    }


def atomic_write_text(path, text):
    """Write to a temporary file in the same folder, then rename: a reader never sees a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private (0600): give it a normal file's mode
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _portable_argv():
    """sys.argv with a module of this repository named as `-m snippets.x`, not by this machine's absolute path."""
    script, *args = sys.argv
    path = Path(script).resolve()
    if path.suffix == ".py" and path.is_relative_to(ROOT):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        return ["-m", module, *args]
    return [script, *args]


def write_record(name, metrics, producers, device, command=None, records_dir=RECORDS_DIR):
    """Save ``metrics`` (JSON-serialisable) as the record ``name`` with its provenance; return the path."""
    if command is None:
        command = " ".join(["python", *_portable_argv()])
    record = {"name": name, "provenance": provenance(producers, device, command), "metrics": metrics}
    path = Path(records_dir) / f"{name}.json"
    atomic_write_text(path, json.dumps(record, indent=1, sort_keys=True) + "\n")
    return path


def read_record(name, records_dir=RECORDS_DIR):
    """Load the record ``name``; a clear error says how to produce it when it is missing."""
    path = Path(records_dir) / f"{name}.json"
    try:  # opened, not tested with exists(): a page run that found no record then depends on the file's arrival
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(
            f"no recorded run '{name}' at {path}: run the chapter's record command to make it"
        ) from None
    return json.loads(text)


def check_fresh(record, sources=None):
    """Raise StaleRecordError when the code that made the record no longer matches its hash (``sources``: files
    replaced by texts, as in ``code_hash``)."""
    prov = record["provenance"]
    current, _ = code_hash(benchmark_entry(prov["producers"]), sources)
    if current != prov["code_hash"]:
        raise StaleRecordError(
            f"record '{record['name']}' was made by code that has changed since ({prov['code_hash'][:12]} -> "
            f"{current[:12]}): re-run `{prov['command']}` and commit the new record"
        )
    return record


def format_provenance(record):
    """The provenance of a record as aligned ``key: value`` lines (for a page to print)."""
    prov = record["provenance"]
    keys = ["date", "device_name", "torch", "python", "command", "code_hash"]
    return "\n".join(f"{key:>11}: {prov[key]}" for key in keys if key in prov)


class RecordedText:
    """Lines to show as an output block marked as read from ``record``: call it like ``print``, then print it.

    For the hidden blocks of a page (``exec="on" html="1"``), which print HTML: ``print(text)`` renders the lines as
    an output block captioned with the record file it comes from, so a reader sees where the numbers come from and
    tests/site/test_paste.py knows that no code shown on the page printed them. (markdown-exec replaces ``print`` inside
    a block, so the lines are collected here rather than by redirecting standard output.)
    """

    def __init__(self, record):
        self.record = record
        self.buffer = io.StringIO()

    def __call__(self, *values, sep=" ", end="\n"):
        print(*values, sep=sep, end=end, file=self.buffer)

    def __str__(self):
        name = self.record["name"]
        text = html.escape(self.buffer.getvalue().rstrip("\n"))
        return (
            f'<div class="guide-record"><p class="guide-record__caption">From the recorded run '
            f'<a href="../records/{name}.json">records/{name}.json</a></p>'
            f'<div class="language-text highlight"><pre><span></span><code>{text}</code></pre></div></div>'
        )


def describe(record):
    """Provenance and freshness of a record, as lines for a page: when, where, with what, and that it is current."""
    check_fresh(record)
    prov = record["provenance"]
    return "\n".join(
        [
            # records made before device_description counted "1 thread" say "(1 threads)"
            f"recorded {prov['date'][:10]} on {prov['device_name'].replace('(1 threads)', '(1 thread)')}",
            f"with torch {prov['torch']}, Python {prov['python']}",
            f"by {prov['command']}",
            f"code hash {prov['code_hash'][:12]}: the code that made it is the code on this page",
        ]
    )


def run_conditions(result):
    """How idle the machine was through a chosen recipe's runs (its seeds' and every candidate's), in two lines: the
    1-minute load average at their starts and ends, and the CPU seconds per second of each (lower when something else
    ran)."""
    every_run = result["runs"] + [run for tried in result["candidates"] for run in tried["runs"]]
    loads = [load for run in every_run for load in run["load"]]
    busy = [run["cpu_seconds"] / run["run_seconds"] for run in every_run]
    return (
        f"load average (1 minute) at the runs' starts and ends: {min(loads):.2f} to {max(loads):.2f}",
        f"CPU seconds per second of each run (at most 2: 2 threads): {min(busy):.2f} to {max(busy):.2f}",
    )


def describe_cpu_run(record):
    """``describe``, then the CPU threads a benchmark ran with and the load average at its start and end."""
    metrics = record["metrics"]
    load = metrics["load_average"]
    threads = f"{_threads(metrics['threads'])}; load average {load[0]:.2f} at the start, {load[1]:.2f} at the end"
    return f"{describe(record)}\n{threads}"


def record_or_none(name):
    """The record ``name``, or None while it has not been made: a report block then shows ``not_recorded_note``."""
    try:
        return read_record(name)
    except FileNotFoundError:
        return None


def not_recorded_note(what, command, takes):
    """The note a report block shows until its record exists (HTML): what is missing and the command that makes it,
    with how long that ``takes``."""
    return (
        '<div class="admonition note"><p class="admonition-title">Not recorded yet</p>'
        f"<p>{html.escape(what)}: this run has not been recorded yet. "
        f"<code>{html.escape(command)}</code> makes it ({takes}).</p></div>"
    )


def mean_and_range(values, form):
    """Mean (lowest to highest) of the seeds' ``values``, each formatted with ``form``, e.g. "{:.3f}"."""
    mean = sum(values) / len(values)
    return f"{form.format(mean)} ({form.format(min(values))} to {form.format(max(values))})"
