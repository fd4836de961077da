"""Every chapter as a notebook (site_tools/notebooks.py), checked without running anything: the conversion of a
small page using every construct the chapters use, and each chapter's notebook holding exactly the blocks its page
runs, in order (so the page's run, site_tools/execution.py, is the notebook's run)."""

import re

import nbformat
import pytest
from conftest import CHAPTERS
from notebook_page import fixture_converter, write_fixture

import site_tools.notebooks as notebooks
from site_tools import execution


@pytest.fixture(scope="module")
def generated():
    return notebooks.generate(notebooks.load_site_config())


def test_a_page_becomes_markdown_and_code_cells_in_page_order(tmp_path):
    nb = fixture_converter(tmp_path).notebook("demo.md", write_fixture(tmp_path))
    kinds = [cell.cell_type for cell in nb.cells]
    sources = [cell.source for cell in nb.cells]
    assert kinds == [
        "markdown",
        "code",
        "markdown",
        "code",
        "markdown",
        "code",
        "markdown",
        "code",
        "markdown",
        "code",
        "markdown",
    ], sources
    assert sources[0].startswith("# Demo\n") and "[Demo](https://example.org/guide/demo/)" in sources[0]
    assert sources[1].endswith("%matplotlib inline") and "import" not in sources[1]
    assert sources[2] == (
        "Read [the tensors chapter](https://example.org/guide/tensors/#views) and "
        "[this part](https://example.org/guide/demo/#exercises)."
    )
    assert sources[3] == 'import sys\n\nvalue = 41\nprint("kernel", sys.executable)'
    assert sources[4] == "> **Misconception: lines are curves**\n>\n> They are straight."
    assert sources[5].startswith("import matplotlib.pyplot as plt")  # the render fence after it is gone
    # the hidden recorded-results block becomes a note; a shell command stays Markdown
    assert sources[6] == (
        "*Here [the page](https://example.org/guide/demo/) shows results from its recorded run.*\n\n"
        "> **pip**\n\n```bash\npip install torch\n```"
    )
    assert sources[7] == (
        "# Not run when this notebook is tested: ten minutes on a CPU\n"
        'raise RuntimeError("a long run must not run in the test")'
    )
    assert nb.cells[7].metadata["tags"] == [notebooks.SKIP_TAG]
    assert "pytest" not in sources[6] + sources[8]
    assert sources[8] == "## Exercises\n\n1. What is `value + 1`?\n\n    > **Solution**\n    >\n    > Add one."
    assert sources[9] == 'print("answer", value + 1)'
    assert sources[10] == "> So it is 42."
    assert [cell.id for cell in nb.cells] == [f"cell-{i}" for i in range(11)]


def test_no_notebook_cell_uses_this_repositorys_code(generated):
    """Notebooks are the pages' reader code: they run on Colab or anywhere without a clone of this repository."""
    for name, text in generated.items():
        for cell in nbformat.reads(text, as_version=4).cells:
            if cell.cell_type == "code":
                assert not re.search(r"^\s*(from|import) (snippets|site_tools|benchmarks)\b", cell.source, re.M), (
                    f"{name}: a cell imports the site's code:\n{cell.source[:300]}"
                )


def test_every_chapter_has_a_notebook(generated):
    assert list(generated) == [f"{chapter}.ipynb" for chapter in CHAPTERS]


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_a_chapter_notebook_holds_exactly_the_blocks_its_page_runs(generated, chapter):
    """Its code cells, after the setup cell and without those it does not run, are the blocks the page shows and
    runs, in page order: running the page runs the notebook."""
    nb = nbformat.reads(generated[f"{chapter}.ipynb"], as_version=4)
    cells = [cell for cell in nb.cells[2:] if cell.cell_type == "code"]
    run = [cell.source.strip() for cell in cells if notebooks.SKIP_TAG not in cell.metadata.get("tags", [])]
    assert run == [block.code.strip() for block in execution.page_blocks(chapter) if block.shown]
