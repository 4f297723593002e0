"""The web UI in a real browser (Debian's Chromium) against a real server and a real index."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from iconosearch.api.app import create_app
from iconosearch.config import Settings
from tests.helpers.browser import chromium, live_server, screenshot
from tests.helpers.demo_index import DemoIndex, free_port, shared_demo_index

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TIMEOUT_MS = 20_000


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoIndex:
    return shared_demo_index(tmp_path_factory)


@pytest.fixture(scope="module")
def site(demo: DemoIndex) -> Iterator[str]:
    app = create_app(Settings(data_dir=demo.data_dir), reload_interval_s=0)
    with live_server(app, demo.port) as base:
        yield base


@pytest.fixture(scope="module")
def browser_context(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as context:
        context.set_default_timeout(TIMEOUT_MS)
        yield context


@pytest.fixture
def page(browser_context: Any) -> Iterator[Any]:
    page = browser_context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    page.close()
    assert not errors, f"JavaScript errors: {errors}"


def _params(page: Any) -> dict[str, list[str]]:
    return parse_qs(urlsplit(page.url).query)


def _search(page: Any, site: str, text: str) -> None:
    page.goto(f"{site}/")
    page.fill("#q", text)
    page.press("#q", "Enter")
    page.wait_for_selector("#grid .card")


def _close_detail(page: Any) -> None:
    """Escape closes the detail panel; its "close" event (URL and focus updates) runs after it is hidden."""
    page.keyboard.press("Escape")
    page.locator("dialog#detail").wait_for(state="hidden")
    page.wait_for_function("() => !new URLSearchParams(location.search).has('item')", timeout=5000)


def test_type_a_query_and_see_results(page: Any, site: str, demo: DemoIndex) -> None:
    page.goto(f"{site}/")
    page.wait_for_selector(".message-welcome")
    page.type("#q", "a map of the world", delay=20)  # instant search: no Enter needed
    page.wait_for_selector("#grid .card")
    page.wait_for_function(
        "() => [...document.images].filter(i => i.closest('.card')).slice(0, 4).every(i => i.complete)"
    )
    cards = page.locator("#grid .card")
    assert cards.count() >= 5
    img = cards.first.locator("img")
    assert img.get_attribute("alt")
    assert int(img.get_attribute("width") or 0) > 0 and int(img.get_attribute("height") or 0) > 0
    natural = page.evaluate("() => document.querySelector('#grid .card img').naturalWidth")
    assert natural > 0, "thumbnail loaded from the IIIF image service"
    assert _params(page)["q"] == ["a map of the world"]
    assert re.search(r"\d+ results shown", page.inner_text("#status"))
    # No raw scores on cards: the relevance groups say how close results are.
    assert page.locator("#grid .card .score").count() == 0
    # No layout shift when thumbnails arrive: boxes have their aspect ratio before the image loads.
    shift = page.evaluate(
        """() => new Promise(resolve => {
            let total = 0;
            new PerformanceObserver(list => {
                for (const e of list.getEntries()) if (!e.hadRecentInput) total += e.value;
            }).observe({type: 'layout-shift', buffered: true});
            setTimeout(() => resolve(total), 500);
        })"""
    )
    assert shift < 0.1, f"cumulative layout shift {shift}"
    screenshot(page, "web-results")
    # Infinite scroll: reaching the end loads the next page, and the URL remembers how many are shown.
    first_page = page.locator("#grid .card").count()
    page.locator("#sentinel").scroll_into_view_if_needed()
    page.wait_for_function(f"() => document.querySelectorAll('#grid .card').length > {first_page}")
    page.wait_for_function("() => new URLSearchParams(location.search).get('pages') === '2'")


def test_filter_by_collection(page: Any, site: str) -> None:
    _search(page, site, "a picture")
    before = page.locator("#grid .card").count()
    box = page.locator('[data-facet="collection"] input[value="apitest-prints"]')
    box.check()
    page.wait_for_function("() => location.search.includes('collection=apitest-prints')")
    # The previous results stay until the filtered ones arrive: wait until only those are shown.
    params = {"q": "a picture", "collection": "apitest-prints", "k": 100}
    allowed = [r["id"] for r in page.request.get(f"{site}/api/search", params=params).json()["results"]]
    page.wait_for_function(
        "ids => { const shown = [...document.querySelectorAll('#grid .card')].map(e => e.dataset.id);"
        " return shown.length > 0 && shown.every(id => ids.includes(id)); }",
        arg=allowed,
    )
    assert page.locator('[data-facet="collection"] input[value="apitest-prints"]').is_checked()
    after = page.locator("#grid .card").count()
    assert 0 < after <= before
    # The API agrees that every result shown is in that collection.
    ids = page.eval_on_selector_all("#grid .card", "els => els.map(e => e.dataset.id)")
    for rid in ids[:6]:
        item = page.request.get(f"{site}/api/items/{rid}").json()
        assert item["collection"] == "apitest-prints"
    page.locator('[data-facet="rights"] input[value="open"]').check()
    page.wait_for_function("() => location.search.includes('rights=open')")
    screenshot(page, "web-filtered")


def test_detail_panel(page: Any, site: str) -> None:
    _search(page, site, "a record")
    first = page.locator("#grid .card").first
    rid = first.get_attribute("data-id")
    first.locator(".thumb").click()
    dialog = page.locator("dialog#detail")
    dialog.wait_for(state="visible")
    assert _params(page)["item"] == [rid]
    item = page.request.get(f"{site}/api/items/{rid}").json()
    assert page.inner_text("#detail-title")
    rights_text = page.inner_text("#detail-rights")
    attribution = " ".join(next(iter(item["attribution"]["value"].values())))
    assert attribution in rights_text, "attribution shown verbatim"
    if item["rights"]:
        assert page.locator(f'#detail-rights a[href="{item["rights"]}"]').count() == 1
    mirador = page.locator("#detail-links a", has_text="Mirador").get_attribute("href")
    assert item["viewers"]["content_state"] in mirador
    assert page.locator("#detail-links a", has_text="IIIF manifest").get_attribute("href") == item["manifest"]
    assert page.input_value("#permalink").endswith(f"/?item={rid}")
    assert item["manifest"] in page.input_value("#citation")
    # Deep zoom: OpenSeadragon draws the IIIF image service.
    page.wait_for_selector(
        "#viewer .openseadragon-canvas canvas, #viewer .openseadragon-canvas img", state="attached"
    )
    page.wait_for_timeout(800)
    screenshot(page, "web-detail")
    _close_detail(page)
    assert "item" not in _params(page)


def test_image_search_by_file_upload(page: Any, site: str, demo: DemoIndex) -> None:
    target = demo.records[4]
    page.goto(f"{site}/")
    page.set_input_files("#image-input", str(demo.image_files[target.id]))
    page.wait_for_selector(".chip-image")
    page.wait_for_selector("#grid .card")
    first = page.locator("#grid .card").first.get_attribute("data-id")
    group = page.request.get(f"{site}/api/items/{first}").json()["duplicates"]["ids"]
    assert target.id in {first, *group}
    # Combine: add words to the image query (an explicit option), shown as parts of one search.
    page.locator("#options summary").click()
    page.check("#combine-toggle")
    page.fill("#q", "red")
    page.press("#q", "Enter")
    page.wait_for_function("() => document.querySelectorAll('.query-parts .chip').length >= 2")
    assert "Image:" in page.inner_text("#query-parts")
    page.fill("#less-input", "text")
    page.press("#less-input", "Enter")
    page.wait_for_selector(".chip-less")
    assert _params(page)["less"] == ["text"]
    screenshot(page, "web-image-query")
    # Back removes the last part; the image stays part of the search it belonged to.
    page.go_back()
    page.wait_for_function("() => !document.querySelector('.chip-less')")
    assert page.locator(".chip-image").count() == 1


def test_share_url_round_trip_and_history(page: Any, site: str, demo: DemoIndex) -> None:
    rid = demo.records[2].id
    url = f"{site}/?q=a+picture&collection=apitest&rights=open&item={rid}"
    page.goto(url)
    page.locator("dialog#detail").wait_for(state="visible")
    assert page.input_value("#q") == "a picture"
    page.wait_for_selector("#grid .card")
    assert page.locator('[data-facet="collection"] input[value="apitest"]').is_checked()
    assert page.locator('[data-facet="rights"] input[value="open"]').is_checked()
    shared_ids = page.eval_on_selector_all("#grid .card", "els => els.map(e => e.dataset.id)")
    # The same link in a fresh page shows the same thing.
    other = page.context.new_page()
    other.goto(url)
    other.locator("dialog#detail").wait_for(state="visible")
    other.wait_for_selector("#grid .card")
    assert other.eval_on_selector_all("#grid .card", "els => els.map(e => e.dataset.id)") == shared_ids
    other.close()
    # Back/forward walk through the states.
    _close_detail(page)
    page.fill("#q", "a flower")
    page.press("#q", "Enter")
    page.wait_for_function("() => new URLSearchParams(location.search).get('q') === 'a flower'")
    page.go_back()
    page.wait_for_function("() => new URLSearchParams(location.search).get('q') === 'a picture'")
    page.wait_for_function("() => document.querySelector('#q').value === 'a picture'")
    page.go_back()
    page.locator("dialog#detail").wait_for(state="visible")
    page.go_forward()
    page.locator("dialog#detail").wait_for(state="hidden")


def test_keyboard_only(page: Any, site: str) -> None:
    page.goto(f"{site}/")
    page.wait_for_selector(".message-welcome")
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.className") == "skip-link"
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.id") == "q"
    page.keyboard.type("a bird")
    page.keyboard.press("Enter")
    page.wait_for_selector("#grid .card")
    # Tab from the search box until a result has focus; its focus ring must be visible.
    for _ in range(60):
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement.classList.contains('thumb')"):
            break
    else:
        pytest.fail("no result reachable with Tab")
    outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"
    rid = page.evaluate("() => document.activeElement.closest('.card').dataset.id")
    page.keyboard.press("Enter")
    page.locator("dialog#detail").wait_for(state="visible")
    assert page.evaluate("() => document.activeElement.id") == "detail-close"
    _close_detail(page)
    page.wait_for_function("() => document.activeElement.closest('.card') !== null", timeout=5000)
    assert page.evaluate("() => document.activeElement.closest('.card')?.dataset.id") == rid
    # "More like this" by keyboard.
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.classList.contains('more-like')")
    page.keyboard.press("Enter")
    page.wait_for_function(f"() => location.search.includes('like={rid}')")
    page.wait_for_selector("#grid .card")
    # Every form control has an accessible name.
    unnamed = page.evaluate(
        """() => [...document.querySelectorAll('input, button, select, textarea')]
            .filter(e => e.offsetParent !== null || e.id === 'image-input')
            .filter(e => !(e.labels && e.labels.length))
            .filter(e => !e.getAttribute('aria-label') && !e.textContent.trim())
            .map(e => e.outerHTML.slice(0, 80))"""
    )
    assert not unnamed


def test_phone_width_and_states(browser_context: Any, site: str, tmp_path: Path) -> None:
    page = browser_context.new_page()
    page.set_viewport_size({"width": 390, "height": 844})
    try:
        page.goto(f"{site}/?q=a+house")
        page.wait_for_selector("#grid .card")
        assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth + 1")
        screenshot(page, "web-phone")
        # No results, with suggestions.
        page.goto(f"{site}/?q=a+house&year_from=9000&year_to=9999")
        page.wait_for_selector(".message-no-results")
        assert page.locator(".message-no-results button", has_text="Remove all filters").count() == 1
        page.locator(".message-no-results button", has_text="Remove all filters").click()
        page.wait_for_selector("#grid .card")
        # A slow search shows a spinner (after 300 ms), then the results.
        cdp = page.context.new_cdp_session(page)
        cdp.send("Network.enable")
        cdp.send(
            "Network.emulateNetworkConditions",
            {"offline": False, "latency": 1200, "downloadThroughput": -1, "uploadThroughput": -1},
        )
        page.fill("#q", "a slow search")
        page.press("#q", "Enter")
        page.wait_for_selector("#spinner", state="visible")
        page.wait_for_selector("#spinner", state="hidden", timeout=TIMEOUT_MS)
        assert page.locator("#grid .card").count() > 0
        cdp.send(
            "Network.emulateNetworkConditions",
            {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
        )
        # A search the server refuses shows its reason.
        page.goto(f"{site}/?like=0000000000000000")
        page.wait_for_selector(".message-error")
        assert page.locator(".message-error button", has_text="Try again").count() == 1
    finally:
        page.close()


def test_empty_index_state(browser_context: Any, tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path / "empty"), reload_interval_s=0)
    with live_server(app, free_port()) as base:
        page = browser_context.new_page()
        try:
            page.goto(f"{base}/")
            page.wait_for_selector(".message-empty-index")
            page.goto(f"{base}/?q=anything")
            page.wait_for_selector(".message-empty-index")
            screenshot(page, "web-empty-index")
        finally:
            page.close()
