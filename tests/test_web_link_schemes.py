"""No way in through harvested links, in a real browser (Debian's Chromium) against a real server: a
manifest whose homepage, seeAlso, provider homepage, rights and thumbnail are ``javascript:`` (or other
non-http) URLs yields a page with no such link, whether the URLs were dropped by the harvester's parser
(a harvest now) or reach the UI from an index written before the parser filtered them (0.1 stored any
scheme): the UI refuses them itself (``web/common.js``)."""

from __future__ import annotations

import asyncio
import dataclasses
import io
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from PIL import Image

from iconosearch.api.app import create_app
from iconosearch.config import Settings
from iconosearch.harvest.harvester import harvest
from iconosearch.harvest.state import HarvestState
from iconosearch.index.store import IndexStore
from iconosearch.index.versions import EmbeddedRecord, ModelInfo, write_version
from iconosearch.models.embedder import load_embedder
from iconosearch.records import ImageRecord, Link, Provider, record_id
from tests.helpers.browser import chromium, live_server
from tests.helpers.demo_index import MODEL, free_port
from tests.helpers.http_server import FixtureServer, jpeg
from tests.test_harvest import settings_for

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TIMEOUT_MS = 20_000
# Each sets a flag when it runs, so that the test can tell that none did.
EVIL = {
    "homepage": "javascript:window.__pwned='homepage'",
    "see_also": "JavaScript:window.__pwned='seeAlso'",
    "provider": " javascript:window.__pwned='provider'",
    "rights": "javascript:window.__pwned='rights'",
    "thumbnail": "data:text/html,<script>window.__pwned='thumbnail'</script>",
    "vbscript": "vbscript:msgbox(1)",
}


def _manifest(srv: FixtureServer) -> str:
    url = srv.url("/evil/manifest.json")
    doc = {
        "@context": "http://iiif.io/api/presentation/3/context.json",
        "id": url,
        "type": "Manifest",
        "label": {"en": ["A harvested manifest with hostile links"]},
        "homepage": [
            {"id": EVIL["homepage"], "type": "Text", "label": {"en": ["Evil homepage"]}},
            {"id": EVIL["vbscript"], "type": "Text", "label": {"en": ["Evil vbscript"]}},
        ],
        "seeAlso": [{"id": EVIL["see_also"], "type": "Dataset"}],
        "thumbnail": [{"id": EVIL["thumbnail"], "type": "Image"}],
        "rights": EVIL["rights"],
        "provider": [
            {
                "id": srv.url("/evil/provider"),
                "type": "Agent",
                "label": {"en": ["Evil Provider"]},
                "homepage": [{"id": EVIL["provider"], "type": "Text"}],
            }
        ],
        "items": [
            {
                "id": f"{url}/c1",
                "type": "Canvas",
                "width": 160,
                "height": 120,
                "items": [
                    {
                        "id": f"{url}/c1/p",
                        "type": "AnnotationPage",
                        "items": [
                            {
                                "id": f"{url}/c1/a",
                                "type": "Annotation",
                                "motivation": "painting",
                                "target": f"{url}/c1",
                                "body": {
                                    "id": srv.url("/evil/p.jpg"),
                                    "type": "Image",
                                    "format": "image/jpeg",
                                },
                            }
                        ],
                    }
                ],
            }
        ],
    }
    return srv.add_json("/evil/manifest.json", doc)


def _as_stored_by_0_1(record: ImageRecord) -> ImageRecord:
    """The record as 0.1's parser stored it, hostile links and all (a separate canvas, so its own id)."""
    canvas = f"{record.canvas_id}/old"
    return dataclasses.replace(
        record,
        id=record_id(record.manifest_id, canvas, record.image_id),
        canvas_id=canvas,
        homepage=(
            Link(id=EVIL["homepage"], label={"en": ["Evil homepage"]}),
            Link(id=EVIL["vbscript"], label={"en": ["Evil vbscript"]}),
        ),
        rights=EVIL["rights"],
        thumbnail=EVIL["thumbnail"],
        providers=(Provider(label={"en": ["Evil Provider"]}, homepage=EVIL["provider"]),),
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[str]]]:
    tmp = tmp_path_factory.mktemp("link-schemes")
    picture = jpeg((160, 120), "hostile-links")
    with FixtureServer() as srv:
        srv.add("/evil/p.jpg", picture, content_type="image/jpeg")
        manifest = _manifest(srv)
        harvest_settings = settings_for(tmp)
        # In a thread of its own: Playwright's sync API may already run an event loop in this one.
        with ThreadPoolExecutor(1) as pool:
            summary = pool.submit(asyncio.run, harvest(harvest_settings, manifest)).result()
        with HarvestState(harvest_settings.data_dir / "state.sqlite") as state:
            [harvested] = list(state.iter_records(summary.collection))
        records = [harvested, _as_stored_by_0_1(harvested)]
        embedder = load_embedder(MODEL)
        with Image.open(io.BytesIO(picture)) as im:
            vectors = embedder.embed_images([im.convert("RGB")] * len(records))
        data_dir = tmp / "served"
        write_version(
            IndexStore(data_dir / "indexes", "default"),
            [EmbeddedRecord(r, f"sha-{i}", vectors[i]) for i, r in enumerate(records)],
            ModelInfo(spec=embedder.spec, fingerprint=embedder.fingerprint, dim=embedder.dim),
        )
        app = create_app(Settings(data_dir=data_dir), reload_interval_s=0)
        with live_server(app, free_port()) as base:
            yield base, [r.id for r in records]


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with chromium(tmp_path_factory.mktemp("chromium-links"), locale="en-GB") as ctx:
        ctx.set_default_timeout(TIMEOUT_MS)
        yield ctx


# Every URL-bearing attribute in the page's body (the head's own favicon is `data:,`), resolved as the
# browser would follow it.
LINKS_JS = """() => [...document.body.querySelectorAll('[href], [src], [action], [formaction]')].flatMap(e =>
    ['href', 'src', 'action', 'formaction'].filter(a => e.hasAttribute(a)).map(a =>
        [e.tagName, a, e.getAttribute(a), new URL(e.getAttribute(a), location.href).protocol]))"""


def test_hostile_link_schemes_never_become_links(context: Any, site: tuple[str, list[str]]) -> None:
    base, ids = site
    page = context.new_page()
    dialogs: list[str] = []

    def refuse(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", refuse)
    for rid in ids:
        page.goto(f"{base}/?q=a+picture&item={rid}")
        page.locator("dialog#detail").wait_for(state="visible")
        page.wait_for_selector("#detail-links li")
        page.wait_for_selector("#grid .card")
        links = page.evaluate(LINKS_JS)
        assert links, "the page has links"
        bad = [link for link in links if link[3] not in ("http:", "https:")]
        assert bad == [], bad
        # The legitimate links are still there; the hostile ones are not links at all.
        texts = page.locator("#detail-links a").all_inner_texts()
        assert "Open in viewer" in texts and "IIIF manifest" in texts, texts
        assert not any("Evil" in t for t in texts), texts
        rights = page.inner_text("#detail-rights")
        if rid == ids[1]:
            # Shown as text, so the reader sees what the publisher wrote, but never as a link.
            assert EVIL["rights"] in rights
            page.locator("#detail-rights .uri").click()  # plain text: clicking it runs nothing
        assert page.locator("#detail-rights a").count() == 0
    assert page.evaluate("() => window.__pwned === undefined")
    assert dialogs == []
    page.close()
