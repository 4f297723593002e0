"""Collections (Presentation 2.1 and 3.0) → references to manifests and sub-collections, plus paging.

v2 lists members in ``manifests``, ``collections`` and/or ``members`` (often the same items twice);
v3 in ``items``. Paged v2 collections link pages with ``first``/``next`` (strings or objects). Duplicates
within one page are dropped here; cycles across pages and nesting are the walker's job (it keeps a set
of visited ids). Pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from iconosearch.iiif.document import DocumentSkippedError, Skip, describe, doc_id, doc_type, link_id
from iconosearch.iiif.text import lang_map
from iconosearch.records import LangMap

RefKind = Literal["manifest", "collection"]


@dataclass(frozen=True, slots=True)
class Ref:
    """A manifest or collection listed in a collection."""

    id: str
    """The reference's id; for an embedded sub-collection whose id is missing or reused (a real published
    pattern: sub-collections carrying their parent's id), a key of its own below the parent's id."""
    kind: RefKind
    label: LangMap
    doc: dict[str, Any] | None = None
    """An embedded sub-collection that lists its members inline: walked as it is, not fetched again."""


@dataclass(frozen=True, slots=True)
class CollectionPage:
    """What one collection document lists and where its next page is."""

    id: str
    version: int
    label: LangMap
    refs: tuple[Ref, ...]
    first: str | None
    next: str | None
    total: int | None

    @property
    def manifests(self) -> tuple[Ref, ...]:
        return tuple(r for r in self.refs if r.kind == "manifest")

    @property
    def collections(self) -> tuple[Ref, ...]:
        return tuple(r for r in self.refs if r.kind == "collection")

    @property
    def name(self) -> str:
        """Display name used in records' ``part_of``: the first label value, else the id."""
        return next((v for vals in self.label.values() for v in vals), None) or self.id


def _ref_kind(item: dict[str, Any], default: RefKind | None) -> RefKind | None:
    bare = doc_type(item).split(":")[-1]
    if bare == "Manifest":
        return "manifest"
    if bare == "Collection":
        return "collection"
    return default


def parse_collection(doc: Any, *, fallback_id: str | None = None) -> CollectionPage:
    """References in a collection document; raises :class:`DocumentSkippedError` for non-collections."""
    info = describe(doc)
    ref_id = info.id or fallback_id
    if info.kind != "collection":
        raise DocumentSkippedError(Skip("wrong-kind", f"a {info.kind} document, not a collection", ref_id))
    assert isinstance(doc, dict)
    if info.version == 1:
        raise DocumentSkippedError(Skip("unsupported-version", "Presentation 1.0 collection", ref_id))
    if not ref_id:
        raise DocumentSkippedError(Skip("malformed", "collection has no id and no source URL", None))
    refs: dict[tuple[str, str], Ref] = {}
    sources: list[tuple[str, RefKind | None]] = (
        [("items", None)]
        if info.version == 3
        else [("manifests", "manifest"), ("collections", "collection"), ("members", None), ("items", None)]
    )
    for key, default in sources:
        value = doc.get(key)
        for index, raw in enumerate(value if isinstance(value, list) else []):
            item = {"@id": raw} if isinstance(raw, str) else raw
            if not isinstance(item, dict):
                continue
            ident = doc_id(item)
            kind = _ref_kind(item, default)
            if kind == "collection" and _lists_members(item):
                fresh = ident is not None and ident != ref_id and (kind, ident) not in refs
                key_id = ident if fresh and ident is not None else f"{ref_id}#{key}[{index}]"
                inline = _embedded(doc, item, info.version or 2)
                refs.setdefault((kind, key_id), Ref(key_id, kind, lang_map(item.get("label")), inline))
                continue
            if ident is None or kind is None:
                continue
            refs.setdefault((kind, ident), Ref(ident, kind, lang_map(item.get("label"))))
    total = doc.get("total")
    return CollectionPage(
        id=ref_id,
        version=info.version or 2,
        label=lang_map(doc.get("label")),
        refs=tuple(refs.values()),
        first=link_id(doc.get("first")),
        next=link_id(doc.get("next")),
        total=total if isinstance(total, int) and not isinstance(total, bool) else None,
    )


_MEMBER_KEYS = ("manifests", "collections", "members", "items")


def _lists_members(item: dict[str, Any]) -> bool:
    return any(isinstance(item.get(k), list) and item.get(k) for k in _MEMBER_KEYS)


def _embedded(parent: dict[str, Any], item: dict[str, Any], version: int) -> dict[str, Any]:
    """An embedded sub-collection as a document of its own: with the parent's context and a type."""
    out = {"@context": parent.get("@context"), **item}
    if not doc_type(item):
        out["@type" if version == 2 else "type"] = "sc:Collection" if version == 2 else "Collection"
    return out
