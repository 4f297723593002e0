"""End to end: the demo flow in a temp data dir, checked through the real HTTP API and a real browser.

The same code path as ``make demo``: the demo folder becomes static IIIF, the API serves it, the harvester
fetches it over HTTP, the embedded default model embeds it, the index is built and the running API picks the
new version up without restart.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from iconosearch.config import Settings
from iconosearch.demo import DemoRun, find_demo_collection, run_demo

pytestmark = pytest.mark.slow

CONCEPTS = {
    # query → words, one of which a relevant result's caption contains
    "a map": ("map", "globe", "world", "atlas", "earth"),
    "a sailing ship": ("ship", "boat", "sail", "galleon", "vessel", "caravel", "yacht"),
    "flowers": ("flower", "rose", "tulip", "daisy", "lily", "blossom", "bouquet", "sunflower", "plant"),
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoRun]:
    data_dir = tmp_path_factory.mktemp("demo-data")
    run = run_demo(Settings(data_dir=data_dir), collection_dir=find_demo_collection(), port=_free_port())
    try:
        yield run
    finally:
        run.server.stop()


def _captions(hit: dict) -> str:
    return " ".join(" ".join(v) for v in hit["caption"].values()).lower()


def test_demo_harvested_over_http_and_indexed(demo: DemoRun) -> None:
    n_images = sum(1 for line in (find_demo_collection() / "metadata.csv").open()) - 1
    assert demo.harvest["records"] >= n_images * 0.95
    assert demo.indexed >= n_images * 0.95
    ready = httpx.get(f"{demo.url}/readyz").json()
    assert ready["index_version"] == demo.index_version


@pytest.mark.parametrize("query", sorted(CONCEPTS))
def test_text_queries_find_the_concept_in_top5(demo: DemoRun, query: str) -> None:
    resp = httpx.get(f"{demo.url}/api/search", params={"q": query, "k": 5}, timeout=30)
    assert resp.status_code == 200
    hits = resp.json()["results"]
    assert len(hits) == 5
    words = CONCEPTS[query]
    relevant = [h for h in hits if any(re.search(rf"\b{w}", _captions(h)) for w in words)]
    assert relevant, f"no result for {query!r} mentions {words}: {[_captions(h)[:60] for h in hits]}"


def test_image_query_returns_the_same_image_first(demo: DemoRun) -> None:
    folder = find_demo_collection()
    image = sorted(p for p in folder.iterdir() if p.suffix.lower() in {".jpg", ".png"})[7]
    with image.open("rb") as fh:
        resp = httpx.post(
            f"{demo.url}/api/search/image", files={"file": (image.name, fh, "image/jpeg")}, timeout=30
        )
    assert resp.status_code == 200, resp.text
    top = resp.json()["results"][0]
    assert top["score"] > 0.95
    item = httpx.get(f"{demo.url}/api/items/{top['id']}").json()
    # The manifest of the top hit is the one generated for this very file (its slug + a short hash).
    assert Path(item["manifest"]).stem.startswith(image.stem.lower())


def test_ui_renders_results_in_chromium(demo: DemoRun, tmp_path: Path) -> None:
    from tests.helpers.browser import chromium, screenshot

    with chromium(tmp_path / "profile") as context:
        page = context.new_page()
        page.goto(f"{demo.url}/?q=a+sailing+ship")
        page.wait_for_selector("#grid li.card img", timeout=30_000)
        assert page.locator("#grid li.card").count() >= 5
        # Thumbnails come over HTTP from the API's own static IIIF and really load.
        loaded = page.evaluate(
            "() => [...document.querySelectorAll('#grid li.card img')].slice(0, 5)"
            ".every(img => img.complete && img.naturalWidth > 0)"
        )
        page.wait_for_timeout(500)
        screenshot(page, "e2e-demo-sailing-ship")
        assert loaded or page.evaluate(
            "() => [...document.querySelectorAll('#grid li.card img')].slice(0, 5)"
            ".every(img => img.complete && img.naturalWidth > 0)"
        )
