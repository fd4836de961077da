"""The site as a whole: strict build, the single-source rule for code, chapter structure."""

import os
import re
import subprocess
import sys

import yaml
from conftest import BUILD_ENV, CHAPTERS, DOCS, ROOT, SNIPPETS, page_html

FENCE = re.compile(
    r"^(?P<indent> *)(?P<ticks>`{3,}|~{3,})(?P<info>[^\n`]*)\n(?P<body>.*?)^(?P=indent)(?P=ticks) *$", re.M | re.S
)
INCLUDE = re.compile(r'^\s*--8<--\s+"(?P<file>[^":]+)(?::(?P<section>[\w-]+))?"\s*$')
SECTION_START = re.compile(r"#\s*--8<--\s*\[start:(?P<name>[\w-]+)\]")
SKIP_MARK = re.compile(r"<!--\s*pytest\.mark\.skip(if)?\(.*reason=.+\)\s*-->\s*$")
MARKDOWN_FILES = sorted(DOCS.rglob("*.md")) + [ROOT / "README.md", ROOT / "CONTRIBUTING.md"]


def fences(path):
    text = path.read_text(encoding="utf-8")
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").splitlines()
        yield match["info"].strip(), match["body"], before[-1] if before else "", text.count("\n", 0, match.start()) + 1


def includes_of(body):
    lines = [line for line in body.splitlines() if line.strip()]
    return [INCLUDE.match(line) for line in lines]


def test_site_builds_strictly(built_site):
    assert (built_site / "index.html").exists()
    for page in CHAPTERS:
        assert "Traceback (most recent call last)" not in page_html(built_site, page), page


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
            else:
                problems.append(f"{where}: fence '{info}' is neither executed from snippets nor checked by codeblocks")
    assert not problems, "\n".join(problems)


# Where pages include sections from: the chapters' code, the benchmarks (shown, not run), and the site's hidden blocks.
SECTION_SOURCES = ["snippets", "benchmarks", "benchmarks/reports", "site_tools"]


def defined_sections():
    found = set()
    for folder in SECTION_SOURCES:
        for module in (ROOT / folder).glob("*.py"):
            for name in SECTION_START.findall(module.read_text(encoding="utf-8")):
                found.add((f"{folder}/{module.name}", name))
    return found


def included_sections():
    found = set()
    for path in MARKDOWN_FILES:
        for _info, body, _before, _line in fences(path):
            for match in filter(None, includes_of(body)):
                found.add((match["file"], match["section"]))
    return found


def test_every_snippet_section_is_shown_on_a_page():
    unused = defined_sections() - included_sections()
    assert not unused, f"sections no page includes (dead code or a forgotten include): {sorted(unused)}"


def test_every_included_section_exists():
    missing = included_sections() - defined_sections() - {(f, None) for f, _ in included_sections()}
    assert not missing, sorted(missing)


def test_each_chapter_has_a_snippet_module_a_test_and_the_chapter_structure():
    for page in CHAPTERS:
        text = (DOCS / f"{page}.md").read_text(encoding="utf-8")
        assert (SNIPPETS / f"{page}.py").exists(), f"snippets/{page}.py is missing"
        assert (ROOT / "tests" / f"test_{page}.py").exists(), f"tests/test_{page}.py is missing"
        assert re.search(r"^## What you will learn", text, re.M), f"{page}: no 'What you will learn' section"
        assert re.search(r"^## Exercises", text, re.M), f"{page}: no 'Exercises' section"
        assert '??? success "Solution' in text or '??? success "Answer' in text, f"{page}: exercises need solutions"


def test_the_chapter_list_in_mkdocs_yml_names_every_chapter_and_only_chapters():
    """extra.notebooks.chapters (which gives pages their notebook links) lists every nav page with its module and a
    'What you will learn' section, in nav order."""
    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=yaml.BaseLoader)

    def walk(entries):
        for entry in entries:
            for value in entry.values():
                yield from walk(value) if isinstance(value, list) else [value]

    teaching = [
        page[: -len(".md")]
        for page in walk(config["nav"])
        if (SNIPPETS / page.replace(".md", ".py")).exists()
        and re.search(r"^## What you will learn", (DOCS / page).read_text(encoding="utf-8"), re.M)
    ]
    assert CHAPTERS == teaching


def test_snippets_holds_only_chapter_modules():
    """snippets/ is reader code, one module per chapter; the machinery and the benchmarks live elsewhere."""
    modules = {path.stem for path in SNIPPETS.glob("*.py")} - {"__init__"}
    pages = {path.stem for path in DOCS.glob("*.md")}
    assert modules <= pages, f"modules in snippets/ without a page: {sorted(modules - pages)}"


def test_importing_a_chapter_module_runs_nothing():
    """The one pattern of every chapter module (CONTRIBUTING.md): definitions at module level, what the page runs
    in examples(); so importing prints nothing, and `python -m snippets.<name>` runs the page."""
    modules = sorted(path.stem for path in SNIPPETS.glob("*.py") if path.stem != "__init__")
    code = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module('snippets.' + name)\n"
    result = subprocess.run(
        [sys.executable, "-c", code, *modules],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "MPLBACKEND": "Agg"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout == "", f"importing the chapter modules printed:\n{result.stdout[:2000]}"
    for name in modules:
        text = (SNIPPETS / f"{name}.py").read_text(encoding="utf-8")
        assert re.search(r"^def examples\(\):", text, re.M), f"snippets/{name}.py has no examples()"
        assert re.search(r'^if __name__ == "__main__":', text, re.M), f"snippets/{name}.py cannot be run"


def test_every_page_is_in_the_navigation():
    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=yaml.BaseLoader)

    def walk(entries):
        for entry in entries:
            for value in entry.values():
                yield from walk(value) if isinstance(value, list) else [value]

    in_nav = set(walk(config["nav"]))
    on_disk = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")}
    assert on_disk == in_nav, f"not in nav: {on_disk - in_nav}; in nav but missing: {in_nav - on_disk}"


def test_no_third_party_requests_in_built_pages(built_site):
    offenders = []
    for html in built_site.rglob("*.html"):
        text = html.read_text(encoding="utf-8")
        for tag in re.findall(r"<(?:script|link|img|iframe|source|video|audio)\b[^>]*>", text):
            url = re.search(r'(?:src|href)="(https?://[^"]+)"', tag)
            if url and not re.search(r'rel="(canonical|alternate)"', tag):
                offenders.append(f"{html.relative_to(built_site)}: {url[1]}")
    assert not offenders, "\n".join(offenders[:20])


def test_a_deprecated_call_in_a_page_fails_the_build(tmp_path):
    """The site is built with BUILD_ENV (deprecations are errors): a page whose code warns must fail to build."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "index.md").write_text(
        '# Old API\n\n```python exec="on"\nimport warnings\n\n'
        'warnings.warn("this API is deprecated", DeprecationWarning)\nprint("ran")\n```\n'
    )
    (tmp_path / "mkdocs.yml").write_text(
        "site_name: t\nstrict: true\nplugins: [markdown-exec]\nmarkdown_extensions: [pymdownx.superfences]\n"
    )

    def build(env):
        command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")]
        return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)

    plain = {key: value for key, value in os.environ.items() if key != "PYTHONWARNINGS"}
    assert build(plain).returncode == 0  # without it, mkdocs would publish a page that warns
    failed = build({**plain, **BUILD_ENV})
    assert failed.returncode != 0 and "this API is deprecated" in failed.stdout + failed.stderr
