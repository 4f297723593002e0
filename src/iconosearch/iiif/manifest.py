"""Manifests (Presentation 2.1 and 3.0) → image records: one per canvas × painting image.

Pure: a parsed JSON document in, :class:`ManifestParse` out. Choices take their default (v2 ``default``,
v3 first item); composites give one record per image, with the canvas region the image is painted on;
canvases without images, or painted with sound/video/text, are skipped with a reason. Presentation 1.0
(Shared Canvas) documents are refused as a typed skip.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from iconosearch.captions import DEFAULT_FIELDS, build_caption, field_values
from iconosearch.iiif.dates import date_from_metadata, parse_nav_date
from iconosearch.iiif.document import (
    DocumentSkippedError,
    Skip,
    as_list,
    describe,
    doc_id,
    doc_type,
    link_id,
)
from iconosearch.iiif.image_api import find_image_service
from iconosearch.iiif.text import lang_map
from iconosearch.records import (
    NO_LANG,
    DateRange,
    ImageRecord,
    ImageService,
    LangMap,
    Link,
    MetadataPair,
    Provider,
    record_id,
)
from iconosearch.rights import licence_in

_XYWH = re.compile(r"#xywh=(?:pixel:)?(\d+(?:\.\d+)?),(\d+(?:\.\d+)?),(\d+(?:\.\d+)?),(\d+(?:\.\d+)?)$")
_IMAGE_FORMAT = re.compile(r"^image/", re.IGNORECASE)
_ATTRIBUTION_PREFIX = re.compile(
    r"^\s*(provided by|courtesy of|digital image courtesy of|rightsholder:|holding institution:)\s*(the\s+)?",
    re.IGNORECASE,
)
_RIGHTS_WORDS = re.compile(
    r"public domain|copyright|©|\(c\)|rights|licen[cs]e|creative commons|\bcc[- ]|terms|permission|"
    r"reproduc|photo:|images?\s*:|manifest",
    re.IGNORECASE,
)
_PLACEHOLDER = re.compile(r"placeholder", re.IGNORECASE)
_NON_IMAGE_TYPES = frozenset({"sound", "audio", "video", "text", "dataset", "model", "pdf"})


@dataclass(frozen=True, slots=True)
class ManifestParse:
    """The records of one manifest and what was skipped in it."""

    manifest_id: str
    version: int
    label: LangMap
    records: tuple[ImageRecord, ...]
    skips: tuple[Skip, ...]
    canvases: int


@dataclass(frozen=True, slots=True)
class _Shared:
    """Manifest-level fields every record of the manifest carries."""

    manifest_id: str
    label: LangMap
    summary: LangMap
    metadata: tuple[MetadataPair, ...]
    rights: str | None
    required_statement: MetadataPair | None
    providers: tuple[Provider, ...]
    nav_date: Any
    homepage: tuple[Link, ...]
    part_of: tuple[str, ...]
    thumbnail: str | None
    meta_date: DateRange | None = None
    """Date read from the manifest's metadata (when there is no navDate)."""
    chosen: list[LangMap] = field(default_factory=list)
    """The caption fields' values in the manifest's metadata."""


@dataclass(frozen=True, slots=True)
class _Image:
    """One painted image found on a canvas."""

    id: str
    service: ImageService | None
    static_url: str | None
    width: int | None
    height: int | None
    region: str | None
    image_region: str | None = None


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float) and value > 0:
        return int(value)
    if isinstance(value, str) and value.strip().isdigit() and int(value) > 0:
        return int(value)
    return None


def _metadata(value: Any) -> tuple[MetadataPair, ...]:
    pairs: list[MetadataPair] = []
    for entry in as_list(value):
        if not isinstance(entry, dict):
            continue
        label, val = lang_map(entry.get("label")), lang_map(entry.get("value"))
        if label or val:
            pairs.append(MetadataPair(label=label, value=val))
    return tuple(pairs)


def _rights(value: Any) -> str | None:
    """The first URI among v3 ``rights`` / v2 ``license`` values (strings, objects or lists of them)."""
    for item in as_list(value):
        uri = _web_uri(item)
        if uri:
            return uri
    return None


def _web_uri(value: Any) -> str | None:
    """The id of ``value`` if it is an http(s) URL. Links end up in ``<a href>`` and ``<img src>`` in
    the UI: a ``javascript:`` or ``data:`` URL from a harvested document would be stored XSS."""
    uri = link_id(value)
    if uri and uri.lower().startswith(("http://", "https://")):
        return uri
    return None


def _links(value: Any) -> tuple[Link, ...]:
    links: list[Link] = []
    for item in as_list(value):
        uri = _web_uri(item)
        if uri:
            fmt = item.get("format") if isinstance(item, dict) else None
            label = lang_map(item.get("label")) if isinstance(item, dict) else {}
            links.append(Link(id=uri, label=label, format=fmt if isinstance(fmt, str) else None))
    return tuple(links)


def _thumbnail(value: Any) -> str | None:
    for item in as_list(value):
        uri = _web_uri(item)
        if uri:
            return uri
    return None


def _part_of(value: Any) -> tuple[str, ...]:
    names: list[str] = []
    for item in as_list(value):
        if isinstance(item, dict):
            label = lang_map(item.get("label"))
            name = next((v for vals in label.values() for v in vals), None) or doc_id(item)
        else:
            name = item.strip() if isinstance(item, str) else None
        if name and name not in names:
            names.append(name)
    return tuple(names)


def _providers_v3(value: Any) -> tuple[Provider, ...]:
    out: list[Provider] = []
    for item in as_list(value):
        if not isinstance(item, dict):
            continue
        homepage = next(iter(_links(item.get("homepage"))), None)
        logo = _thumbnail(item.get("logo"))
        out.append(
            Provider(
                label=lang_map(item.get("label"))
                or _label_from(homepage.id if homepage else None, doc_id(item), logo),
                id=doc_id(item),
                homepage=homepage.id if homepage else None,
                logo=logo,
            )
        )
    return tuple(out)


def _label_from(*urls: str | None) -> LangMap:
    """A provider known only by its logo (or id, or homepage) is named by the first one's host name,
    so that it can still be shown and filtered on."""
    for url in urls:
        host = urlsplit(url).hostname if url else None
        if host:
            return {NO_LANG: [host.removeprefix("www.")]}
    return {}


def _region(target: Any) -> str | None:
    uri = link_id(target)
    if isinstance(target, dict) and isinstance(target.get("selector"), dict):
        sel = target["selector"]
        value = sel.get("value")
        if isinstance(value, str) and value.startswith("xywh="):
            uri = f"{link_id(target.get('source')) or ''}#{value}"
    if not uri:
        return None
    m = _XYWH.search(uri)
    if not m:
        return None
    return ",".join(str(round(float(g))) for g in m.groups())


def _selector_region(selector: Any) -> str | None:
    """The image region a SpecificResource's selector picks: ImageApiSelector ``region`` or ``xywh=``."""
    for sel in as_list(selector):
        if not isinstance(sel, dict):
            continue
        value = sel.get("region") if isinstance(sel.get("region"), str) else sel.get("value")
        if isinstance(value, str):
            m = _XYWH.search(value if value.startswith("#") else f"#xywh={value.removeprefix('xywh=')}")
            if m:
                return ",".join(str(round(float(g))) for g in m.groups())
    return None


def _body_kind(body: dict[str, Any]) -> str:
    typ = doc_type(body).split(":")[-1].lower()
    fmt = body.get("format")
    if typ in ("image", "stillimage") or (isinstance(fmt, str) and _IMAGE_FORMAT.match(fmt)):
        return "image"
    if typ in _NON_IMAGE_TYPES or (isinstance(fmt, str) and not _IMAGE_FORMAT.match(fmt)):
        return "other"
    if typ in ("choice", "oa:choice"):
        return "choice"
    if typ == "specificresource":
        return "specific"
    # Untyped bodies with an image service are images in practice.
    return "image" if body.get("service") is not None else "other"


def _image_from_body(body: dict[str, Any], version: int, region: str | None) -> _Image | None:
    ident = doc_id(body)
    service = find_image_service(body.get("service"), default_version=2 if version == 2 else 3)
    if ident is None and service is None:
        return None
    static = ident if ident and ident.startswith(("http://", "https://")) else None
    width = _int(body.get("width")) or (service.width if service else None)
    height = _int(body.get("height")) or (service.height if service else None)
    if service is not None and not (service.width and service.height) and width and height:
        # The body's size is the image's size; knowing it lets a level-1 request use "w," right away.
        service = replace(service, width=width, height=height)
    return _Image(
        id=ident or (service.id if service else ""),
        service=service,
        static_url=static,
        width=width,
        height=height,
        region=region,
    )


def _resolve_body(body: Any, version: int, region: str | None, depth: int = 0) -> Iterator[_Image | str]:
    """Images of an annotation body; a ``str`` yielded is the kind of a non-image body."""
    if depth > 4:
        return
    for item in as_list(body):
        if not isinstance(item, dict):
            continue
        kind = _body_kind(item)
        if kind == "choice":
            # v2 oa:Choice has "default" then "item"; v3 Choice lists "items", the first being the default.
            options = as_list(item.get("default")) + as_list(item.get("items")) + as_list(item.get("item"))
            for option in options:
                found = list(_resolve_body(option, version, region, depth + 1))
                images = [f for f in found if isinstance(f, _Image)]
                if images:
                    yield images[0]
                    break
            else:
                yield "choice without an image"
        elif kind == "specific":
            crop = _selector_region(item.get("selector"))
            for part in _resolve_body(item.get("source"), version, region, depth + 1):
                yield replace(part, image_region=crop) if isinstance(part, _Image) and crop else part
        elif kind == "image":
            img = _image_from_body(item, version, region)
            yield img if img is not None else "image without id or service"
        else:
            yield doc_type(item) or str(item.get("format") or "untyped")


def _canvas_images_v3(canvas: dict[str, Any]) -> Iterator[_Image | str]:
    for page in as_list(canvas.get("items")):
        if not isinstance(page, dict):
            continue
        for anno in as_list(page.get("items")):
            if not isinstance(anno, dict):
                continue
            motivation = anno.get("motivation")
            motivations = [m.split(":")[-1] for m in as_list(motivation) if isinstance(m, str)]
            if motivations and "painting" not in motivations:
                continue
            yield from _resolve_body(anno.get("body"), 3, _region(anno.get("target")))


def _canvas_images_v2(canvas: dict[str, Any]) -> Iterator[_Image | str]:
    for anno in as_list(canvas.get("images")):
        if not isinstance(anno, dict):
            continue
        yield from _resolve_body(anno.get("resource"), 2, _region(anno.get("on")))


def _shared_v3(doc: dict[str, Any], manifest_id: str, part_of: Sequence[str]) -> _Shared:
    req = doc.get("requiredStatement")
    required = None
    if isinstance(req, dict):
        value = lang_map(req.get("value"))
        # "None" as the whole attribution is a placeholder some publishers emit, not an attribution.
        if value and [v for vals in value.values() for v in vals] != ["None"]:
            required = MetadataPair(label=lang_map(req.get("label")), value=value)
    return _Shared(
        manifest_id=manifest_id,
        label=lang_map(doc.get("label")),
        summary=lang_map(doc.get("summary")),
        metadata=_metadata(doc.get("metadata")),
        rights=_rights(doc.get("rights")) or licence_in(req),
        required_statement=required,
        providers=_providers_v3(doc.get("provider")),
        nav_date=doc.get("navDate"),
        homepage=_links(doc.get("homepage")),
        part_of=tuple(dict.fromkeys([*part_of, *_part_of(doc.get("partOf"))])),
        thumbnail=_thumbnail(doc.get("thumbnail")),
    )


def institution_from_attribution(attribution: LangMap) -> LangMap:
    """The institution named by a v2 ``attribution``, when it is just a name ("Provided by X", "X").

    v2 has no ``provider``; a short attribution without rights wording is, in practice, the holding
    institution. Anything longer or mentioning rights gives nothing rather than a wrong name.
    """
    out: LangMap = {}
    for lang, values in attribution.items():
        for value in values:
            name = _ATTRIBUTION_PREFIX.sub("", value).strip().rstrip(".").strip()
            if 2 < len(name) <= 80 and not _RIGHTS_WORDS.search(name):
                out.setdefault(lang, []).append(name)
    return out


def _shared_v2(doc: dict[str, Any], manifest_id: str, part_of: Sequence[str]) -> _Shared:
    attribution = lang_map(doc.get("attribution"))
    required = MetadataPair(label={NO_LANG: ["Attribution"]}, value=attribution) if attribution else None
    logo = _thumbnail(doc.get("logo"))
    institution = institution_from_attribution(attribution)
    providers = (Provider(label=institution or _label_from(logo), logo=logo),) if logo or institution else ()
    within = doc.get("within")
    return _Shared(
        manifest_id=manifest_id,
        label=lang_map(doc.get("label")),
        summary=lang_map(doc.get("description")),
        metadata=_metadata(doc.get("metadata")),
        rights=_rights(doc.get("license")) or licence_in(doc.get("attribution")),
        required_statement=required,
        providers=providers,
        nav_date=doc.get("navDate"),
        homepage=_links(doc.get("related")),
        part_of=tuple(dict.fromkeys([*part_of, *_part_of(within)])),
        thumbnail=_thumbnail(doc.get("thumbnail")),
    )


def _canvases(doc: dict[str, Any], version: int) -> list[dict[str, Any]]:
    if version == 3:
        return [c for c in as_list(doc.get("items")) if isinstance(c, dict)]
    seen: set[str] = set()
    out: list[dict[str, Any]] = []
    for seq in as_list(doc.get("sequences")):
        if not isinstance(seq, dict):
            continue
        for canvas in as_list(seq.get("canvases")):
            if isinstance(canvas, dict):
                cid = doc_id(canvas) or f"#{len(out)}"
                if cid not in seen:
                    seen.add(cid)
                    out.append(canvas)
    return out


def parse_manifest(
    doc: Any,
    *,
    collection: str,
    part_of: Sequence[str] = (),
    caption_fields: Sequence[str] = DEFAULT_FIELDS,
    fallback_id: str | None = None,
) -> ManifestParse:
    """Records of a manifest document; raises :class:`DocumentSkippedError` for one that yields nothing.

    ``fallback_id`` (the URL it was fetched from) stands in for a missing ``@id``.
    """
    info = describe(doc)
    ref = info.id or fallback_id
    if info.kind != "manifest":
        raise DocumentSkippedError(Skip("wrong-kind", f"a {info.kind} document, not a manifest", ref))
    assert isinstance(doc, dict)
    if info.version == 1:
        raise DocumentSkippedError(
            Skip("unsupported-version", "Presentation 1.0 / Shared Canvas manifests are not supported", ref)
        )
    version = info.version or 2
    if version == 3 and "items" not in doc and "sequences" in doc:
        raise DocumentSkippedError(
            Skip("malformed", "v3 context with v2 'sequences' structure (pre-3.0 draft); not harvested", ref)
        )
    manifest_id = ref or ""
    if not manifest_id:
        raise DocumentSkippedError(Skip("malformed", "manifest has no id and no source URL", None))
    shared = _shared_v3(doc, manifest_id, part_of) if version == 3 else _shared_v2(doc, manifest_id, part_of)
    shared = replace(
        shared,
        meta_date=date_from_metadata(shared.metadata),
        chosen=field_values(shared.metadata, caption_fields),
    )
    canvases = _canvases(doc, version)
    if not canvases:
        raise DocumentSkippedError(Skip("no-canvases", "manifest lists no canvases", manifest_id))
    records: dict[str, ImageRecord] = {}
    skips: list[Skip] = []
    for index, canvas in enumerate(canvases):
        try:
            _parse_canvas(canvas, index, version, shared, collection, caption_fields, records, skips)
        except (TypeError, ValueError, AttributeError, KeyError) as exc:
            # One broken canvas costs that canvas, not the manifest.
            skips.append(Skip("malformed", f"canvas {index}: {type(exc).__name__}: {exc}", doc_id(canvas)))
    return ManifestParse(
        manifest_id=manifest_id,
        version=version,
        label=shared.label,
        records=tuple(records.values()),
        skips=tuple(skips),
        canvases=len(canvases),
    )


def _parse_canvas(
    canvas: dict[str, Any],
    index: int,
    version: int,
    shared: _Shared,
    collection: str,
    caption_fields: Sequence[str],
    records: dict[str, ImageRecord],
    skips: list[Skip],
) -> None:
    canvas_id = doc_id(canvas) or f"{shared.manifest_id}#canvas-{index}"
    found = list(_canvas_images_v3(canvas) if version == 3 else _canvas_images_v2(canvas))
    images = [f for f in found if isinstance(f, _Image)]
    if not images:
        if found:
            kinds = ", ".join(sorted({str(f) for f in found}))
            skips.append(Skip("not-an-image", f"canvas painted with {kinds}", canvas_id))
        else:
            skips.append(Skip("no-image", "canvas has no painting annotation", canvas_id))
        return
    canvas_label = lang_map(canvas.get("label"))
    if any(_PLACEHOLDER.search(i.id) for i in images) or _PLACEHOLDER.search(canvas_id):
        # ixif and similar extensions paint a stock "placeholder" picture on canvases of audio/PDF items.
        skips.append(Skip("not-an-image", "placeholder image standing in for non-image media", canvas_id))
        return
    canvas_meta = _metadata(canvas.get("metadata"))
    summary = shared.summary or lang_map(canvas.get("summary") or canvas.get("description"))
    if canvas_meta:
        metadata = canvas_meta + tuple(m for m in shared.metadata if m not in canvas_meta)
        meta_date, chosen = date_from_metadata(metadata), field_values(metadata, caption_fields)
    else:
        # Most canvases carry no metadata of their own: reuse the manifest's, worked out once.
        metadata, meta_date, chosen = shared.metadata, shared.meta_date, shared.chosen
    date = parse_nav_date(canvas.get("navDate")) or parse_nav_date(shared.nav_date) or meta_date
    thumbnail = _thumbnail(canvas.get("thumbnail")) or (shared.thumbnail if index == 0 else None)
    canvas_w, canvas_h = _int(canvas.get("width")), _int(canvas.get("height"))
    for img in images:
        if img.service is None and img.static_url is None:
            skips.append(Skip("no-image-url", "image has neither an image service nor a URL", canvas_id))
            continue
        rid = record_id(shared.manifest_id, canvas_id, img.id)
        if rid in records:
            skips.append(Skip("duplicate", f"image {img.id} painted twice on the canvas", canvas_id))
            continue
        width, height = img.width, img.height
        if (width is None or height is None) and img.region is None and canvas_w and canvas_h:
            width, height = canvas_w, canvas_h
        record = ImageRecord(
            id=rid,
            collection=collection,
            manifest_id=shared.manifest_id,
            canvas_id=canvas_id,
            image_id=img.id,
            canvas_index=index,
            region=img.region,
            image_region=img.image_region,
            service=img.service,
            static_url=img.static_url,
            thumbnail=thumbnail,
            width=width,
            height=height,
            canvas_label=canvas_label,
            manifest_label=shared.label,
            summary=summary,
            metadata=metadata,
            rights=shared.rights,
            required_statement=shared.required_statement,
            providers=shared.providers,
            date=date,
            homepage=shared.homepage,
            part_of=shared.part_of,
        )
        records[rid] = replace(record, caption=build_caption(record, caption_fields, chosen=chosen))
