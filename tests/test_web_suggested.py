"""Machine-suggested subjects in the detail panel, in a real browser (Debian's Chromium), real server.

The served demo index is built without suggestions (its stand-in model would make them meaningless), so the
item answers get ``suggested_subjects`` added on their way to the page; what reaches the API is tested in
``test_suggested_subjects``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from iconosearch.api.app import create_app
from iconosearch.config import Settings
from tests.helpers.browser import axe_violations, chromium, live_server
from tests.helpers.demo_index import DemoIndex, shared_demo_index

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SUGGESTED = [
    {
        "notation": "25G21(APPLE)",
        "label": "fruits: apple",
        "score": 0.31,
        "division": "2",
        "source": "machine",
    },
    {"notation": "25G21(PEAR)", "label": "fruits: pear", "score": 0.29, "division": "2", "source": "machine"},
]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    demo: DemoIndex = shared_demo_index(tmp_path_factory)
    with live_server(create_app(Settings(data_dir=demo.data_dir), reload_interval_s=0), demo.port) as base:
        yield base


@pytest.mark.parametrize(
    ("locale", "heading"),
    [("en-GB", "Suggested subjects (machine)"), ("de-DE", "Vorgeschlagene Themen (maschinell)")],
)
def test_detail_panel_shows_suggestions_apart_from_the_catalogue(
    site: str, tmp_path_factory: pytest.TempPathFactory, locale: str, heading: str
) -> None:
    def with_suggestions(route: Any) -> None:
        response = route.fetch()
        body = response.json()
        assert body["suggested_subjects"] == [], "the demo index has none of its own"
        body["suggested_subjects"] = SUGGESTED
        route.fulfill(response=response, json=body)

    with chromium(tmp_path_factory.mktemp("chromium-suggested"), locale=locale, bypass_csp=True) as ctx:
        ctx.set_default_timeout(20_000)
        page = ctx.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.route("**/api/items/*", with_suggestions)
        page.goto(f"{site}/?q=a+tower")
        page.wait_for_selector("#grid .card")
        page.locator("#grid .card .thumb").first.click()
        page.locator("dialog#detail").wait_for(state="visible")
        section = page.locator("#detail-suggested-section")
        section.wait_for(state="visible")
        assert section.locator("h3").inner_text() == heading
        rows = section.locator("li")
        assert [rows.nth(i).get_attribute("data-notation") for i in range(rows.count())] == [
            "25G21(APPLE)",
            "25G21(PEAR)",
        ]
        assert "fruits: apple" in rows.nth(0).inner_text() and "0.31" in rows.nth(0).inner_text()
        # Never mixed into the catalogue's metadata.
        assert "25G21" not in page.locator("#detail-metadata").inner_text()
        assert axe_violations(page) == [], "detail panel with suggestions"
        assert not errors, f"JavaScript errors: {errors}"
