"""One visit of each page in headless Chromium, recording everything the browser tests assert on (tests/site/
test_browser_*.py): what a reader loads, the accessibility findings, the layout at a desktop's and a phone's width,
the copy buttons, the nav and footer links and a chapter's notebook links. A page is loaded once per build.

The fixtures here (the built site served on 127.0.0.1, one headless Chromium per build, ``visit(doc)``) are a plugin
(``pytest_plugins`` in tests/conftest.py), so that all browser test files share them. With `--dist loadscope`, every
browser test of one build runs in one xdist worker (tests/conftest.py), so each page is visited once per build, and
the two builds are checked at the same time.
"""

import os
import re
import shutil
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest
from browser_support import (
    LOCAL_HOSTS,
    REPORT_DIR,
    StaticServer,
    axe_source,
    full_page_png,
    nav_pages,
    network_events,
    start_chromium,
    stop_chromium,
    wait_until_settled,
)
from conftest import CHAPTERS

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


VISIBLE_JS = """
return [...document.querySelectorAll(arguments[0])].filter(
  e => e.checkVisibility({checkOpacity: true, checkVisibilityCSS: true}));
"""


def check_copy_buttons(driver, doc):
    """Click the first and the last visible copy buttons of the loaded page as a reader does; compare the
    clipboard with the code shown. Returns (problems, blocks checked)."""

    # the visible ones (not those inside a closed "??? success" solution), in one call rather than one per element
    buttons = driver.execute_script(VISIBLE_JS, "button[data-md-type=copy], button.md-clipboard")
    problems = []
    if not buttons and driver.execute_script(VISIBLE_JS, "article pre > code"):
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


def describe(violations):
    return "\n".join(
        f"- [{v['impact']}] {v['id']}: {v['help']} ({v['count']} nodes)\n    " + "\n    ".join(v["nodes"])
        for v in violations
    )


def page_visitor(browser, server, axe):
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


# --- the fixtures (tests/conftest.py registers this module as a plugin: one set for every browser test file)


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


@pytest.fixture()
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


@pytest.fixture(scope="session")
def visit(browser, server, axe):
    """visit(doc) loads a page once (at a desktop's width, then laid out at a phone's) and records everything the
    tests assert on."""
    return page_visitor(browser, server, axe)
