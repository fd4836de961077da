"""Finding one's way, in headless Chromium, in both builds: the nav and the footer's Previous and Next walk the pages
in order, every internal link and anchor resolves, each chapter offers its notebook and an Open in Colab link, and
each builder's own search finds chapters.
"""

import json
import re
import time
from html import unescape
from urllib.parse import urlsplit

from browser_support import crawl, write_report
from browser_visit import (
    PAGES,
    click,
    open_page,
    wait_for_load,
)
from conftest import BROWSER_REPORT, CHAPTERS, ROOT, page_html, site_config


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


def test_every_chapter_offers_its_notebook_and_an_open_in_colab_link(visit):
    """In the browser: both links are visible, the download serves the notebook, and Colab opens that notebook
    from the branch the site workflow publishes it to (.github/workflows/site.yml)."""
    settings = site_config()["extra"]["notebooks"]
    for name in CHAPTERS:
        found = visit(f"{name}.md").notebook
        assert not found.get("missing"), f"{name}: no Download notebook / Open in Colab link ({found})"
        assert found["visible"], f"{name}: the notebook links are hidden"
        assert found["status"] == 200, f"{name}: {found['href']} answered {found['status']}"
        notebook = json.loads(found["body"])
        assert notebook["nbformat"] == 4 and any(cell["cell_type"] == "code" for cell in notebook["cells"])
        github = f"https://colab.research.google.com/github/{settings['repository']}/blob/{settings['branch']}"
        assert found["colab"] == f"{github}/{name}.ipynb", found["colab"]
        assert (ROOT / "docs" / "notebooks" / f"{name}.ipynb").exists(), f"{name}: the build published no notebook"
