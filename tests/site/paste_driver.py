"""Run a page's shown code blocks as a reader would paste them: one fresh interpreter, the blocks in page order.

Started by tests/test_paste.py as ``python -I paste_driver.py BLOCKS.json RESULTS.json`` in an empty folder. The
project's own packages cannot be imported (a reader of the site does not have them), and the repository is not on
``sys.path``. Writes, for each block, what it printed and the exception it raised, if any.
"""

import contextlib
import io
import json
import sys
import traceback

BLOCKED = {"snippets", "site_tools", "benchmarks", "conftest"}  # this repository's packages


class NoProjectImports:
    """A meta-path finder that refuses the repository's packages, even though they are installed editable."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (a reader of the site does not have it)")
        return None


def isolate(repository=None):
    """Make this interpreter a reader's: the repository's folders off ``sys.path`` (the venv's kept) and its packages
    unimportable. tests/site/test_notebooks.py runs this first in each notebook's kernel."""
    if repository:
        inside = [p for p in sys.path if p == repository or p.startswith(repository + "/")]
        sys.path[:] = [p for p in sys.path if p not in inside or p.startswith(sys.prefix)]  # keep the venv
    sys.meta_path.insert(0, NoProjectImports())


def main(blocks_path, results_path):
    isolate(sys.argv[3] if len(sys.argv) > 3 else None)
    blocks = json.loads(open(blocks_path, encoding="utf-8").read())
    namespace = {"__name__": "__main__"}
    results = []
    for number, code in enumerate(blocks):
        out = io.StringIO()
        error = None
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            try:
                exec(compile(code, f"<block {number + 1}>", "exec"), namespace)
            except BaseException:  # noqa: BLE001 - reported to the test, which fails on it
                error = traceback.format_exc(limit=4)
        results.append({"stdout": out.getvalue(), "error": error})
        with open(results_path, "w", encoding="utf-8") as handle:  # partial results survive a crash
            json.dump(results, handle)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
