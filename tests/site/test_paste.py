"""A reader can paste a page: its shown code blocks, taken from the built HTML in page order (what the copy button
copies), run in one fresh interpreter without this repository's packages, print what the page shows under each.

Blocks the page shows but does not run (a ``pytest.mark.skip`` marker with its reason in the page source) are left
out, as the build leaves them out. Outputs are compared after normalising only what changes from run to run:
timings, dates, memory addresses and temporary paths. The Zensical build runs the pages with two threads, the MkDocs
build and this test with one: test_zensical_shows_the_same_blocks_and_outputs fails on an output that depends on the
thread count.

A chapter's blocks are run once for this test and tests/site/test_notebooks.py: its notebook, whose code cells must
be exactly the blocks the page shows and runs, in order, is run in a fresh kernel, and what each cell printed is
compared here (the kernel, like paste_driver.py, cannot import this repository's packages). The other pages' blocks
are run by paste_driver.py.
"""

import ast
import json
import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass

import pytest
from bs4 import BeautifulSoup, Comment
from conftest import CHAPTERS, ROOT, page_html, site_built_by
from test_notebooks import executed_notebooks

import site_tools.notebooks as notebooks

DRIVER = ROOT / "tests" / "site" / "paste_driver.py"
PAGES = [path.stem for path in sorted((ROOT / "docs").glob("*.md"))]
CODE_CLASSES = {"language-python", "language-py", "language-python3"}
SKIP = re.compile(r"pytest\.mark\.skip(?:if)?\(.*reason=(?P<q>[\"'])(?P<reason>.+?)(?P=q)")
RUN_TO_RUN = [  # (pattern, replacement): what may differ between two runs of the same code on the same machine
    # (with the spaces that align them in a column: their width changes with the number)
    (re.compile(r"[ \t]*\b\d[\d,]*(?:\.\d+)? (?:items|images|samples|batches)/s\b"), " <rate>"),
    (re.compile(r"[ \t]*\b\d[\d,]*(?:\.\d+)?(?:e[-+]?\d+)? ?(?:ms|µs|us|ns|s|seconds?)\b"), " <time>"),
    (re.compile(r"\b\d{4}-\d{2}-\d{2}(?:[T ][\d:.+]+Z?)?"), "<date>"),
    (re.compile(r"\b0x[0-9a-fA-F]+\b"), "<address>"),
    (re.compile(r"/tmp/[\w./-]+|/var/folders/[\w./-]+"), "<temporary path>"),
]


@dataclass
class Block:
    code: str
    output: str | None  # the text shown under it, None when nothing is shown
    skip_reason: str | None


def _previous_comment(element):
    for sibling in element.previous_siblings:
        if isinstance(sibling, Comment):
            return str(sibling)
        if isinstance(sibling, str) and not sibling.strip():
            continue
        return None
    return None


def shown_blocks(html):
    """The Python blocks of a built page, in order, with the output shown under each and any skip reason."""
    article = BeautifulSoup(html, "html.parser").select_one("article")
    blocks = []
    for div in article.select("div.highlight"):
        if not CODE_CLASSES & set(div.get("class", [])) or div.find_parent(class_="guide-record"):
            continue
        skip = SKIP.search(_previous_comment(div) or "")
        after = div.find_next_sibling()
        output = None
        if after is not None and after.name == "div" and "language-text" in after.get("class", []):
            output = after.code.get_text()
        blocks.append(Block(div.code.get_text(), output, skip["reason"] if skip else None))
    return blocks


def normalise(text):
    lines = [line.rstrip() for line in text.strip("\n").split("\n")]
    text = "\n".join(lines).strip()
    for pattern, replacement in RUN_TO_RUN:
        text = pattern.sub(replacement, text)
    return text


def paste(blocks, folder):
    """Run the code of ``blocks`` in one fresh interpreter in ``folder``; return what each printed and raised."""
    (folder / "blocks.json").write_text(json.dumps([block.code for block in blocks]), encoding="utf-8")
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
    env.update(OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    result = subprocess.run(
        [sys.executable, "-I", str(DRIVER), "blocks.json", "results.json", str(ROOT)],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((folder / "results.json").read_text(encoding="utf-8"))


def notebook_results(notebook, runnable):
    """What each block printed, read from a chapter's notebook run top to bottom in a fresh kernel, when the
    notebook's code cells (after its setup cell, without the cells it does not run) are exactly the blocks the page
    shows and runs, in page order; otherwise None. A kernel is a fresh interpreter: running the notebook is pasting
    the page, and runs each chapter's code once for both tests."""
    cells = [cell for cell in notebook.cells[2:] if cell.cell_type == "code"]
    cells = [cell for cell in cells if notebooks.SKIP_TAG not in cell.metadata.get("tags", [])]
    if [cell.source.strip() for cell in cells] != [block.code.strip() for block in runnable]:
        return None
    return [
        {"stdout": "".join(o.get("text", "") for o in cell.outputs if o.get("name") == "stdout"), "error": None}
        for cell in cells
    ]


@pytest.fixture(scope="module")
def pasted(mkdocs_site, tmp_path_factory):
    """Every page's runnable blocks, pasted: {page: (blocks shown, blocks run, results, how)}. A chapter's results
    come from its notebook's run when the notebook holds exactly those blocks; the other pages' blocks are run by
    paste_driver.py, two pages at a time (each interpreter uses one core)."""
    from concurrent.futures import ThreadPoolExecutor

    executed = executed_notebooks(tmp_path_factory)
    shown = {page: shown_blocks(page_html(mkdocs_site, page)) for page in PAGES}
    runnable = {page: [block for block in blocks if block.skip_reason is None] for page, blocks in shown.items()}
    results, to_paste = {}, []
    for page in PAGES:
        run = executed.get(page)
        if isinstance(run, Exception):
            results[page] = run
        elif run is not None and (from_notebook := notebook_results(run[0], runnable[page])) is not None:
            results[page] = (shown[page], runnable[page], from_notebook, "its notebook's run")
        elif runnable[page]:
            to_paste.append(page)
        else:
            results[page] = (shown[page], [], [], "nothing to run")
    # made here, not in the threads: the first mktemp of a worker creates its base folder, and two at once race
    folders = {page: tmp_path_factory.mktemp(page) for page in to_paste}

    def run(page):
        try:
            return page, (shown[page], runnable[page], paste(runnable[page], folders[page]), "paste_driver.py")
        except Exception as error:  # noqa: BLE001 - reported by that page's test
            return page, error

    with ThreadPoolExecutor(max_workers=2) as pool:
        results.update(pool.map(run, to_paste))
    return results


@pytest.mark.parametrize("page", PAGES)
def test_a_reader_can_paste_the_page(pasted, page):
    if isinstance(pasted[page], Exception):
        raise pasted[page]
    blocks, runnable, results, how = pasted[page]
    problems = []
    for number, (block, result) in enumerate(zip(runnable, results), start=1):
        head = block.code.strip().splitlines()[0][:70]
        if result["error"]:
            problems.append(f"block {number} ({head}) raised:\n{result['error']}")
            break  # the later blocks depend on it
        shown = normalise(block.output) if block.output is not None else ""
        printed = normalise(result["stdout"])
        if printed != shown:
            problems.append(f"block {number} ({head}) printed\n{printed}\n--- but the page shows ---\n{shown}")
    assert not problems, f"{page} ({len(runnable)} blocks run by {how}): " + "\n\n".join(problems)


def test_every_chapter_is_pasted_by_running_its_notebook(pasted):
    """Each chapter's code runs once for both tests: its notebook holds exactly the blocks its page shows and runs."""
    for page in CHAPTERS:
        if isinstance(pasted[page], Exception):
            raise pasted[page]
    assert {page: pasted[page][3] for page in CHAPTERS} == dict.fromkeys(CHAPTERS, "its notebook's run")


@pytest.mark.parametrize("page", PAGES)
def test_zensical_shows_the_same_blocks_and_outputs(mkdocs_site, page):
    """The paste test reads the MkDocs build; the Zensical build shows the same code and the same outputs (up to
    run-to-run noise), so what a reader pastes from either site behaves the same. Zensical's build runs the code with
    two threads and MkDocs's with one, so this also fails on an output that depends on the thread count."""
    zensical = site_built_by("zensical")

    def seen(site):
        return [(b.code, normalise(b.output or ""), b.skip_reason) for b in shown_blocks(page_html(site, page))]

    assert seen(zensical) == seen(mkdocs_site)


def test_pages_show_code_blocks(mkdocs_site):
    """The extraction itself: the tensors page shows many blocks, each with its output, none skipped."""
    blocks = shown_blocks(page_html(mkdocs_site, "tensors"))
    assert len(blocks) > 20
    assert all(block.output for block in blocks) and not any(block.skip_reason for block in blocks)
    assert "torch.zeros(2, 3)" in blocks[0].code and "tensor([[0., 0., 0.]," in blocks[0].output


def test_normalise_keeps_everything_but_run_to_run_noise():
    assert (
        normalise("512x512 matmul: 0.183 ms\nbuilt on 2026-12-01 (UTC)  \n")
        == "512x512 matmul: <time>\nbuilt on <date> (UTC)"
    )
    assert normalise("largest difference: 4.66e-09") == "largest difference: 4.66e-09"
    assert normalise("a  12.5 ms,    4,889 items/s") == normalise("a 112.5 ms, 4,000,889 items/s")


def install_page_packages():
    """The distributions the Install page tells a reader to pip install."""
    text = (ROOT / "docs" / "install.md").read_text(encoding="utf-8")
    names = []
    for command in re.findall(r"^\s*pip install ([^\n#\\]+)", text, re.M):
        names += [word for word in command.split() if not word.startswith("-")]
    return names


def importable_from(distributions):
    """Top-level module names that the distributions and everything they depend on provide."""
    from importlib import metadata

    seen, todo = set(), [name.lower().replace("_", "-") for name in distributions]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requirements = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for requirement in requirements:
            if "extra ==" not in requirement:
                todo.append(re.match(r"[A-Za-z0-9_.-]+", requirement)[0].lower().replace("_", "-"))
    provided = metadata.packages_distributions()  # {module: [distribution, ...]}
    return {module for module, owners in provided.items() if {o.lower().replace("_", "-") for o in owners} & seen}


def test_shown_blocks_import_only_what_the_install_page_installs(mkdocs_site):
    """A reader has Python's standard library and what the Install page installs (with its dependencies)."""
    packages = install_page_packages()
    assert {"torch", "torchvision", "scikit-learn", "matplotlib", "tqdm"} <= set(packages), packages
    allowed = importable_from(packages) | set(sys.stdlib_module_names)
    problems = []
    for page in PAGES:
        # a chapter module the page links for download (``snippets/mnist.py``) is importable as ``mnist``
        source = (ROOT / "docs" / f"{page}.md").read_text(encoding="utf-8")
        linked = set(re.findall(r"/blob/main/snippets/(\w+)\.py\)", source))
        for block in shown_blocks(page_html(mkdocs_site, page)):
            try:
                tree = ast.parse(textwrap.dedent(block.code))
            except SyntaxError:
                continue  # not Python (a shell line in a python fence is caught elsewhere)
            for node in ast.walk(tree):
                names = (
                    [alias.name for alias in node.names]
                    if isinstance(node, ast.Import)
                    else ([node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else [])
                )
                problems += [f"{page}: imports {name}" for name in names if name.split(".")[0] not in allowed | linked]
    assert not problems, "\n".join(sorted(set(problems)))
