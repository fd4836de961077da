"""The site as readers use it: every page of the nav in headless Chromium, served from 127.0.0.1.

Checks: console errors and third-party requests, nav and prev/next links, search, the copy button, the light/dark
toggle, content tabs, internal links and anchors, axe-core accessibility, text alternatives of figures, page weight,
and the layout at a phone's width. Reports and screenshots go to build/browser-report/ (git-ignored).
Chromium and chromedriver are Debian packages (`make test` installs them when it can); without them these tests skip,
except in CI (CI=true), where they fail.
"""

import os
import re
import shutil
import time
from dataclasses import dataclass, field
from html import unescape
from urllib.parse import urlsplit

import pytest
from browser_support import (
    LOCAL_HOSTS,
    REPORT_DIR,
    StaticServer,
    axe_source,
    crawl,
    full_page_png,
    nav_pages,
    network_events,
    start_chromium,
    stop_chromium,
    wait_until_settled,
    write_report,
)
from conftest import BROWSER_REPORT, CHAPTERS, page_html

PAGES = nav_pages()  # [(title, 'tensors.md', 'tensors/')] in nav order
IDS = [doc[: -len(".md")] for _title, doc, _url in PAGES]
DESKTOP, PHONE = 1280, 390

# Budgets: a page downloads Material's CSS/JS (~290 KB), the search index and its own HTML with inline SVG figures.
# Full-page screenshots of every page (about 2 s a page): for looking at the site, not for a test to assert on, so
# only when asked for (`make screenshots`).
SCREENSHOTS = os.environ.get("GUIDE_SCREENSHOTS") == "1"
PAGE_BUDGET = 2_000_000  # bytes transferred by one page view, everything included
HTML_BUDGET = 1_000_000  # the page's own HTML, inline figures included
FIGURE_BUDGET = 250_000  # one inline SVG figure or one image file

# axe-core rules switched off, each with the reason a reader would accept. Empty: every rule applies.
AXE_DISABLED_RULES = {}


@pytest.fixture(scope="session", params=["mkdocs"])
def builder(request):
    """This file checks the MkDocs build; tests/site/test_browser_zensical.py runs the same tests on Zensical's, in the
    other xdist worker at the same time."""
    return request.param


@pytest.fixture(scope="session")
def server(built_site, builder):
    shutil.rmtree(REPORT_DIR / "screens" / builder, ignore_errors=True)  # no stale screenshots of removed pages
    server = StaticServer(built_site)
    server.builder = builder
    server.thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def browser(server):
    driver = start_chromium()
    origin = server.base.rstrip("/")
    driver.execute_cdp_cmd(
        "Browser.grantPermissions", {"origin": origin, "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]}
    )
    yield driver
    stop_chromium(driver)


@pytest.fixture
def cached(browser, server):
    """For tests that only navigate: the server lets the browser cache assets. Afterwards the cache is emptied, so a
    later page view is measured whole."""
    server.measuring = False
    yield
    server.measuring = True
    browser.execute_cdp_cmd("Network.clearBrowserCache", {})


@pytest.fixture(scope="session")
def axe():
    return axe_source()


def open_page(driver, server, url, settle=True):
    """Load a page of the site with fresh storage (light scheme, no remembered tab), then wait for it."""
    if driver.current_url.startswith(server.base):
        driver.execute_script("localStorage.clear(); sessionStorage.clear();")
    driver.get(server.base + url)
    if settle:
        wait_until_settled(driver, server)
    else:
        wait_for_load(driver)


def wait_for_load(driver, url=None, limit=15.0):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if (url is None or driver.current_url.split("#")[0] == url) and driver.execute_script(
            "return document.readyState"
        ) == "complete":
            return
        time.sleep(0.05)
    raise TimeoutError(f"page did not load: expected {url}, at {driver.current_url}")


def console_errors(driver):
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def request_problems(events):
    """Third-party requests and failed requests seen in the network log."""
    foreign, failed = [], []
    for method, params in events:
        if method == "Network.requestWillBeSent":
            url = params["request"]["url"]
            parts = urlsplit(url)
            if parts.scheme in ("http", "https", "ws", "wss", "ftp") and parts.hostname not in LOCAL_HOSTS:
                foreign.append(url)
        elif method == "Network.responseReceived" and params["response"]["status"] >= 400:
            failed.append(f"{params['response']['status']} {params['response']['url']}")
        elif method == "Network.loadingFailed" and not params.get("canceled"):
            failed.append(f"{params['errorText']} (request {params['requestId']})")
    return foreign, failed


FIGURES_JS = """
const problems = [];
const describe = el => el.outerHTML.slice(0, 120);
const named = el => (el.getAttribute('aria-label') || '').trim() || el.getAttribute('aria-labelledby')
                    || (el.querySelector(':scope > title') || {}).textContent;
const figures = document.querySelectorAll('figure.guide-figure');
figures.forEach(figure => {
  const svg = figure.querySelector('svg'), img = figure.querySelector('img');
  if (!svg && !img) problems.push('figure.guide-figure holds neither an svg nor an img: ' + describe(figure));
  if (svg && svg.getAttribute('role') !== 'img') problems.push('figure svg without role="img": ' + describe(svg));
});
document.querySelectorAll('svg[role=img]').forEach(svg => {
  if (!named(svg)) problems.push('svg[role=img] without aria-label: ' + describe(svg));
});
document.querySelectorAll('img').forEach(img => {
  if (img.closest('[aria-hidden=true]')) return;
  if (!(img.getAttribute('alt') || '').trim()) problems.push('img without alt text: ' + describe(img));
});
return {problems: problems, figures: figures.length, images: document.querySelectorAll('article img').length};
"""

FIGURE_TEXT_JS = """
// Text in figures that takes its colour from the page (no fill of its own, nor from a group of the figure) must read
// on the page's background in this scheme (3:1, as for large text and graphics). Text the figure colours itself, such
// as a heatmap's cell labels, is drawn for what lies under it and left alone.
const ownFill = el => {
  for (let node = el; node && node.tagName.toLowerCase() !== 'svg'; node = node.parentElement) {
    const fill = (node.getAttribute('style') || '').match(/fill:\\s*([^;]+)/) || [null, node.getAttribute('fill')];
    if (fill[1] && fill[1].trim() !== 'currentColor') return true;
  }
  return false;
};
const rgb = c => (c.match(/[\\d.]+/g) || []).slice(0, 3).map(Number);
const lum = c => {
  const [r, g, b] = rgb(c).map(v => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
};
const background = getComputedStyle(document.body).backgroundColor;
const problems = [];
document.querySelectorAll('figure.guide-figure svg text').forEach(text => {
  if (ownFill(text)) return;
  const fill = getComputedStyle(text).fill;
  if (!fill.startsWith('rgb')) return;
  const [a, b] = [lum(fill), lum(background)].sort((x, y) => y - x);
  const ratio = (a + 0.05) / (b + 0.05);
  const words = text.textContent.trim().slice(0, 40);
  if (ratio < 3) problems.push(`${arguments[0]} scheme: figure text "${words}" is ${fill} `
                               + `on ${background} (${ratio.toFixed(2)}:1, needs 3:1)`);
});
return problems.slice(0, 8);
"""

OVERFLOW_JS = """
const width = document.documentElement.clientWidth;
const overflow = document.documentElement.scrollWidth - width;
const culprits = [];
if (overflow > 1) {
  for (const el of document.querySelectorAll('body *')) {
    const box = el.getBoundingClientRect();
    if (box.width === 0 || box.right <= width + 1) continue;
    let parent = el.parentElement, contained = false;
    while (parent && parent !== document.body) {
      const style = getComputedStyle(parent);
      if (style.overflowX !== 'visible' && parent.getBoundingClientRect().right <= width + 1) {
        contained = true;
        break;
      }
      parent = parent.parentElement;
    }
    if (!contained) culprits.push(el.tagName.toLowerCase() + (el.className && el.className.baseVal === undefined
        ? '.' + String(el.className).trim().split(/\\s+/).join('.') : '') + ' right=' + Math.round(box.right));
    if (culprits.length >= 6) break;
  }
}
return {overflow: overflow, culprits: culprits};
"""

CODE_OVERFLOW_JS = """
// Code and output blocks whose text is wider than their box: the reader would have to scroll sideways.
return [...document.querySelectorAll('article pre > code')].filter(c => c.scrollWidth > c.clientWidth + 1).map(c => {
  const block = c.closest('div.highlight') || c.parentElement;
  const lines = c.textContent.split('\\n');
  const longest = lines.reduce((a, b) => (b.length > a.length ? b : a), '');
  return (block.className.match(/language-\\w+/) || ['code'])[0] + ': ' + longest.length + ' characters: '
      + longest.slice(0, 90);
});
"""

AXE_RUN_JS = """
const done = arguments[arguments.length - 1];
const options = arguments[0];
if (!document.getElementById('guide-no-motion')) {  // colours at rest, not half-way through a transition
  const style = document.createElement('style');
  style.id = 'guide-no-motion';
  style.textContent = '*, *::before, *::after { transition: none !important; animation: none !important; }';
  document.head.appendChild(style);
}
axe.run(document, options).then(result => done(result.violations.map(v => ({
  id: v.id, impact: v.impact, help: v.help,
  nodes: v.nodes.slice(0, 6).map(
    n => n.target.join(' ') + ' | ' + (n.failureSummary || '').replace(/\\s+/g, ' ').slice(0, 220)),
  count: v.nodes.length,
}))), error => done([{id: 'axe-error', impact: 'critical', help: String(error), nodes: [], count: 1}]));
"""


NEXT_FRAME_JS = "const done = arguments[0]; requestAnimationFrame(() => requestAnimationFrame(done));"


@dataclass
class Visit:
    url: str
    console: list = field(default_factory=list)
    foreign: list = field(default_factory=list)
    failed: list = field(default_factory=list)
    served: list = field(default_factory=list)  # (path, status, bytes) of the desktop view
    violations: list = field(default_factory=list)  # axe, light scheme, every impact
    dark_violations: list = field(default_factory=list)  # axe color-contrast, dark scheme
    figures: dict = field(default_factory=dict)
    overflow: dict = field(default_factory=dict)  # at the phone's width
    wide_code: list = field(default_factory=list)  # code and output blocks that scroll sideways at 1280 px
    wide_code_phone: list = field(default_factory=list)  # ... and at 390 px
    copy_problems: list = field(default_factory=list)
    copy_checked: int = 0
    links: dict = field(default_factory=dict)  # visible nav links, footer links, whether there is an h1 (NAV_JS)
    notebook: dict | None = None  # a chapter's notebook links and the downloaded notebook (NOTEBOOK_JS)
    seconds: float = 0.0


@pytest.fixture(scope="session")
def visit(browser, server, axe):
    """visit(doc) loads a page once (at a desktop's width, then laid out at a phone's) and records everything the
    tests assert on."""
    done = {}
    axe_options = {"resultTypes": ["violations"], "rules": {rule: {"enabled": False} for rule in AXE_DISABLED_RULES}}

    def run_axe(options):
        if not browser.execute_script("return typeof axe !== 'undefined'"):
            browser.execute_script(axe)
        return browser.execute_async_script(AXE_RUN_JS, options)

    def visit_page(doc):
        if doc in done:
            return done[doc]
        start = time.monotonic()
        url = dict((d, u) for _t, d, u in PAGES)[doc]
        name = doc[: -len(".md")].replace("/", "_")
        record = Visit(url)
        browser.get_log("browser"), network_events(browser), server.take()  # drop what came before
        open_page(browser, server, url)
        record.console += console_errors(browser)
        record.foreign, record.failed = request_problems(network_events(browser))
        record.served = server.take()
        record.figures = browser.execute_script(FIGURES_JS)
        record.figures["problems"] += browser.execute_script(FIGURE_TEXT_JS, "light")
        record.violations = run_axe(axe_options)
        browser.execute_script("document.body.setAttribute('data-md-color-scheme', 'slate')")
        record.dark_violations = run_axe({"runOnly": ["color-contrast"], "resultTypes": ["violations"]})
        record.figures["problems"] += browser.execute_script(FIGURE_TEXT_JS, "dark")
        browser.execute_script("document.body.setAttribute('data-md-color-scheme', 'default')")
        if SCREENSHOTS:
            full_page_png(browser, REPORT_DIR / "screens" / server.builder / f"{name}-{DESKTOP}.png", DESKTOP)
        record.wide_code = browser.execute_script(CODE_OVERFLOW_JS)
        record.copy_problems, record.copy_checked = check_copy_buttons(browser, doc)
        record.links = browser.execute_script(NAV_JS)
        if doc[: -len(".md")] in CHAPTERS:
            record.notebook = browser.execute_async_script(NOTEBOOK_JS)

        browser.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": PHONE, "height": 844, "deviceScaleFactor": 1, "mobile": True},
        )
        try:
            # the page laid out again at the phone's width (the same measurements as reloading it there, on every
            # page, and a second faster)
            browser.execute_async_script(NEXT_FRAME_JS)
            record.overflow = browser.execute_script(OVERFLOW_JS)
            record.wide_code_phone = browser.execute_script(CODE_OVERFLOW_JS)
            if SCREENSHOTS and server.builder == "mkdocs":  # the phone layout is Material's in both: one set
                full_page_png(browser, REPORT_DIR / "screens" / server.builder / f"{name}-{PHONE}.png", PHONE)
        finally:
            browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        record.seconds = time.monotonic() - start
        done[doc] = record
        return record

    return visit_page


# ----------------------------------------------------------------------------------------------- every page


@pytest.mark.parametrize("doc", [doc for _t, doc, _u in PAGES], ids=IDS)
def test_page_loads_without_errors_or_third_party_requests(visit, doc):
    page = visit(doc)
    assert not page.console, f"console errors on {doc}:\n" + "\n".join(page.console)
    assert not page.foreign, f"requests to hosts other than 127.0.0.1 from {doc}:\n" + "\n".join(page.foreign)
    assert not page.failed, f"failed requests on {doc}:\n" + "\n".join(page.failed)


def describe(violations):
    return "\n".join(
        f"- [{v['impact']}] {v['id']}: {v['help']} ({v['count']} nodes)\n    " + "\n    ".join(v["nodes"])
        for v in violations
    )


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


# ----------------------------------------------------------------------------------------------- navigation


def click(driver, element):
    from selenium.webdriver.common.action_chains import ActionChains

    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    ActionChains(driver).move_to_element(element).click().perform()


NAV_JS = """
const visible = a => a.checkVisibility({checkOpacity: true, checkVisibilityCSS: true});  // as a reader sees it
const href = selector => (document.querySelector(selector) || {}).href || null;
return {
  nav: [...document.querySelectorAll('nav.md-nav--primary a.md-nav__link[href]')].filter(visible)
         .map(a => [a.href.split('#')[0], a.innerText.trim().replace(/\\s+/g, ' ')]),
  previous: href('a.md-footer__link--prev'), next: href('a.md-footer__link--next'),
  title: document.querySelector('article h1') !== null,
};
"""


def test_every_nav_entry_opens_its_page(visit, browser, server, cached):
    """On each page the nav shows a link to the next one, under its mkdocs.yml title (every page was loaded and
    checked by the tests above, and has a title); one of them is clicked, from the last page back to the first."""
    from selenium.webdriver.common.by import By

    for (_t, before, _u), (title, doc, url) in zip(PAGES[-1:] + PAGES, PAGES):
        links = [label for href, label in visit(before).links["nav"] if href == server.base + url]
        assert links, f"no visible nav link to {doc} on {before}"
        assert links[0] == " ".join(title.split()), f"nav link to {doc} reads {links[0]!r}, mkdocs.yml says {title!r}"
        assert visit(doc).links["title"], f"{doc} has no title"
    open_page(browser, server, PAGES[-1][2], settle=False)
    first = server.base + PAGES[0][2]
    link = next(
        a
        for a in browser.find_elements(By.CSS_SELECTOR, "nav.md-nav--primary a.md-nav__link[href]")
        if a.get_property("href").split("#")[0] == first and a.is_displayed()
    )
    click(browser, link)
    wait_for_load(browser, first)


def test_footer_previous_and_next_links_walk_the_nav_in_order(visit, browser, server, cached):
    """Each page's 'Next' leads to the next page of the nav and its 'Previous' one page back (none before the first
    page, none after the last); 'Next' is clicked on the first page and 'Previous' on the last."""
    from selenium.webdriver.common.by import By

    urls = [None] + [server.base + url for _t, _d, url in PAGES] + [None]
    for number, (_t, doc, _u) in enumerate(PAGES, start=1):
        links = visit(doc).links
        assert links["previous"] == urls[number - 1], f"'Previous' on {doc} leads to {links['previous']}"
        assert links["next"] == urls[number + 1], f"'Next' on {doc} leads to {links['next']}"
    for start, kind, target in ((PAGES[0][2], "next", urls[2]), (PAGES[-1][2], "prev", urls[-3])):
        open_page(browser, server, start, settle=False)
        click(browser, browser.find_element(By.CSS_SELECTOR, f"a.md-footer__link--{kind}"))
        wait_for_load(browser, target)


# ---------------------------------------------------------------------------------------------------- search


# The result links of each builder's own search UI: Material's list in the header; Zensical's dialog, which lives in
# a shadow root.
RESULT_LINKS_JS = {
    "mkdocs": "return [...document.querySelectorAll('.md-search-result a[href]')].map(a => a.href)",
    "zensical": """
        return [...document.querySelectorAll('*')].filter(e => e.shadowRoot)
            .flatMap(host => [...host.shadowRoot.querySelectorAll('ol[role=listbox] a[href]')].map(a => a.href));""",
}


def search(driver, server, query, builder, limit=15.0):
    """Type a query into the site's search as a reader does; return the result links (absolute URLs)."""
    from selenium.webdriver.common.by import By

    open_page(driver, server, "", settle=True)
    if builder == "mkdocs":
        box = driver.find_element(By.CSS_SELECTOR, "input.md-search__input")
        click(driver, box)
    else:  # a button in the header opens the dialog, whose input takes the focus
        click(driver, driver.find_element(By.CSS_SELECTOR, "button.md-search__button"))
        time.sleep(0.5)
        box = driver.switch_to.active_element
    box.send_keys(query)
    deadline, hrefs = time.monotonic() + limit, []
    while time.monotonic() < deadline:
        hrefs = driver.execute_script(RESULT_LINKS_JS[builder])
        if hrefs:
            time.sleep(0.2)  # let the result list finish rendering
            return driver.execute_script(RESULT_LINKS_JS[builder])
        time.sleep(0.1)
    return hrefs


def without_query(url):
    """A result's page: search links carry ?h=<query> (highlighting) and #<section>."""
    return url.split("#")[0].split("?")[0]


def page_url(doc, server):
    return server.base + dict((d, u) for _t, d, u in PAGES)[doc]


def test_search_finds_the_autograd_chapter(browser, server, builder, cached):
    results = search(browser, server, "autograd", builder)
    target = page_url("autograd.md", server)
    assert target in map(without_query, results), f"'autograd' found {results}, not {target}"


def words_of(html_text):
    """The words of a built page's article: paragraphs first, then headings; code, figures and menus left out."""
    article = re.search(r"<article[^>]*>(.*)</article>", html_text, re.S)
    body = article[1] if article else html_text
    body = re.sub(r"<(pre|svg|script|style|nav|figure)\b.*?</\1>", " ", body, flags=re.S)
    body = re.sub(r'<a class="headerlink".*?</a>', " ", body, flags=re.S)
    paragraphs = [unescape(re.sub(r"<[^>]+>", " ", p)) for p in re.findall(r"<p>(.*?)</p>", body, re.S)]
    headings = [unescape(re.sub(r"<[^>]+>", " ", h)) for h in re.findall(r"<h[1-3][^>]*>(.*?)</h[1-3]>", body, re.S)]
    return paragraphs + headings, unescape(re.sub(r"<[^>]+>", " ", body)).lower()


def distinctive_phrase(built_site, doc):
    """Up to three consecutive words of the page that the fewest other pages contain: what a reader remembers."""
    blocks, _ = words_of(page_html(built_site, doc))
    # each other page's words (\bword\b is in a text when word is one of its runs of \w)
    others = [set(re.findall(r"\w+", words_of(page_html(built_site, d[: -len(".md")]))[1])) for _t, d, _u in PAGES]
    others = [words for (_t, d, _u), words in zip(PAGES, others) if d != doc + ".md"]
    best = None
    for order, block in enumerate(blocks):
        tokens = [t.strip(".,:;!?()\"'") for t in block.split()]
        for size in (3, 2, 1):
            for start in range(len(tokens) - size + 1):
                window = tokens[start : start + size]
                if not all(re.fullmatch(r"[A-Za-z]{4,}", w) for w in window):
                    continue
                elsewhere = sum(all(w.lower() in words for w in window) for words in others)
                key = (elsewhere, -size, order, start)
                if best is None or key < best[0]:
                    best = (key, " ".join(window))
    return best[1] if best else doc


def test_search_finds_the_mnist_chapter_by_a_phrase_of_it(browser, server, built_site, builder, cached):
    phrase = distinctive_phrase(built_site, "mnist")
    results = search(browser, server, phrase, builder)
    target = page_url("mnist.md", server)
    assert target in map(without_query, results), f"{phrase!r} found {results}, not {target}"
    BROWSER_REPORT.append(f"{builder} search: 'autograd' and the MNIST phrase {phrase!r} find their chapters")


# ----------------------------------------------------------------------------------------------- copy button

COPY_JS = """
const done = arguments[arguments.length - 1];
navigator.clipboard.readText().then(done, error => done({error: String(error)}));
"""

SHOWN_JS = """
const code = document.querySelector(arguments[0]).cloneNode(true);
code.querySelectorAll('.md-annotation, .md-code__nav, .md-tooltip').forEach(n => n.remove());
const block = document.querySelector(arguments[0]).closest('.highlight');
const next = block && block.nextElementSibling;
const output = next && next.classList.contains('highlight') ? next.textContent : '';
return [code.textContent, output];
"""


def check_copy_buttons(driver, doc):
    """Click the first and the last visible copy buttons of the loaded page as a reader does; compare the
    clipboard with the code shown. Returns (problems, blocks checked)."""
    from selenium.webdriver.common.by import By

    buttons = [
        b
        for b in driver.find_elements(By.CSS_SELECTOR, "button[data-md-type=copy], button.md-clipboard")
        if b.is_displayed()
    ]  # not those inside a closed "??? success" solution
    problems = []
    if not buttons and driver.find_elements(By.CSS_SELECTOR, "article pre > code"):
        visible = [c for c in driver.find_elements(By.CSS_SELECTOR, "article pre > code") if c.is_displayed()]
        if visible:
            problems.append(f"{doc} shows code but no copy button")
    chosen = sorted({0, len(buttons) - 1}) if buttons else []
    for index in chosen:
        button = buttons[index]
        expected, output = driver.execute_script(SHOWN_JS, button.get_attribute("data-clipboard-target"))
        driver.execute_async_script("navigator.clipboard.writeText('').then(arguments[0], arguments[0])")
        click(driver, button)
        copied, deadline = "", time.monotonic() + 3
        while not copied and time.monotonic() < deadline:
            copied = driver.execute_async_script(COPY_JS)
            if isinstance(copied, dict):
                return problems + [f"cannot read the clipboard: {copied['error']}"], 0
            time.sleep(0.03)
        where = f"{doc}, code block {index + 1} of {len(buttons)}"
        if copied.rstrip("\n") != expected.rstrip("\n"):
            problems.append(f"{where}: copied {copied!r}, shown {expected!r}")
        if re.search(r"^(>>>|\.\.\.) ", copied, re.M):
            problems.append(f"{where}: the copy holds prompts")
        if output.strip() and output.strip() not in expected and output.strip() in copied:
            problems.append(f"{where}: the copy holds the block's output")
    return problems, len(chosen)


def test_copy_button_copies_exactly_the_code_shown(visit):
    records = [visit(doc) for _t, doc, _u in PAGES]
    checked = sum(r.copy_checked for r in records)
    if not checked and not any(r.copy_problems for r in records):
        pytest.skip("no page shows a code block yet")
    problems = [p for r in records for p in r.copy_problems]
    assert not problems, "\n".join(problems)
    BROWSER_REPORT.append(
        f"copy button: {checked} code blocks on {sum(bool(r.copy_checked) for r in records)} "
        "pages copy exactly the code they show"
    )


# ------------------------------------------------------------------------------------------- theme and tabs


def scheme(driver):
    return driver.execute_script("return document.body.getAttribute('data-md-color-scheme')")


def toggle_scheme(driver):
    from selenium.webdriver.common.by import By

    labels = [
        label
        for label in driver.find_elements(By.CSS_SELECTOR, "form[data-md-component=palette] label")
        if label.is_displayed()
    ]
    assert len(labels) == 1, f"expected one visible light/dark toggle, found {len(labels)}"
    click(driver, labels[0])


def test_light_dark_toggle_switches_and_persists_across_pages(browser, server, cached):
    from selenium.webdriver.common.by import By

    open_page(browser, server, PAGES[0][2], settle=False)
    assert scheme(browser) == "default", "a reader without a dark-mode preference starts in the light scheme"
    background = browser.execute_script("return getComputedStyle(document.body).backgroundColor")
    toggle_scheme(browser)
    assert scheme(browser) == "slate"
    assert browser.execute_script("return getComputedStyle(document.body).backgroundColor") != background
    click(browser, browser.find_element(By.CSS_SELECTOR, "a.md-footer__link--next"))
    wait_for_load(browser, server.base + PAGES[1][2])
    assert scheme(browser) == "slate", "the dark scheme was forgotten on the next page"
    toggle_scheme(browser)
    assert scheme(browser) == "default"
    browser.get(server.base + PAGES[-1][2])
    wait_for_load(browser)
    assert scheme(browser) == "default", "the light scheme was forgotten on another page"


def test_content_tabs_switch(browser, server, built_site, cached):
    from selenium.webdriver.common.by import By

    with_tabs = [(doc, url) for _t, doc, url in PAGES if 'class="tabbed-set' in page_html(built_site, doc[:-3])]
    if not with_tabs:
        pytest.skip('no page has content tabs (=== "...") yet')
    doc, url = with_tabs[0]
    open_page(browser, server, url, settle=False)
    tab_set = browser.find_element(By.CSS_SELECTOR, ".tabbed-set")
    labels = tab_set.find_elements(By.CSS_SELECTOR, ":scope > .tabbed-labels > label")
    blocks = tab_set.find_elements(By.CSS_SELECTOR, ":scope > .tabbed-content > .tabbed-block")
    assert len(labels) >= 2 and len(labels) == len(blocks), f"{doc}: a tab set needs 2+ labels, one block each"
    assert blocks[0].is_displayed() and not blocks[1].is_displayed(), f"{doc}: the first tab is not the one shown"
    click(browser, labels[1])
    deadline = time.monotonic() + 3
    while not blocks[1].is_displayed() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert blocks[1].is_displayed() and not blocks[0].is_displayed(), f"{doc}: clicking tab 2 did not show it"
    BROWSER_REPORT.append(f"content tabs: {doc} switches from {labels[0].text!r} to {labels[1].text!r}")


# ------------------------------------------------------------------------------------------------------ links


def test_every_internal_link_and_anchor_resolves(built_site, builder):
    broken, external, duplicates, other_duplicates = crawl(built_site)
    lines = [f"{url}\n    on: {', '.join(sorted(pages))}" for url, pages in sorted(external.items())]
    hosts = sorted({urlsplit(url).hostname for url in external})
    path = write_report(
        f"{builder}/external-links.txt",
        f"External links of the built site ({len(external)} URLs, hosts: {', '.join(hosts)}).\n"
        "Not fetched: the tests run without network. Check them by hand before a release.\n\n"
        + "\n".join(lines)
        + "\n",
    )
    BROWSER_REPORT.append(
        f"{builder} links: internal links and anchors of {len(list(built_site.rglob('*.html')))} pages "
        f"resolve; {len(external)} external URLs on {len(hosts)} hosts listed in "
        f"{path.relative_to(path.parents[3])} (not fetched)"
    )
    if other_duplicates:
        BROWSER_REPORT.append(f"note: ids repeated on a page but targeted by no link or heading: {other_duplicates}")
    assert not broken, "broken internal links:\n" + "\n".join(broken)
    assert not duplicates, "ids used twice on a page (an anchor to them is ambiguous):\n" + "\n".join(
        f"{page}: {ids[:8]}{' ...' if len(ids) > 8 else ''}" for page, ids in duplicates.items()
    )


NOTEBOOK_JS = """
const done = arguments[arguments.length - 1];
const download = [...document.querySelectorAll('a[download]')].find(a => a.textContent.includes('Download notebook'));
const colab = [...document.querySelectorAll('a')].find(a => a.textContent.includes('Open in Colab'));
if (!download || !colab) {
  done({missing: true, url: location.href, n: document.querySelectorAll("a").length});
  return;
}
fetch(download.href).then(r => r.text().then(text => done({
  status: r.status, href: download.href, colab: colab.href, body: text,
  visible: download.offsetParent !== null && colab.offsetParent !== null})));
"""


def test_every_chapter_offers_its_notebook_and_an_open_in_colab_link(visit):
    """In the browser: both links are visible, the download serves the notebook, Colab opens the committed copy."""
    import json

    from conftest import ROOT

    for name in CHAPTERS:
        found = visit(f"{name}.md").notebook
        assert not found.get("missing"), f"{name}: no Download notebook / Open in Colab link ({found})"
        assert found["visible"], f"{name}: the notebook links are hidden"
        assert found["status"] == 200, f"{name}: {found['href']} answered {found['status']}"
        notebook = json.loads(found["body"])
        assert notebook["nbformat"] == 4 and any(cell["cell_type"] == "code" for cell in notebook["cells"])
        path = found["colab"].split("/blob/", 1)[1].split("/", 1)[1]  # blob/<branch>/<path>
        assert found["colab"].startswith("https://colab.research.google.com/github/"), found["colab"]
        assert (ROOT / path).exists(), f"{name}: Colab would open {path}, which is not in the repository"
