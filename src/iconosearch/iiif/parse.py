"""One entry point for any fetched IIIF JSON document: records, references, a service, or a typed skip.

Used where the kind of a document is not known in advance (ad-hoc URLs, the fixture survey). Never
raises for bad input: whatever cannot be harvested comes back as a :class:`~iconosearch.iiif.document.Skip`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from iconosearch.captions import DEFAULT_FIELDS
from iconosearch.iiif.changes import ChangePage, ChangeStream, parse_activity, parse_page, parse_stream
from iconosearch.iiif.collection import CollectionPage, parse_collection
from iconosearch.iiif.document import DocumentInfo, DocumentSkippedError, Skip, describe
from iconosearch.iiif.image_api import parse_service
from iconosearch.iiif.manifest import ManifestParse, parse_manifest
from iconosearch.records import ImageService

Parsed = ManifestParse | CollectionPage | ImageService | ChangeStream | ChangePage | Skip


@dataclass(frozen=True, slots=True)
class ParsedDocument:
    info: DocumentInfo
    result: Parsed


def parse_document(
    doc: Any,
    *,
    collection: str,
    url: str | None = None,
    caption_fields: Sequence[str] = DEFAULT_FIELDS,
) -> ParsedDocument:
    """Parse ``doc`` by its kind; a document that yields nothing gives a :class:`Skip`."""
    info = describe(doc)
    ref = info.id or url
    result: Parsed
    try:
        if info.kind == "manifest":
            result = parse_manifest(
                doc, collection=collection, caption_fields=caption_fields, fallback_id=url
            )
        elif info.kind == "collection":
            result = parse_collection(doc, fallback_id=url)
        elif info.kind == "image-service":
            fallback = url[: -len("/info.json")] if url and url.endswith("/info.json") else url
            service = parse_service(doc, fallback_id=fallback)
            result = service or Skip("malformed", "image service description without an id", ref)
        elif info.kind == "change-stream":
            result = parse_stream(doc, fallback_id=url)
        elif info.kind == "change-page":
            result = parse_page(doc, fallback_id=url)
        elif info.kind == "activity":
            act = parse_activity(doc)
            detail = f"a single {act.type if act else ''} activity; harvest its stream instead"
            result = Skip("wrong-kind", detail, ref)
        elif info.kind == "canvas":
            result = Skip(
                "wrong-kind", "a bare Canvas, not a Manifest; harvest the manifest it belongs to", ref
            )
        else:
            result = Skip("malformed", "not a IIIF Presentation, Image or Change Discovery document", ref)
    except DocumentSkippedError as exc:
        result = exc.skip
    return ParsedDocument(info, result)
