"""The local Image API 3.0 service at level 2, checked by IIIF's own validator (``iiif-validator``).

The validator's tests look for coloured squares of its test image in what the server returns. That image
is a 1000×1000 grid of 100-px squares whose colours the validator lists (``ValidationInfo.colorInfo``), so
we draw it from that list and publish it as a local collection: every level-2 test then runs against the
real server, and none has to be skipped for want of the validator's own image file.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image, ImageDraw

from iconosearch.api.app import create_app
from iconosearch.config import LimitsConfig, Settings
from iconosearch.iiif.image_server import ImageRequestError, RenderCache, parse_request
from iconosearch.iiif.local import build_local_iiif
from iconosearch.iiif.regions import Box
from tests.helpers.browser import live_server
from tests.helpers.demo_index import free_port

validator = pytest.importorskip("iiif_validator.validator", reason="iiif-validator (dev dependency) missing")

LEVEL = 2
EXTRAS = {"rot_mirror", "rot_mirror_180", "linkheader_canonical", "linkheader_profile"}
"""Tests above level 2 for what info.json also claims (mirroring) and the Link headers we send. The
validator's ``format_webp`` test cannot run (it calls Python 2's ``urllib.urlopen``); WebP is checked in
``test_regions_rotations_and_formats_are_rendered``."""
COLLECTION = "conformance"


def validator_image() -> Image.Image:
    colors = validator.ValidationInfo().colorInfo
    im = Image.new("RGB", (1000, 1000))
    draw = ImageDraw.Draw(im)
    for x in range(10):
        for y in range(10):
            draw.rectangle((x * 100, y * 100, x * 100 + 99, y * 100 + 99), fill=colors[x][y])
    return im


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    folder = tmp_path_factory.mktemp("images")
    validator_image().save(folder / "squares.png")
    Image.new("RGB", (640, 480), (20, 120, 200)).save(folder / "nd.png")
    (folder / "metadata.csv").write_text(
        "file,title,rights\n"
        "squares.png,Validator squares,http://creativecommons.org/publicdomain/zero/1.0/\n"
        "nd.png,No derivatives,https://creativecommons.org/licenses/by-nd/4.0/\n",
        encoding="utf-8",
    )
    data_dir = tmp_path_factory.mktemp("data")
    port = free_port()
    base = f"http://127.0.0.1:{port}/iiif/local/{COLLECTION}"
    build_local_iiif(folder, data_dir / "local-iiif" / COLLECTION, base_url=base, label="Conformance")
    settings = Settings(data_dir=data_dir, limits=LimitsConfig(iiif_render_cache_bytes=2 * 1024 * 1024))
    with live_server(create_app(settings, reload_interval_s=0), port) as url:
        yield url, data_dir


def _slug(data_dir: Path, stem: str) -> str:
    return next(p.name for p in (data_dir / "local-iiif" / COLLECTION / "images").iterdir() if stem in p.name)


def test_iiif_validator_passes_every_level_2_test_and_our_extras(server: tuple[str, Path]) -> None:
    url, data_dir = server
    identifier = _slug(data_dir, "squares")
    host = url.removeprefix("http://")
    suite = validator.TestSuite(validator.ValidationInfo())
    tests = {n: t for n, t in suite.list_tests("3.0").items() if t["level"] <= LEVEL or n in EXTRAS}
    assert len(tests) >= 33 + len(EXTRAS)  # iiif-validator 1.0.5 has 33 tests up to level 2 for 3.0
    failures = {}
    for name in sorted(tests):
        result = validator.ImageAPI(
            identifier, host, f"iiif/local/{COLLECTION}/images", "http", "", "3.0", debug=False
        )
        try:
            validator.TestSuite(validator.ValidationInfo()).run_test(name, result)
        except Exception as exc:  # the validator's own scripts count an exception as a failure too
            failures[name] = f"{type(exc).__name__}: {exc} {result.urls}"
            continue
        if result.exception is not None:
            e = result.exception
            failures[name] = f"{e.type}: got {e.got!r}, expected {e.expected!r} ({e.message}) {result.urls}"
    assert failures == {}


def test_info_json_claims_level_2_and_negotiates_json_ld(server: tuple[str, Path]) -> None:
    url, data_dir = server
    info_url = f"{url}/iiif/local/{COLLECTION}/images/{_slug(data_dir, 'squares')}/info.json"
    ld = httpx.get(info_url, headers={"Accept": "application/ld+json"})
    assert (
        ld.headers["content-type"] == 'application/ld+json;profile="http://iiif.io/api/image/3/context.json"'
    )
    assert ld.headers["access-control-allow-origin"] == "*"
    plain = httpx.get(info_url, headers={"Accept": "application/json"})
    assert plain.headers["content-type"] == "application/json"
    info = ld.json()
    assert info["profile"] == "level2" and info["id"] == info_url.removesuffix("/info.json")
    assert set(info["extraFormats"]) == {"png", "webp"} and info["tiles"][0]["width"] == 512
    bare = httpx.get(info_url.removesuffix("/info.json"))
    assert bare.status_code == 303 and bare.headers["location"].endswith("/info.json")
    manifest = next((data_dir / "local-iiif" / COLLECTION / "manifests").glob("*.json")).name
    doc = httpx.get(
        f"{url}/iiif/local/{COLLECTION}/manifests/{manifest}", headers={"Accept": "application/ld+json"}
    )
    assert doc.headers["content-type"].startswith(
        'application/ld+json;profile="http://iiif.io/api/presentation/3'
    )


def test_regions_rotations_and_formats_are_rendered(server: tuple[str, Path]) -> None:
    url, data_dir = server
    service = f"{url}/iiif/local/{COLLECTION}/images/{_slug(data_dir, 'squares')}"
    r = httpx.get(f"{service}/200,100,300,100/150,/90/default.png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(r.content)) as im:
        assert im.size == (50, 150)  # 150×50 turned clockwise
    assert 'rel="canonical"' in r.headers["link"]
    for fmt, pil in (("jpg", "JPEG"), ("webp", "WEBP")):
        with Image.open(io.BytesIO(httpx.get(f"{service}/square/!64,64/0/gray.{fmt}").content)) as im:
            assert im.format == pil and im.size == (64, 64)
            r, g, b = im.convert("RGB").getpixel((10, 10))
            assert r == g == b  # grey (WebP stores it as RGB)


def test_no_derivatives_items_are_served_whole_only(server: tuple[str, Path]) -> None:
    url, data_dir = server
    service = f"{url}/iiif/local/{COLLECTION}/images/{_slug(data_dir, 'nd')}"
    info = httpx.get(f"{service}/info.json").json()
    assert info["profile"] == "level0" and "tiles" not in info
    assert info["rights"] == "http://creativecommons.org/licenses/by-nd/4.0/"
    assert httpx.get(f"{service}/full/320,/0/default.jpg").status_code == 200
    for path in ("0,0,100,100/max/0/default.jpg", "full/max/90/default.jpg", "full/max/!0/default.jpg"):
        r = httpx.get(f"{service}/{path}")
        assert r.status_code == 403, path
        assert r.json()["code"] == "no-derivatives"


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("0,0,10/max/0/default.jpg", 400, "bad-region"),
        ("2000,0,10,10/max/0/default.jpg", 400, "bad-region"),
        ("full/2000,/0/default.jpg", 400, "no-upscaling"),
        ("full/^max/0/default.jpg", 400, "no-upscaling"),
        ("full/max/45/default.jpg", 400, "bad-rotation"),
        ("full/max/0/sepia.jpg", 400, "bad-quality"),
        ("full/max/0/default.tif", 400, "bad-format"),
        ("full/0,0/0/default.jpg", 400, "bad-size"),
    ],
)
def test_bad_requests_get_a_clear_error(server: tuple[str, Path], path: str, status: int, code: str) -> None:
    url, data_dir = server
    r = httpx.get(f"{url}/iiif/local/{COLLECTION}/images/{_slug(data_dir, 'squares')}/{path}")
    assert (r.status_code, r.json()["code"]) == (status, code)
    assert httpx.get(f"{url}/iiif/local/{COLLECTION}/images/nope/info.json").status_code == 404
    assert httpx.get(f"{url}/iiif/local/..%2F..%2Fetc/images/x/info.json").status_code in (404, 422)


def test_parsed_requests_are_canonical() -> None:
    full = (1000, 800)
    assert parse_request("full", "max", "0", "default.jpg", full).canonical(full) == "full/max/0/default.jpg"
    req = parse_request("pct:10,10,50,50", "!250,250", "!180", "color.png", full)
    assert req.region == Box(100, 80, 500, 400)
    assert req.canonical(full) == "100,80,500,400/250,200/!180/color.png"
    assert parse_request("900,700,500,500", "max", "0", "default.jpg", full).region == Box(900, 700, 100, 100)
    with pytest.raises(ImageRequestError):
        parse_request("square", "pct:200", "0", "default.jpg", full)


def test_the_render_cache_stays_within_its_bound(tmp_path: Path) -> None:
    cache = RenderCache(tmp_path, max_bytes=10_000)
    for i in range(30):
        cache.put(f"c/s/full/{i},/0/default.jpg", bytes(1000))
    files = list(tmp_path.glob("*/*"))
    assert sum(f.stat().st_size for f in files) <= 10_000
    assert cache.get("c/s/full/29,/0/default.jpg") == bytes(1000)  # the newest stays
    assert cache.get("c/s/full/0,/0/default.jpg") is None  # the oldest went first
    # A new cache over the same folder knows what is there.
    assert sum(RenderCache(tmp_path, max_bytes=10_000)._sizes.values()) == sum(
        f.stat().st_size for f in files
    )
