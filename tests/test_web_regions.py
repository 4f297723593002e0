"""Regions in the search page, in a real browser (Debian's Chromium) against a real server and index: the
region drawn on a result card, the deep-zoom view's overlay and zoom, and "search this detail" (drag a box,
or search what is in view), whose query is an item term with a region in image pixels and whose link
reproduces it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from iconosearch.api.app import create_app
from iconosearch.config import Settings
from tests.helpers.browser import axe_violations, checked_page, chromium, live_server, screenshot
from tests.helpers.demo_index import DemoIndex, shared_demo_index

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
def context(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    # CSP bypassed only so that axe-core can be injected into the page.
    with chromium(tmp_path_factory.mktemp("chromium-regions"), locale="en-GB", bypass_csp=True) as ctx:
        ctx.set_default_timeout(TIMEOUT_MS)
        yield ctx


@pytest.fixture
def page(context: Any) -> Iterator[Any]:
    with checked_page(context) as page:
        yield page


def _item(site: str, rid: str) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(f"{site}/api/items/{rid}", timeout=30).json()
    return body


def _box(text: str) -> tuple[int, int, int, int]:
    x, y, w, h = (int(v) for v in text.split(","))
    return x, y, w, h


def _picture_rect(page: Any, card: str) -> dict[str, float]:
    """Where the picture is drawn in the card's thumbnail box (``object-fit: contain``), in page pixels."""
    rect: dict[str, float] = page.eval_on_selector(
        f"{card} .thumb img",
        """img => {
            const b = img.getBoundingClientRect();
            const s = Math.min(b.width / img.naturalWidth, b.height / img.naturalHeight);
            const w = img.naturalWidth * s, h = img.naturalHeight * s;
            return {x: b.left + (b.width - w) / 2, y: b.top + (b.height - h) / 2, w, h};
        }""",
    )
    return rect


def _small_box(item: dict[str, Any]) -> str:
    """A detail a quarter of the image wide and high, right of the centre: not where a whole view is."""
    w, h = item["image_service"]["width"], item["image_service"]["height"]
    return f"{w // 2},{h // 4},{w // 4},{h // 4}"


def _matching_a_detail(rid: str, box: str, viewers: dict[str, Any]) -> Any:
    """Rewrites the API's answer so that result ``rid`` matched the detail ``box`` (image pixels), as a
    region-indexed collection's hit says (``matched_region``, and the viewer links a matched hit always
    carries; its level-0 thumbnail stays whole). ``viewers``: the item's own links."""

    def handler(route: Any) -> None:
        response = route.fetch()
        body = response.json()
        for r in body["results"]:
            if r["id"] == rid:
                r.update(matched_region=True, image_region=box, region=box)
                # The result's viewer links target the detail (the item's target its canvas).
                r["viewers"] = {**viewers, "viewer": viewers["viewer"] + "#the-detail"}
        route.fulfill(response=response, json=body)

    return handler


def _short(title: str, n: int = 40) -> str:
    """A title as chips show it (``truncate`` in web/common.js)."""
    return title if len(title) <= n else f"{title[: n - 1]}…"


def _search_body(request: Any) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(request.post_data or "{}")
    return body


def test_a_whole_thumbnail_shows_the_region_it_stands_for(page: Any, site: str, demo: DemoIndex) -> None:
    item = _item(site, demo.region_id)
    assert item["image_service"]["level"] == 0, "level 0 cannot crop: the card shows the whole image"
    # Every result (the test index is smaller than two pages), so the region record is among them.
    page.goto(f"{site}/?q=a+picture&pages=2")
    card = f'.card[data-id="{demo.region_id}"]'
    page.locator(card).scroll_into_view_if_needed()  # thumbnails load lazily
    page.wait_for_selector(f"{card} .region-box")
    page.wait_for_function(f"() => document.querySelector('{card} .thumb img').complete")
    pic = _picture_rect(page, card)
    mark = page.locator(f"{card} .region-box").bounding_box()
    x, y, w, h = _box(item["image_region"])
    full_w, full_h = item["image_service"]["width"], item["image_service"]["height"]
    expected = {
        "x": pic["x"] + x / full_w * pic["w"],
        "y": pic["y"] + y / full_h * pic["h"],
        "width": w / full_w * pic["w"],
        "height": h / full_h * pic["h"],
    }
    for key, value in expected.items():
        assert abs(mark[key] - value) < 2, (key, mark, expected)
    # Only regions are outlined, and this one was not matched as a detail of a bigger picture.
    assert page.locator(".card .region-box").count() == 1
    assert page.locator(f"{card} .detail-badge").count() == 0


def test_a_matched_detail_is_outlined_on_the_card_and_zoomed_to_in_the_view(
    page: Any, site: str, demo: DemoIndex
) -> None:
    rid = demo.records[2].id
    item = _item(site, rid)
    box = _small_box(item)
    page.route("**/api/search", _matching_a_detail(rid, box, item["viewers"]))
    page.goto(f"{site}/?q=a+picture&pages=2")
    card = page.locator(f'.card[data-id="{rid}"]')
    card.scroll_into_view_if_needed()  # thumbnails load lazily
    card.locator(".region-box").wait_for()
    assert card.locator(".detail-badge").inner_text() == "Matched a detail"
    screenshot(page, "ui-region-card")
    card.locator(".thumb").click()
    page.locator("dialog#detail").wait_for(state="visible")
    overlay = page.locator("#viewer .region-overlay")
    overlay.wait_for()
    assert "A detail of this image matched" in page.inner_text(".detail-match")
    viewer_link = page.get_by_role("link", name="Open in viewer").get_attribute("href") or ""
    assert viewer_link.endswith("#the-detail"), viewer_link
    # Zoomed to the detail on open: it spans most of the view one way (a quarter of it when not zoomed).
    page.wait_for_function(
        """() => {
            const o = document.querySelector('#viewer .region-overlay').getBoundingClientRect();
            const v = document.querySelector('#viewer').getBoundingClientRect();
            return o.width > 0.6 * v.width || o.height > 0.6 * v.height;
        }"""
    )
    o = overlay.bounding_box()
    v = page.locator("#viewer").bounding_box()
    assert v["x"] <= o["x"] and o["x"] + o["width"] <= v["x"] + v["width"] + 1, (o, v)
    assert v["y"] <= o["y"] and o["y"] + o["height"] <= v["y"] + v["height"] + 1, (o, v)
    page.wait_for_timeout(500)
    screenshot(page, "ui-region-detail")
    assert axe_violations(page) == [], "detail panel with a region"


def test_drag_a_box_to_search_this_detail(page: Any, context: Any, site: str, demo: DemoIndex) -> None:
    rid = demo.records[3].id
    item = _item(site, rid)
    title = " ".join(item["title"]["en"])
    full_w, full_h = item["image_service"]["width"], item["image_service"]["height"]
    page.goto(f"{site}/?item={rid}")
    page.locator("#viewer-tools").wait_for()
    page.wait_for_selector("#viewer .openseadragon-canvas canvas", state="attached")
    page.click("#detail-select")
    assert page.get_attribute("#detail-select", "aria-pressed") == "true"
    assert page.locator("#select-hint").is_visible()
    v = page.locator("#viewer").bounding_box()
    with page.expect_response(lambda r: r.url.endswith("/api/search") and r.request.method == "POST") as resp:
        page.mouse.move(v["x"] + v["width"] * 0.45, v["y"] + v["height"] * 0.4)
        page.mouse.down()
        page.mouse.move(v["x"] + v["width"] * 0.5, v["y"] + v["height"] * 0.5, steps=4)
        page.mouse.move(v["x"] + v["width"] * 0.6, v["y"] + v["height"] * 0.6, steps=4)
        page.mouse.up()
    body = _search_body(resp.value.request)
    [term] = body["terms"]
    assert term["kind"] == "item" and term["value"] == rid and term["weight"] == 1, term
    x, y, w, h = _box(term["region"])
    assert min(x, y) >= 0 and x + w <= full_w and y + h <= full_h, (term, full_w, full_h)
    assert 0 < w < full_w and 0 < h < full_h, "a detail, not the whole image"
    # The dialog closes, the results are the detail's, and the chip names what is searched.
    page.locator("dialog#detail").wait_for(state="hidden")
    assert resp.value.ok, resp.value.text()
    results = resp.value.json()["results"]
    page.wait_for_function(
        "ids => JSON.stringify([...document.querySelectorAll('#grid .card')].map(c => c.dataset.id))"
        " === JSON.stringify(ids)",
        arg=[r["id"] for r in results],
    )
    label = f"Detail of {_short(title)}"
    assert page.locator(".chip-detail span").first.inner_text() == label
    detail = parse_qs(urlsplit(page.url).query)["detail"]
    assert detail == [f"{rid}:{term['region']}"]
    # The link reproduces the search, in a page that never saw the item.
    other = context.new_page()
    with other.expect_request(lambda r: r.url.endswith("/api/search") and r.method == "POST") as req:
        other.goto(page.url)
    assert _search_body(req.value)["terms"] == [term]
    other.wait_for_selector(".chip-detail")
    other.wait_for_function("t => document.querySelector('.chip-detail span').textContent === t", arg=label)
    other.close()


def test_search_what_is_in_view_with_the_keyboard(page: Any, site: str, demo: DemoIndex) -> None:
    rid = demo.records[5].id
    item = _item(site, rid)
    full_w, full_h = item["image_service"]["width"], item["image_service"]["height"]
    page.goto(f"{site}/?item={rid}")
    page.locator("#viewer-tools").wait_for()
    page.wait_for_selector("#viewer .openseadragon-canvas canvas", state="attached")
    # Zoom in with OpenSeadragon's keyboard shortcut (it zooms while "=" is held down), then Tab to ours.
    page.focus("#viewer .openseadragon-canvas")
    page.keyboard.down("=")
    page.wait_for_timeout(1500)
    page.keyboard.up("=")
    page.wait_for_timeout(1000)  # the end of the zoom animation
    page.focus("#detail-select")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "detail-in-view"
    with page.expect_request(lambda r: r.url.endswith("/api/search") and r.method == "POST") as req:
        page.keyboard.press("Enter")
    [term] = _search_body(req.value)["terms"]
    assert term["kind"] == "item" and term["value"] == rid
    x, y, w, h = _box(term["region"])
    assert min(x, y) >= 0 and x + w <= full_w and y + h <= full_h
    assert w * h < full_w * full_h, "zoomed in: what is in view is a detail"
