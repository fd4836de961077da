"""docs/index.md: the path links every chapter, and the versions shown are read from the build's environment."""

import datetime
import platform
import re

import torch
import torchvision
from conftest import CHAPTERS, DOCS, page_html, test_the_page_prints_what_its_build_shows  # noqa: F401 (a test)

PAGE = (DOCS / "index.md").read_text(encoding="utf-8")


def test_the_path_links_every_chapter_in_order():
    linked = re.findall(r"^- \[[^\]]+\]\((\w+)\.md\)", PAGE, re.M)
    assert linked == CHAPTERS + ["resources"]


def test_versions_section_prints_this_environment(printed):
    assert f"torch        {torch.__version__}\n" in printed
    assert f"torchvision  {torchvision.__version__}\n" in printed
    assert f"Python       {platform.python_version()}\n" in printed
    assert re.search(r"built on     \d{4}-\d{2}-\d{2} \(UTC\)", printed)


def test_versions_are_not_typed_into_the_page():
    assert torch.__version__ not in PAGE
    assert torchvision.__version__.split("+")[0] not in PAGE


def test_the_built_home_page_shows_the_versions_it_was_built_with(built_site):
    html = page_html(built_site, "index")
    assert torch.__version__ in html and torchvision.__version__ in html
    today = datetime.datetime.now(datetime.timezone.utc)
    yesterday = today - datetime.timedelta(days=1)  # a build that ran across midnight
    assert f"{today:%Y-%m-%d}" in html or f"{yesterday:%Y-%m-%d}" in html


def test_every_install_command_is_marked_as_not_run_with_a_reason():
    """What runs where: pytest-codeblocks runs every shell fence without a skip marker, and every command that
    installs something carries one, with its reason."""
    fence = re.compile(r"^(?P<indent> *)```(?P<lang>bash|sh|console)\n(?P<body>.*?)^(?P=indent)```", re.M | re.S)
    marker = re.compile(r"<!--pytest\.mark\.skip\(reason=\"[^\"]{10,}\"\)-->\s*$")
    installs = 0
    for path in sorted(DOCS.glob("*.md")):
        text = path.read_text(encoding="utf-8")
        for match in fence.finditer(text):
            before = text[: match.start()].rstrip().splitlines()[-1].strip()
            if re.search(r"\b(pip|conda) (install|create)\b", match["body"]):
                installs += 1
                assert marker.search(before), f"{path.name}: an install command without a skip marker"
    assert installs >= 3  # the install page's pip, index-url and conda commands
