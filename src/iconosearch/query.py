"""What a researcher asks and what comes back: the contract between the query engine, the CLI and the API.

A query is a weighted combination of terms (text, image bytes, an indexed item, an image URL), plus filters,
an optional keyword clause (matched on captions and fused with visual similarity), a score threshold and
cursor paging. Validation errors are typed so that the API can map them to 4xx problem responses.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from iconosearch.records import ImageRecord, RightsClass

if TYPE_CHECKING:
    from iconosearch.relevance import Thresholds

TermKind = Literal["text", "image", "item", "url", "subject"]
SortOrder = Literal["relevance", "date-asc", "date-desc"]
TotalRelation = Literal["eq", "about", "gte"]
TotalBasis = Literal["relevance", "keywords", "filters"]
SearchMode = Literal["hybrid", "vector"]
"""``hybrid``: a text query's words are also matched on the catalogue text and fused with the visual
ranking when they single out a few records (see ``SearchEngine``); ``vector``: the embedding alone."""


@dataclass(frozen=True, slots=True)
class Term:
    """One part of a combined query. Negative weights push results away from the term."""

    kind: TermKind
    value: str | bytes
    """Text, image bytes, record id, http(s) URL, or a subject notation (``iconclass:25G21(APPLE)``,
    resolved to text by :func:`iconosearch.subjects.expand_subjects`), according to ``kind``."""
    weight: float = 1.0
    region: str | None = None
    """For an ``item`` term: only this detail of the item's image, ``x,y,w,h`` in the image's pixels or
    ``pct:x,y,w,h`` ("find more like this detail")."""


@dataclass(frozen=True, slots=True)
class Filters:
    collections: tuple[str, ...] = ()
    providers: tuple[str, ...] = ()
    """Institution/provider labels (any language) to keep."""
    year_from: int | None = None
    year_to: int | None = None
    rights: tuple[RightsClass, ...] = ()
    languages: tuple[str, ...] = ()
    """Keep records with a caption in one of these languages."""
    has_caption: bool | None = None
    suggested_divisions: tuple[str, ...] = ()
    """Keep records whose best machine-suggested ICONCLASS subject is in one of these top-level
    divisions (``"0"``–``"9"``; ``subjects.suggested``)."""


@dataclass(frozen=True, slots=True)
class Query:
    terms: tuple[Term, ...] = ()
    filters: Filters = field(default_factory=Filters)
    keywords: str | None = None
    """Keyword clause matched on captions (FTS5) and fused with visual similarity."""
    keyword_any: tuple[str, ...] = ()
    """Phrases of which any may match a caption (a subject's keywords), fused like ``keywords``."""
    language: str | None = None
    """Language of the query's words (BCP-47, e.g. ``de``); subject notations are resolved to it."""
    min_score: float | None = None
    k: int = 24
    cursor: str | None = None
    collapse_duplicates: bool = True
    sort: SortOrder = "relevance"
    """``date-asc``/``date-desc`` order the relevant results (see :class:`Total`) by date, undated last."""
    mode: SearchMode | None = None
    """How text terms rank (see :data:`SearchMode`); ``None``: the engine's default (``[search] mode``)."""


@dataclass(frozen=True, slots=True)
class Total:
    """How many results a query has, as exactly as the engine can tell.

    ``basis`` says what is counted: ``relevance`` — results that are at least possible matches by the
    model's calibrated bands (``about`` on approximate indexes, ``gte`` past the counting depth);
    ``keywords`` — images matching the keywords and filters (exact); ``filters`` — images the filters
    allow, every one of them ranked (exact; used when the model has no calibrated bands).
    """

    count: int
    relation: TotalRelation
    basis: TotalBasis


@dataclass(frozen=True, slots=True)
class Hit:
    record: ImageRecord
    score: float
    """Cosine similarity of the query vector and the image (or the fused score for hybrid queries)."""
    duplicates: tuple[str, ...] = ()
    """Ids of near-identical images collapsed into this hit (same image in other manifests)."""
    matched_region: bool = False
    """The best match is a crop of the image (region embeddings), not the whole image: the record's
    ``region`` and ``image_region`` then name that crop."""


@dataclass(frozen=True, slots=True)
class SearchPage:
    hits: tuple[Hit, ...]
    next_cursor: str | None
    facets: dict[str, dict[str, int]] = field(default_factory=dict)
    index_version: str | None = None
    embed_ms: float = 0.0
    search_ms: float = 0.0
    total: Total | None = None
    """First page only."""
    thresholds: Thresholds | None = None
    """The calibrated relevance bands that apply to these scores, when there are any."""


class QueryError(ValueError):
    """A query the engine cannot answer as asked; the message says why, for the user."""

    code = "invalid-query"


class EmptyQueryError(QueryError):
    code = "empty-query"


class InvalidFilterError(QueryError):
    code = "invalid-filter"


class UnknownCollectionError(QueryError):
    code = "unknown-collection"


class UnknownItemError(QueryError):
    code = "unknown-item"


class LimitExceededError(QueryError):
    code = "limit-exceeded"


class InvalidCursorError(QueryError):
    code = "invalid-cursor"


class InvalidImageError(QueryError):
    code = "invalid-image"


class UrlNotAllowedError(QueryError):
    code = "url-not-allowed"


def parse_filters(specs: Sequence[str]) -> Filters:
    """``["collection=maps", "year=1600-1700"]`` (the CLI's ``--filter``) → :class:`Filters`.

    Raises :class:`InvalidFilterError` naming the bad value and the accepted forms.
    """
    collections: list[str] = []
    providers: list[str] = []
    rights: list[RightsClass] = []
    languages: list[str] = []
    year_from: int | None = None
    year_to: int | None = None
    has_caption: bool | None = None
    for spec in specs:
        key, sep, value = spec.partition("=")
        key, value = key.strip().lower().replace("-", "_"), value.strip()
        if not sep or not value:
            raise InvalidFilterError(f"filter {spec!r} is not KEY=VALUE")
        if key in ("collection", "collections"):
            collections.append(value)
        elif key in ("provider", "institution"):
            providers.append(value)
        elif key == "rights":
            if value not in ("open", "restricted", "unknown"):
                raise InvalidFilterError(f"rights must be open, restricted or unknown, not {value!r}")
            rights.append(value)  # type: ignore[arg-type]
        elif key in ("lang", "language"):
            languages.append(value)
        elif key == "has_caption":
            if value.lower() not in ("yes", "no", "true", "false", "1", "0"):
                raise InvalidFilterError(f"has_caption must be yes or no, not {value!r}")
            has_caption = value.lower() in ("yes", "true", "1")
        elif key in ("year", "date"):
            m = re.fullmatch(r"(-?\d{1,5})?\s*(?:(\.\.|/|–| - |-(?=\d|$)))?\s*(-?\d{1,5})?", value)
            if m is None or (m.group(1) is None and m.group(3) is None):
                raise InvalidFilterError(f"year filter {value!r} is not YEAR, FROM-TO, FROM.. or ..TO")
            start, sep_range, end = m.groups()
            if sep_range is None:
                year_from = year_to = int(start)
            else:
                year_from = int(start) if start else None
                year_to = int(end) if end else None
        elif key in ("year_from", "from"):
            year_from = _int(value, key)
        elif key in ("year_to", "to"):
            year_to = _int(value, key)
        else:
            raise InvalidFilterError(
                f"unknown filter {key!r}; use collection, provider, year, rights, lang, has_caption"
            )
    return Filters(
        collections=tuple(collections),
        providers=tuple(providers),
        year_from=year_from,
        year_to=year_to,
        rights=tuple(rights),
        languages=tuple(languages),
        has_caption=has_caption,
    )


def _int(value: str, key: str) -> int:
    try:
        return int(value)
    except ValueError as exc:
        raise InvalidFilterError(f"{key} must be a year, not {value!r}") from exc


class InvalidRegionError(QueryError):
    """An item term's ``region`` is malformed, outside the image, or its image is not at hand."""

    code = "invalid-region"
