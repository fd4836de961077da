"""Every chapter as a notebook (site_tools/notebooks.py), checked without running anything: the conversion of a
small page using every construct the chapters use, and each chapter's notebook holding exactly the blocks its page
runs, in order (so the page's run, site_tools/execution.py, is the notebook's run)."""

import ast
import builtins
import re
import symtable
import sys
from dataclasses import dataclass

import nbformat
import pytest
from conftest import CHAPTERS, importable_from, install_page_packages
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
        "# The site's build skips this cell: ten minutes on a CPU\n"
        'raise RuntimeError("a long run must not run in the test")'
    )
    assert nb.cells[7].metadata["tags"] == [notebooks.SKIP_TAG]
    assert "pytest" not in sources[6] + sources[8] and "notebook:" not in sources[8]
    # a block marked as a listing is shown in a Markdown cell, never run, even by "Run all"
    assert sources[8] == (
        'Part of a script that a launcher starts:\n\n```python\nprint("rank", rank)\n```\n\n'
        "## Exercises\n\n1. What is `value + 1`?\n\n    > **Solution**\n    >\n    > Add one."
    )
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


def test_a_listing_marker_belongs_right_before_a_skip_marker(tmp_path):
    page = write_fixture(tmp_path).replace('<!--pytest.mark.skip(reason="needs torchrun")-->\n', "")
    with pytest.raises(ValueError, match="notebook:listing"):
        fixture_converter(tmp_path).notebook("demo.md", page)
    in_a_solution = (
        '# T\n\n1. Do it.\n\n    ??? success "Solution"\n        Prose.\n\n        <!--notebook:listing-->\n'
        '        <!--pytest.mark.skip(reason="needs torchrun")-->\n        ```python\n        if rank:\n'
        "            print(rank)\n        ```\n"
    )
    nb = fixture_converter(tmp_path).notebook("demo.md", in_a_solution)
    assert [cell.cell_type for cell in nb.cells] == ["markdown", "code", "markdown"]
    assert nb.cells[2].source == (
        "1. Do it.\n\n    > **Solution**\n    >\n    > Prose.\n\n```python\nif rank:\n    print(rank)\n```"
    )


def test_a_fence_keeps_the_indentation_of_its_code():
    """A literal block (not an include) keeps its own indentation wherever the fence stands."""
    code = "if True:\n    print(1)"
    fence = f"```python\n{code}\n```"
    indented = "\n".join("    " + line for line in fence.split("\n"))
    for text in (fence, f'!!! note "N"\n{indented}\n', f"1. An item\n\n{indented}\n\n    after\n"):
        assert f"```python\n{code}\n```" in notebooks.flatten_blocks(text), text


# --- "Run all" runs every cell, the ones the tests skip too: none may read a name that no cell before it defines,
# nor import a module that a fresh environment with the Install page's packages lacks

COMPREHENSIONS = {"listcomp", "setcomp", "dictcomp", "genexpr"}  # run at once, unlike a function's body
NOTEBOOK_NAMES = set(dir(builtins)) | {"get_ipython", "display", "__name__"}


@dataclass
class CellNames:
    binds: set  # module names the cell binds
    now: set  # module names it reads when it runs
    bodies: dict  # {a def or class the cell binds, or None for a lambda: the module names its functions read}
    imports: set  # top-level modules it imports


def names_of(code):
    """What a cell binds, reads and imports (its IPython magics left out)."""
    code = "\n".join("" if re.match(r"\s*[%!]", line) else line for line in code.split("\n"))
    names = CellNames(set(), set(), {}, set())

    def walk(scope, owner, deferred):
        at_module = scope.get_type() == "module"
        for symbol in scope.get_symbols():
            name = symbol.get_name()
            if (at_module or symbol.is_declared_global()) and (symbol.is_assigned() or symbol.is_imported()):
                names.binds.add(name)
            if symbol.is_referenced() and (at_module or symbol.is_global()):
                (names.bodies.setdefault(owner, set()) if deferred else names.now).add(name)
        for child in scope.get_children():
            is_body = child.get_type() == "function" and child.get_name() not in COMPREHENSIONS
            named = at_module and child.get_name() not in COMPREHENSIONS | {"lambda"}
            walk(child, child.get_name() if named else owner, deferred or is_body)

    walk(symtable.symtable(code, "<cell>", "exec"), None, False)
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            names.imports |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.imports.add("." if node.level else node.module.split(".")[0])
    return names


def undefined_names(cells):
    """[(cell number, names)], in "Run all" order: what a code cell reads that no cell up to it defines, the names
    its calls read (a function's body, and those of the functions it calls, read when called: a cell that uses a
    function, calling it or handing it on, needs what its body reads); and what the functions that no cell uses
    read that no cell defines at all."""
    defined, problems = set(NOTEBOOK_NAMES), []
    bodies = {}  # {function or class: the names its bodies read}, as last defined
    unused = []  # [(cell, function or class or None, the names its bodies read)]: not used by a cell yet
    for number, cell in enumerate(cells):
        if cell.cell_type != "code":
            continue
        names = names_of(cell.source)
        defined |= names.binds
        unused += [(number, name, reads) for name, reads in names.bodies.items()]
        bodies |= {name: reads for name, reads in names.bodies.items() if name}
        read, todo = set(names.now), [name for name in names.now if name in bodies]
        while todo:
            new = bodies[todo.pop()] - read
            read |= new
            todo += [name for name in new if name in bodies]
        unused = [(n, name, reads) for n, name, reads in unused if name is None or name not in read]
        if read - defined:
            problems.append((number, sorted(read - defined)))
    problems += [(number, sorted(reads - defined)) for number, _, reads in unused if reads - defined]
    return sorted(problems)


def foreign_imports(cells, allowed):
    """[(cell number, modules)]: code cells importing a module that is neither in the standard library nor in
    ``allowed``: a notebook opened in Colab has no file beside it (the MNIST chapter's ``mnist.py``)."""
    allowed = set(allowed) | set(sys.stdlib_module_names)
    found = [
        (n, sorted(names_of(cell.source).imports - allowed)) for n, cell in enumerate(cells) if cell.cell_type == "code"
    ]
    return [(n, modules) for n, modules in found if modules]


MAIN_GUARD = re.compile(r"""^if\s+__name__\s*==\s*["']__main__["']\s*:""", re.M)


def script_guards(cells):
    """[(cell number, ["__main__"])]: code cells holding a script's main guard. A kernel's ``__name__`` is
    "__main__", so "Run all" would start the script there, with the kernel's own command line."""
    return [
        (n, ["__main__"]) for n, cell in enumerate(cells) if cell.cell_type == "code" and MAIN_GUARD.search(cell.source)
    ]


def code_cells(*sources):
    return [nbformat.v4.new_code_cell(source) for source in sources]


def test_the_name_check_finds_a_cell_that_uses_a_name_no_cell_defines():
    cells = [
        nbformat.v4.new_code_cell("%matplotlib inline\nimport torch\nx = torch.ones(2)"),
        nbformat.v4.new_markdown_cell("print(nothing)"),
        nbformat.v4.new_code_cell("def f():\n    return later + g()\n\nprint([y * x for y in range(2)])"),
        nbformat.v4.new_code_cell("print(args.epochs)  # as mnist.ipynb's script cells once did"),
        nbformat.v4.new_code_cell("def g():\n    global later\n    later = 1\n    return missing"),
    ]
    assert undefined_names(cells) == [(3, ["args"]), (4, ["missing"])]


def test_the_name_check_reads_a_function_s_names_where_a_cell_uses_it():
    """A function's body runs when it is called: what it reads, and what the functions it calls read, must exist
    by then, not only by the last cell."""
    cells = code_cells("def f():\n    return later", "f()", "later = 1")
    assert undefined_names(cells) == [(1, ["later"])]
    cells = code_cells(
        "def f():\n    return g()",
        "class Model:\n    def forward(self):\n        return f() + scale",
        "def g():\n    return later",
        "model = Model()",  # Model's methods may run from here on: they need f, g, later and scale
        "later = scale = 1",
        "h = lambda: unknown",
    )
    assert undefined_names(cells) == [(3, ["later", "scale"]), (5, ["unknown"])]
    assert undefined_names(code_cells("def f():\n    return later", "later = 1", "f()")) == []


def test_the_import_check_finds_a_module_a_fresh_notebook_does_not_have(reader_modules):
    cells = code_cells("import os.path\nimport torch", "from mnist import load_png", "from . import x", "import numpy")
    assert foreign_imports(cells, {"torch"}) == [(1, ["mnist"]), (2, ["."]), (3, ["numpy"])]
    assert {"torch", "torchvision", "sklearn", "PIL", "fastapi", "uvicorn"} <= reader_modules
    assert "mnist" not in reader_modules


def test_the_guard_check_finds_a_script_cell_that_would_start_the_script():
    cells = [
        nbformat.v4.new_code_cell('def main():\n    pass\n\n\nif __name__ == "__main__":\n    main()'),
        nbformat.v4.new_markdown_cell('```python\nif __name__ == "__main__":\n    main()\n```'),  # a listing
        nbformat.v4.new_code_cell('def f():\n    if __name__ == "__main__":\n        pass'),
    ]
    assert script_guards(cells) == [(0, ["__main__"])]


@pytest.fixture(scope="module")
def reader_modules():
    """The top-level modules of what the Install page's pip commands install, with their dependencies."""
    return importable_from(install_page_packages())


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_run_all_finds_every_name_a_cell_uses(generated, reader_modules, chapter):
    """Jupyter's and Colab's "Run all" run the cells tagged skip-execution too: every cell's names come from the
    cells above it, its imports from the Install page's packages, and no cell starts a script (a block that cannot
    run in a notebook is a listing, site_tools/notebooks.py)."""
    nb = nbformat.reads(generated[f"{chapter}.ipynb"], as_version=4)
    problems = undefined_names(nb.cells) + foreign_imports(nb.cells, reader_modules) + script_guards(nb.cells)
    assert not problems, "\n".join(f"cell {n}: {names}\n{nb.cells[n].source[:400]}" for n, names in problems)
