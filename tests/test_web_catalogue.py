"""The search page researchers trust, in a real browser (Debian's Chromium) against a real server and index:
catalogue cards, relevance groups, totals, sort, filters on empty results, image-query building,
suggestions, viewer links, the site frame, the phone layout, accessibility (axe-core) and languages."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from iconosearch.api.app import create_app
from iconosearch.config import Settings
from tests.helpers.browser import axe_violations, checked_page, chromium, live_server, screenshot
from tests.helpers.demo_index import DemoIndex, calibrate_demo_index, shared_demo_index

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TIMEOUT_MS = 20_000


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoIndex:
    return shared_demo_index(tmp_path_factory)


@pytest.fixture(scope="module")
def site(demo: DemoIndex) -> Iterator[str]:
    calibrate_demo_index(demo)
    app = create_app(Settings(data_dir=demo.data_dir), reload_interval_s=0)
    with live_server(app, demo.port) as base:
        yield base


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    # English UI; CSP bypassed only so that axe-core can be injected into the page.
    with chromium(tmp_path_factory.mktemp("chromium-ui"), locale="en-GB", bypass_csp=True) as ctx:
        ctx.set_default_timeout(TIMEOUT_MS)
        yield ctx


@pytest.fixture
def page(context: Any) -> Iterator[Any]:
    with checked_page(context) as page:
        yield page


def _shot(page: Any, name: str) -> None:
    screenshot(page, f"ui-{name}")


def _params(page: Any) -> dict[str, list[str]]:
    return parse_qs(urlsplit(page.url).query)


def _search(page: Any, site: str, query: str) -> dict[str, Any]:
    """Open the results of ``query`` and return the API's first page for it."""
    with page.expect_response(lambda r: r.url.endswith("/api/search") and r.request.method == "POST") as resp:
        page.goto(f"{site}/?q={query.replace(' ', '+')}")
    page.wait_for_selector("#grid .card")
    body: dict[str, Any] = resp.value.json()
    return body


def _texts(page: Any, selector: str) -> list[str]:
    return [t.strip() for t in page.locator(selector).all_inner_texts()]


def test_cards_read_like_a_catalogue(page: Any, site: str) -> None:
    body = _search(page, site, "a map of the world")
    page.wait_for_function(
        "() => [...document.querySelectorAll('.card img')].slice(0, 4).every(i => i.complete)"
    )
    first = body["results"][0]
    card = page.locator(f'.card[data-id="{first["id"]}"]')
    title = " ".join(first["title"]["en"])
    assert card.locator(".card-title").inner_text() == title, "the title, not the caption"
    assert card.locator(".card-creator").inner_text() == " ".join(next(iter(first["creator"].values())))
    assert first["date"]["display"] in card.locator(".card-line").inner_text()
    assert " ".join(first["providers"][0]["label"]["en"]) in card.locator(".card-line").inner_text()
    badge = card.locator(".rights-badge")
    expected = {"open": "Open", "restricted": "Restricted", "unknown": "Rights unknown"}[
        first["rights_class"]
    ]
    assert badge.evaluate("b => b.firstChild.textContent") == expected
    statement = badge.get_attribute("title") or ""
    assert (first["rights"] or "not stated") in statement, "the statement on hover"
    assert page.locator(".card .score").count() == 0, "no raw scores on cards"
    # Even rows: in each row of the grid, every card and every thumbnail box has the same height.
    rows: dict[int, list[tuple[float, float]]] = {}
    for box in page.eval_on_selector_all(
        ".band .grid > .card",
        "els => els.map(e => [e.getBoundingClientRect().top, e.getBoundingClientRect().height,"
        " e.querySelector('.thumb').getBoundingClientRect().height])",
    ):
        rows.setdefault(round(box[0]), []).append((box[1], box[2]))
    assert len(rows) >= 2
    for row in rows.values():
        heights = {round(h) for h, _ in row}
        thumbs = {round(t) for _, t in row}
        assert max(heights) - min(heights) <= 1 and max(thumbs) - min(thumbs) <= 1, rows
    _shot(page, "results")


def test_relevance_groups_total_and_score_in_detail(page: Any, site: str) -> None:
    body = _search(page, site, "a red circle")
    bands = [r["relevance"] for r in body["results"]]
    headings = _texts(page, ".band-heading")
    expected = [
        {"strong": "Strong matches", "possible": "Possible matches", "weak": "Weak matches"}[b]
        for b in dict.fromkeys(bands)
    ]
    assert headings == expected
    for band in dict.fromkeys(bands):
        ids = page.eval_on_selector_all(f".band-{band} .card", "els => els.map(e => e.dataset.id)")
        assert ids == [r["id"] for r in body["results"] if r["relevance"] == band]
    total = body["total"]
    assert total["basis"] == "relevance"
    noun = "match" if total["count"] == 1 else "matches"
    assert page.locator("#status .total").inner_text() == f"{total['count']} strong or possible {noun}"
    assert page.locator("#band-help").is_visible()
    # The raw score is in the detail panel.
    first = body["results"][0]
    page.locator(f'.card[data-id="{first["id"]}"] .thumb').click()
    page.locator("dialog#detail").wait_for(state="visible")
    assert f"{first['score']:.3f}" in page.inner_text(".detail-score")


def test_sort_by_date(page: Any, site: str) -> None:
    _search(page, site, "a picture")
    page.select_option("#sort", "date-desc")
    page.wait_for_function("() => new URLSearchParams(location.search).get('sort') === 'date-desc'")
    page.wait_for_selector(".band-date .card")
    assert page.locator(".band-note").inner_text().startswith("Strong and possible matches, by date")
    years = [int(d.split("–")[0]) for d in _texts(page, ".card-date") if d]
    assert years and years == sorted(years, reverse=True)
    page.reload()
    page.wait_for_selector(".band-date .card")
    assert page.input_value("#sort") == "date-desc", "the sort is part of the link"


def test_filters_stay_visible_on_empty_results(page: Any, site: str) -> None:
    page.goto(f"{site}/?q=a+house&year_from=9000&year_to=9999")
    page.wait_for_selector(".message-no-results")
    for facet in ("collection", "institution", "rights", "century"):
        box = page.locator(f'[data-facet="{facet}"]')
        assert box.is_visible(), facet
        reason = box.locator(".facet-empty").inner_text()
        assert "other filters" in reason, (facet, reason)
    assert page.locator("#year-from").input_value() == "9000"


def test_uninformative_facets_are_hidden(page: Any, site: str) -> None:
    def single_unknown(route: Any) -> None:
        response = route.fetch()
        body = response.json()
        body["facets"]["institution"] = {"unknown": 14}
        route.fulfill(response=response, json=body)

    page.route("**/api/search", single_unknown)
    _search(page, site, "a tower")
    assert page.locator('[data-facet="institution"]').count() == 0
    assert page.locator('[data-facet="rights"]').count() == 1


def test_image_query_replaces_the_words_unless_combined(page: Any, site: str, demo: DemoIndex) -> None:
    target = demo.records[4]
    _search(page, site, "a flower")
    page.set_input_files("#image-input", str(demo.image_files[target.id]))
    page.wait_for_selector(".chip-image")
    page.wait_for_function("() => !new URLSearchParams(location.search).has('q')")
    assert page.input_value("#q") == ""
    assert page.locator(".chip-words").count() == 0
    # New words replace the image too, unless the user asks to combine them.
    page.fill("#q", "a moon")
    page.press("#q", "Enter")
    page.wait_for_function("() => !document.querySelector('.chip-image')")
    page.locator("#options summary").click()
    page.check("#combine-toggle")
    page.set_input_files("#image-input", str(demo.image_files[target.id]))
    page.wait_for_selector(".chip-image")
    assert page.input_value("#q") == "a moon"
    assert _texts(page, ".query-parts .chip > span:first-of-type")[:2] == [
        "Words: “a moon”",
        f"Image: {demo.image_files[target.id].name}",
    ]


def test_typing_suggests_collections(page: Any, site: str) -> None:
    subject_requests: list[str] = []
    page.on(
        "request", lambda r: subject_requests.append(r.url) if "/api/iconclass/suggest" in r.url else None
    )
    page.goto(f"{site}/")
    page.wait_for_selector(".message-welcome")
    page.locator("#q").press_sequentially("apitest-pr", delay=30)
    option = page.locator("#suggestions [role=option]", has_text="apitest-prints")
    option.wait_for()
    assert page.get_attribute("#q", "aria-expanded") == "true"
    page.keyboard.press("ArrowDown")
    assert page.get_attribute("#q", "aria-activedescendant") == "suggest-0"
    page.keyboard.press("Enter")
    page.wait_for_function(
        "() => new URLSearchParams(location.search).getAll('collection').includes('apitest-prints')"
    )
    assert subject_requests, "ICONCLASS subjects are asked for (and their absence tolerated)"


def test_open_in_viewer_uses_the_bundled_viewer(page: Any, site: str) -> None:
    body = _search(page, site, "a tower")
    first = body["results"][0]
    page.locator(f'.card[data-id="{first["id"]}"] .thumb').click()
    page.locator("dialog#detail").wait_for(state="visible")
    links = page.locator("#detail-links a")
    assert links.first.inner_text() == "Open in viewer"
    state = page.request.get(f"{site}/api/items/{first['id']}").json()["content_state"]
    assert links.first.get_attribute("href") == f"{site}/viewer/?iiif-content={state}"
    assert page.locator("#detail-links a", has_text="Universal Viewer").count() == 1, "configured extras stay"
    page.wait_for_timeout(600)
    _shot(page, "detail")


def test_about_help_and_footer(page: Any, site: str, demo: DemoIndex) -> None:
    page.goto(f"{site}/about.html")
    page.wait_for_function("() => document.querySelector('#indexed-summary').textContent.length > 0")
    assert page.inner_text("#indexed-summary").startswith(f"{len(demo.records)} images")
    assert "iconosearch-lite" in page.inner_text("#model-summary")
    assert "Measured on:" in page.inner_text("#calibration-summary")
    assert page.locator("h2", has_text="Where it fails").count() == 1
    page.wait_for_function(
        "() => document.querySelector('#footer-version').textContent.includes('iconosearch')"
    )
    from iconosearch import __version__

    assert page.inner_text("#footer-version") == f"iconosearch {__version__}"
    assert page.locator(".site-footer a[href='/docs']").count() == 1
    assert page.locator(".site-footer a[href='/readyz']").count() == 1
    _shot(page, "about")
    page.click("a[href='/about/model-card']")
    page.wait_for_selector("main.document h1")
    assert "iconosearch-lite" in page.inner_text("main.document")
    page.goto(f"{site}/help.html")
    page.wait_for_selector("#search-heading:not(:empty)")
    assert page.locator("main section").count() >= 5
    page.goto(f"{site}/docs")
    page.wait_for_selector(".opblock-summary-description")
    summaries = _texts(page, ".opblock-summary-description")
    assert "Search by words and items (query string)" in summaries
    assert not [s for s in summaries if s.endswith((" Get", " Post"))]


def test_phone_layout(context: Any, site: str) -> None:
    page = context.new_page()
    page.set_viewport_size({"width": 390, "height": 844})
    try:
        page.goto(f"{site}/?q=a+house")
        page.wait_for_selector("#grid .card")
        assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth + 1")
        header = page.locator(".site-header").bounding_box()
        assert header["height"] < 844 * 0.2, f"compact header: {header['height']} px"
        details = page.locator("#filters-details")
        assert details.get_attribute("open") is None, "filters folded on a phone"
        marker = page.eval_on_selector("#filters-details summary", "s => getComputedStyle(s).display")
        assert marker == "list-item", "the disclosure marker is shown"
        _shot(page, "phone")
        page.click("#filters-details summary")
        page.locator('[data-facet="rights"]').wait_for()
    finally:
        page.close()


def test_accessibility_with_axe(page: Any, site: str) -> None:
    page.goto(f"{site}/")
    page.wait_for_selector(".message-welcome")
    assert axe_violations(page) == [], "start page"
    _search(page, site, "a ship")
    assert axe_violations(page) == [], "results page"
    page.locator("#grid .card .thumb").first.click()
    page.locator("dialog#detail").wait_for(state="visible")
    page.wait_for_timeout(500)
    assert axe_violations(page) == [], "detail panel"
    for extra in ("about.html", "help.html"):
        page.goto(f"{site}/{extra}")
        page.wait_for_selector("#footer-version:not(:empty)")
        assert axe_violations(page) == [], extra


def test_languages_follow_the_browser_and_switch(context: Any, site: str) -> None:
    page = context.new_page()
    # The browser's language preference, as Chromium reports it to pages.
    page.add_init_script("Object.defineProperty(navigator, 'languages', {get: () => ['de-DE', 'de', 'en']})")

    def multilingual(route: Any) -> None:
        response = route.fetch()
        body = response.json()
        for r in body["results"]:
            r["title"] = {"en": ["A picture"], "nl": ["Een afbeelding"], "de": ["Ein Bild"]}
        route.fulfill(response=response, json=body)

    try:
        page.route("**/api/search", multilingual)
        page.goto(f"{site}/?q=a+tower")
        page.wait_for_selector("#grid .card")
        assert page.evaluate("() => document.documentElement.lang") == "de"
        assert page.inner_text("#search-form button[type=submit]") == "Suchen"
        assert (page.get_attribute("#q", "placeholder") or "").startswith("Beschreiben Sie")
        assert page.locator(".card-title").first.inner_text() == "Ein Bild", (
            "the title in the user's language"
        )
        page.select_option("#lang-switch", "nl")
        page.wait_for_function("() => document.documentElement.lang === 'nl'")
        assert page.inner_text("#search-form button[type=submit]") == "Zoeken"
        assert page.locator(".card-title").first.inner_text() == "Een afbeelding"
        page.select_option("#lang-switch", "fr")
        page.wait_for_function("() => document.documentElement.lang === 'fr'")
        # No French title: the browser's next language, before English.
        assert page.locator(".card-title").first.inner_text() == "Ein Bild"
        assert page.inner_text("#sort option[value=relevance]") == "Pertinence"
        page.reload()
        page.wait_for_selector("#grid .card")
        assert page.evaluate("() => document.documentElement.lang") == "fr", "the choice is remembered"
        page.evaluate("() => localStorage.clear()")
    finally:
        page.close()


def test_string_files_match() -> None:
    """One file per language with the same keys, plural forms and placeholders as English."""
    import re

    folder = Path(__file__).resolve().parents[1] / "web" / "i18n"
    english = json.loads((folder / "en.json").read_text(encoding="utf-8"))

    def holes(value: object) -> set[str]:
        texts = value.values() if isinstance(value, dict) else [value]
        return {h for text in texts for h in re.findall(r"\{(\w+)\}", str(text))}

    for lang in ("de", "fr", "nl", "it"):
        other = json.loads((folder / f"{lang}.json").read_text(encoding="utf-8"))
        assert set(other) == set(english), lang
        for key, value in english.items():
            assert holes(other[key]) == holes(value), (lang, key)
            assert isinstance(other[key], dict) == isinstance(value, dict), (lang, key)
