"""The bundled Mirador at /viewer/, and Content States, in a real Chromium against a real server.

A small local collection is built with :func:`build_local_iiif`, indexed with the real default model,
and served with its level-2 image service, so that Mirador opens real manifests: a local one, a
``search.iiif`` one, and a Content State taken from a search result, including a region result.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from PIL import Image, ImageDraw

from iconosearch.api.app import create_app
from iconosearch.api.assets import mirador_dir, web_dir
from iconosearch.api.content_state import decode_content_state, encode_content_state
from iconosearch.config import Settings
from iconosearch.iiif.local import build_local_iiif
from iconosearch.iiif.manifest import parse_manifest
from iconosearch.iiif.regions import Box, canvas_to_image
from iconosearch.index.store import IndexStore
from iconosearch.index.versions import EmbeddedRecord, ModelInfo, write_version
from iconosearch.models.embedder import load_embedder
from iconosearch.records import ImageRecord, record_id
from tests.helpers.browser import chromium, live_server, screenshot
from tests.helpers.demo_index import free_port

pytestmark = [pytest.mark.browser, pytest.mark.slow]

if mirador_dir(web_dir()) is None:
    pytest.skip("Mirador is not installed: run `make web` (npm ci in web/)", allow_module_level=True)

TIMEOUT_MS = 30_000
COLLECTION = "viewertest"
PICTURES = (("red-circle", (800, 600), (200, 30, 30)), ("blue-tower", (500, 900), (30, 60, 190)))


@dataclass(frozen=True)
class Site:
    url: str
    records: tuple[ImageRecord, ...]
    detail: ImageRecord
    """A region result: the bottom-right quarter of the first canvas."""


def _picture(size: tuple[int, int], color: tuple[int, int, int]) -> Image.Image:
    im = Image.new("RGB", size, (245, 245, 240))
    draw = ImageDraw.Draw(im)
    w, h = size
    draw.ellipse((w // 8, h // 8, w - w // 8, h - h // 8), fill=color)
    draw.rectangle((w // 2, h // 2, w - 1, h - 1), outline=(0, 0, 0), width=6)
    return im


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    folder, data_dir = tmp_path_factory.mktemp("pictures"), tmp_path_factory.mktemp("data")
    for name, size, color in PICTURES:
        _picture(size, color).save(folder / f"{name}.png")
    (folder / "metadata.csv").write_text(
        "file,title,rights\n"
        + "".join(
            f"{n}.png,{n.replace('-', ' ')},http://creativecommons.org/publicdomain/zero/1.0/\n"
            for n, *_ in PICTURES
        ),
        encoding="utf-8",
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    out = data_dir / "local-iiif" / COLLECTION
    build_local_iiif(folder, out, base_url=f"{base}/iiif/local/{COLLECTION}", label="Viewer test")
    records = [
        r
        for path in sorted((out / "manifests").glob("*.json"))
        for r in parse_manifest(json.loads(path.read_text()), collection=COLLECTION).records
    ]
    first = records[0]
    assert first.width and first.height
    canvas = (first.width, first.height)  # local canvases have the image's size
    region = Box(first.width // 2, first.height // 2, first.width // 4, first.height // 4)
    detail = replace(
        first,
        id=record_id(first.manifest_id, f"{first.canvas_id}#xywh={region}", first.image_id),
        region=str(region),
        image_region=str(canvas_to_image(region, canvas, (first.width, first.height))),
        caption={"en": ["detail: the corner of a red circle"]},
    )
    records.append(detail)
    embedder = load_embedder("iconosearch-lite")
    images = []
    for r in records:
        slug = r.image_id.split("/images/", 1)[1].split("/", 1)[0]
        with Image.open(out / "images" / slug / "full" / "max" / "0" / "default.jpg") as im:
            images.append(im.convert("RGB"))
    vectors = embedder.embed_images(images)
    write_version(
        IndexStore(data_dir / "indexes", "default"),
        [EmbeddedRecord(r, f"sha-{i}", vectors[i]) for i, r in enumerate(records)],
        ModelInfo(spec=embedder.spec, fingerprint=embedder.fingerprint, dim=embedder.dim),
    )
    app = create_app(Settings(data_dir=data_dir), reload_interval_s=0)
    with live_server(app, port) as url:
        yield Site(url=url, records=tuple(records[:-1]), detail=detail)


@pytest.fixture(scope="module")
def browser_context(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as context:
        context.set_default_timeout(TIMEOUT_MS)
        yield context


@pytest.fixture
def page(browser_context: Any, site: Site) -> Iterator[Any]:
    page = browser_context.new_page()
    errors: list[str] = []
    offsite: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "request", lambda r: None if r.url.startswith((site.url, "data:", "blob:")) else offsite.append(r.url)
    )
    yield page
    page.close()
    assert not errors, f"JavaScript errors: {errors}"
    assert not offsite, f"requests leaving the server (the viewer must work offline): {offsite}"


def _open_viewer(page: Any, url: str) -> dict[str, Any]:
    """Open the viewer and wait until Mirador shows a canvas whose image tiles were drawn."""
    page.goto(url)
    page.wait_for_function(
        "() => { const w = window.mirador?.store.getState().windows.main;"
        " return w && w.canvasId && document.querySelector('.openseadragon-canvas canvas'); }"
    )
    page.wait_for_function(
        "() => performance.getEntriesByType('resource').some(e => e.name.includes('/iiif/local/')"
        " && /\\/(full|\\d+,\\d+,\\d+,\\d+)\\/[^/]+\\/0\\/default\\.jpg$/.test(e.name))"
    )
    state: dict[str, Any] = page.evaluate(
        "() => { const s = window.mirador.store.getState();"
        " return { window: s.windows.main, viewer: s.viewers.main || null,"
        " manifest: s.manifests[s.windows.main.manifestId]?.json || null }; }"
    )
    return state


def test_mirador_opens_a_local_manifest(page: Any, site: Site) -> None:
    rec = site.records[1]
    state = _open_viewer(page, f"{site.url}/viewer/?manifest={quote(rec.manifest_id, safe='')}")
    assert state["window"]["manifestId"] == rec.manifest_id
    assert state["window"]["canvasId"] == rec.canvas_id
    assert page.locator("#viewer-message").is_hidden()
    screenshot(page, "viewer-local-manifest")


def test_mirador_opens_a_search_iiif_manifest(page: Any, site: Site) -> None:
    search = f"{site.url}/api/search.iiif?q={quote('a red circle')}&k=3"
    state = _open_viewer(page, f"{site.url}/viewer/?manifest={quote(search, safe='')}")
    results = httpx.get(f"{site.url}/api/search", params={"q": "a red circle", "k": 3}).json()["results"]
    canvases = state["manifest"]["items"]
    assert len(canvases) == len(results) >= 2
    assert state["window"]["canvasId"] == canvases[0]["id"]
    assert canvases[0]["partOf"][0]["id"] == results[0]["manifest"]
    screenshot(page, "viewer-search-iiif")


def test_a_region_result_opens_at_its_region(page: Any, site: Site) -> None:
    item = httpx.get(f"{site.url}/api/items/{site.detail.id}").json()
    state = _open_viewer(page, f"{site.url}/viewer/?iiif-content={item['viewers']['content_state']}")
    assert state["window"]["manifestId"] == site.detail.manifest_id
    assert state["window"]["canvasId"] == site.detail.canvas_id
    # Mirador's viewport is in canvas coordinates: it shows the region, not the whole canvas.
    page.wait_for_function("() => window.mirador.store.getState().viewers.main?.bounds")
    x, y, w, h = page.evaluate("() => window.mirador.store.getState().viewers.main.bounds")
    rx, ry, rw, rh = (int(v) for v in (site.detail.region or "").split(","))
    assert x <= rx + rw / 2 <= x + w and y <= ry + rh / 2 <= y + h  # the region's centre is in view
    cw, ch = site.detail.width or 0, site.detail.height or 0
    assert w < 0.75 * cw and h < 0.75 * ch  # zoomed in on a quarter-size region, not the whole canvas
    screenshot(page, "viewer-region")


def test_open_in_viewer_from_the_detail_panel(page: Any, site: Site) -> None:
    """The search page's "Open in viewer" opens the bundled Mirador at the result's canvas and region."""
    page.goto(f"{site.url}/?item={site.detail.id}")
    page.locator("dialog#detail").wait_for(state="visible")
    link = page.locator("#detail-links a", has_text="Open in viewer")
    assert (link.get_attribute("href") or "").startswith(f"{site.url}/viewer/?iiif-content=")
    with page.context.expect_page() as opened:
        link.click()
    viewer = opened.value
    try:
        viewer.wait_for_load_state()
        viewer.wait_for_function(
            "() => window.mirador?.store?.getState().windows.main?.canvasId"
            " && window.mirador.store.getState().viewers.main?.bounds"
        )
        state = viewer.evaluate("() => window.mirador.store.getState()")
        assert state["windows"]["main"]["manifestId"] == site.detail.manifest_id
        assert state["windows"]["main"]["canvasId"] == site.detail.canvas_id
        x, y, w, h = state["viewers"]["main"]["bounds"]
        rx, ry, rw, rh = (int(v) for v in (site.detail.region or "").split(","))
        assert x <= rx + rw / 2 <= x + w and y <= ry + rh / 2 <= y + h  # the region's centre is in view
        screenshot(viewer, "viewer-from-detail")
    finally:
        viewer.close()


def test_the_viewer_explains_a_broken_link(page: Any, site: Site) -> None:
    page.goto(f"{site.url}/viewer/?iiif-content=not-a-content-state")
    message = page.locator("#viewer-message")
    message.wait_for(state="visible")
    assert "cannot be opened" in message.inner_text()


# The spec's §6.3 steps composed from the browser's built-ins, independently of web/viewer/.
SPEC_STYLE_JS = """
([plain, encodedByPython]) => {
  const enc = (s) => btoa(encodeURIComponent(s)).replace(/\\+/g, "-").replace(/\\//g, "_").replace(/=/g, "");
  const pad = (s) => {
    const r = s.length % 4;
    if (r === 1) throw new Error("bad length");
    return r ? s + "====".slice(0, 4 - r) : s;
  };
  const dec = (s) => decodeURIComponent(atob(pad(s).replace(/-/g, "+").replace(/_/g, "/")));
  return import("/viewer/content-state.js").then((cs) => ({
    specDecoded: dec(encodedByPython),
    pageDecoded: cs.decodeContentState(encodedByPython),
    specEncoded: enc(plain),
    pageEncoded: cs.encodeContentState(plain),
  }));
}
"""


@pytest.mark.parametrize(
    "canvas",
    [
        "https://example.org/canvas/p%C3%A9ge%201",
        "https://example.org/canvas/pége",
        "https://example.org/canvas/ペ-ジ/𝔣olio?x=1&y=(2)*!'~",
    ],
)
def test_content_states_round_trip_through_the_specs_javascript(page: Any, site: Site, canvas: str) -> None:
    state = {
        "id": f"{canvas}#xywh=1,2,3,4",
        "type": "Canvas",
        "partOf": [{"id": "https://example.org/manifest", "type": "Manifest"}],
    }
    plain = json.dumps(state, ensure_ascii=False, separators=(",", ":"))
    encoded = encode_content_state(state)
    page.goto(f"{site.url}/viewer/?manifest=about:blank")
    out = page.evaluate(SPEC_STYLE_JS, [plain, encoded])
    assert json.loads(out["specDecoded"]) == json.loads(out["pageDecoded"]) == state
    assert out["specEncoded"] == out["pageEncoded"] == encoded  # byte-identical to Python's encoding
    assert decode_content_state(out["specEncoded"]) == state


def test_the_search_page_receives_a_content_state(page: Any, site: Site) -> None:
    item = httpx.get(f"{site.url}/api/items/{site.detail.id}").json()
    page.goto(f"{site.url}/?iiif-content={item['viewers']['content_state']}")
    page.wait_for_selector("#detail[open]")
    assert f"item={site.detail.id}" in page.url
    # A state for something we do not hold opens in the viewer instead.
    other = encode_content_state(
        {
            "id": site.records[1].canvas_id,
            "type": "Canvas",
            "partOf": [{"id": site.records[1].manifest_id, "type": "Manifest"}],
        }
    )
    page.goto(f"{site.url}/?iiif-content={other}")
    page.wait_for_url("**/viewer/?iiif-content=*")
    page.wait_for_function("() => window.mirador?.store.getState().windows.main?.canvasId")
    assert (
        page.evaluate("() => window.mirador.store.getState().windows.main.canvasId")
        == site.records[1].canvas_id
    )
