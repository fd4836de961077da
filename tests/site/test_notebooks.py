"""Every chapter as a notebook (site_tools/notebooks.py): the conversion, the published links, and every notebook
executed top to bottom on CPU, offline, in a fresh kernel of this interpreter."""

import os
import re
import sys
import textwrap
import time

import nbformat
import pytest
from conftest import CHAPTERS, DOCS, ROOT, once_per_run, page_html, snippet_sections
from nbclient import NotebookClient
from test_site import fences

import site_tools.notebooks as notebooks

CELL_TIMEOUT_S = 300  # wall clock for one cell: generous, the machine may be shared
NOTEBOOK_CPU_BUDGET_S = 120  # CPU time of one notebook's kernel (one thread): a full training run exceeds it
CPU_SECONDS = """import resource
usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
print(sum(u.ru_utime + u.ru_stime for u in usage))"""
INCLUDE = re.compile(r'^\s*--8<--\s+"(?P<file>[^":]+):(?P<section>[\w-]+)"\s*$', re.M)


@pytest.fixture(scope="module")
def config():
    return notebooks.load_site_config()


@pytest.fixture(scope="module")
def generated(config):
    return notebooks.generate(config)


def offline_env(**extra):
    """The test's environment for a kernel, with no way out to the network (downloads fail at once)."""
    env = {k: v for k, v in os.environ.items() if k not in {"MPLBACKEND", "NO_PROXY", "no_proxy"}}
    env = {k: v for k, v in env.items() if not k.startswith("PYTHON")}  # as tests/site/paste_driver.py runs
    dead = "http://127.0.0.1:9"
    return {
        **env,
        "http_proxy": dead,
        "https_proxy": dead,
        "HTTP_PROXY": dead,
        "HTTPS_PROXY": dead,
        "OMP_NUM_THREADS": "1",
        **extra,
    }  # one thread: CPU time stays a measure of work on a shared machine


# A first cell, added here and removed after the run: the kernel cannot import this repository's packages (a reader
# has none of them), as in tests/site/paste_driver.py.
ISOLATE = f"""import sys
sys.path.insert(0, {str(ROOT / "tests" / "site")!r})
import paste_driver
sys.path.pop(0)
paste_driver.isolate({str(ROOT)!r})
del sys, paste_driver"""


def execute(nb, cwd, **env):
    """Run every cell in a fresh python3 kernel (this interpreter) in ``cwd``, which cannot import this repository's
    packages.

    Returns the notebook, the wall-clock seconds and the kernel's CPU seconds (measured by a last cell, added here).
    """
    nb.cells.insert(0, nbformat.v4.new_code_cell(ISOLATE))
    nb.cells.append(nbformat.v4.new_code_cell(CPU_SECONDS))
    client = NotebookClient(
        nb, timeout=CELL_TIMEOUT_S, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    )
    start = time.perf_counter()
    client.execute(env=offline_env(**env))
    seconds, cpu = time.perf_counter() - start, float(outputs_text(nb.cells.pop()))
    nb.cells.pop(0)
    return nb, seconds, cpu


def outputs_text(cell):
    return "".join(out.get("text", "") for out in cell.get("outputs", []))


def write_fixture(tmp_path):
    """A small page using every construct the chapters use, and its snippet module."""
    (tmp_path / "snippets").mkdir()
    marker = "# --8<-- "  # split so no scanner mistakes this test for a snippet module
    (tmp_path / "snippets" / "demo.py").write_text(
        textwrap.dedent(f"""\
        {marker}[start:first]
        import sys

        value = 41
        print("kernel", sys.executable)
        {marker}[end:first]

        {marker}[start:plot]
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots()
        ax.plot([0, 1], [value, value + 1])
        ax.set(title="a line", xlabel="x", ylabel="y")
        {marker}[end:plot]

        {marker}[start:long]
        raise RuntimeError("a long run must not run in the test")
        {marker}[end:long]

        {marker}[start:solution]
        print("answer", value + 1)
        {marker}[end:solution]
        """)
    )
    inc = "--8<--"
    page = textwrap.dedent(f"""\
        # Demo

        Read [the tensors chapter](tensors.md#views) and [this part](#exercises).

        ```python exec="on" source="above" result="text" session="demo"
        {inc} "snippets/demo.py:first"
        ```

        !!! warning "Misconception: lines are curves"
            They are straight.

            ```python exec="on" source="above" session="demo"
            {inc} "snippets/demo.py:plot"
            ```

        ```python exec="on" html="1" session="demo"
        {inc} "site_tools/figures.py:render"
        ```

        ```python exec="on" html="1" session="demo"
        {inc} "snippets/demo_report.py:recorded"
        ```

        === "pip"

            ```bash
            pip install torch
            ```

        <!--pytest.mark.skip(reason="ten minutes on a CPU")-->
        ```python
        {inc} "snippets/demo.py:long"
        ```

        ## Exercises

        1. What is `value + 1`?

            ??? success "Solution"
                Add one.

                ```python exec="on" source="above" result="text" session="demo"
                {inc} "snippets/demo.py:solution"
                ```

                So it is 42.
        """)
    return page


def fixture_converter(tmp_path, **kwargs):
    options = {"base_path": [str(tmp_path)], "check_paths": True, "dedent_subsections": True}
    return notebooks.Converter(snippets=options, site_url="https://example.org/guide/", **kwargs)


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


def test_the_fixture_notebook_runs_on_this_interpreter_shows_its_figure_and_skips_the_long_run(tmp_path):
    nb = fixture_converter(tmp_path).notebook("demo.md", write_fixture(tmp_path))
    nb, _, _ = execute(nb, tmp_path)
    assert f"kernel {sys.executable}\n" == outputs_text(nb.cells[3])  # the venv's python, on a fresh clone too
    assert any("image/png" in out.get("data", {}) for out in nb.cells[5].outputs)  # %matplotlib inline works
    assert nb.cells[7].outputs == []  # skipped, as on the site
    assert outputs_text(nb.cells[9]) == "answer 42\n"


def test_a_notebook_kernel_cannot_import_this_repositorys_packages(tmp_path):
    probe = "try:\n    import snippets\nexcept ModuleNotFoundError as error:\n    print(error)"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(probe)])
    nb, _, _ = execute(nb, tmp_path)
    assert outputs_text(nb.cells[0]) == "No module named 'snippets' (a reader of the site does not have it)\n"


def test_no_notebook_cell_uses_this_repositorys_code(generated):
    """Notebooks are the pages' reader code: they run on Colab or anywhere without a clone of this repository."""
    for name, text in generated.items():
        for cell in nbformat.reads(text, as_version=4).cells:
            if cell.cell_type == "code":
                assert not re.search(r"^\s*(from|import) (snippets|site_tools|benchmarks)\b", cell.source, re.M), (
                    f"{name}: a cell imports the site's code:\n{cell.source[:300]}"
                )


def test_every_chapter_has_a_notebook_linked_from_its_page(built_site, config, generated):
    names = [notebooks.notebook_name(page) for page in notebooks.chapter_pages(config)]
    assert names == list(generated)
    for chapter in CHAPTERS:
        name = f"{chapter}.ipynb"
        assert name in generated, f"chapter {chapter} has no notebook"
        assert (built_site / "notebooks" / name).read_text(encoding="utf-8") == generated[name]
        html = page_html(built_site, chapter)
        assert f'href="../notebooks/{name}" download' in html, chapter
        colab = f"https://colab.research.google.com/github/pytorch-guide/pytorch-guide/blob/main/docs/notebooks/{name}"
        assert f'href="{colab}"' in html, chapter
    assert "Download notebook" not in page_html(built_site, "index")


def test_committed_notebooks_match_their_pages(generated):
    stale = notebooks.stale_notebooks(ROOT / notebooks.NOTEBOOKS_DIR, generated)
    assert not stale, f"docs/notebooks/ is out of date: {stale}; run `make notebooks` and commit the result"


def shown_sections(page):
    """(file, section) of every include the page shows: not those of hidden (executed, source-less) fences."""
    for info, body, _before, _line in fences(DOCS / page):
        if 'exec="on"' in info and "source=" not in info:
            continue
        for match in INCLUDE.finditer(body):
            yield match["file"], match["section"]


def test_every_section_a_page_shows_is_a_cell_of_its_notebook(config, generated):
    for page in notebooks.chapter_pages(config):
        nb = nbformat.reads(generated[notebooks.notebook_name(page)], as_version=4)
        code = [cell.source for cell in nb.cells if cell.cell_type == "code"]
        for file, section in shown_sections(page):
            source = snippet_sections(file)[section].strip()
            assert any(source in cell for cell in code), f"{page}: section {section} is not a cell"


def executed_notebooks(tmp_path_factory):
    """Every chapter's notebook run top to bottom, two at a time (each kernel on its own core), once per test run:
    tests/site/test_paste.py reads the same runs. {chapter: (notebook, wall seconds, CPU seconds) or the error}."""
    from concurrent.futures import ThreadPoolExecutor

    def run_all():
        generated = notebooks.generate(notebooks.load_site_config())
        chapters = [c for c in CHAPTERS if f"{c}.ipynb" in generated]
        # made here, not in the threads: the first mktemp of a worker creates its base folder, and two at once race
        folders = {chapter: tmp_path_factory.mktemp(chapter) for chapter in chapters}

        def run(chapter):
            nb = nbformat.reads(generated[f"{chapter}.ipynb"], as_version=4)
            try:
                nb, seconds, cpu = execute(nb, folders[chapter])
                return chapter, {"notebook": nbformat.writes(nb), "seconds": seconds, "cpu": cpu}
            except Exception as error:  # noqa: BLE001 - reported by that chapter's tests
                return chapter, {"error": f"{type(error).__name__}: {error}"}

        with ThreadPoolExecutor(max_workers=2) as pool:
            return dict(pool.map(run, chapters))

    results = {}
    for chapter, run in once_per_run("executed-notebooks", run_all).items():
        if "error" in run:
            results[chapter] = RuntimeError(f"{chapter}.ipynb did not run to the end: {run['error']}")
        else:
            results[chapter] = (nbformat.reads(run["notebook"], as_version=4), run["seconds"], run["cpu"])
    return results


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    return executed_notebooks(tmp_path_factory)


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_notebook_runs_top_to_bottom(chapter, generated, executed):
    name = f"{chapter}.ipynb"
    if name not in generated:
        pytest.fail(f"chapter {chapter} has no notebook")
    if isinstance(executed[chapter], Exception):
        raise executed[chapter]
    nb, seconds, cpu = executed[chapter]
    print(f"{name}: {seconds:.1f} s wall, {cpu:.1f} s CPU")
    assert cpu < NOTEBOOK_CPU_BUDGET_S, f"{name} used {cpu:.0f} s of CPU (budget {NOTEBOOK_CPU_BUDGET_S} s)"
    shown = [snippet_sections(file)[section] for file, section in shown_sections(f"{chapter}.md")]
    if any("plt." in code for code in shown):  # reader code that draws
        assert any("image/png" in out.get("data", {}) for cell in nb.cells for out in cell.get("outputs", [])), (
            f"{name}: the page draws figures but the notebook shows none"
        )
