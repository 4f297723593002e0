"""Image API: service descriptions, size choice, URL syntax; checked against the reference implementation."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from iconosearch.config import Settings
from iconosearch.harvest.harvester import harvest
from iconosearch.harvest.state import HarvestState
from iconosearch.iiif.image_api import choose_size, image_url, parse_service, service_level, service_version
from iconosearch.records import ImageService
from tests.helpers.http_server import FixtureServer


def info(fixtures: Path, name: str) -> ImageService:
    svc = parse_service(
        json.loads((fixtures / "info-json" / name).read_text()), fallback_id="https://x.org/id"
    )
    assert svc is not None
    return svc


def test_info_json_fixtures(iiif_fixtures: Path) -> None:
    v2 = info(iiif_fixtures, "osd-image-2-level0-sizes-only.json")
    assert (v2.api_version, v2.level, v2.width, v2.height) == (2, 0, 6976, 5074)
    assert v2.sizes[0] == (400, 291) and len(v2.sizes) == 5
    v3 = info(iiif_fixtures, "osd-image-3-level0-sizes-only.json")
    assert (v3.api_version, v3.level) == (3, 0)
    assert info(iiif_fixtures, "harvard-ids-image-1-1.json").api_version == 1
    old = info(iiif_fixtures, "osd-image-1-0-no-context.json")
    assert old.api_version == 1 and old.id == "https://x.org/id"  # 1.0 has no @id: the URL stands in
    full = info(iiif_fixtures, "spec-example-image-2-full.json")
    assert (full.level, full.sizes) == (2, ((150, 100), (600, 400), (3000, 2000)))
    ext = info(iiif_fixtures, "spec-example-image3-extension-context.json")
    assert ext.api_version == 3
    obj = parse_service(
        json.loads((iiif_fixtures / "odd/edinburgh-luna-info-profile-object.json").read_text())
    )
    assert obj is not None and obj.api_version == 2


def test_levels_and_versions_from_profiles() -> None:
    assert service_level({"profile": "level3"}) is None  # not a IIIF level: unknown
    assert service_level({"profile": ["http://iiif.io/api/image/2/level1.json", {"formats": ["jpg"]}]}) == 1
    assert (
        service_level({"profile": "http://library.stanford.edu/iiif/image-api/compliance.html#level2"}) == 2
    )
    assert service_version({"profile": "http;//iiiif.io/api/image/2/level2.json"}) == 2
    assert service_version({"@context": "http://iiif.io/api/presentation/3/context.json"}) is None


def test_level0_uses_listed_sizes_only(iiif_fixtures: Path) -> None:
    v2 = info(iiif_fixtures, "osd-image-2-level0-sizes-only.json")
    choice = choose_size(v2, 384)
    # No listed size is ≤ 384: the smallest listed one (400×291) is the best the server allows.
    assert choice.listed
    assert (choice.width, choice.height) == (400, 291)
    # Listed sizes are asked for as listed, w,h ("sizeByWhListed"), in every version.
    assert image_url(v2, 384) == "http://localhost:8000/test/data/iiif_2_0_sizes/full/400,291/0/default.jpg"
    assert image_url(v2, 900).endswith("/full/800,582/0/default.jpg")
    v3 = info(iiif_fixtures, "osd-image-3-level0-sizes-only.json")
    assert image_url(v3, 900).endswith("/full/800,582/0/default.jpg")


def test_level0_without_sizes_asks_for_the_full_image() -> None:
    svc = ImageService(id="https://x.org/i", api_version=2, level=0, width=5000, height=4000)
    assert image_url(svc, 384) == "https://x.org/i/full/full/0/default.jpg"
    v3 = ImageService(id="https://x.org/i", api_version=3, level=0)
    assert image_url(v3, 384) == "https://x.org/i/full/max/0/default.jpg"


def test_size_syntax_per_version() -> None:
    v1 = ImageService(id="https://x.org/a", api_version=1, level=1, width=2000, height=1000)
    assert image_url(v1, 384) == "https://x.org/a/full/384,/0/native.jpg"
    v2 = ImageService(id="https://x.org/a", api_version=2, level=1, width=1000, height=2000)
    assert image_url(v2, 384) == "https://x.org/a/full/192,/0/default.jpg"
    v3 = ImageService(id="https://x.org/a", api_version=3, level=1, width=1000, height=2000)
    assert image_url(v3, 384) == "https://x.org/a/full/192,384/0/default.jpg"
    small = ImageService(id="https://x.org/a", api_version=3, level=2, width=300, height=200)
    assert image_url(small, 384) == "https://x.org/a/full/max/0/default.jpg"  # never upscale
    small2 = ImageService(id="https://x.org/a", api_version=2, level=2, width=300, height=200)
    assert image_url(small2, 384) == "https://x.org/a/full/full/0/default.jpg"
    unknown = ImageService(id="https://x.org/a", api_version=2, level=2)
    assert image_url(unknown, 384) == "https://x.org/a/full/!384,384/0/default.jpg"
    unknown1 = ImageService(id="https://x.org/a", api_version=3, level=1)
    assert image_url(unknown1, 384) == "https://x.org/a/full/384,/0/default.jpg"


def test_max_width_and_area_are_honoured() -> None:
    svc = ImageService(id="https://x.org/a", api_version=3, level=2, width=4000, height=3000, max_width=200)
    choice = choose_size(svc, 384)
    assert choice.width is not None and choice.height is not None
    assert choice.width <= 200 and choice.height <= 200  # v3: maxHeight defaults to maxWidth
    area = ImageService(
        id="https://x.org/a", api_version=3, level=2, width=4000, height=3000, max_area=40_000
    )
    c2 = choose_size(area, 384)
    assert c2.width is not None and c2.height is not None and c2.width * c2.height <= 40_000
    listed = ImageService(
        id="https://x.org/a",
        api_version=3,
        level=0,
        sizes=((100, 75), (300, 225), (1000, 750)),
        max_width=250,
    )
    assert (choose_size(listed, 384).width, choose_size(listed, 384).height) == (100, 75)


def _static_tree(root: Path, base: str, version: str, identifier: str, size: tuple[int, int]) -> None:
    from iiif.static import IIIFStatic

    logging.getLogger("iiif.static").setLevel(logging.WARNING)
    src = root / f"{identifier}.png"
    Image.new("RGB", size, (120, 60, 30)).save(src)
    IIIFStatic(
        dst=str(root / f"v{version[0]}"), tilesize=512, api_version=version, prefix=f"{base}/v{version[0]}"
    ).generate(src=str(src), identifier=identifier)


def _manifest(base: str, services: list[dict[str, Any]]) -> dict[str, Any]:
    items = []
    for i, svc in enumerate(services):
        canvas = f"{base}/m/canvas/{i}"
        items.append(
            {
                "id": canvas,
                "type": "Canvas",
                "width": svc.pop("w"),
                "height": svc.pop("h"),
                "label": {"none": [f"p. {i + 1}"]},
                "items": [
                    {
                        "id": f"{canvas}/page",
                        "type": "AnnotationPage",
                        "items": [
                            {
                                "id": f"{canvas}/anno",
                                "type": "Annotation",
                                "motivation": "painting",
                                "target": canvas,
                                "body": {
                                    "id": f"{svc.get('id') or svc['@id']}/full/max/0/default.jpg",
                                    "type": "Image",
                                    "service": [svc],
                                },
                            }
                        ],
                    }
                ],
            }
        )
    return {
        "@context": "http://iiif.io/api/presentation/3/context.json",
        "id": f"{base}/m/manifest.json",
        "type": "Manifest",
        "label": {"en": ["Reference-implementation images"]},
        "items": items,
    }


def test_harvest_against_reference_static_level0_trees(tmp_path: Path) -> None:
    """A level-0 tree written by the `iiif` reference implementation serves only what its info.json lists."""
    root = tmp_path / "www"
    root.mkdir()
    with FixtureServer(root=root) as srv:
        _static_tree(root, srv.base_url, "3.0", "wide", (1000, 700))
        _static_tree(root, srv.base_url, "2.1", "tall", (600, 1300))
        services = [
            # Thin embedded descriptions: the harvester must read info.json to learn the listed sizes.
            {
                "id": f"{srv.base_url}/v3/wide",
                "type": "ImageService3",
                "profile": "level0",
                "w": 1000,
                "h": 700,
            },
            {
                "@id": f"{srv.base_url}/v2/tall",
                "@type": "ImageService2",
                "profile": "http://iiif.io/api/image/2/level0.json",
                "w": 600,
                "h": 1300,
            },
        ]
        srv.add_json("/m/manifest.json", _manifest(srv.base_url, services))
        settings = Settings(data_dir=tmp_path / "data")
        summary = asyncio.run(harvest(settings, srv.url("/m/manifest.json")))
        assert summary.images_fetched == 2, summary.failures
        assert summary.images_failed == 0
        requested = [p for p, _ in srv.request_headers]
        assert "/v3/wide/info.json" in requested and "/v2/tall/info.json" in requested
        # The largest listed size ≤ 384, asked for as listed (w,h) in both versions.
        assert "/v3/wide/full/250,175/0/default.jpg" in requested
        assert "/v2/tall/full/150,325/0/default.jpg" in requested
        assert all(srv.counter[p] for p in requested)
        with HarvestState(settings.data_dir / "state.sqlite") as state:
            sizes = sorted(Image.open(h.path).size for h in state.iter_images(summary.collection))
        assert sizes == [(150, 325), (250, 175)]


def test_reference_info_json_round_trip(tmp_path: Path) -> None:
    """Our reading of info.json files written by the reference implementation, for both versions."""
    root = tmp_path / "www"
    root.mkdir()
    _static_tree(root, "https://img.example.org", "3.0", "a", (1100, 800))
    _static_tree(root, "https://img.example.org", "2.1", "b", (1100, 800))
    v3 = parse_service(json.loads((root / "v3/a/info.json").read_text()))
    v2 = parse_service(json.loads((root / "v2/b/info.json").read_text()))
    assert v3 is not None and v2 is not None
    assert (v3.api_version, v3.level, v3.width) == (3, 0, 1100)
    assert (v2.api_version, v2.level, v2.height) == (2, 0, 800)
    assert v3.id == "https://img.example.org/v3/a"
    for svc, folder in ((v3, root / "v3/a"), (v2, root / "v2/b")):
        size = image_url(svc, 384).split("/full/", 1)[1].split("/", 1)[0]
        assert (folder / "full" / size / "0" / "default.jpg").exists(), size


@pytest.mark.parametrize("target", [64, 200, 384, 1000])
def test_choice_never_exceeds_target_when_a_listed_size_fits(target: int) -> None:
    svc = ImageService(id="https://x.org/a", api_version=3, level=0, sizes=((50, 40), (150, 120), (600, 480)))
    c = choose_size(svc, target)
    assert c.listed and c.width is not None and c.height is not None
    fitting = [s for s in svc.sizes if max(s) <= target]
    assert (c.width, c.height) == max(fitting, key=lambda s: s[0] * s[1])


class ReferenceImageServer:
    """The `iiif` package's reference Image API server (PIL manipulator) on 127.0.0.1, API 1.1/2.1/3.0."""

    def __init__(self, image_dir: Path) -> None:
        import threading

        from flask import Flask
        from iiif.flask_utils import Config, add_handler
        from werkzeug.serving import make_server

        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        logging.getLogger("IIIFHandler").setLevel(logging.WARNING)
        self.app = Flask("iiif-reference")
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.port = self.server.server_port
        self.paths: list[str] = []
        for version in ("1.1", "2.1", "3.0"):
            c = Config()
            c.scheme, c.host, c.port = "http", "127.0.0.1", self.port
            c.prefix = c.client_prefix = f"v{version[0]}"
            c.klass_name, c.api_version, c.auth_type = "pil", version, "none"
            c.include_osd, c.image_dir, c.generator_dir = False, str(image_dir), None
            c.tile_height = c.tile_width = 512
            c.scale_factors = ["auto"]
            c.access_cookie_lifetime, c.access_token_lifetime, c.gauth_client_secret_file = 3600, 10, None
            add_handler(self.app, c)

        @self.app.before_request
        def _log() -> None:
            from flask import request

            self.paths.append(request.path)

        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.shutdown()


def test_harvest_against_reference_image_server(tmp_path: Path) -> None:
    """Size negotiation checked by the reference implementation's own request parser, for 1.1, 2.1, 3.0."""
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (1000, 1500), (20, 160, 40)).save(images / "tall.png")
    Image.new("RGB", (300, 200), (160, 20, 40)).save(images / "small.png")
    ref = ReferenceImageServer(images)
    try:
        base = ref.base_url
        services = [
            # Bare descriptions (no size, no level): the harvester must ask info.json first.
            {
                "@id": f"{base}/v1/tall",
                "profile": "http://library.stanford.edu/iiif/image-api/1.1/compliance.html",
                "w": 1000,
                "h": 1500,
            },
            {"@id": f"{base}/v2/tall", "@type": "ImageService2", "w": 1000, "h": 1500},
            {"id": f"{base}/v3/tall", "type": "ImageService3", "w": 1000, "h": 1500},
            {"id": f"{base}/v3/small", "type": "ImageService3", "w": 300, "h": 200},
        ]
        with FixtureServer() as docs:
            docs.add_json("/m/manifest.json", _manifest(docs.base_url, services))
            settings = Settings(data_dir=tmp_path / "data")
            summary = asyncio.run(harvest(settings, docs.url("/m/manifest.json")))
        assert summary.images_fetched == 4 and summary.images_failed == 0, summary.failures
        assert {"/v1/tall/info.json", "/v2/tall/info.json", "/v3/tall/info.json"} <= set(ref.paths)
        assert "/v1/tall/full/256,/0/native.jpg" in ref.paths
        assert "/v2/tall/full/256,/0/default.jpg" in ref.paths
        assert "/v3/tall/full/256,384/0/default.jpg" in ref.paths
        assert "/v3/small/full/max/0/default.jpg" in ref.paths  # smaller than the target: never upscaled
        with HarvestState(settings.data_dir / "state.sqlite") as state:
            sizes = sorted(Image.open(h.path).size for h in state.iter_images(summary.collection))
        assert sizes == [(256, 384), (256, 384), (256, 384), (300, 200)]
    finally:
        ref.close()


_dim = st.integers(min_value=1, max_value=20_000)


@settings(max_examples=300, deadline=None)
@given(
    width=_dim,
    height=_dim,
    target=st.integers(min_value=32, max_value=2048),
    version=st.sampled_from([1, 2, 3]),
    level=st.sampled_from([None, 1, 2]),
    max_width=st.one_of(st.none(), st.integers(min_value=16, max_value=4000)),
    max_area=st.one_of(st.none(), st.integers(min_value=1000, max_value=10_000_000)),
)
def test_size_choice_properties(
    width: int,
    height: int,
    target: int,
    version: int,
    level: int | None,
    max_width: int | None,
    max_area: int | None,
) -> None:
    svc = ImageService(
        id="https://x.org/a",
        api_version=version,
        level=level,
        width=width,
        height=height,
        max_width=max_width,
        max_area=max_area,
    )
    c = choose_size(svc, target)
    w, h = (width, height) if c.width is None else (c.width, c.height or round(height * c.width / width))
    assert w <= width and h <= height  # never upscaled
    if c.width is not None:
        assert max(w, h) <= target + 1
        if max_width is not None:
            assert w <= max_width and h <= max_width
        if max_area is not None:
            assert w * h <= max_area
    url = image_url(svc, target)
    assert url.startswith("https://x.org/a/full/") and url.endswith(
        "native.jpg" if version == 1 else "default.jpg"
    )


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.tuples(_dim, _dim), min_size=1, max_size=8, unique=True),
    target=st.integers(min_value=32, max_value=2048),
)
def test_level0_choice_is_always_a_listed_size(sizes: list[tuple[int, int]], target: int) -> None:
    svc = ImageService(id="https://x.org/a", api_version=3, level=0, sizes=tuple(sorted(sizes)))
    c = choose_size(svc, target)
    assert c.listed and (c.width, c.height) in sizes
    if any(max(s) <= target for s in sizes):
        assert c.width is not None and c.height is not None and max(c.width, c.height) <= target
