"""Query-string and JSON inputs → :class:`iconosearch.query.Query` (pure; no engine, no I/O)."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Query as QueryParam
from pydantic import StringConstraints
from starlette.requests import Request

from iconosearch.api import schemas as s
from iconosearch.api.problems import ProblemError
from iconosearch.config import LimitsConfig
from iconosearch.images import probe_image
from iconosearch.query import Filters, LimitExceededError, Query, SearchMode, SortOrder, Term
from iconosearch.subjects import subject_refs

LESS_OF_WEIGHT = -0.5
"""Weight of a 'less of' term given in the query string (``not=…``, ``unlike=…``)."""

RECORD_ID = re.compile(r"^[0-9a-f]{16}$")
ItemIdParam = Annotated[str, StringConstraints(pattern=r"^\s*[0-9a-fA-F]{16}\s*$")]
"""An item id in a query parameter; the pattern is in the OpenAPI schema (0.1 checked it only in code)."""

Rights = Literal["open", "restricted", "unknown"]
Division = Literal["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]
"""An ICONCLASS top-level division."""


@dataclass(frozen=True, slots=True)
class SearchParams:
    query: Query
    facets: bool
    fields: tuple[str, ...] = ()


SEARCH_PARAM_NAMES = frozenset(
    {
        "q",
        "like",
        "unlike",
        "not",
        "keywords",
        "collection",
        "institution",
        "year_from",
        "year_to",
        "rights",
        "lang",
        "qlang",
        "has_caption",
        "suggested_division",
        "min_score",
        "k",
        "cursor",
        "collapse",
        "facets",
        "sort",
        "mode",
        "fields",
    }
)


async def search_params(  # async: no blocking work, so FastAPI need not hand it to a thread
    request: Request,
    q: Annotated[
        str | None,
        QueryParam(
            max_length=500, description="Words describing the picture.", examples=["a map of a harbour"]
        ),
    ] = None,
    like: Annotated[
        list[ItemIdParam] | None,
        QueryParam(
            description="Ids of items to find more like (repeatable).", examples=[["3f2a9c0d41b7e615"]]
        ),
    ] = None,
    unlike: Annotated[
        list[ItemIdParam] | None, QueryParam(description="Ids of items to see less like (repeatable).")
    ] = None,
    not_: Annotated[
        list[str] | None,
        QueryParam(alias="not", description="'Less of' words (repeatable).", examples=[["ships"]]),
    ] = None,
    keywords: Annotated[
        str | None,
        QueryParam(max_length=500, description="Words matched on captions and fused with visual similarity."),
    ] = None,
    collection: Annotated[
        list[str] | None, QueryParam(description="Keep these collections (repeatable).")
    ] = None,
    institution: Annotated[
        list[str] | None, QueryParam(description="Keep these institutions (repeatable).")
    ] = None,
    year_from: Annotated[int | None, QueryParam(ge=-10_000, le=10_000, examples=[1600])] = None,
    year_to: Annotated[int | None, QueryParam(ge=-10_000, le=10_000, examples=[1799])] = None,
    rights: Annotated[
        list[Rights] | None, QueryParam(description="open, restricted or unknown (repeatable).")
    ] = None,
    lang: Annotated[
        list[str] | None, QueryParam(description="Keep captions in these languages (repeatable).")
    ] = None,
    qlang: Annotated[
        str | None,
        QueryParam(
            max_length=35,
            description="Language of the words in `q` (e.g. 'de'); `iconclass:` notations in `q` are "
            "resolved to their text in it.",
        ),
    ] = None,
    has_caption: Annotated[bool | None, QueryParam()] = None,
    suggested_division: Annotated[
        list[Division] | None,
        QueryParam(
            description="Keep images whose best machine-suggested ICONCLASS subject is in these "
            "top-level divisions, 0–9 (repeatable)."
        ),
    ] = None,
    min_score: Annotated[float | None, QueryParam(ge=-1.0, le=1.0)] = None,
    k: Annotated[int, QueryParam(ge=1, description="Results per page (at most limits.k_max).")] = 24,
    cursor: Annotated[
        str | None, QueryParam(max_length=4096, description="next_cursor of the previous page.")
    ] = None,
    collapse: Annotated[
        bool, QueryParam(description="Collapse near-identical images into one result.")
    ] = True,
    facets: Annotated[bool, QueryParam(description="Also return facet counts.")] = False,
    sort: Annotated[
        SortOrder,
        QueryParam(
            description="relevance (default), or date-asc / date-desc: the strong and possible matches "
            "(or the keyword matches) by date, undated last."
        ),
    ] = "relevance",
    mode: Annotated[
        SearchMode | None,
        QueryParam(
            description="hybrid: the words are also matched on the catalogue text (titles, descriptions, "
            "subjects) and fused when they single out a few items; vector: the embedding alone. "
            "Default: the server's [search] mode.",
        ),
    ] = None,
    fields: Annotated[
        list[s.FieldGroup] | None,
        QueryParam(
            description="What each result carries besides the compact default (repeatable): "
            "content_state, viewers (the Content State and ready-made viewer URLs), links (also the "
            "institution's pages), iiif (canvas, image service, image URL, regions) or full.",
        ),
    ] = None,
) -> SearchParams:
    unknown = sorted(set(request.query_params) - SEARCH_PARAM_NAMES)
    if unknown:
        raise ProblemError(
            400,
            "unknown-parameter",
            f"unknown parameter(s): {', '.join(unknown)}; known: {', '.join(sorted(SEARCH_PARAM_NAMES))}",
        )
    terms: list[Term] = []
    if q and q.strip():
        terms.append(Term("text", q.strip()))
    terms += [Term("item", _record_id(v)) for v in like or ()]
    terms += [Term("item", _record_id(v), LESS_OF_WEIGHT) for v in unlike or ()]
    terms += [Term("text", v.strip(), LESS_OF_WEIGHT) for v in not_ or () if v.strip()]
    filters = Filters(
        collections=tuple(collection or ()),
        providers=tuple(institution or ()),
        year_from=year_from,
        year_to=year_to,
        rights=tuple(rights or ()),
        languages=tuple(lang or ()),
        has_caption=has_caption,
        suggested_divisions=tuple(suggested_division or ()),
    )
    query = Query(
        terms=tuple(terms),
        filters=filters,
        keywords=keywords.strip() if keywords and keywords.strip() else None,
        min_score=min_score,
        k=k,
        cursor=cursor or None,
        collapse_duplicates=collapse,
        language=qlang.strip().lower() if qlang and qlang.strip() else None,
        sort=sort,
        mode=mode,
    )
    return SearchParams(query=query, facets=facets, fields=tuple(fields or ()))


def _record_id(value: str) -> str:
    value = value.strip().lower()
    if not RECORD_ID.match(value):
        raise ProblemError(400, "invalid-item-id", f"{value[:40]!r} is not an item id (16 hex digits)")
    return value


MAX_TERMS = 16
"""Most parts one query may combine (words, images, items, 'less of' parts)."""


def check_limits(query: Query, limits: LimitsConfig) -> None:
    if len(query.terms) > MAX_TERMS:
        raise LimitExceededError(f"{len(query.terms)} query parts is more than the limit of {MAX_TERMS}")
    if query.k > limits.k_max:
        raise LimitExceededError(f"k={query.k} is more than the limit of {limits.k_max} results per page")


def filters_from_body(body: s.FiltersIn) -> Filters:
    return Filters(
        collections=tuple(body.collections),
        providers=tuple(body.institutions),
        year_from=body.year_from,
        year_to=body.year_to,
        rights=tuple(body.rights),
        languages=tuple(body.languages),
        has_caption=body.has_caption,
        suggested_divisions=tuple(body.suggested_divisions),
    )


def decode_image_value(value: str, limits: LimitsConfig) -> bytes:
    """Bytes of a base64 (or ``data:`` URL) image term, checked before any decoding."""
    if value.startswith("data:"):
        _, _, value = value.partition(",")
    compact = re.sub(r"\s+", "", value)
    if len(compact) > (limits.upload_max_bytes * 4) // 3 + 8:
        raise ProblemError(
            413, "upload-too-large", f"the image is larger than {limits.upload_max_bytes} bytes"
        )
    try:
        data = base64.b64decode(
            compact.replace("-", "+").replace("_", "/") + "=" * (-len(compact) % 4), validate=True
        )
    except (binascii.Error, ValueError) as exc:
        raise ProblemError(400, "invalid-image", "an image term must be base64 (or a data: URL)") from exc
    check_image_bytes(data, limits)
    return data


def check_image_bytes(data: bytes, limits: LimitsConfig) -> None:
    """Reject oversized uploads, non-images and decompression bombs from the header alone."""
    if len(data) > limits.upload_max_bytes:
        raise ProblemError(
            413, "upload-too-large", f"the image is larger than {limits.upload_max_bytes} bytes"
        )
    probe_image(
        data,
        max_pixels=limits.image_max_pixels,
        max_bytes=limits.upload_max_bytes,
        max_decode_bytes=limits.image_max_decode_bytes,
    )


def query_from_body(body: s.SearchRequest, limits: LimitsConfig) -> Query:
    terms: list[Term] = []
    for t in body.terms:
        # A region on anything but an item term is refused by the engine, with the reason.
        if t.kind == "image":
            terms.append(Term("image", decode_image_value(t.value, limits), t.weight, t.region))
        elif t.kind == "item":
            terms.append(Term("item", _record_id(t.value), t.weight, t.region))
        else:
            terms.append(Term(t.kind, t.value.strip(), t.weight, t.region))
    terms += subject_refs(body.subjects)
    return Query(
        terms=tuple(terms),
        filters=filters_from_body(body.filters),
        keywords=body.keywords.strip() if body.keywords and body.keywords.strip() else None,
        min_score=body.min_score,
        k=body.k,
        cursor=body.cursor or None,
        collapse_duplicates=body.collapse_duplicates,
        language=body.language.strip().lower() if body.language and body.language.strip() else None,
        sort=body.sort,
        mode=body.mode,
    )
