"""Query-string and JSON inputs → :class:`iconosearch.query.Query` (pure; no engine, no I/O)."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
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


class SearchQueryParams(BaseModel):
    """The search query string, validated as one model in one pydantic call.

    Why not one FastAPI ``Query(...)`` per parameter: FastAPI resolves and validates each declared
    parameter separately on every request, which cost ~0.8 ms of the server's CPU per search (17 % of
    it in a py-spy profile) against ~0.15 ms for this model. The routes declare the same parameters in
    OpenAPI through :data:`SEARCH_OPENAPI` instead."""

    model_config = ConfigDict(extra="ignore")  # unknown names are refused with their own problem code

    q: str | None = Field(
        None, max_length=500, description="Words describing the picture.", examples=["a map of a harbour"]
    )
    like: list[ItemIdParam] | None = Field(
        None, description="Ids of items to find more like (repeatable).", examples=[["3f2a9c0d41b7e615"]]
    )
    unlike: list[ItemIdParam] | None = Field(None, description="Ids of items to see less like (repeatable).")
    not_: list[str] | None = Field(
        None, alias="not", description="'Less of' words (repeatable).", examples=[["ships"]]
    )
    keywords: str | None = Field(
        None, max_length=500, description="Words matched on captions and fused with visual similarity."
    )
    collection: list[str] | None = Field(None, description="Keep these collections (repeatable).")
    institution: list[str] | None = Field(None, description="Keep these institutions (repeatable).")
    year_from: int | None = Field(None, ge=-10_000, le=10_000, examples=[1600])
    year_to: int | None = Field(None, ge=-10_000, le=10_000, examples=[1799])
    rights: list[Rights] | None = Field(None, description="open, restricted or unknown (repeatable).")
    lang: list[str] | None = Field(None, description="Keep captions in these languages (repeatable).")
    qlang: str | None = Field(
        None,
        max_length=35,
        description="Language of the words in `q` (e.g. 'de'); `iconclass:` notations in `q` are "
        "resolved to their text in it.",
    )
    has_caption: bool | None = None
    suggested_division: list[Division] | None = Field(
        None,
        description="Keep images whose best machine-suggested ICONCLASS subject is in these "
        "top-level divisions, 0–9 (repeatable).",
    )
    min_score: float | None = Field(None, ge=-1.0, le=1.0)
    k: int = Field(24, ge=1, description="Results per page (at most limits.k_max).")
    cursor: str | None = Field(None, max_length=4096, description="next_cursor of the previous page.")
    collapse: bool = Field(True, description="Collapse near-identical images into one result.")
    facets: bool = Field(False, description="Also return facet counts.")
    sort: SortOrder = Field(
        "relevance",
        description="relevance (default), or date-asc / date-desc: the strong and possible matches "
        "(or the keyword matches) by date, undated last.",
    )
    mode: SearchMode | None = Field(
        None,
        description="hybrid: the words are also matched on the catalogue text (titles, descriptions, "
        "subjects) and fused when they single out a few items; vector: the embedding alone. "
        "Default: the server's [search] mode.",
    )
    fields: list[s.FieldGroup] | None = Field(
        None,
        description="What each result carries besides the compact default (repeatable): "
        "content_state, viewers (the Content State and ready-made viewer URLs), links (also the "
        "institution's pages), iiif (canvas, image service, image URL, regions) or full.",
    )


def _query_names() -> tuple[frozenset[str], frozenset[str]]:
    """Every query-string name, and those that may repeat (read from the model, so they cannot drift)."""
    names, repeatable = set(), set()
    for name, info in SearchQueryParams.model_fields.items():
        names.add(info.alias or name)
        if "list[" in str(info.annotation):
            repeatable.add(info.alias or name)
    return frozenset(names), frozenset(repeatable)


SEARCH_PARAM_NAMES, _REPEATABLE = _query_names()


def _openapi_parameters() -> list[dict[str, Any]]:
    """The query parameters as OpenAPI declares them, from the model's JSON schema (what FastAPI would
    have written for one ``Query(...)`` each)."""
    schema = SearchQueryParams.model_json_schema(by_alias=True)
    assert "$defs" not in schema, "query parameters must be inline schemas"
    out = []
    for name, prop in schema["properties"].items():
        param: dict[str, Any] = {"name": name, "in": "query", "required": False, "schema": prop}
        if "description" in prop:
            param["description"] = prop["description"]
        out.append(param)
    return out


SEARCH_OPENAPI: dict[str, Any] = {"parameters": _openapi_parameters()}
"""``openapi_extra`` of every route that takes :func:`search_params`."""


async def search_params(request: Request) -> SearchParams:  # async: no blocking work, no thread hop
    """The query string as a :class:`SearchParams`; FastAPI-shaped 422s for invalid values, 400
    ``unknown-parameter`` for names no search takes."""
    qp = request.query_params
    raw = {name: qp.getlist(name) if name in _REPEATABLE else qp[name] for name in qp}
    try:
        p = SearchQueryParams.model_validate(raw)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("query", *e["loc"])} for e in exc.errors(include_url=False)]
        ) from None
    unknown = sorted(set(raw) - SEARCH_PARAM_NAMES)
    if unknown:
        raise ProblemError(
            400,
            "unknown-parameter",
            f"unknown parameter(s): {', '.join(unknown)}; known: {', '.join(sorted(SEARCH_PARAM_NAMES))}",
        )
    terms: list[Term] = []
    if p.q and p.q.strip():
        terms.append(Term("text", p.q.strip()))
    terms += [Term("item", _record_id(v)) for v in p.like or ()]
    terms += [Term("item", _record_id(v), LESS_OF_WEIGHT) for v in p.unlike or ()]
    terms += [Term("text", v.strip(), LESS_OF_WEIGHT) for v in p.not_ or () if v.strip()]
    filters = Filters(
        collections=tuple(p.collection or ()),
        providers=tuple(p.institution or ()),
        year_from=p.year_from,
        year_to=p.year_to,
        rights=tuple(p.rights or ()),
        languages=tuple(p.lang or ()),
        has_caption=p.has_caption,
        suggested_divisions=tuple(p.suggested_division or ()),
    )
    query = Query(
        terms=tuple(terms),
        filters=filters,
        keywords=_stripped(p.keywords),
        min_score=p.min_score,
        k=p.k,
        cursor=p.cursor or None,
        collapse_duplicates=p.collapse,
        language=_stripped(p.qlang, lower=True),
        sort=p.sort,
        mode=p.mode,
    )
    return SearchParams(query=query, facets=p.facets, fields=tuple(p.fields or ()))


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
        keywords=_stripped(body.keywords),
        min_score=body.min_score,
        k=body.k,
        cursor=body.cursor or None,
        collapse_duplicates=body.collapse_duplicates,
        language=_stripped(body.language, lower=True),
        sort=body.sort,
        mode=body.mode,
    )


def _stripped(text: str | None, *, lower: bool = False) -> str | None:
    """``text`` without surrounding blanks (lower-cased if asked); ``None`` when nothing is left."""
    text = (text or "").strip()
    return (text.lower() if lower else text) or None
