"""Helpers of the browser tests (tests/site/test_browser_*.py): the nav, a local static server, headless Chromium,
axe-core, a link crawler.

Nothing here reaches the network: the server listens on 127.0.0.1, Chromium resolves no host name, and axe-core
comes from the npm registry once, into the git-ignored build/node/.
"""

import fcntl
import functools
import html.parser
import http.server
import json
import os
import posixpath
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import pytest
import yaml
from conftest import ROOT

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
NEEDS_CHROMIUM = "needs chromium (apt-get install chromium chromium-driver)"
AXE_VERSION = "4.14.1"  # `npm view axe-core version` on 2026-11-23
AXE_DIR = ROOT / "build" / "node"
REPORT_DIR = ROOT / "build" / "browser-report"
LOCAL_HOSTS = {"127.0.0.1"}


def unavailable(reason):
    """Skip on a developer's machine; fail in CI (CI=true), where every browser check must run."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: the browser tests must run; `make test` installs what they need)")
    pytest.skip(reason)


# ---------------------------------------------------------------------------------------------------------- nav


class _ConfigLoader(yaml.SafeLoader):
    """Reads mkdocs.yml, turning its Python and !relative tags into None (only the nav is needed)."""


_ConfigLoader.add_multi_constructor("", lambda loader, suffix, node: None)


def nav_pages():
    """[(title, docs path, URL path from the site root)] in nav order: ('Tensors', 'tensors.md', 'tensors/')."""
    config = yaml.load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"), Loader=_ConfigLoader)
    pages = []

    def walk(entries):
        for entry in entries:
            items = entry.items() if isinstance(entry, dict) else [(None, entry)]
            for title, value in items:
                if isinstance(value, list):
                    walk(value)
                elif isinstance(value, str) and value.endswith(".md") and "://" not in value:
                    pages.append((title or value, value, url_of(value)))

    walk(config["nav"])
    return pages


def url_of(doc):
    """The directory URL MkDocs gives docs/<doc> (use_directory_urls)."""
    stem = doc[: -len(".md")]
    if stem == "index":
        return ""
    if stem.endswith("/index"):
        return stem[: -len("index")]
    return stem + "/"


def site_url_path():
    """The path part of site_url ('/pytorch-guide/'): 404.html links to the site through it."""
    config = yaml.load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"), Loader=_ConfigLoader)
    return urlsplit(config.get("site_url") or "/").path or "/", config.get("site_url") or ""


# ------------------------------------------------------------------------------------------------------- server


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the built site and records every request with its status and body size. While the server's `measuring`
    is set, responses are `no-store` (every view downloads everything: honest page weights); otherwise assets are
    cached, as a web host would let them be (fast page-to-page navigation tests)."""

    def end_headers(self):
        self.send_header("Cache-Control", "no-store" if self.server.measuring else "max-age=3600")
        super().end_headers()

    def log_message(self, format, *args):  # quiet
        pass

    def log_request(self, code="-", size="-"):
        self._status = int(getattr(code, "value", code))

    def do_GET(self):
        self._status = 0
        body = self.send_head()
        size = 0
        if body:
            try:
                size = os.fstat(body.fileno()).st_size if hasattr(body, "fileno") else len(body.getvalue())
                self.copyfile(body, self.wfile)
            except (OSError, ValueError):
                pass
            finally:
                body.close()
        self.server.record(urlsplit(self.path).path, self._status, size)


class StaticServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, directory):
        super().__init__(("127.0.0.1", 0), functools.partial(_Handler, directory=str(directory)))
        self.lock = threading.Lock()
        self.requests = []  # (path, status, bytes)
        self.measuring = True
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def base(self):
        return f"http://127.0.0.1:{self.server_address[1]}/"

    def record(self, path, status, size):
        with self.lock:
            self.requests.append((path, status, size))

    def take(self):
        with self.lock:
            taken, self.requests = self.requests, []
        return taken

    def count(self):
        with self.lock:
            return len(self.requests)


# ------------------------------------------------------------------------------------------------------ browser

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--hide-scrollbars",
    "--lang=en-US",
    "--window-size=1280,900",
    # A desktop reader's mouse: headless Chromium otherwise reports (hover: none), and Material then leaves scrollable
    # code blocks out of the keyboard's tab order, as it does on touch screens.
    "--blink-settings=primaryHoverType=2,availableHoverTypes=2,primaryPointerType=4,availablePointerTypes=4",
    # Only 127.0.0.1 exists for this browser: a third-party request fails here, and is reported, rather than leaking.
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]


def start_chromium():
    """A headless Chromium driven by the Debian chromedriver, with console and network logs on; or skip/fail."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        unavailable(NEEDS_CHROMIUM)
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        unavailable("needs selenium (pip install -r requirements.txt)")
    profile = tempfile.mkdtemp(prefix="guide-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER), log_output=subprocess.DEVNULL))
    driver.set_script_timeout(60)
    driver.set_page_load_timeout(60)
    driver.profile_dir = profile
    return driver


def stop_chromium(driver):
    try:
        driver.quit()
    finally:
        shutil.rmtree(driver.profile_dir, ignore_errors=True)


def network_events(driver):
    """Drain the performance log: [(method, params)] of the Network domain."""
    events = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"].startswith("Network."):
            events.append((message["method"], message["params"]))
    return events


def wait_until_settled(driver, server, quiet=0.35, limit=15.0):
    """Wait for the load event, then until the server has seen no request for `quiet` seconds (the search worker
    fetches its index after the load event)."""
    deadline = time.monotonic() + limit
    while driver.execute_script("return document.readyState") != "complete":
        if time.monotonic() > deadline:
            raise TimeoutError("the page never finished loading")
        time.sleep(0.05)
    seen, since = server.count(), time.monotonic()
    while time.monotonic() - since < quiet and time.monotonic() < deadline:
        time.sleep(0.05)
        if server.count() != seen:
            seen, since = server.count(), time.monotonic()


def full_page_png(driver, path, width, part_height=12000):
    """Screenshots of the whole page at the current emulated width: one PNG, or name-part1.png, name-part2.png ...
    for a page taller than part_height (Chromium captures at most ~16k pixels at once)."""
    import base64

    height = driver.execute_script("return Math.ceil(document.documentElement.scrollHeight)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tops = list(range(0, height, part_height))
    for number, top in enumerate(tops, 1):
        shot = driver.execute_cdp_cmd(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": top, "width": width, "height": min(part_height, height - top), "scale": 1},
            },
        )
        target = path if len(tops) == 1 else path.with_name(f"{path.stem}-part{number}{path.suffix}")
        target.write_bytes(base64.b64decode(shot["data"]))


# --------------------------------------------------------------------------------------------------------- axe


def axe_source():
    """axe.min.js of the pinned axe-core, installed with npm into build/node/ (git-ignored) on first use."""
    package = AXE_DIR / "node_modules" / "axe-core"
    AXE_DIR.mkdir(parents=True, exist_ok=True)
    with open(AXE_DIR.parent / "node.lock", "w") as lock:  # the two xdist workers' browser files start together
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _installed_axe(package)


def _installed_axe(package):
    installed = package / "package.json"
    if not (installed.exists() and json.loads(installed.read_text())["version"] == AXE_VERSION):
        npm = shutil.which("npm")
        if not npm:
            unavailable(f"needs npm to install axe-core@{AXE_VERSION}")
        AXE_DIR.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            [
                npm,
                "install",
                "--no-save",
                "--no-package-lock",
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
                "--prefix",
                str(AXE_DIR),
                f"axe-core@{AXE_VERSION}",
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if result.returncode != 0:
            unavailable(f"npm could not install axe-core@{AXE_VERSION}: {result.stderr[-800:]}")
    return (package / "axe.min.js").read_text(encoding="utf-8")


# ------------------------------------------------------------------------------------------------------- links


class _LinkParser(html.parser.HTMLParser):
    ATTRIBUTES = {
        "a": "href",
        "link": "href",
        "script": "src",
        "img": "src",
        "source": "src",
        "iframe": "src",
        "video": "src",
        "audio": "src",
        "use": "href",
        "image": "href",
    }

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.links = []  # (tag, url, rel)
        self.ids = []
        self.heading_ids = set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("id", "name") if tag == "a" else ("id",):
            if attrs.get(key):
                self.ids.append(attrs[key])
                if tag in ("h1", "h2", "h3", "h4", "h5", "h6"):
                    self.heading_ids.add(attrs[key])
        wanted = self.ATTRIBUTES.get(tag)
        url = attrs.get(wanted) or (attrs.get("xlink:href") if tag in ("use", "image") else None)
        if url:
            self.links.append((tag, url.strip(), attrs.get("rel") or ""))
        if attrs.get("srcset"):
            for candidate in attrs["srcset"].split(","):
                if candidate.strip():
                    self.links.append((tag, candidate.split()[0], ""))


def crawl(site):
    """Check every link of every built page. Returns (broken, external, duplicate_ids, other_duplicates):
    broken: ['page: url (why)'], external: {url: {pages}}, duplicate_ids: {page: [ids used twice that are a heading's
    or a link's target: an anchor to them is ambiguous]}, other_duplicates: {page: count of other repeated ids (such as
    matplotlib's group ids, figure_1, axes_1, in two inline SVG figures: invalid HTML but nothing points at them)}."""
    fake = "http://site.invalid/"
    prefix, site_url = site_url_path()
    parsed, ids, headings = {}, {}, {}
    for page in sorted(site.rglob("*.html")):
        rel = page.relative_to(site).as_posix()
        parser = _LinkParser()
        parser.feed(page.read_text(encoding="utf-8"))
        parsed[rel], ids[rel], headings[rel] = parser.links, parser.ids, parser.heading_ids

    def target_file(path):
        path = unquote(path)
        if prefix != "/" and path.startswith(prefix):
            path = "/" + path[len(prefix) :]
        rel = posixpath.normpath(path.lstrip("/")) if path.strip("/") else ""
        if rel.startswith(".."):
            return None
        if path.endswith("/"):
            candidates = [rel + "/index.html" if rel else "index.html"]
        else:
            candidates = [rel, rel + "/index.html"]
        for candidate in candidates:
            candidate = candidate.lstrip("/")
            if (site / candidate).is_file():
                return candidate
        return None

    broken, external, targeted = [], {}, set()
    for rel, links in parsed.items():
        page_url = urljoin(fake, rel)
        for tag, url, _rel in links:
            if url.startswith(("mailto:", "tel:", "javascript:", "data:")):
                continue
            if site_url and url.startswith(site_url):  # canonical links: the published address of a built page
                url = fake + url[len(site_url) :]
            absolute = urljoin(page_url, url)
            parts = urlsplit(absolute)
            if parts.scheme not in ("http", "https"):
                continue
            if parts.netloc != "site.invalid":
                external.setdefault(absolute, set()).add(rel)
                continue
            target = target_file(parts.path)
            if target is None:
                broken.append(f"{rel}: {url} (no such file)")
            elif parts.fragment and target.endswith(".html"):
                if tag == "a":  # an SVG <use> points at a content-hashed id: a repeat is the same shape
                    targeted.add((target, unquote(parts.fragment)))
                if unquote(parts.fragment) not in ids[target]:
                    broken.append(f"{rel}: {url} (no anchor #{parts.fragment} in {target})")
    duplicates, others = {}, {}
    for rel in parsed:
        seen = set()
        repeated = {i for i in ids[rel] if i in seen or seen.add(i)}
        ambiguous = sorted(i for i in repeated if i in headings[rel] or (rel, i) in targeted)
        if ambiguous:
            duplicates[rel] = ambiguous
        if len(repeated) > len(ambiguous):
            others[rel] = len(repeated) - len(ambiguous)
    return broken, external, duplicates, others


def write_report(name, text):
    path = REPORT_DIR / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
