"""End to end: the demo flow in a temp data dir, checked through the real HTTP API and a real browser.

The same code path as ``make demo``: the demo folder becomes static IIIF, the API serves it, the harvester
fetches it over HTTP, the embedded default model embeds it, the index is built and the running API picks the
new version up without restart.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from iconosearch.config import Settings
from iconosearch.demo_job import EXAMPLE_QUERIES, DemoRun, find_demo_collection, run_demo
from tests.helpers.demo_index import free_port

pytestmark = pytest.mark.slow

# Query → words, one of which a relevant result's caption contains. ~20 of the 498 items are ship
# paintings, so a ranking that ignored the query would rarely pass. This holds the pipeline to what the
# shipped model answers; how it does on the demo's printed queries (chosen before any result was seen,
# e.g. "a winter landscape with skaters", a known miss of the heritage default) is measured and reported
# in the model card, not asserted.
CONCEPTS = {
    "ships in a harbour": ("ship", "brig", "frigate", "boat", "vessel", "sail", "harbour", "port"),
}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoRun]:
    data_dir = tmp_path_factory.mktemp("demo-data")
    run = run_demo(Settings(data_dir=data_dir), collection_dir=find_demo_collection(), port=free_port())
    try:
        yield run
    finally:
        run.server.stop()


def _captions(hit: dict) -> str:
    return " ".join(" ".join(v) for v in hit["caption"].values()).lower()


def _rows() -> list[dict[str, str]]:
    with (find_demo_collection() / "metadata.csv").open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def test_demo_harvested_over_http_and_indexed(demo: DemoRun) -> None:
    n_images = len(_rows())
    assert demo.harvest["records"] == n_images
    assert demo.indexed == n_images
    ready = httpx.get(f"{demo.url}/readyz").json()
    assert ready["index_version"] == demo.index_version
    # The printed example queries each got a full top 5.
    assert [e.query for e in demo.examples] == list(EXAMPLE_QUERIES)
    assert all(len(e.titles) == 5 and all(e.titles) for e in demo.examples)


def test_first_screen_offers_the_collections_example_queries(demo: DemoRun) -> None:
    info = httpx.get(f"{demo.url}/api/collections").json()
    (demo_collection,) = [c for c in info["collections"] if c["name"] == "demo"]
    assert demo_collection["example_queries"][:3] == list(EXAMPLE_QUERIES)


@pytest.mark.parametrize("query", sorted(CONCEPTS))
def test_text_queries_find_the_concept_in_top5(demo: DemoRun, query: str) -> None:
    resp = httpx.get(f"{demo.url}/api/search", params={"q": query, "k": 5}, timeout=30)
    assert resp.status_code == 200
    hits = resp.json()["results"]
    assert len(hits) == 5
    words = CONCEPTS[query]
    relevant = [h for h in hits if any(re.search(rf"\b{w}", _captions(h)) for w in words)]
    assert relevant, f"no result for {query!r} mentions {words}: {[_captions(h)[:60] for h in hits]}"


def test_the_watercolours_come_first_for_a_watercolour_query(demo: DemoRun) -> None:
    # 200 of 498 items are watercolours: five out of five by chance is about 1 %.
    resp = httpx.get(f"{demo.url}/api/search", params={"q": "a botanical watercolour of fruit", "k": 5})
    hits = resp.json()["results"]
    assert len(hits) == 5
    assert all("botanical watercolor" in _captions(h) for h in hits), [_captions(h)[:60] for h in hits]


def test_rights_come_from_the_metadata_per_item(demo: DemoRun) -> None:
    search = f"{demo.url}/api/search"
    params = {"q": "a figure", "rights": "restricted", "k": 100}
    restricted = httpx.get(search, params=params).json()["results"]
    assert len(restricted) == 85 and all(h["rights"].endswith("/licenses/by-nd/4.0/") for h in restricted)
    open_ = httpx.get(search, params={"q": "a figure", "rights": "open", "k": 5}).json()["results"]
    assert len(open_) == 5 and all(h["rights"].endswith("/publicdomain/mark/1.0/") for h in open_)


def test_image_query_returns_the_same_image_first(demo: DemoRun) -> None:
    folder = find_demo_collection()
    row = next(r for r in _rows() if r["file"].startswith("wga-paintings/"))
    image = folder / row["file"]
    with image.open("rb") as fh:
        resp = httpx.post(
            f"{demo.url}/api/search/image", files={"file": (image.name, fh, "image/jpeg")}, timeout=30
        )
    assert resp.status_code == 200, resp.text
    top = resp.json()["results"][0]
    assert top["score"] > 0.95
    item = httpx.get(f"{demo.url}/api/items/{top['id']}").json()
    # The top hit is this very file: its manifest is named after it, and carries its title.
    assert image.stem.lower() in item["manifest"].lower()
    assert row["title"] in " ".join(" ".join(v) for v in item["manifest_label"].values())


def test_ui_renders_results_in_chromium(demo: DemoRun, tmp_path: Path) -> None:
    from tests.helpers.browser import chromium, screenshot

    with chromium(tmp_path / "profile") as context:
        page = context.new_page()
        page.goto(f"{demo.url}/?q=ships+in+a+harbour")
        page.wait_for_selector("#grid li.card img", timeout=30_000)
        assert page.locator("#grid li.card").count() >= 5
        # Thumbnails come over HTTP from the API's own static IIIF and really load.
        loaded = page.evaluate(
            "() => [...document.querySelectorAll('#grid li.card img')].slice(0, 5)"
            ".every(img => img.complete && img.naturalWidth > 0)"
        )
        page.wait_for_timeout(500)
        screenshot(page, "e2e-demo-ships-in-a-harbour")
        assert loaded or page.evaluate(
            "() => [...document.querySelectorAll('#grid li.card img')].slice(0, 5)"
            ".every(img => img.complete && img.naturalWidth > 0)"
        )
