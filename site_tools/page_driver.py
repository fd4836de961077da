"""Run one page's executed blocks as a reader would paste them: one fresh interpreter, the blocks in page order.

Started by site_tools/execution.py as ``python -I -W error::DeprecationWarning -W error::FutureWarning
page_driver.py BLOCKS.json RESULTS.json`` in an empty temporary folder; never imported.

- The blocks a page shows run in one namespace, the module ``__main__`` (as in a REPL or a notebook), and cannot
  import this repository's packages: a reader of the site has none of them.
- The page's hidden blocks (figures, recorded results: the site's own code) run in a namespace of their own, with the
  repository importable: they cannot change a name the reader's blocks use, nor define one for them.
- Everything a block prints to standard output is its output. The first block that raises stops the run; a figure
  drawn and never shown (by the hidden figure block) is an error of the last block.
- An audit hook records every file the run opens or lists, and every imported module's source file (a module loaded
  from its cached bytecode opens only the .pyc), so that execution.py can tell when a result is stale.
"""

import contextlib
import io
import json
import os
import resource
import sys
import time
import traceback
import types

PROJECT_PACKAGES = {"snippets", "site_tools", "benchmarks", "conftest"}
# this copy of the repository, not the one an editable install names (a git worktree, a second clone)
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class ProjectImports:
    """A meta-path finder that refuses this repository's packages while a reader's block runs."""

    def __init__(self):
        self.blocked = False

    def find_spec(self, name, path=None, target=None):
        if self.blocked and name.split(".")[0] in PROJECT_PACKAGES:
            raise ModuleNotFoundError(f"No module named {name!r} (a reader of the site does not have it)")
        return None


def record_file_access(opened, listed):
    """Add every path the process opens to ``opened`` and every folder it lists to ``listed``."""

    def hook(event, args):
        if event == "open" and isinstance(args[0], str | bytes | os.PathLike):
            opened.add(os.path.abspath(os.fsdecode(args[0])))
        elif event in ("os.listdir", "os.scandir") and args and isinstance(args[0], str | bytes | os.PathLike):
            folder = os.path.abspath(os.fsdecode(args[0]))
            # not the folders of sys.path, which the import system lists: a module the run imports is recorded
            # itself, and a new file beside it (a clone's first .cache/) must not make every page stale
            if folder not in {os.path.abspath(entry or os.curdir) for entry in sys.path}:
                listed.add(folder)

    sys.addaudithook(hook)


def cpu_seconds():
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usage)


def run(blocks):
    """Run ``blocks`` ([{"code", "shown"}]) in order; return what each printed or raised, and the files read."""
    started = time.perf_counter()
    opened, listed = set(), set()
    record_file_access(opened, listed)
    finder = ProjectImports()
    sys.meta_path.insert(0, finder)
    reader = types.ModuleType("__main__")  # a paste: the reader's names live in the main module
    reader.__dict__["__builtins__"] = __builtins__
    site = {"__name__": "__site__", "__builtins__": __builtins__}
    stashed = {}
    results = []
    for number, block in enumerate(blocks, start=1):
        shown = block["shown"]
        if shown:  # this repository's modules, imported by a hidden block, leave until the next hidden one
            stashed.update({n: m for n, m in sys.modules.items() if n.split(".")[0] in PROJECT_PACKAGES})
            for name in stashed:
                sys.modules.pop(name, None)
        else:
            sys.modules.update(stashed)
            stashed.clear()
        finder.blocked = shown
        sys.modules["__main__"] = reader
        out, error = io.StringIO(), None
        with contextlib.redirect_stdout(out):
            try:
                exec(compile(block["code"], f"<{'block' if shown else 'hidden block'} {number}>", "exec"),
                     reader.__dict__ if shown else site)  # fmt: skip
            except BaseException:  # noqa: BLE001 - the page's build reports it
                error = traceback.format_exc()
        results.append({"stdout": out.getvalue(), "error": error})
        if error:
            break
    # a module imported from its cached bytecode opens only the .pyc: record every module's source as read
    for module in [*sys.modules.values(), *stashed.values()]:
        source = getattr(module, "__file__", None)
        if isinstance(source, str) and source.endswith(".py"):
            opened.add(os.path.abspath(source))
    pyplot = sys.modules.get("matplotlib.pyplot")
    if results and not results[-1]["error"] and pyplot is not None and pyplot.get_fignums():
        results[-1]["error"] = (
            f"the page drew {len(pyplot.get_fignums())} figure(s) that no block showed: include "
            '"site_tools/figures.py:render" after the section that draws them'
        )
    return {
        "outputs": results,
        "opened": sorted(opened),
        "listed": sorted(listed),
        "seconds": time.perf_counter() - started,
        "cpu_seconds": cpu_seconds(),
    }


def main(blocks_path, results_path):
    with open(blocks_path, encoding="utf-8") as handle:
        blocks = json.load(handle)
    result = run(blocks)
    with open(results_path, "w", encoding="utf-8") as handle:
        json.dump(result, handle)


if __name__ == "__main__":
    main(*sys.argv[1:3])
