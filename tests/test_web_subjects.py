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
from tests.helpers.browser import chromium, live_server
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


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    # A German browser: the UI follows its language and asks for German labels.
    with chromium(tmp_path_factory.mktemp("chromium-subjects"), locale="de-DE") as ctx:
        ctx.set_default_timeout(TIMEOUT_MS)
        page = ctx.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        yield page
        assert not errors, f"JavaScript errors: {errors}"


def test_typing_a_german_word_suggests_the_iconclass_subject_and_searches_it(page: Any, site: str) -> None:
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
