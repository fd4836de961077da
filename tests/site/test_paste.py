"""A reader can paste a page: its shown code blocks, taken from the built HTML in page order (what the copy button
copies), run in one fresh interpreter without this repository's packages, print what the page shows under each.

That run is the page's run (site_tools/execution.py): both builders render it, and a chapter's notebook holds
exactly those blocks (tests/check/test_notebooks_match_pages.py), so the notebook's run is that run too. This test
reads the built HTML back and checks that it shows exactly the blocks the run ran, in order, with what each printed.
Blocks the page shows but does not run (a ``pytest.mark.skip`` marker with its reason in the page source) are left
out, as the run leaves them out. The chapter tests run the same blocks again with two threads and compare what they
print (conftest.test_the_page_prints_what_its_build_shows): an output that depends on the thread count fails there.
"""

import ast
import re
import sys
import textwrap
from dataclasses import dataclass

import pytest
from bs4 import BeautifulSoup, Comment
from conftest import ROOT, importable_from, install_page_packages, normalise, page_html, site_built_by

from site_tools import execution

PAGES = [path.stem for path in sorted((ROOT / "docs").glob("*.md"))]
CODE_CLASSES = {"language-python", "language-py", "language-python3"}
SKIP = re.compile(r"pytest\.mark\.skip(?:if)?\(.*reason=(?P<q>[\"'])(?P<reason>.+?)(?P=q)")


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


@pytest.mark.parametrize("page", PAGES)
def test_a_reader_can_paste_the_page(mkdocs_site, page):
    runnable = [block for block in shown_blocks(page_html(mkdocs_site, page)) if block.skip_reason is None]
    ran = []
    if page in execution.executed_pages():
        ran = [result for result in execution.block_results(execution.page_run(page)) if result[0]["shown"]]
    assert [block.code.strip() for block in runnable] == [b["code"].strip() for b, _, _ in ran], (
        f"{page}: the page shows other blocks than its run ran"
    )
    problems = []
    for number, (block, (_, stdout, error)) in enumerate(zip(runnable, ran), start=1):
        head = block.code.strip().splitlines()[0][:70]
        if error:
            problems.append(f"block {number} ({head}) raised:\n{error}")
            break  # the later blocks depend on it
        shown = normalise(block.output) if block.output is not None else ""
        if normalise(stdout) != shown:
            problems.append(f"block {number} ({head}) printed\n{normalise(stdout)}\n--- the page shows ---\n{shown}")
    assert not problems, f"{page} ({len(runnable)} blocks):\n" + "\n\n".join(problems)


@pytest.mark.parametrize("page", PAGES)
def test_zensical_shows_the_same_blocks_and_outputs(mkdocs_site, page):
    """The paste test reads the MkDocs build; the Zensical build shows the same code and the same outputs, so what a
    reader pastes from either site behaves the same."""
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
    # what a worker copied varies by a page or two; a size the code computes does not
    assert normalise("the worker copied 23 MB") == normalise("the worker copied 24 MB")
    assert normalise("22 MB as a list of str") != normalise("23 MB as a list of str")


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
                # ``snippets.cnn`` too, for a listing from a clone of the repository that the page links
                problems += [
                    f"{page}: imports {name}"
                    for name in names
                    if name.split(".")[0] not in allowed | linked
                    and not (name.startswith("snippets.") and name.split(".")[1] in linked)
                ]
    assert not problems, "\n".join(sorted(set(problems)))
