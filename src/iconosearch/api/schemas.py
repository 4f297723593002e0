"""Request and response models of the HTTP API: the documented contract (OpenAPI, with examples)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

LangMap = dict[str, list[str]]

EXAMPLE_ID = "3f2a9c0d41b7e615"


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Thumbnail(_Out):
    url: str | None = Field(description="Thumbnail URL (IIIF Image API when the image has a service).")
    width: int | None = None
    height: int | None = None


class ImageServiceOut(_Out):
    id: str
    api_version: int
    level: int | None = None
    width: int | None = Field(default=None, description="Width of the full image the service serves.")
    height: int | None = Field(default=None, description="Height of the full image the service serves.")
    info_url: str = Field(description="The service's info.json, for deep-zoom viewers such as OpenSeadragon.")


class Attribution(_Out):
    label: LangMap
    value: LangMap = Field(description="The attribution to show verbatim (IIIF requiredStatement).")


class ProviderOut(_Out):
    label: LangMap
    id: str | None = None
    homepage: str | None = None
    logo: str | None = None


class LinkOut(_Out):
    id: str
    label: LangMap = Field(default_factory=dict)
    format: str | None = None


class DateOut(_Out):
    start_year: int
    end_year: int
    century: int
    display: str = Field(examples=["1850–1899"])


class DuplicateGroup(_Out):
    size: int = Field(description="Number of images in the group, this one included (1: no duplicates).")
    ids: list[str] = Field(description="Ids of the other, near-identical images collapsed into this result.")


class ViewerLinks(_Out):
    content_state: str = Field(
        description="IIIF Content State (base64url, no padding) selecting the canvas and region; "
        "pass it to any viewer as ?iiif-content=…"
    )
    viewer: str = Field(
        description="The viewer bundled with this server (Mirador at /viewer/), at the canvas and region."
    )
    mirador: str | None = Field(default=None, description="A configured external Mirador, if any.")
    universal_viewer: str | None = Field(
        default=None, description="A configured external Universal Viewer, if any."
    )


class Templates(_Out):
    """The URLs of a result page's results, once: put a result's ``content_state`` (asked with
    fields=content_state) and its ``manifest`` (percent-encoded) in place of ``{content_state}`` and
    ``{manifest}`` to open it in a viewer, and its ``id`` in place of ``{id}`` for its links."""

    viewer: str = Field(
        description="The viewer bundled with this server (Mirador at /viewer/).",
        examples=["https://search.example.org/viewer/?iiif-content={content_state}"],
    )
    mirador: str | None = Field(default=None, description="A configured external Mirador, if any.")
    universal_viewer: str | None = Field(
        default=None, description="A configured external Universal Viewer, if any."
    )
    item: str = Field(examples=["https://search.example.org/api/items/{id}"])
    similar: str = Field(examples=["https://search.example.org/api/items/{id}/similar"])
    permalink: str = Field(
        description="The web UI with the item open.", examples=["https://search.example.org/?item={id}"]
    )


FieldGroup = Literal["compact", "content_state", "viewers", "links", "iiif", "full"]
"""What a search result carries beyond the compact default (see ``presenting.FIELD_GROUPS``)."""


class ItemLinks(_Out):
    item: str
    similar: str
    permalink: str = Field(description="The web UI with this item open.")


Band = Literal["strong", "possible", "weak"]


class Result(_Out):
    id: str = Field(examples=[EXAMPLE_ID])
    score: float = Field(description="Cosine similarity to the query (fused score for hybrid queries).")
    relevance: Band | None = Field(
        default=None,
        description="Strong, possible or weak match, by the model's thresholds calibrated on evaluation "
        "data (see /api/relevance); null when the query kind or the model has no calibration.",
    )
    matched_region: bool = Field(
        default=False,
        description="The best match is a detail of the image (region search), not the whole image: "
        "`region`, `image_region`, the thumbnail and the viewer links then show that detail.",
    )
    title: LangMap = Field(description="The object's title (manifest label), else the canvas label.")
    creator: LangMap = Field(
        default_factory=dict, description="Creator, artist or author, from the metadata (may be empty)."
    )
    rights_class: Literal["open", "restricted", "unknown"] = Field(
        description="open: free to reuse; restricted: in copyright or NC/ND; unknown: not stated or unclear."
    )
    caption: LangMap = Field(description="Caption per language (BCP-47 tag or 'none').")
    label: LangMap = Field(
        default_factory=dict,
        description="Canvas label, else manifest label (search results: with fields=iiif; `title` is the "
        "manifest label, else the canvas label).",
    )
    collection: str
    thumbnail: Thumbnail
    aspect_ratio: float | None = Field(description="Width / height of the image (or region), when known.")
    image_service: ImageServiceOut | None = Field(
        default=None, description="The image's IIIF Image service (search results: with fields=iiif)."
    )
    image_url: str | None = Field(
        default=None,
        description="Direct image URL when there is no image service (search results: with fields=iiif).",
    )
    manifest: str
    canvas: str | None = Field(default=None, description="The canvas (search results: with fields=iiif).")
    content_state: str | None = Field(
        default=None,
        description="IIIF Content State (base64url, no padding) selecting the canvas and region; open it "
        "in a viewer with the page's templates, or pass it to any viewer as ?iiif-content=… (search "
        "results: with fields=content_state or viewers).",
    )
    canvas_index: int | None = Field(
        default=None, description="Position of the canvas in its manifest (search results: with fields=iiif)."
    )
    region: str | None = Field(
        default=None,
        description="x,y,w,h in canvas coordinates when the result is part of its canvas (`#xywh=`) "
        "(search results: with fields=iiif).",
    )
    image_region: str | None = Field(
        default=None,
        description="x,y,w,h in the image's pixels when the result is a crop of its image "
        "(for Image API requests); null for the whole image (search results: with fields=iiif).",
    )
    rights: str | None = Field(default=None, description="Rights statement or licence URI.")
    attribution: Attribution | None = None
    providers: list[ProviderOut]
    date: DateOut | None = None
    homepage: list[LinkOut] = Field(
        default_factory=list,
        description="The object's pages at its institution (search results: with fields=links).",
    )
    duplicates: DuplicateGroup
    viewers: ViewerLinks | None = Field(
        default=None, description="Ready-made viewer URLs (items always; search results with fields=viewers)."
    )
    links: ItemLinks | None = Field(
        default=None,
        description="Item, similar and permalink URLs (items always; search results with "
        "fields=links, else from the page's templates).",
    )


class ThresholdsOut(_Out):
    strong: float
    possible: float
    strong_recall: float = Field(description="Share of true matches scoring as strong.")
    possible_recall: float = Field(description="Share of true matches scoring at least as possible.")


class RelevanceResponse(_Out):
    model: str | None
    calibrated: bool
    measured_on: str | None = None
    text: ThresholdsOut | None = None
    image: ThresholdsOut | None = None
    strong_fpr: float = Field(description="Share of unrelated images that score as a strong match.")
    possible_fpr: float = Field(description="Share of unrelated images that score at least as possible.")


class MetadataEntry(_Out):
    label: LangMap
    value: LangMap


class SuggestedSubjectOut(_Out):
    notation: str = Field(description="ICONCLASS notation, e.g. 25G21(APPLE).")
    label: str = Field(description="The notation's English text, as the model scored it.")
    score: float = Field(description="Cosine of image and text; comparable within one model only.")
    division: str = Field(description="ICONCLASS top-level division (0–9).")
    source: Literal["machine"] = Field(default="machine", description="Always machine-suggested.")


class Item(Result):
    score: float | None = Field(default=None, description="Not a search: no score.")  # type: ignore[assignment]
    manifest_label: LangMap
    canvas_label: LangMap
    summary: LangMap
    metadata: list[MetadataEntry]
    part_of: list[str]
    width: int | None = None
    height: int | None = None
    suggested_subjects: list[SuggestedSubjectOut] = Field(
        default_factory=list,
        description="ICONCLASS subjects suggested zero-shot by the model at index time (``[subjects] "
        "suggest``), best first; never the catalogue's own subjects, which stay in ``metadata``.",
    )


class Timings(_Out):
    embed_ms: float
    search_ms: float
    total_ms: float


class TotalOut(_Out):
    count: int
    relation: Literal["eq", "about", "gte"] = Field(
        description="eq: exact; about: an estimate (approximate index); gte: at least this many."
    )
    basis: Literal["relevance", "keywords", "filters"] = Field(
        description="relevance: strong or possible matches; keywords: images matching the keywords and "
        "filters; filters: images the filters allow (the model has no calibrated bands)."
    )


class SearchResponse(_Out):
    results: list[Result]
    templates: Templates
    total: TotalOut | None = Field(default=None, description="How many results (first page only).")
    sort: Literal["relevance", "date-asc", "date-desc"] = "relevance"
    next_cursor: str | None = Field(description="Pass as `cursor` with the same query for the next page.")
    index_version: str | None = None
    timings: Timings
    facets: dict[str, dict[str, int]] | None = Field(
        default=None, description="Counts per facet value for the filters (when asked with facets=true)."
    )


class CollectionOut(_Out):
    name: str
    label: str | None = None
    kind: str | None = None
    source: str | None = Field(default=None, description="URL or folder the collection is harvested from.")
    institutions: list[str]
    count: int = Field(description="Images of this collection in the served index.")
    last_harvest: str | None = None
    example_queries: list[str] = Field(
        default_factory=list, description="Searches that show what the collection holds (configured)."
    )


class CollectionsResponse(_Out):
    collections: list[CollectionOut]
    index_version: str | None
    model: str | None
    model_fingerprint: str | None = None
    dim: int | None = None
    count: int
    created: str | None = None


class FacetsResponse(_Out):
    facets: dict[str, dict[str, int]] = Field(
        examples=[{"collection": {"demo": 40}, "rights": {"open": 38, "unknown": 2}, "century": {"19": 12}}]
    )
    index_version: str | None = None


class Health(_Out):
    status: Literal["ok", "degraded", "warming-up", "not-ready"]
    """``degraded``: serving a fallback because the current version is damaged (``reason`` says why);
    ``warming-up``: the index is there but the model is still being loaded and tried."""
    version: str | None = Field(default=None, description="The iconosearch version serving.")
    index_version: str | None = None
    count: int | None = None
    reason: str | None = None


class AdminResponse(_Out):
    status: str
    detail: str
    index_version: str | None = None


# ---------------------------------------------------------------- requests


class TermIn(_In):
    model_config = ConfigDict(
        extra="forbid",
        # The value's form depends on the kind: an item term names a record id (16 hex digits).
        json_schema_extra={
            "if": {"properties": {"kind": {"const": "item"}}},
            "then": {"properties": {"value": {"pattern": "^[0-9a-f]{16}$"}}},
        },
    )

    kind: Literal["text", "image", "item", "url", "subject"] = Field(
        description="text: words; image: base64 (or data: URL) of an image; item: an indexed record id; "
        "url: an image URL fetched by the server (only when enabled; private addresses are refused); "
        "subject: a notation such as 'iconclass:25G21(APPLE)', searched as its text in `language` with "
        "its keywords matched on captions."
    )
    value: str = Field(min_length=1)
    weight: float = Field(
        default=1.0, ge=-4.0, le=4.0, description="Relative weight; negative pushes results away ('less of')."
    )
    region: str | None = Field(
        default=None,
        max_length=100,
        description="item terms only: search by this detail of the item's image, 'x,y,w,h' in the image's "
        "pixels (as OpenSeadragon gives it) or 'pct:x,y,w,h' ('find more like this detail').",
        examples=["120,80,400,300"],
    )


class FiltersIn(_In):
    collections: list[str] = Field(default_factory=list, max_length=64)
    institutions: list[str] = Field(default_factory=list, max_length=64)
    year_from: int | None = Field(default=None, ge=-10_000, le=10_000)
    year_to: int | None = Field(default=None, ge=-10_000, le=10_000)
    rights: list[Literal["open", "restricted", "unknown"]] = Field(default_factory=list)
    languages: list[str] = Field(default_factory=list, max_length=32)
    has_caption: bool | None = None
    suggested_divisions: list[Literal["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]] = Field(
        default_factory=list,
        description="Keep images whose best machine-suggested ICONCLASS subject is in these divisions.",
    )


class SearchRequest(_In):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "terms": [
                        {"kind": "text", "value": "a map of a harbour", "weight": 1.0},
                        {"kind": "text", "value": "ships", "weight": -0.5},
                    ],
                    "filters": {"rights": ["open"], "year_from": 1600, "year_to": 1799},
                    "k": 24,
                }
            ],
            # A search needs something to rank by: terms, keywords, or both (0.1 documented {} as valid).
            "anyOf": [{"required": ["terms"]}, {"required": ["keywords"]}],
        },
    )

    terms: list[TermIn] = Field(default_factory=list, max_length=16)  # = params.MAX_TERMS
    filters: FiltersIn = Field(default_factory=FiltersIn)
    keywords: str | None = Field(
        default=None,
        max_length=500,
        description="Words matched on captions and fused with visual similarity.",
    )
    min_score: float | None = Field(default=None, ge=-1.0, le=1.0)
    k: int = Field(default=24, ge=1, description="Results per page (at most limits.k_max).")
    cursor: str | None = Field(default=None, max_length=4096)
    collapse_duplicates: bool = True
    facets: bool = Field(default=False, description="Also return facet counts for the filters.")
    language: str | None = Field(
        default=None,
        max_length=35,
        description="Language of the query words (e.g. 'de'); subject notations are resolved to it.",
        examples=["de"],
    )
    subjects: list[str] = Field(
        default_factory=list,
        max_length=8,
        description="Subject notations to search for, e.g. 'iconclass:11H(GEORGE)' (same as subject terms).",
    )

    sort: Literal["relevance", "date-asc", "date-desc"] = Field(
        default="relevance",
        description="date-asc/date-desc order the strong and possible matches (or the keyword matches) "
        "by date, undated last.",
    )
    mode: Literal["hybrid", "vector"] | None = Field(
        default=None,
        description="hybrid: the words are also matched on the catalogue text (titles, descriptions, "
        "subjects) and fused when they single out a few items; vector: the embedding alone. "
        "Default: the server's [search] mode.",
    )
    fields: list[FieldGroup] = Field(
        default_factory=list,
        max_length=4,
        description="What each result carries besides the compact default: content_state, viewers (the "
        "Content State and ready-made viewer URLs), links (also the institution's pages), iiif "
        "(canvas, image service, image URL, regions), or full (all of it).",
    )


# ---------------------------------------------------------------- subjects (ICONCLASS)


class SubjectSuggestionOut(_Out):
    notation: str = Field(examples=["25G21(APPLE)"])
    ref: str = Field(description="What to put in `q` or a subject term.", examples=["iconclass:25G21(APPLE)"])
    label: str = Field(description="The notation's text in the requested language (else English).")
    label_language: str
    matched: str = Field(description="The text or keyword that the typed words matched.")
    matched_language: str
    score: float = Field(description="Ranking score; comparable within one answer only.")


class SubjectSuggestions(_Out):
    q: str
    lang: str
    suggestions: list[SubjectSuggestionOut]


class SubjectOut(_Out):
    notation: str
    ref: str
    label: str
    label_language: str
    keywords: list[str] = Field(description="Keywords in every language the vocabulary has.")
