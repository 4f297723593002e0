"""Example documents for the OpenAPI description, made by the same code that makes real answers."""

from __future__ import annotations

from typing import Any

import orjson

from iconosearch.api.iiif_search import search_manifest
from iconosearch.api.presenting import Presenter
from iconosearch.config import ViewerConfig
from iconosearch.query import Hit, SearchPage
from iconosearch.records import DateRange, ImageRecord, ImageService, Link, MetadataPair, Provider

BASE = "https://search.example.org"

EXAMPLE_RECORD = ImageRecord(
    id="3f2a9c0d41b7e615",
    collection="maps",
    manifest_id="https://iiif.example.org/manifests/harbour/manifest.json",
    canvas_id="https://iiif.example.org/manifests/harbour/canvas/1",
    image_id="https://iiif.example.org/image/harbour-1/full/max/0/default.jpg",
    service=ImageService(
        id="https://iiif.example.org/image/harbour-1", api_version=3, level=1, width=4000, height=3000
    ),
    width=4000,
    height=3000,
    canvas_label={"en": ["Sheet 1"]},
    manifest_label={"en": ["Plan of the harbour"]},
    summary={"en": ["Engraved plan of the harbour with soundings."]},
    metadata=(MetadataPair(label={"en": ["Creator"]}, value={"none": ["J. Smith"]}),),
    rights="http://creativecommons.org/publicdomain/mark/1.0/",
    required_statement=MetadataPair(label={"en": ["Attribution"]}, value={"en": ["Example Library"]}),
    providers=(Provider(label={"en": ["Example Library"]}, homepage="https://library.example.org/"),),
    date=DateRange(1750, 1760),
    homepage=(Link(id="https://library.example.org/items/harbour", label={"en": ["Catalogue record"]}),),
    caption={"en": ["Plan of the harbour. Engraved plan of the harbour with soundings."]},
)

_presenter = Presenter(base_url=BASE, viewers=ViewerConfig())
_result = _presenter.result(EXAMPLE_RECORD, 0.3127, ())

SEARCH_EXAMPLE: dict[str, Any] = {
    # The compact default (no fields=), presented as a search presents it: see presenting.FIELD_GROUPS.
    **orjson.loads(
        _presenter.search_json(
            SearchPage(hits=(Hit(EXAMPLE_RECORD, 0.3127),), next_cursor="eyJ2IjoxLCJvIjoyNH0"),
            sort="relevance",
            facets=None,
            started=0.0,
        )
    ),
    "index_version": "20250101T120000Z",
    "timings": {"embed_ms": 8.1, "search_ms": 1.2, "total_ms": 11.0},
}
ITEM_EXAMPLE: dict[str, Any] = _presenter.item(EXAMPLE_RECORD, ()).model_dump(mode="json")
MANIFEST_EXAMPLE: dict[str, Any] = search_manifest(
    f"{BASE}/api/search.iiif?q=harbour", "iconosearch: harbour", [_result], next_url=None
)
COLLECTIONS_EXAMPLE: dict[str, Any] = {
    "collections": [
        {
            "name": "maps",
            "label": "Historic maps",
            "kind": "collection",
            "source": "https://iiif.example.org/collections/maps.json",
            "institutions": ["Example Library"],
            "count": 1200,
            "last_harvest": "2025-01-01T11:00:00+00:00",
            "example_queries": ["a map of a harbour", "a coastline with soundings"],
        }
    ],
    "index_version": "20250101T120000Z",
    "model": "iconosearch-lite",
    "model_fingerprint": "9b1c…",
    "dim": 256,
    "count": 1200,
    "created": "2025-01-01T12:00:00Z",
}
PROBLEM_EXAMPLE: dict[str, Any] = {
    "type": "urn:iconosearch:problem:limit-exceeded",
    "title": "Bad Request",
    "status": 400,
    "detail": "k=1000000 is more than the limit of 200 results per page",
    "code": "limit-exceeded",
    "instance": "/api/search",
}
