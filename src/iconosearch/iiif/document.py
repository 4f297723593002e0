"""What a fetched JSON document is: its kind (manifest, collection, image service, …) and API version.

Real documents often lack ``@context`` or carry the wrong one (an Image API context on a manifest, an
extension context first in an array), so the kind comes from the type first and the context second.
A document we will not harvest becomes a :class:`Skip` with a machine reason and a readable detail.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

DocumentKind = Literal[
    "manifest",
    "collection",
    "canvas",
    "image-service",
    "change-stream",
    "change-page",
    "activity",
    "unknown",
]

SkipReason = Literal[
    "unsupported-version",
    "wrong-kind",
    "malformed",
    "no-canvases",
    "no-image",
    "not-an-image",
    "no-image-url",
    "duplicate",
]

_PRESENTATION_KINDS: dict[str, DocumentKind] = {
    "Manifest": "manifest",
    "Collection": "collection",
    "Canvas": "canvas",
}
_ACTIVITY_TYPES = frozenset({"Create", "Update", "Delete", "Move", "Refresh", "Add", "Remove"})


@dataclass(frozen=True, slots=True)
class Skip:
    """Something not harvested, and why."""

    reason: SkipReason
    detail: str
    ref: str | None = None
    """Id of the document or canvas skipped."""


class DocumentSkippedError(Exception):
    """Raised by the parsers for a document that yields nothing; carries the typed :class:`Skip`."""

    def __init__(self, skip: Skip) -> None:
        super().__init__(f"{skip.reason}: {skip.detail}")
        self.skip = skip


@dataclass(frozen=True, slots=True)
class DocumentInfo:
    kind: DocumentKind
    version: int | None
    """Presentation API version (1, 2, 3) for presentation documents; Image API version for services."""
    id: str | None


def contexts(doc: dict[str, Any]) -> list[str]:
    ctx = doc.get("@context")
    items = ctx if isinstance(ctx, list) else [ctx]
    return [c for c in items if isinstance(c, str)]


def doc_id(doc: dict[str, Any]) -> str | None:
    for key in ("id", "@id"):
        value = doc.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def as_list(value: Any) -> list[Any]:
    """A JSON-LD value that may be absent, one item or a list, as a list."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def link_id(value: Any) -> str | None:
    """Id of a reference that may be a bare URI string or an object with an id (``first``, ``next``, …)."""
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, dict):
        return doc_id(value)
    return None


def doc_type(obj: Any) -> str:
    if not isinstance(obj, dict):
        return ""
    typ = obj.get("type", obj.get("@type"))
    if isinstance(typ, list):
        typ = next((t for t in typ if isinstance(t, str)), "")
    return typ if isinstance(typ, str) else ""


VersionMarkers = tuple[tuple[int, tuple[str, ...]], ...]
"""(version, substrings any of which marks it), newest first."""

_PRESENTATION_CONTEXTS: VersionMarkers = (
    (3, ("iiif.io/api/presentation/3",)),
    (2, ("iiif.io/api/presentation/2",)),
    (1, ("shared-canvas.org", "iiif.io/api/presentation/1")),
)


def marked_version(texts: list[str], markers: VersionMarkers) -> int | None:
    """The API version the first marked text names (a context or profile URI), or None."""
    for text in texts:
        for version, needles in markers:
            if any(needle in text for needle in needles):
                return version
    return None


def _presentation_version(doc: dict[str, Any], typ: str) -> int | None:
    version = marked_version(contexts(doc), _PRESENTATION_CONTEXTS)
    if version is not None:
        return version
    # No (usable) context: prefixed types are v2 ("sc:Manifest"), bare ones v3 ("Manifest").
    if typ.startswith("sc:"):
        return 2
    if typ in ("Manifest", "Collection", "Canvas"):
        return 3
    return None


def describe(doc: Any) -> DocumentInfo:
    """Classify a parsed JSON document."""
    if not isinstance(doc, dict):
        return DocumentInfo("unknown", None, None)
    typ = doc_type(doc)
    ident = doc_id(doc)
    bare = typ.split(":")[-1]
    if bare in ("Manifest", "Collection", "Canvas"):
        kinds: dict[str, DocumentKind] = {
            "Manifest": "manifest",
            "Collection": "collection",
            "Canvas": "canvas",
        }
        kind = kinds[bare]
        return DocumentInfo(kind, _presentation_version(doc, typ), ident)
    if bare == "OrderedCollection":
        return DocumentInfo("change-stream", None, ident)
    if bare == "OrderedCollectionPage":
        return DocumentInfo("change-page", None, ident)
    if bare in _ACTIVITY_TYPES:
        return DocumentInfo("activity", None, ident)
    from iconosearch.iiif.image_api import service_version

    version = service_version(doc)
    if version is not None and ("width" in doc or "height" in doc or "profile" in doc):
        return DocumentInfo("image-service", version, ident or doc.get("identifier"))
    return DocumentInfo("unknown", None, ident)
