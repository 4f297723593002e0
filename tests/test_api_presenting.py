"""How records become result documents: thumbnails, viewer links, dates (pure, no server)."""

from __future__ import annotations

import orjson
import pytest

from iconosearch.api.content_state import decode_content_state
from iconosearch.api.presenting import Presenter, aspect_ratio, date_out, thumbnail
from iconosearch.config import ViewerConfig
from iconosearch.iiif.image_api import image_url
from iconosearch.query import Hit, SearchPage
from iconosearch.records import DateRange, ImageRecord, ImageService


def _record(**kw: object) -> ImageRecord:
    base: dict[str, object] = {
        "id": "0123456789abcdef",
        "collection": "c",
        "manifest_id": "https://example.org/m.json",
        "canvas_id": "https://example.org/m/canvas/1",
        "image_id": "https://example.org/img/1",
    }
    base.update(kw)
    return ImageRecord(**base)  # type: ignore[arg-type]


def test_level2_v3_service_thumbnail_keeps_aspect_ratio() -> None:
    svc = ImageService(
        id="https://img.example.org/iiif/3/abc", api_version=3, level=2, width=4000, height=3000
    )
    t = thumbnail(_record(service=svc, width=4000, height=3000))
    assert t.url == "https://img.example.org/iiif/3/abc/full/400,300/0/default.jpg"
    assert (t.width, t.height) == (400, 300)


def test_v2_service_uses_width_only_syntax() -> None:
    svc = ImageService(
        id="https://img.example.org/iiif/2/abc", api_version=2, level=1, width=1000, height=2000
    )
    t = thumbnail(_record(service=svc))
    assert t.url == "https://img.example.org/iiif/2/abc/full/200,/0/default.jpg"
    assert (t.width, t.height) == (200, 400)


def test_level0_uses_only_listed_sizes() -> None:
    svc = ImageService(
        id="https://example.org/iiif/x",
        api_version=3,
        level=0,
        width=1536,
        height=1024,
        sizes=((96, 64), (384, 256), (768, 512)),
    )
    t = thumbnail(_record(service=svc))
    assert t.url == "https://example.org/iiif/x/full/384,256/0/default.jpg"
    assert (t.width, t.height) == (384, 256)


def test_overlay_on_part_of_a_canvas_is_shown_whole() -> None:
    # An image painted onto a canvas region (#xywh in canvas coordinates): the thumbnail is the whole
    # image at its own size, not a crop of it by canvas coordinates.
    mini = "https://img.example.org/iiif/3/mini"
    svc = ImageService(id=mini, api_version=3, level=1, width=2138, height=2414)
    rec = _record(service=svc, region="3949,994,1091,1232", width=2138, height=2414)
    t = thumbnail(rec)
    assert "3949" not in (t.url or "") and t.url == image_url(svc, 400)
    assert aspect_ratio(rec) == round(2138 / 2414, 5)


def test_region_thumbnail_crops_on_level1_servers() -> None:
    svc = ImageService(
        id="https://img.example.org/iiif/3/abc", api_version=3, level=1, width=4000, height=3000
    )
    # The canvas is half the image's size: the canvas region and the image-pixel crop differ.
    rec = _record(service=svc, region="50,100,400,200", image_region="100,200,800,400")
    t = thumbnail(rec)
    assert t.url == "https://img.example.org/iiif/3/abc/100,200,800,400/400,/0/default.jpg"
    assert (t.width, t.height) == (400, 200)
    assert aspect_ratio(rec) == 2.0
    p = Presenter(base_url="https://search.example.org", viewers=ViewerConfig())
    state = decode_content_state(p.viewer_links(rec)["content_state"])
    assert state["target"]["id"].endswith("#xywh=50,100,400,200")


def test_no_derivatives_items_are_never_cropped() -> None:
    svc = ImageService(
        id="https://img.example.org/iiif/3/abc", api_version=3, level=2, width=4000, height=3000
    )
    rec = _record(
        service=svc,
        region="100,200,800,400",
        image_region="100,200,800,400",
        rights="https://creativecommons.org/licenses/by-nd/4.0/",
    )
    assert "/full/" in (thumbnail(rec).url or "")
    result = Presenter(base_url="https://s.example", viewers=ViewerConfig()).result(rec, 0.5, ())
    assert result.image_region is None and result.region == "100,200,800,400"


def test_without_service_falls_back_to_thumbnail_or_static_image() -> None:
    t = thumbnail(_record(thumbnail="https://example.org/t.jpg", width=600, height=300))
    assert t.url == "https://example.org/t.jpg" and (t.width, t.height) == (400, 200)
    assert thumbnail(_record(static_url="https://example.org/full.jpg")).url == "https://example.org/full.jpg"
    assert thumbnail(_record()).url is None


def test_viewer_links_fill_the_templates_with_the_content_state() -> None:
    viewers = ViewerConfig(
        mirador="https://m.example/?iiif-content={content_state}", universal_viewer="https://uv/?m={manifest}"
    )
    p = Presenter(base_url="https://search.example.org", viewers=viewers)
    links = p.viewer_links(_record(region="1,2,3,4"))
    assert links["mirador"] == f"https://m.example/?iiif-content={links['content_state']}"
    assert links["universal_viewer"] == "https://uv/?m=https%3A%2F%2Fexample.org%2Fm.json"
    state = decode_content_state(str(links["content_state"]))
    assert state["target"] == {
        "id": "https://example.org/m/canvas/1#xywh=1,2,3,4",
        "type": "Canvas",
        "partOf": [{"id": "https://example.org/m.json", "type": "Manifest"}],
    }
    assert state["id"] == "https://search.example.org/api/items/0123456789abcdef"


@pytest.mark.parametrize(
    ("start", "end", "display"),
    [(1850, 1850, "1850"), (1850, 1899, "1850–1899"), (-50, -10, "50 BCE–10 BCE")],
)
def test_dates_read_naturally(start: int, end: int, display: str) -> None:
    assert date_out(DateRange(start, end)).display == display


def test_search_manifest_keeps_good_results_and_leaves_out_unusable_ones() -> None:
    import iiif_prezi3

    from iconosearch.api.iiif_search import search_manifest

    p = Presenter(base_url="https://search.example.org", viewers=ViewerConfig())
    svc = ImageService(id="https://img.example.org/iiif/3/abc", api_version=3, level=1, width=800, height=600)
    good = p.result(_record(service=svc, width=800, height=600, caption={"en": ["a harbour"]}), 0.5, ())
    bad = p.result(
        _record(id="fedcba9876543210", canvas_id="not a url", static_url="also not a url"), 0.4, ()
    )
    doc = search_manifest("https://search.example.org/api/search.iiif?q=x", "x", [good, bad], next_url=None)
    manifest = iiif_prezi3.Manifest(**doc)
    assert len(manifest.items) == 1
    canvas = doc["items"][0]
    assert canvas["label"] == {"en": ["a harbour"]}
    # The real pixel size of the image, on the canvas and on the painted image alike (not a made-up 1000).
    assert (canvas["width"], canvas["height"]) == (800, 600)
    body = canvas["items"][0]["items"][0]["body"]
    assert (body["width"], body["height"]) == (800, 600)
    assert body["id"] == f"{svc.id}/full/max/0/default.jpg"
    assert canvas["items"][0]["items"][0]["body"]["service"][0]["id"] == svc.id


def test_search_manifest_crops_in_image_pixels_and_publishes_canonical_rights() -> None:
    from iconosearch.api.iiif_search import search_manifest

    p = Presenter(base_url="https://search.example.org", viewers=ViewerConfig())
    svc = ImageService(id="https://img.example.org/iiif/3/abc", api_version=3, level=2, width=384, height=272)
    rec = _record(
        service=svc,
        width=384,
        height=272,
        region="50,50,500,250",  # canvas coordinates (the canvas is larger than the image)
        image_region="19,14,192,96",
        rights="https://creativecommons.org/licenses/by/4.0/",
    )
    doc = search_manifest(
        "https://s.example/api/search.iiif?q=x", "x", [p.result(rec, 0.5, ())], next_url=None
    )
    canvas = doc["items"][0]
    body = canvas["items"][0]["items"][0]["body"]
    assert body["id"] == f"{svc.id}/19,14,192,96/max/0/default.jpg"
    assert (canvas["width"], canvas["height"]) == (body["width"], body["height"]) == (192, 96)
    assert canvas["rights"] == "http://creativecommons.org/licenses/by/4.0/"
    assert p.result(rec, 0.5, ()).rights == "https://creativecommons.org/licenses/by/4.0/"  # API: verbatim


def test_presented_results_equal_the_validated_schema_dump() -> None:
    """Search results are presented as plain dicts, without validating an ``s.Result``: they must be
    exactly what the validated model would have dumped, for every shape of record."""
    from iconosearch.records import Link, MetadataPair, Provider

    svc = ImageService(
        id="https://img.example.org/iiif/3/ä b", api_version=3, level=2, width=4000, height=3000
    )
    viewers = ViewerConfig(mirador="https://m.example/?iiif-content={content_state}")
    records = [
        _record(),
        _record(
            service=svc,
            region="100,200,800,400",
            image_region="100,200,800,400",
            rights="http://creativecommons.org/publicdomain/zero/1.0/",
            manifest_label={"en": ["A map"], "nl": ["Een kaart"]},
            canvas_label={"none": ["f. 1r"]},
            caption={"en": ["a map of the coast"]},
            metadata=(MetadataPair(label={"en": ["Creator"]}, value={"none": ["Blaeu"]}),),
            required_statement=MetadataPair(label={"en": ["Attribution"]}, value={"en": ["Museum"]}),
            providers=(Provider(label={"en": ["Museum"]}, homepage="https://museum.example/"),),
            date=DateRange(1650, 1660),
            homepage=(Link(id="https://museum.example/1", label={"en": ["Object page"]}),),
        ),
        _record(static_url="https://example.org/full.jpg", width=600, height=300, canvas_index=3),
    ]
    for cfg in (ViewerConfig(), viewers):
        p = Presenter(base_url="https://search.example.org", viewers=cfg)
        for rec in records:
            validated = p.result(rec, 0.0, ()).model_dump(
                mode="json", exclude={"score", "relevance", "duplicates", "matched_region"}
            )
            validated["providers"] = [
                {k: v for k, v in x.items() if v is not None} for x in validated["providers"]
            ]
            presented = orjson.loads(
                p.search_json(_page(rec), sort="relevance", facets=None, started=0.0, fields=("full",))
            )["results"][0]
            for key in ("score", "relevance", "duplicates", "matched_region"):
                presented.pop(key)
            assert presented == validated


def test_cached_presentations_give_the_same_documents_and_cost_the_collector_nothing() -> None:
    """A shown record is kept serialised and spliced with the hit's own fields: the document must be
    the one an uncached presenter makes, for each field selection, hit and region hit alike."""
    import gc

    from iconosearch.api.presenting import PresentedCache
    from iconosearch.records import Provider

    records = [
        _record(providers=(Provider(label={"en": ["Museum"]}, homepage="https://museum.example/"),)),
        _record(id="fedcba9876543210", region="10,20,30,40", image_region="10,20,30,40"),
    ]
    page = SearchPage(
        hits=(
            Hit(record=records[0], score=0.61234, duplicates=("aaaaaaaaaaaaaaaa",)),
            Hit(record=records[1], score=0.4, matched_region=True),
        ),
        next_cursor=None,
        index_version="v1",
    )
    cache = PresentedCache()
    cached = Presenter(base_url="https://s.example", viewers=ViewerConfig(), cache=cache)
    fresh = Presenter(base_url="https://s.example", viewers=ViewerConfig())
    for fields in ((), ("links",), ("full",), ("viewers", "iiif")):
        want = orjson.loads(
            fresh.search_json(page, sort="relevance", facets=None, started=0.0, fields=fields)
        )
        for _ in range(2):  # the first fills the cache, the second reads it
            got = orjson.loads(
                cached.search_json(page, sort="relevance", facets=None, started=0.0, fields=fields)
            )
            assert got["results"] == want["results"]
        assert [r["duplicates"]["size"] for r in got["results"]] == [2, 1]
        assert got["results"][1]["matched_region"] is True
    assert len(cache._items) == 8  # two records, four selections
    assert not any(gc.is_tracked(v) for v in cache._items.values())


def _page(record: ImageRecord) -> SearchPage:
    return SearchPage(hits=(Hit(record=record, score=0.5),), next_cursor=None, index_version="v1")
