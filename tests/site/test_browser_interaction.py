"""What a reader clicks, in headless Chromium, in both builds: the copy button copies exactly the code shown, the
light/dark toggle switches and persists across pages, and content tabs switch.
"""

import time

import pytest
from browser_visit import (
    PAGES,
    click,
    open_page,
    wait_for_load,
)
from conftest import BROWSER_REPORT, page_html


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
