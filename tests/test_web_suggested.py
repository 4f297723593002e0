"""Machine-suggested ICONCLASS subjects in the web UI, in a real browser (Debian's Chromium), against a real
server and an index built with suggestions on: the "Suggested subject (machine)" facet by top-level division
(named from the real ``iconclass`` vocabulary in the interface language), its filter and share link, and
the detail panel's section of suggestions.

The index holds the demo images embedded by the test's hash embedder, with ICONCLASS label vectors from
the same embedder (the real model would take minutes to embed 3,448 labels): the suggestions mean nothing
about the pictures, but they are made, stored and served by the real code from the real vocabulary."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from iconosearch.api.app import create_app
from iconosearch.config import Settings
from iconosearch.index.versions import BuildOptions
from iconosearch.subjects import vocabulary
from iconosearch.subjects.iconclass import Iconclass
from iconosearch.subjects.suggested import load_labels
from tests.helpers.browser import axe_violations, checked_page, chromium, live_server
from tests.helpers.demo_index import DemoIndex, build_demo_index, free_port
from tests.helpers.index_data import HashEmbedder

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TIMEOUT_MS = 20_000
HEADINGS = {
    "en-GB": ("Suggested subject (machine)", "Suggested subjects (machine)"),
    "de-DE": ("Vorgeschlagenes Thema (maschinell)", "Vorgeschlagene Themen (maschinell)"),
    "nl-NL": ("Voorgesteld onderwerp (machine)", "Voorgestelde onderwerpen (machine)"),
}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoIndex:
    data_dir = tmp_path_factory.mktemp("suggested-data")
    embedder = HashEmbedder()
    vocab = vocabulary("iconclass")
    assert isinstance(vocab, Iconclass)
    labels = load_labels(embedder, data_dir / "labels", lambda: vocab)
    options = BuildOptions(subject_labels=labels)
    return build_demo_index(data_dir, f"http://127.0.0.1:{free_port()}", embedder=embedder, options=options)


@pytest.fixture(scope="module")
def site(demo: DemoIndex) -> Iterator[str]:
    vocabulary("iconclass")  # loaded before the page asks (the UI retries while the server loads it)
    app = create_app(Settings(data_dir=demo.data_dir), reload_interval_s=0)
    with live_server(app, demo.port) as base:
        yield base


def _context(tmp_path_factory: pytest.TempPathFactory, locale: str) -> Any:
    # CSP bypassed only so that axe-core can be injected into the page.
    return chromium(tmp_path_factory.mktemp("chromium-suggested"), locale=locale, bypass_csp=True)


def _division_text(division: str, locale: str) -> tuple[str, str]:
    """The division's ICONCLASS text in the interface language, and that text's language."""
    subject = vocabulary("iconclass").resolve(division, locale[:2])
    return subject.text, subject.language


def _result_ids(page: Any) -> list[str]:
    ids: list[str] = page.eval_on_selector_all("#grid .card", "cards => cards.map(c => c.dataset.id)")
    return ids


@pytest.mark.parametrize("locale", ["de-DE", "nl-NL"])
def test_the_division_facet_filters_and_round_trips_through_the_link(
    site: str, demo: DemoIndex, tmp_path_factory: pytest.TempPathFactory, locale: str
) -> None:
    like = demo.records[0].id
    counts = httpx.get(f"{site}/api/facets", timeout=30).json()["facets"]["suggested_division"]
    assert counts, "the index was built with suggestions"
    with _context(tmp_path_factory, locale) as ctx:
        ctx.set_default_timeout(TIMEOUT_MS)
        with checked_page(ctx) as page:
            page.goto(f"{site}/?like={like}")
            page.wait_for_selector("#grid .card")
            facet = page.locator('[data-facet="suggested_division"]')
            facet.wait_for()
            assert facet.locator("legend").inner_text() == HEADINGS[locale][0]
            assert facet.locator(".facet-note").inner_text(), "marked as machine-suggested"
            division = facet.locator("input").first.get_attribute("value")
            assert division in counts
            text, language = _division_text(division, locale)
            label = facet.locator(f'label[for="f-suggested_division-{division}"] .iconclass-label')
            page.wait_for_function(
                "([el, text]) => el.textContent === text", arg=[label.element_handle(), text]
            )
            # Dutch: ICONCLASS has no Dutch texts; the English one is shown, marked as English.
            assert label.get_attribute("lang") == language == ("en" if locale == "nl-NL" else "de")

            with page.expect_response(
                lambda r: r.url.endswith("/api/search") and r.request.method == "POST"
            ) as answer:
                facet.locator(f'input[value="{division}"]').check()
            assert answer.value.request.post_data_json["filters"]["suggested_divisions"] == [division]
            page.wait_for_function(
                "d => new URLSearchParams(location.search).getAll('suggested_division').join() === d",
                arg=division,
            )
            page.wait_for_selector("#grid .card")
            shown = _result_ids(page)
            expected = httpx.get(
                f"{site}/api/search",
                params={"like": like, "suggested_division": division, "k": 24},
                timeout=30,
            ).json()["results"]
            assert shown == [r["id"] for r in expected]
            link = page.url
            assert axe_violations(page) == [], "results with the suggested-subject facet"
        with checked_page(ctx) as fresh:
            fresh.goto(link)
            fresh.wait_for_selector("#grid .card")
            assert fresh.locator(f'[data-facet="suggested_division"] input[value="{division}"]').is_checked()
            assert _result_ids(fresh) == shown
            assert parse_qs(urlsplit(fresh.url).query)["suggested_division"] == [division]


def test_the_detail_panel_shows_the_index_suggestions_in_the_interface_language(
    site: str, demo: DemoIndex, tmp_path_factory: pytest.TempPathFactory
) -> None:
    rid = demo.records[1].id
    item = httpx.get(f"{site}/api/items/{rid}", timeout=30).json()
    notations = [s["notation"] for s in item["suggested_subjects"]]
    assert len(notations) == 5 and {s["source"] for s in item["suggested_subjects"]} == {"machine"}
    german = vocabulary("iconclass").resolve(notations[0], "de")
    with _context(tmp_path_factory, "de-DE") as ctx:
        ctx.set_default_timeout(TIMEOUT_MS)
        with checked_page(ctx) as page:
            page.goto(f"{site}/?item={rid}")
            page.locator("dialog#detail").wait_for(state="visible")
            section = page.locator("#detail-suggested-section")
            section.wait_for(state="visible")
            assert section.locator("h3").inner_text() == HEADINGS["de-DE"][1]
            rows = section.locator("li")
            assert [rows.nth(i).get_attribute("data-notation") for i in range(rows.count())] == notations
            first = rows.nth(0).locator(".iconclass-label")
            want = german.text.split(";")[0].strip()
            page.wait_for_function(
                "([el, text]) => el.textContent === text", arg=[first.element_handle(), want]
            )
            assert first.get_attribute("lang") == german.language
            assert f"{item['suggested_subjects'][0]['score']:.2f}" in rows.nth(0).inner_text()
            # Never mixed into the catalogue's metadata.
            assert notations[0] not in page.locator("#detail-metadata").inner_text()
            assert axe_violations(page) == [], "detail panel with suggestions"
