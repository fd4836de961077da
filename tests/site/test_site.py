"""The site as built: strict builds by both generators from the pages' runs, no third-party request, and the page
runs themselves (site_tools/execution.py): isolation, deprecations as errors, and stale runs made again."""

import json
import re

import pytest
from conftest import CHAPTERS, ROOT, page_html

from site_tools import execution


def test_site_builds_strictly(built_site):
    assert (built_site / "index.html").exists()
    for page in CHAPTERS:
        assert "Traceback (most recent call last)" not in page_html(built_site, page), page


def test_the_search_index_holds_the_prose_and_not_the_code(built_site):
    """site_tools/search_exclude.py: code and outputs stay out of the index every page view downloads."""
    index = next(p for p in (built_site / "search.json", built_site / "search" / "search_index.json") if p.exists())
    text = index.read_text(encoding="utf-8")
    assert "a GPU" in text  # prose
    assert "<pre" not in text  # code blocks and printed outputs: the index holds them as <pre> elements
    assert len(text.encode()) < 700_000  # bytes: it was 1.1 MB with the code in it


def test_no_third_party_requests_in_built_pages(built_site):
    offenders = []
    for html in built_site.rglob("*.html"):
        text = html.read_text(encoding="utf-8")
        for tag in re.findall(r"<(?:script|link|img|iframe|source|video|audio)\b[^>]*>", text):
            url = re.search(r'(?:src|href)="(https?://[^"]+)"', tag)
            if url and not re.search(r'rel="(canonical|alternate)"', tag):
                offenders.append(f"{html.relative_to(built_site)}: {url[1]}")
    assert not offenders, "\n".join(offenders[:20])


def blocks(*codes, shown=True):
    return [execution.Block(code, shown, "demo") for code in codes]


def test_a_deprecated_call_in_a_page_is_an_error_of_its_block():
    """Deprecations are errors in a page's run: a page whose code calls a deprecated API fails its build."""
    run = execution.run_blocks(blocks("print('before')", "import warnings\nwarnings.warn('old API', FutureWarning)"))
    assert run["outputs"][0] == {"stdout": "before\n", "error": None}
    assert "FutureWarning: old API" in run["outputs"][1]["error"]


def test_a_readers_block_cannot_import_this_repository_and_a_hidden_block_can():
    probe = "try:\n    import snippets.tensors\nexcept ModuleNotFoundError as error:\n    print(error)"
    run = execution.run_blocks(
        [*blocks("import site_tools.records", shown=False), *blocks(probe, "import site_tools"), *blocks(probe)]
    )
    outputs = run["outputs"]
    assert outputs[0]["error"] is None  # hidden: the site's own code
    assert outputs[1]["stdout"] == "No module named 'snippets' (a reader of the site does not have it)\n"
    assert "No module named 'site_tools'" in outputs[2]["error"]  # even after a hidden block imported it


def test_hidden_blocks_do_not_share_the_readers_names():
    run = execution.run_blocks(
        [*blocks("images = 'the reader'"), *blocks("images = 'the site'", shown=False), *blocks("print(images)")]
    )
    assert run["outputs"][2]["stdout"] == "the reader\n"


def test_a_figure_drawn_and_never_shown_is_an_error():
    code = "import matplotlib.pyplot as plt\nplt.plot([1, 2])"
    assert "figure(s) that no block showed" in execution.run_blocks(blocks(code))["outputs"][-1]["error"]


def test_a_run_records_the_files_it_read(tmp_path):
    data = ROOT / "docs" / "records" / "mnist.json"
    code = f"import json\nprint(len(json.load(open({str(data)!r}))) > 0)"
    run = execution.run_blocks(blocks(code))
    assert run["outputs"][0]["stdout"] == "True\n"
    assert run["dependencies"]["docs/records/mnist.json"] == execution.file_digest(str(data))


def test_a_stored_run_is_stale_when_its_code_its_environment_or_a_file_it_read_changed(tmp_path, monkeypatch):
    read = tmp_path / "input.txt"
    read.write_text("one")
    code = blocks(f"print(open({str(read)!r}).read())")
    stored = {"blocks": [b.__dict__ for b in code], "environment": execution.environment(), "dependencies": {}}
    stored["dependencies"][str(read)] = execution.file_digest(str(read))
    assert execution.stale_reason(stored, code) is None
    assert execution.stale_reason(stored, blocks("print(2)")) == "its code changed"
    assert execution.stale_reason({**stored, "environment": {}}, code).startswith("the environment changed")
    read.write_text("two")
    assert execution.stale_reason(stored, code) == f"{read} changed"
    assert execution.stale_reason(None, code) == "no earlier run"


def test_the_environment_key_ignores_what_libraries_set_in_a_test_process_and_not_a_locale(monkeypatch):
    """scikit-learn sets KMP_* when imported, inductor its cache folder: a page run stored from a shell stays current
    in a test process. A variable the output may depend on still changes the key."""
    environment = execution.environment.__wrapped__  # not the value cached for this process
    before = environment()
    for name in execution.SET_BY_LIBRARIES:
        monkeypatch.setenv(name, "set-by-a-library")
    assert environment() == before
    monkeypatch.setenv("TZ", "Pacific/Auckland")
    assert environment()["variables"] != before["variables"]


def test_a_new_file_beside_the_repositorys_packages_leaves_a_run_current():
    """The import system lists every folder of sys.path (the repository's root among them): those listings are not
    dependencies, or the first .cache/ a fresh clone's tests create would make every page run again."""
    run = execution.run_blocks(blocks("import snippets\nimport os\nprint(sorted(os.listdir('.')))", shown=False))
    assert str(execution.ROOT) not in run["dependencies"] and "." not in run["dependencies"]
    assert any(path.endswith("snippets/__init__.py") for path in run["dependencies"])


def test_every_page_run_stays_within_its_cpu_budget():
    """A page's code runs at every build: seconds, not minutes (a full training run belongs in a recorded run)."""
    budget = 120  # CPU seconds of one page's run, one thread
    for page in execution.executed_pages():
        run = execution.page_run(page)
        assert run["cpu_seconds"] < budget, f"{page}: {run['cpu_seconds']:.0f} s of CPU (budget {budget} s)"


@pytest.mark.parametrize("page", execution.executed_pages())
def test_every_block_of_the_page_ran_without_error(page):
    errors = [(n, e) for n, (_, _, e) in enumerate(execution.block_results(execution.page_run(page)), 1) if e]
    assert not errors, f"docs/{page}.md block {errors[0][0]}:\n{errors[0][1]}"
    assert json.dumps(execution.page_run(page))  # stored as JSON


def test_a_run_depends_on_the_source_of_a_module_it_imports_from_bytecode(tmp_path):
    """A module loaded from its __pycache__ opens only the .pyc: its source is recorded all the same."""
    (tmp_path / "helper_for_test.py").write_text("WORD = 'old'\n")
    code = f"import sys\nsys.path.insert(0, {str(tmp_path)!r})\nimport helper_for_test\nprint(helper_for_test.WORD)"
    first = execution.run_blocks(blocks(code, shown=False))
    second = execution.run_blocks(blocks(code, shown=False))  # now from tmp_path/__pycache__
    assert (tmp_path / "__pycache__").is_dir() and second["outputs"][0]["stdout"] == "old\n"
    for run in (first, second):
        assert str(tmp_path / "helper_for_test.py") in run["dependencies"]


def test_a_failure_outside_a_block_aborts_the_build():
    """pymdownx.superfences leaves a fence as text when its formatter raises; the formatter turns every failure that
    is not a block's own error into SuperFencesException, which aborts the build."""
    import markdown
    from pymdownx.superfences import SuperFencesException

    extensions, configs = execution.markdown_settings()
    page = '```python exec="on" session="no_such_page"\nprint(1)\n```\n'
    with pytest.raises(SuperFencesException, match="no page docs/no_such_page.md"):
        markdown.Markdown(extensions=extensions, extension_configs=configs).convert(page)
