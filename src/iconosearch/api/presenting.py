"""How a record is shown to clients: thumbnails, viewer links and the result documents (pure functions)."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import orjson

from iconosearch import lru
from iconosearch.api import schemas as s
from iconosearch.api.content_state import content_state, encode_content_state
from iconosearch.config import ViewerConfig
from iconosearch.iiif.image_api import choose_size, image_url
from iconosearch.iiif.regions import Box, parse_box
from iconosearch.query import SearchPage
from iconosearch.records import DateRange, ImageRecord, LangMap
from iconosearch.relevance import Thresholds
from iconosearch.rights import allows_derivatives, rights_class
from iconosearch.subjects.suggested import SuggestedSubject

THUMB_PX = 400
VIEWER_PATH = "/viewer/"
"""The IIIF viewer served by this server (Mirador, reading ``?iiif-content=``)."""
CREATOR_FIELDS = (
    "creator",
    "artist",
    "author",
    "maker",
    "painter",
    "illustrator",
    "engraver",
    "photographer",
    "dc:creator",
    "künstler",
    "urheber",
    "auteur",
    "artiste",
    "vervaardiger",
    "kunstenaar",
    "autore",
    "artista",
)
"""Metadata labels (any language, any case) that name who made the object, most specific first."""


FIELD_GROUPS: dict[str, frozenset[str]] = {
    "viewers": frozenset({"content_state", "viewers"}),
    "content_state": frozenset({"content_state"}),
    "links": frozenset({"links", "homepage"}),
    "iiif": frozenset(
        {"label", "canvas", "canvas_index", "region", "image_region", "image_service", "image_url"}
    ),
}
"""Result fields that search results carry only when asked (``fields=``; ``full``: all of them).

The compact default is what a catalogue shows (title, creator, date, thumbnail, rights and
attribution, the provider's name, the manifest); the provider's id, homepage and logo come with
``links``. The Content State (about 750 characters) is
sent once per result with ``content_state``, and the page's ``templates`` turn it into viewer URLs,
as they turn an id into the item, similar and permalink URLs; ``viewers`` adds ready-made URLs."""
_OPTIONAL = frozenset().union(*FIELD_GROUPS.values())
_PER_HIT = frozenset({"score", "relevance", "duplicates", "matched_region"})


def left_out(fields: Iterable[str]) -> frozenset[str]:
    """The result fields to leave out for the asked field groups."""
    asked = set(fields)
    if "full" in asked:
        return frozenset()
    return _OPTIONAL - frozenset().union(*(FIELD_GROUPS.get(f, frozenset()) for f in asked))


_Key = tuple[str, str | None, str, str | None, str | None, frozenset[str]]
"""(service URL, index version, record id, region, image region, the fields left out)."""


class PresentedCache:
    """The presented results of recently shown records, serialised, least recently used out.

    Keyed by service URL, index version, record id, the region shown and the fields left out: a record
    never changes within a version, so it is presented (thumbnail, Content State, links) once, not on
    every search. Kept as JSON bytes, not dicts: a presented dict is ~20 objects the garbage collector
    tracks, and full collections walking thousands of them paused a loaded server for tens of ms.
    Used from the event loop only, so it needs no lock.
    """

    def __init__(self, maxsize: int = 8192) -> None:
        self.maxsize = maxsize
        self._items: OrderedDict[_Key, bytes] = OrderedDict()

    def get(self, key: _Key) -> bytes | None:
        found = self._items.get(key)
        if found is not None:
            self._items.move_to_end(key)
        return found

    def put(self, key: _Key, value: bytes) -> None:
        lru.keep(self._items, {key: value}, self.maxsize)


def _merged(obj: bytes, more: bytes) -> orjson.Fragment:
    """Two serialised JSON objects (``{...}``, neither empty) as one, without decoding either: orjson
    has no merge, and decoding the cached part again is what the cache is there to save."""
    return orjson.Fragment(obj[:-1] + b"," + more[1:])


@dataclass(frozen=True, slots=True)
class Presenter:
    """What result documents need to know about the deployment."""

    base_url: str
    """Absolute URL of the service root, without a trailing slash."""
    viewers: ViewerConfig
    cache: PresentedCache | None = None

    def search_json(
        self,
        page: SearchPage,
        *,
        sort: str,
        facets: dict[str, dict[str, int]] | None,
        started: float,
        fields: Iterable[str] = (),
        exclude: str | None = None,
    ) -> bytes:
        """The ``GET /api/search`` document (``s.SearchResponse``) of a result page, serialised;
        ``iconosearch search --json`` and the API's examples decode it. ``started`` is the
        ``time.perf_counter()`` at which answering began. Built from cached presented records, never
        re-validated."""
        omit = left_out(fields)
        # A hit that matched a detail keeps its viewer links: they open on that detail, which the item's
        # own links (GET /api/items/{id}) cannot do, so a client could not rebuild them later.
        omit_detail = omit - FIELD_GROUPS["viewers"]
        results = []
        for h in page.hits:
            if exclude is not None and h.record.id == exclude:
                continue
            per_hit = {
                "score": round(h.score, 4),
                "relevance": page.thresholds.band(h.score) if page.thresholds is not None else None,
                "duplicates": {"size": len(h.duplicates) + 1, "ids": list(h.duplicates)},
                "matched_region": h.matched_region,
            }
            dropped = omit_detail if h.matched_region else omit
            shown = self._projected(h.record, page.index_version, dropped)
            results.append(_merged(shown, orjson.dumps(per_hit)))
        t = page.total
        return orjson.dumps(
            {
                "results": results,
                "templates": self.templates(),
                "total": {"count": t.count, "relation": t.relation, "basis": t.basis} if t else None,
                "sort": sort,
                "next_cursor": page.next_cursor,
                "index_version": page.index_version,
                "timings": {
                    "embed_ms": round(page.embed_ms, 2),
                    "search_ms": round(page.search_ms, 2),
                    "total_ms": round((time.perf_counter() - started) * 1000, 2),
                },
                "facets": facets,
            }
        )

    def _projected(self, record: ImageRecord, version: str | None, dropped: frozenset[str]) -> bytes:
        """The presented record less the ``dropped`` fields, serialised, cached per selection: nearly
        every request asks the compact default, so a shown record costs one splice of bytes."""
        key = (self.base_url, version, record.id, record.region, record.image_region, dropped)
        found = self.cache.get(key) if self.cache is not None else None
        if found is None:
            # Plain dicts, not an ``s.Result`` validated and dumped again: a result not yet cached is
            # presented on the search path, and validation was most of its cost (tests check that both
            # give the same document).
            common = self._common(record, None, ())
            presented = {k: v for k, v in common.items() if k not in _PER_HIT and k not in dropped}
            # A provider's unknown id, homepage or logo is left out, not sent as null in every result;
            # its name is what a result card shows, and its pages come with the links.
            keep = {"label"} if "links" in dropped else {"label", "id", "homepage", "logo"}
            presented["providers"] = [
                {k: v for k, v in p.items() if k in keep and v is not None} for p in common["providers"]
            ]
            found = orjson.dumps(presented)
            if self.cache is not None:
                self.cache.put(key, found)
        return found

    def viewer_templates(self) -> dict[str, str | None]:
        """The page's viewer URL templates (see ``s.Templates``)."""
        return {
            "viewer": f"{self.base_url}{VIEWER_PATH}?iiif-content={{content_state}}",
            "mirador": self.viewers.mirador or None,
            "universal_viewer": self.viewers.universal_viewer or None,
        }

    def templates(self) -> dict[str, str | None]:
        """The page's URL templates: viewers (``{content_state}``, ``{manifest}``) and links (``{id}``)."""
        return {
            **self.viewer_templates(),
            "item": f"{self.base_url}/api/items/{{id}}",
            "similar": f"{self.base_url}/api/items/{{id}}/similar",
            "permalink": f"{self.base_url}/?item={{id}}",
        }

    def result(
        self,
        record: ImageRecord,
        score: float,
        duplicates: tuple[str, ...],
        thresholds: Thresholds | None = None,
        *,
        matched_region: bool = False,
    ) -> s.Result:
        band = thresholds.band(score) if thresholds is not None else None
        return s.Result(
            **self._common(record, score, duplicates), relevance=band, matched_region=matched_region
        )

    def item(
        self, record: ImageRecord, duplicates: tuple[str, ...], suggested: Sequence[SuggestedSubject] = ()
    ) -> s.Item:
        return s.Item(
            **self._common(record, None, duplicates),
            manifest_label=record.manifest_label,
            canvas_label=record.canvas_label,
            summary=record.summary,
            metadata=[s.MetadataEntry(label=m.label, value=m.value) for m in record.metadata],
            part_of=list(record.part_of),
            width=record.width,
            height=record.height,
            suggested_subjects=[
                s.SuggestedSubjectOut(notation=x.notation, label=x.label, score=x.score, division=x.division)
                for x in suggested
            ],
        )

    def viewer_links(self, record: ImageRecord) -> dict[str, str | None]:
        """The record's Content State and the viewer URLs made from it (``s.ViewerLinks``, JSON-ready)."""
        state = content_state(
            record.manifest_id, record.canvas_id, record.region, id=f"{self.base_url}/api/items/{record.id}"
        )
        encoded = encode_content_state(state)
        links: dict[str, str | None] = {"content_state": encoded}
        templates = self.viewer_templates()
        uses_manifest = any(t and "{manifest}" in t for t in templates.values())
        manifest = quote(record.manifest_id, safe="") if uses_manifest else ""
        for name, template in templates.items():
            links[name] = (
                template.replace("{content_state}", encoded).replace("{manifest}", manifest)
                if template
                else None
            )
        return links

    def _common(
        self, record: ImageRecord, score: float | None, duplicates: tuple[str, ...]
    ) -> dict[str, Any]:
        """The fields results and items share, JSON-ready (the shapes of ``s.Result``'s parts)."""
        service = record.service
        viewers = self.viewer_links(record)
        attribution = record.required_statement
        return {
            "id": record.id,
            "score": round(score, 4) if score is not None else None,
            "title": record.manifest_label or record.canvas_label,
            "creator": creator(record),
            "rights_class": rights_class(record.rights),
            "caption": record.caption,
            "label": record.canvas_label or record.manifest_label,
            "collection": record.collection,
            "thumbnail": thumbnail(record).model_dump(),
            "aspect_ratio": aspect_ratio(record),
            "image_service": {
                "id": service.id,
                "api_version": service.api_version,
                "level": service.level,
                "width": service.width or record.width,
                "height": service.height or record.height,
                "info_url": f"{service.id}/info.json",
            }
            if service is not None
            else None,
            "image_url": record.static_url,
            "manifest": record.manifest_id,
            "canvas": record.canvas_id,
            "content_state": viewers["content_state"],
            "canvas_index": record.canvas_index,
            "region": record.region,
            "image_region": str(crop) if (crop := shown_region(record)) else None,
            "rights": record.rights,
            "attribution": {"label": attribution.label, "value": attribution.value} if attribution else None,
            "providers": [
                {"label": p.label, "id": p.id, "homepage": p.homepage, "logo": p.logo}
                for p in record.providers
            ],
            "date": date_out(record.date).model_dump() if record.date is not None else None,
            "homepage": [{"id": h.id, "label": h.label, "format": h.format} for h in record.homepage],
            "duplicates": {"size": len(duplicates) + 1, "ids": list(duplicates)},
            "viewers": viewers,
            "links": {
                "item": f"{self.base_url}/api/items/{record.id}",
                "similar": f"{self.base_url}/api/items/{record.id}/similar",
                "permalink": f"{self.base_url}/?item={record.id}",
            },
        }


def creator(record: ImageRecord) -> LangMap:
    """Who made the object, from the first creator-like metadata field (``{}`` when none says)."""
    from iconosearch.captions import field_values

    found = field_values(record.metadata, CREATOR_FIELDS)
    return dict(found[0]) if found else {}


def shown_region(record: ImageRecord) -> Box | None:
    """The crop of the image (image pixels) that the record shows, or ``None`` for the whole image.

    A "no derivatives" licence forbids showing a crop, so such records are always shown whole.
    """
    return parse_box(record.image_region) if allows_derivatives(record.rights) else None


def image_size(record: ImageRecord) -> tuple[int, int] | None:
    """Pixel size of what the record shows: its crop of the image when there is one, else the image.

    Never the canvas region: an overlay painted onto part of a canvas is a whole image of its own size.
    """
    region = shown_region(record)
    if region is not None:
        return region.w, region.h
    width = record.width or (record.service.width if record.service else None)
    height = record.height or (record.service.height if record.service else None)
    if width and height:
        return width, height
    return None


def aspect_ratio(record: ImageRecord) -> float | None:
    size = image_size(record)
    return round(size[0] / size[1], 5) if size else None


def thumbnail(record: ImageRecord, target: int = THUMB_PX) -> s.Thumbnail:
    """A thumbnail of about ``target`` px on the long side, from the image service when possible.

    Sizes follow what the service promises (level-0 trees serve only their listed sizes), as the
    harvester's image requests do (:mod:`iconosearch.iiif.image_api`).
    """
    size = image_size(record)
    svc = record.service
    region = shown_region(record)
    usable = svc is not None and not (svc.level == 0 and not svc.sizes and record.thumbnail)
    if svc is not None and usable:
        quality = "native" if svc.api_version == 1 else "default"
        if region is not None and svc.level != 0:
            w, h = _fit((region.w, region.h), target)
            return s.Thumbnail(url=f"{svc.id}/{region}/{w},/0/{quality}.jpg", width=w, height=h)
        # Level 0 cannot crop: a region's thumbnail is the whole image.
        choice = choose_size(svc, target)
        full = (svc.width, svc.height) if svc.width and svc.height else None
        if choice.width is not None and choice.height is not None:
            dims: tuple[int, int] | None = (choice.width, choice.height)
        elif choice.width is not None and full:
            dims = (choice.width, max(1, round(choice.width * full[1] / full[0])))
        else:
            dims = full
        return s.Thumbnail(
            url=image_url(svc, target), width=dims[0] if dims else None, height=dims[1] if dims else None
        )
    fallback = record.thumbnail or record.static_url
    tw, th = _fit(size, target) if size else (None, None)
    return s.Thumbnail(url=fallback, width=tw, height=th)


def _fit(size: tuple[int, int], target: int) -> tuple[int, int]:
    w, h = size
    scale = min(1.0, target / max(w, h))
    return max(1, round(w * scale)), max(1, round(h * scale))


def date_out(date: DateRange) -> s.DateOut:
    def year(y: int) -> str:
        return f"{-y} BCE" if y < 0 else str(y)

    display = (
        year(date.start_year)
        if date.start_year == date.end_year
        else f"{year(date.start_year)}–{year(date.end_year)}"
    )
    return s.DateOut(
        start_year=date.start_year, end_year=date.end_year, century=date.century, display=display
    )
