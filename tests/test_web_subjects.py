"""ICONCLASS subject suggestions in the web UI, in a real browser (Debian's Chromium), against a real server,
a real index and the real ICONCLASS data: a German-speaking user types "Apfel", picks the suggestion and
gets the results of ``iconclass:25G21(APPLE)``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

pytest.importorskip("iconclass")

from iconosearch.api.app import create_app
from iconosearch.config import Settings
from iconosearch.subjects import vocabulary
from tests.helpers.browser import checked_page, chromium, live_server
from tests.helpers.demo_index import DemoIndex, shared_demo_index

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TIMEOUT_MS = 20_000


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    demo: DemoIndex = shared_demo_index(tmp_path_factory)
    vocabulary("iconclass")  # loaded before the page asks (the server answers 503 while it loads)
    app = create_app(Settings(data_dir=demo.data_dir), reload_interval_s=0)
    with live_server(app, demo.port) as base:
        yield base


def test_typing_a_german_word_suggests_the_iconclass_subject_and_searches_it(
    site: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # A German browser: the UI follows its language and asks for German labels.
    with chromium(tmp_path_factory.mktemp("chromium-subjects"), locale="de-DE") as ctx:
        ctx.set_default_timeout(TIMEOUT_MS)
        with checked_page(ctx) as page:
            _search_by_a_german_word(page, site)


def _search_by_a_german_word(page: Any, site: str) -> None:
    page.goto(f"{site}/")
    with page.expect_response(lambda r: "/api/iconclass/suggest" in r.url and "Apfel" in r.url) as resp:
        page.locator("#q").press_sequentially("Apfel", delay=40)
    assert resp.value.status == 200
    assert parse_qs(urlsplit(resp.value.url).query)["lang"] == ["de"]
    option = page.locator("#suggestions [role=option]", has_text="25G21(APPLE)").first
    option.wait_for()
    assert "Früchte: Apfel" in option.inner_text()
    with page.expect_response(
        lambda r: r.url.endswith("/api/search") and r.request.method == "POST"
    ) as search:
        option.dispatch_event("mousedown")
    body = search.value.json()
    assert search.value.status == 200, body
    assert body["results"], "the subject query finds images"
    page.wait_for_function("() => new URLSearchParams(location.search).get('q') === 'iconclass:25G21(APPLE)'")
    page.wait_for_selector("#grid .card")
    assert page.input_value("#q") == "iconclass:25G21(APPLE)"


@pytest.mark.parametrize(
    ("locale", "typed", "label", "label_language"),
    [
        ("en-GB", "apple", "fruits: apple", "en"),
        ("fr-FR", "pomme", "fruits : pomme", "fr"),
        ("it-IT", "mela", "frutti: mela", "it"),
        # ICONCLASS has no Dutch texts: a Dutch interface gets the English label, marked as English.
        ("nl-NL", "apple", "fruits: apple", "en"),
    ],
)
def test_suggestions_come_in_each_interface_language(
    site: str,
    tmp_path_factory: pytest.TempPathFactory,
    locale: str,
    typed: str,
    label: str,
    label_language: str,
) -> None:
    with chromium(tmp_path_factory.mktemp("chromium-subjects-lang"), locale=locale) as ctx:
        ctx.set_default_timeout(TIMEOUT_MS)
        with checked_page(ctx) as page:
            page.goto(f"{site}/")
            with page.expect_response(lambda r: "/api/iconclass/suggest" in r.url) as resp:
                page.locator("#q").press_sequentially(typed, delay=40)
            assert resp.value.status == 200
            assert parse_qs(urlsplit(resp.value.url).query)["lang"] == [locale[:2]]
            option = page.locator("#suggestions [role=option]", has_text="25G21(APPLE)").first
            option.wait_for()
            shown = option.locator("span[lang]")
            assert shown.inner_text() == f"25G21(APPLE) {label}"
            assert shown.get_attribute("lang") == label_language
