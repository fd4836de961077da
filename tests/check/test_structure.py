"""The guide's structure, checked without building or running anything (`make check`): the nav, the chapter list
and the files of each chapter agree; every Python fence is an executed include or checked by pytest-codeblocks; every
section is shown and every include exists; the chapter modules have one shape; every repository path the README,
CONTRIBUTING.md and the pages name exists."""

import ast
import re
import subprocess
import sys

import pytest
import yaml
from conftest import CHAPTERS, DOCS, ROOT, SNIPPETS

from site_tools import execution

FENCE = re.compile(
    r"^(?P<indent> *)(?P<ticks>`{3,}|~{3,})(?P<info>[^\n`]*)\n(?P<body>.*?)^(?P=indent)(?P=ticks) *$", re.M | re.S
)
INCLUDE = re.compile(r'^\s*--8<--\s+"(?P<file>[^":]+)(?::(?P<section>[\w-]+))?"\s*$')
MARKER = re.compile(r"^\s*# --8<-- \[(?P<kind>start|end):(?P<name>[\w-]+)\]\s*$")
SKIP_MARK = re.compile(r"<!--\s*pytest\.mark\.skip(if)?\(.*reason=.+\)\s*-->\s*$")
SECTION_NAME = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")  # one rule: lowercase words joined by hyphens
MARKDOWN_FILES = sorted(DOCS.rglob("*.md")) + [ROOT / "README.md", ROOT / "CONTRIBUTING.md"]
# Where pages include sections from: the chapters' code, the benchmarks (shown, not run), and the site's hidden blocks.
SECTION_SOURCES = ["snippets", "benchmarks", "benchmarks/reports", "site_tools"]
LONGEST_FUNCTION = 150  # lines, in snippets/
CHAPTER_MODULES = sorted(path.stem for path in SNIPPETS.glob("*.py") if path.stem != "__init__")
# A chapter module that is also a program keeps `if __name__ == "__main__"` for it; its demonstrations run as
# "__page__" (runpy.run_module(..., run_name="__page__")).
DEMO_GUARDS = ("__main__", "__page__")


def fences(path):
    """(info string, body, the line before the fence, line number) of every fence of a Markdown file."""
    text = path.read_text(encoding="utf-8")
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").splitlines()
        yield match["info"].strip(), match["body"], before[-1] if before else "", text.count("\n", 0, match.start()) + 1


def includes_of(body):
    return [INCLUDE.match(line) for line in body.splitlines() if line.strip()]


def nav_pages():
    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=yaml.BaseLoader)

    def walk(entries):
        for entry in entries:
            for value in entry.values():
                yield from walk(value) if isinstance(value, list) else [value]

    return list(walk(config["nav"]))


# --- pages, nav and chapters


def test_every_page_is_in_the_navigation():
    in_nav = set(nav_pages())
    on_disk = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")}
    assert on_disk == in_nav, f"not in nav: {on_disk - in_nav}; in nav but missing: {in_nav - on_disk}"


def test_the_chapter_list_in_mkdocs_yml_names_every_chapter_and_only_chapters():
    """extra.notebooks.chapters (which gives pages their notebook links) lists every nav page with its module and a
    'What you will learn' section, in nav order."""
    teaching = [
        page[: -len(".md")]
        for page in nav_pages()
        if (SNIPPETS / page.replace(".md", ".py")).exists()
        and re.search(r"^## What you will learn", (DOCS / page).read_text(encoding="utf-8"), re.M)
    ]
    assert CHAPTERS == teaching


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_each_chapter_has_its_three_files_and_the_chapter_structure(chapter):
    text = (DOCS / f"{chapter}.md").read_text(encoding="utf-8")
    test = ROOT / "tests" / f"test_{chapter}.py"
    assert (SNIPPETS / f"{chapter}.py").exists(), f"snippets/{chapter}.py is missing"
    assert test.exists(), f"tests/test_{chapter}.py is missing"
    headings = re.findall(r"^## (.+)$", text, re.M)
    assert headings[0] == "What you will learn", f"{chapter}: the first section must be 'What you will learn'"
    assert headings[-1] == "Exercises", f"{chapter}: the last section must be 'Exercises'"
    assert '??? success "Solution' in text or '??? success "Answer' in text, f"{chapter}: exercises need solutions"
    imported = {
        alias.name
        for node in ast.parse(test.read_text(encoding="utf-8")).body
        if isinstance(node, ast.ImportFrom) and node.module == "conftest"
        for alias in node.names
    }
    assert "test_the_page_prints_what_its_build_shows" in imported, (
        f"tests/test_{chapter}.py must import test_the_page_prints_what_its_build_shows from conftest"
    )


def test_the_home_page_links_every_chapter_in_nav_order():
    home = (DOCS / "index.md").read_text(encoding="utf-8")
    linked = [name for name in re.findall(r"\]\((\w+)\.md\)", home) if name in CHAPTERS]
    assert sorted(set(linked)) == sorted(CHAPTERS), f"not on the home page: {sorted(set(CHAPTERS) - set(linked))}"
    first = list(dict.fromkeys(linked))
    assert first == [c for c in CHAPTERS if c in first], "the home page lists the chapters in another order"


def test_snippets_holds_only_chapter_modules():
    """snippets/ is reader code, one module per chapter; the machinery and the benchmarks live elsewhere."""
    pages = {path.stem for path in DOCS.glob("*.md")}
    assert set(CHAPTER_MODULES) <= pages, f"modules in snippets/ without a page: {sorted(set(CHAPTER_MODULES) - pages)}"


# --- fences, sections and includes


def test_every_python_fence_is_an_included_section_or_checked_by_codeblocks():
    problems = []
    for path in MARKDOWN_FILES:
        for info, body, line_before, lineno in fences(path):
            lang = info.split()[0] if info else ""
            if lang not in {"python", "py", "pycon", "python3"}:
                continue
            where = f"{path.relative_to(ROOT)}:{lineno}"
            only_includes = bool(body.strip()) and all(includes_of(body))
            if info == "python":
                if only_includes and not SKIP_MARK.search(line_before):
                    problems.append(f"{where}: an include in a plain python fence needs a skip marker with a reason")
                if not only_includes and "--8<--" in body:
                    problems.append(f"{where}: mixes an include with code")
            elif 'exec="on"' in info:
                if not only_includes:
                    problems.append(f"{where}: an executed fence must contain only --8<-- includes of snippet sections")
                session = re.search(r'session="([^"]*)"', info)
                if not path.is_relative_to(DOCS) or not session or session[1] != path.stem:
                    problems.append(f'{where}: an executed fence needs session="{path.stem}" (its page\'s name)')
            else:
                problems.append(f"{where}: fence '{info}' is neither executed from snippets nor checked by codeblocks")
    assert not problems, "\n".join(problems)


def sections_of(path):
    """[(name, start line, end line)] of a module's sections, in file order; fails on a malformed marker."""
    found, open_sections = [], {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        match = MARKER.match(line)
        if match and match["kind"] == "start":
            assert match["name"] not in open_sections, f"{path}:{number}: section {match['name']} opened twice"
            open_sections[match["name"]] = number
        elif match:
            assert match["name"] in open_sections, f"{path}:{number}: section {match['name']} ends before it starts"
            found.append((match["name"], open_sections.pop(match["name"]), number))
    assert not open_sections, f"{path}: sections never closed: {sorted(open_sections)}"
    return sorted(found, key=lambda section: section[1])


def defined_sections():
    return {
        (f"{folder}/{module.name}", name)
        for folder in SECTION_SOURCES
        for module in (ROOT / folder).glob("*.py")
        for name, _, _ in sections_of(module)
    }


def included_sections():
    return {
        (match["file"], match["section"])
        for path in MARKDOWN_FILES
        for _info, body, _before, _line in fences(path)
        for match in filter(None, includes_of(body))
    }


def test_every_snippet_section_is_shown_on_a_page():
    unused = defined_sections() - included_sections()
    assert not unused, f"sections no page includes (dead code or a forgotten include): {sorted(unused)}"


def test_every_included_section_exists():
    missing = included_sections() - defined_sections() - {(f, None) for f, _ in included_sections()}
    assert not missing, sorted(missing)


def test_section_names_are_lowercase_words_joined_by_hyphens():
    wrong = sorted(f"{file}:{name}" for file, name in defined_sections() if not SECTION_NAME.match(name))
    assert not wrong, f"section names must look like 'exercise-one-hot': {wrong}"


# --- one shape for every chapter module


def guarded_name(test):
    """ "__main__" for the test of `if __name__ == "__main__":`, else None."""
    if isinstance(test, ast.Compare) and isinstance(test.left, ast.Name) and test.left.id == "__name__":
        if len(test.comparators) == 1 and isinstance(test.comparators[0], ast.Constant):
            return test.comparators[0].value
    return None


def module_shape_problems(path):
    """What in a chapter module breaks the one shape of CONTRIBUTING.md: a docstring; definitions in sections at
    module level; the page's demonstrations in one block under a main guard, every statement in a section, in page
    order; no function longer than LONGEST_FUNCTION lines."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    sections = sections_of(path)
    problems = []

    def in_section(node):
        return any(start < node.lineno and node.end_lineno < end for _, start, end in sections)

    body = tree.body
    if not (body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)):
        problems.append("it has no docstring")
        body = [None, *body]
    guards = [n for n in body[1:] if isinstance(n, ast.If) and guarded_name(n.test) in DEMO_GUARDS]
    demos = [n for n in guards if not in_section(n) and any(in_section(child) for child in n.body)]
    program = [n for n in guards if n not in demos]
    if len(demos) != 1:
        guard = " or ".join(f'__name__ == "{name}"' for name in DEMO_GUARDS)
        problems.append(f"it needs one block of demonstrations under {guard}, not {len(demos)}")
    for node in body[1:]:
        is_main = isinstance(node, ast.FunctionDef) and node.name == "main"
        if node in guards or in_section(node) or is_main:
            continue
        problems.append(f"line {node.lineno}: a statement outside every section and the demonstrations")
    for guard in program:
        if [ast.unparse(s) for s in guard.body] != ["main()"] and not in_section(guard):
            problems.append(f"line {guard.lineno}: a program's main guard only calls main()")
    for block in demos:
        problems += [f"line {s.lineno}: a demonstration outside every section" for s in block.body if not in_section(s)]
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = node.end_lineno - node.lineno + 1
            if length > LONGEST_FUNCTION:
                problems.append(f"line {node.lineno}: {node.name}() has {length} lines (at most {LONGEST_FUNCTION})")
    if demos:
        in_demos = [name for name, start, _ in sections if demos[0].lineno < start <= demos[0].end_lineno]
        on_page = [
            match["section"]
            for _info, body_, _before, _line in fences(DOCS / f"{path.stem}.md")
            for match in filter(None, includes_of(body_))
            if match["file"] == f"snippets/{path.name}" and match["section"] in in_demos
        ]
        if list(dict.fromkeys(on_page)) != in_demos:
            problems.append(f"the demonstrations are not in page order: {in_demos} on the page: {on_page}")
    return problems


@pytest.mark.parametrize("chapter", CHAPTER_MODULES)
def test_chapter_modules_have_one_shape(chapter):
    problems = module_shape_problems(SNIPPETS / f"{chapter}.py")
    assert not problems, f"snippets/{chapter}.py: " + "; ".join(problems)


def test_the_shape_check_finds_what_it_should(tmp_path):
    marker = "# --8<-- "  # split, so that no scanner takes this file for a snippet module
    (tmp_path / "bad.py").write_text(
        '"""A module."""\nimport os\n\n'
        f"def examples():\n    {marker}[start:demo]\n    print(os.sep)\n    {marker}[end:demo]\n"
    )
    problems = module_shape_problems(tmp_path / "bad.py")
    assert "it needs one block of demonstrations" in problems[0]
    assert any("line 2: a statement outside every section" in p for p in problems)


def test_importing_a_chapter_module_runs_nothing():
    """Definitions at module level, the demonstrations under a guard: importing every chapter module prints nothing."""
    code = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module('snippets.' + name)\n"
    result = subprocess.run(
        [sys.executable, "-c", code, *CHAPTER_MODULES], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout == "", f"importing the chapter modules printed:\n{result.stdout[:2000]}"


@pytest.mark.parametrize("page", execution.executed_pages())
def test_every_executed_fence_reads_as_the_builders_read_it(page):
    """site_tools/execution.py reads a page's executed fences with the site's Markdown extensions: each is found,
    with the page's session, and the page shows at least one."""
    blocks = execution.page_blocks(page)
    text = (DOCS / f"{page}.md").read_text(encoding="utf-8")
    assert len(blocks) == text.count('exec="on"')
    assert page == "index" or any(block.shown for block in blocks)


# --- paths named in the prose

PATH = re.compile(
    r"(?<![\w/.-])(?P<path>(?:\.github|\.ci|benchmarks|docs|overrides|site_tools|snippets|tests)/[\w./-]*\w"
    r"|Makefile|mkdocs\.yml|requirements\.txt|pyproject\.toml|CONTRIBUTING\.md|README\.md)"
)
GITHUB_FILE = re.compile(r"https://github\.com/pytorch-guide/pytorch-guide/blob/main/(?P<path>[\w./-]+)")
# Generated or local folders a text may name: they exist after a build or a test run, not in a clone.
GENERATED = ("build/", "site/", "docs/notebooks/", "data/", ".venv/")


def named_paths(text):
    """The repository paths a text names: files, and folders (written with their final '/')."""
    found = {match["path"] for match in GITHUB_FILE.finditer(text)}
    for match in PATH.finditer(text):
        path = match["path"].rstrip(".")
        if "<" in text[match.end() : match.end() + 1] or path.endswith("-"):
            continue  # a pattern such as tests/test_<name>.py
        found.add(path + "/" if text[match.end() : match.end() + 1] == "/" else path)
    return {path for path in found if not path.startswith(GENERATED) and "*" not in path}


@pytest.mark.parametrize("path", MARKDOWN_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_repository_path_named_in_the_text_exists(path):
    named = named_paths(path.read_text(encoding="utf-8"))
    missing = sorted(p for p in named if not ((ROOT / p).is_dir() if p.endswith("/") else (ROOT / p).exists()))
    assert not missing, f"{path.relative_to(ROOT)} names paths that do not exist: {missing}"


def test_the_path_check_finds_a_moved_file():
    text = "See `tests/test_browser.py`, [x](https://github.com/pytorch-guide/pytorch-guide/blob/main/snippets/no.py)."
    assert named_paths(text) == {"tests/test_browser.py", "snippets/no.py"}
    assert named_paths("the test file tests/test_<name>.py and build/site/") == set()
    folders = {"tests/nothere/", "site_tools/gone_template/"}
    assert named_paths("see `tests/nothere/` and site_tools/gone_template/") == folders
