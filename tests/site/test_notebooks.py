"""Every chapter's notebook as the site publishes it, and the notebook format run in a real Jupyter kernel (a small
page using every construct the chapters use: each chapter's notebook is its page's blocks, which its page's run
executes, tests/check/test_notebooks_match_pages.py)."""

import os
import time

from conftest import CHAPTERS, page_html
from nbclient import NotebookClient
from notebook_page import fixture_converter, write_fixture

import site_tools.notebooks as notebooks

CELL_TIMEOUT_S = 300  # wall clock for one cell: generous, the machine may be shared


def outputs_text(cell):
    return "".join(out.get("text", "") for out in cell.get("outputs", []))


def test_the_fixture_notebook_runs_in_a_kernel_shows_its_figure_and_skips_the_long_run(tmp_path):
    nb = fixture_converter(tmp_path).notebook("demo.md", write_fixture(tmp_path))
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND" and not k.startswith("PYTHON")}
    folder = {"metadata": {"path": str(tmp_path)}}
    client = NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3", resources=folder)
    started = time.perf_counter()
    client.execute(env=env)
    assert time.perf_counter() - started < CELL_TIMEOUT_S
    assert outputs_text(nb.cells[3]).startswith("kernel ")
    assert any("image/png" in out.get("data", {}) for out in nb.cells[5].outputs)  # %matplotlib inline works
    assert nb.cells[7].outputs == []  # skipped, as on the site
    assert outputs_text(nb.cells[9]) == "answer 42\n"


def test_every_chapter_has_a_notebook_linked_from_its_page(built_site):
    generated = notebooks.generate(notebooks.load_site_config())
    settings = notebooks.load_site_config()["extra"]["notebooks"]
    repository, branch = settings["repository"], settings["branch"]
    for chapter in CHAPTERS:
        name = f"{chapter}.ipynb"
        assert (built_site / "notebooks" / name).read_text(encoding="utf-8") == generated[name]
        html = page_html(built_site, chapter)
        assert f'href="../notebooks/{name}" download' in html, chapter
        colab = f"https://colab.research.google.com/github/{repository}/blob/{branch}/{name}"
        assert f'href="{colab}"' in html, chapter
    assert "Download notebook" not in page_html(built_site, "index")
