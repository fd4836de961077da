"""Every page as a reader loads it, in headless Chromium, in both builds: no console error, failed or third-party
request; no serious accessibility finding (axe-core, light and dark schemes); figures with text alternatives; nothing
wider than a phone's screen, no code or output block wider than its column at 1280 px; and each page's weight within
its budget. Reports go to build/browser-report/<builder>/ (git-ignored).
Chromium and chromedriver are Debian packages (`make test` installs them when it can); without them these tests skip,
except in CI (CI=true), where they fail.
"""

import re

import pytest
from browser_support import write_report
from browser_visit import (
    DESKTOP,
    FIGURE_BUDGET,
    HTML_BUDGET,
    IDS,
    PAGE_BUDGET,
    PAGES,
    PHONE,
    SCREENSHOTS,
    describe,
)
from conftest import BROWSER_REPORT, page_html


@pytest.mark.parametrize("doc", [doc for _t, doc, _u in PAGES], ids=IDS)
def test_page_loads_without_errors_or_third_party_requests(visit, doc):
    page = visit(doc)
    assert not page.console, f"console errors on {doc}:\n" + "\n".join(page.console)
    assert not page.foreign, f"requests to hosts other than 127.0.0.1 from {doc}:\n" + "\n".join(page.foreign)
    assert not page.failed, f"failed requests on {doc}:\n" + "\n".join(page.failed)


@pytest.mark.parametrize("doc", [doc for _t, doc, _u in PAGES], ids=IDS)
def test_page_has_no_serious_accessibility_violation(visit, doc):
    page = visit(doc)
    serious = [v for v in page.violations if v["impact"] in ("serious", "critical")]
    assert not serious, f"axe-core, light scheme, {doc}:\n{describe(serious)}"
    assert not page.dark_violations, f"axe-core, dark scheme, {doc}:\n{describe(page.dark_violations)}"


@pytest.mark.parametrize("doc", [doc for _t, doc, _u in PAGES], ids=IDS)
def test_figures_and_images_have_text_alternatives(visit, doc):
    problems = visit(doc).figures["problems"]
    assert not problems, f"{doc}:\n" + "\n".join(problems)


@pytest.mark.parametrize("doc", [doc for _t, doc, _u in PAGES], ids=IDS)
def test_page_fits_a_phone_screen(visit, doc):
    """At 390 px nothing makes the whole page scroll sideways (code and tables scroll inside their own box)."""
    overflow = visit(doc).overflow
    assert overflow["overflow"] <= 1, (
        f"{doc} is {overflow['overflow']} px wider than a {PHONE} px screen; "
        f"elements past the edge: {overflow['culprits']}"
    )


@pytest.mark.parametrize("doc", [doc for _t, doc, _u in PAGES], ids=IDS)
def test_no_code_or_output_block_scrolls_sideways_on_a_desktop(visit, doc):
    """At 1280 px every code block and every printed output fits its column (snippets/ruff.toml keeps the code
    within it; what a section prints must fit too)."""
    wide = visit(doc).wide_code
    assert not wide, f"{doc}: blocks wider than the column at {DESKTOP} px:\n" + "\n".join(wide)


def test_code_width_report(visit, builder):
    """How many blocks scroll sideways on a phone (390 px), where code columns are ~43 characters: reported, not
    failed (code cannot be written for that width without harming it on every other screen)."""
    lines, total, desktop = [], 0, 0
    for _title, doc, _url in PAGES:
        page = visit(doc)
        total += len(page.wide_code_phone)
        desktop += len(page.wide_code)
        lines.append(f"## {doc}: {len(page.wide_code)} at {DESKTOP} px, {len(page.wide_code_phone)} at {PHONE} px")
        lines += page.wide_code_phone
    path = write_report(f"{builder}/code-width.txt", "\n".join(lines) + "\n")
    BROWSER_REPORT.append(
        f"{builder} code width: {desktop} blocks scroll sideways at {DESKTOP} px, {total} inside their box at "
        f"{PHONE} px (list in {path.relative_to(path.parents[3])})"
    )
    assert path.exists()


def kb(size):
    return f"{size / 1000:.0f}"


def test_page_weight_within_budget(visit, built_site, builder):
    kinds = {
        ".html": "html",
        ".css": "css",
        ".js": "js",
        ".json": "search",
        ".png": "images",
        ".jpg": "images",
        ".jpeg": "images",
        ".svg": "images",
        ".webp": "images",
        ".gif": "images",
    }
    columns = ["html", "css", "js", "search", "images", "other"]
    rows, problems = [], []
    for _title, doc, _url in PAGES:
        page = visit(doc)
        sizes = dict.fromkeys(columns, 0)
        for path, _status, size in page.served:
            suffix = "." + path.rsplit(".", 1)[-1].lower() if "." in path.rsplit("/", 1)[-1] else ".html"
            sizes[kinds.get(suffix, "other")] += size
            if kinds.get(suffix) == "images" and size > FIGURE_BUDGET:
                problems.append(f"{doc}: image {path} is {kb(size)} KB (budget {kb(FIGURE_BUDGET)} KB)")
        html = page_html(built_site, doc[: -len(".md")])
        figures = re.findall(r'<figure class="guide-figure">.*?</figure>', html, re.S)
        for number, figure in enumerate(figures, 1):
            if len(figure.encode()) > FIGURE_BUDGET:
                problems.append(
                    f"{doc}: figure {number} is {kb(len(figure.encode()))} KB of SVG "
                    f"(budget {kb(FIGURE_BUDGET)} KB): simplify it or draw fewer points"
                )
        total = sum(sizes.values())
        if total > PAGE_BUDGET:
            problems.append(f"{doc}: {kb(total)} KB transferred (budget {kb(PAGE_BUDGET)} KB)")
        if sizes["html"] > HTML_BUDGET:
            problems.append(f"{doc}: {kb(sizes['html'])} KB of HTML (budget {kb(HTML_BUDGET)} KB)")
        svg = sum(len(f.encode()) for f in figures)
        rows.append(
            [doc] + [kb(sizes[c]) for c in columns] + [kb(total), str(len(figures)), kb(svg), f"{page.seconds:.1f}"]
        )
    header = ["page"] + [f"{c} KB" for c in columns] + ["total KB", "figures", "inline SVG KB", "check s"]
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    table = "\n".join(
        "  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(r, widths)))
        for r in [header] + rows
    )
    path = write_report(
        f"{builder}/page-weight.txt",
        f"Bytes transferred by one uncached page view (HTTP bodies, no compression)\n\n{table}\n",
    )
    totals = [int(r[len(columns) + 1]) for r in rows]
    BROWSER_REPORT.append(
        f"{builder} page weight: {min(totals)}-{max(totals)} KB per page view "
        f"(budget {kb(PAGE_BUDGET)} KB); table in {path.relative_to(path.parents[3])}"
    )
    BROWSER_REPORT.append(table)
    assert not problems, "\n".join(problems)


def test_accessibility_report(visit, builder):
    """Writes every axe-core finding, of any impact, for review (only serious and critical ones fail a page)."""
    lines = []
    for _title, doc, _url in PAGES:
        page = visit(doc)
        lines.append(
            f"## {doc}\nlight scheme:\n{describe(page.violations) or '- none'}\n"
            f"dark scheme (color-contrast):\n{describe(page.dark_violations) or '- none'}\n"
        )
    path = write_report(f"{builder}/axe.txt", "\n".join(lines))
    counts = {}
    for _t, doc, _u in PAGES:
        for violation in visit(doc).violations:
            counts[violation["impact"]] = counts.get(violation["impact"], 0) + 1
    BROWSER_REPORT.append(
        f"{builder} axe-core: {counts or 'no violation'} over {len(PAGES)} pages; "
        f"details in {path.relative_to(path.parents[3])}; "
        + (
            f"screenshots in build/browser-report/screens/{builder}/"
            if SCREENSHOTS
            else "no screenshots (make screenshots)"
        )
    )
    assert path.exists()
