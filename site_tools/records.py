"""Recorded runs: results too slow or hardware-bound to produce at every build, saved with their provenance.

A record is a JSON file in ``docs/records/`` (published with the site, so readers can download it) holding the
metrics a page shows and where they came from: torch version, device, date, command, and a hash of the source
files that produced them. Pages render from the record; ``check_fresh`` fails when the code changed and the record
did not, so a record can never silently go stale.
"""

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


def source_hash(producers):
    """SHA-256 over the producing source files (paths relative to the repository, contents with normalised newlines)."""
    digest = hashlib.sha256()
    for path in sorted(Path(p).resolve() for p in producers):
        digest.update(path.relative_to(ROOT).as_posix().encode())
        digest.update(b"\0")
        digest.update(path.read_bytes().replace(b"\r\n", b"\n"))
        digest.update(b"\0")
    return digest.hexdigest()


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
        return f"{model} ({torch.get_num_threads()} threads)"
    return device.type


def provenance(producers, device, command):
    """Where a result came from: versions, device, date, command and the hash of the producing code."""
    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(torch.device(device)),
        "device_name": device_description(device),
        "date": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
        "command": command,
        "producers": sorted(Path(p).resolve().relative_to(ROOT).as_posix() for p in producers),
        "code_hash": source_hash(producers),
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
    if not path.exists():
        raise FileNotFoundError(f"no recorded run '{name}' at {path}: run the chapter's record command to make it")
    return json.loads(path.read_text(encoding="utf-8"))


def check_fresh(record):
    """Raise StaleRecordError when the producing code no longer matches the record's hash."""
    prov = record["provenance"]
    current = source_hash(ROOT / p for p in prov["producers"])
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
    tests/test_paste.py knows that no code shown on the page printed them. (markdown-exec replaces ``print`` inside
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
            f"recorded {prov['date'][:10]} on {prov['device_name']}",
            f"with torch {prov['torch']}, Python {prov['python']}",
            f"by {prov['command']}",
            f"code hash {prov['code_hash'][:12]}: the code that made it is the code on this page",
        ]
    )


def describe_cpu_run(record):
    """``describe``, then the CPU threads a benchmark ran with and the load average at its start and end."""
    metrics = record["metrics"]
    load = metrics["load_average"]
    threads = f"{metrics['threads']} threads; load average {load[0]:.2f} at the start, {load[1]:.2f} at the end"
    return f"{describe(record)}\n{threads}"
