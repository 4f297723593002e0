"""A page of search results as a IIIF Presentation 3 Manifest, so results open in any IIIF viewer.

Each result becomes one canvas painted with the result's image (with its image service, so viewers can
deep-zoom), labelled with the caption, carrying the rights (in the canonical ``http://`` form the spec's
validator accepts), attribution, provider and homepage, and ``partOf`` the manifest it came from.

Canvas and painted image carry the real pixel size of what is shown: the image service's full size, or
the crop's size when the result is a crop of its image (never for "no derivatives" items: the presenter
leaves their ``image_region`` empty). Only when no size is known does the canvas fall back to
``DEFAULT_CANVAS_PX`` on the long side, with no size claimed for the image itself.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import iiif_prezi3 as prezi
from pydantic import ValidationError

from iconosearch.api import schemas as s
from iconosearch.rights import canonical_rights

log = logging.getLogger(__name__)

DEFAULT_CANVAS_PX = 1000


def _lang(value: s.LangMap, fallback: str) -> dict[str, list[str]]:
    clean = {k: [v for v in vs if v] for k, vs in value.items() if vs}
    return {k: vs for k, vs in clean.items() if vs} or {"none": [fallback]}


def _service(result: s.Result) -> list[dict[str, Any]] | None:
    svc = result.image_service
    if svc is None:
        return None
    if svc.api_version >= 3:
        return [
            {
                "id": svc.id,
                "type": "ImageService3",
                "profile": f"level{svc.level if svc.level is not None else 1}",
            }
        ]
    profile = f"http://iiif.io/api/image/2/level{svc.level if svc.level is not None else 1}.json"
    return [{"@id": svc.id, "@type": "ImageService2", "profile": profile}]


def _crop(result: s.Result) -> str | None:
    """The image-pixel region to request, when the result is a crop and its service can cut one."""
    svc = result.image_service
    return result.image_region if svc is not None and svc.level != 0 else None


def _shown_size(result: s.Result) -> tuple[int, int] | None:
    """Pixel size of what the result shows (its crop, else the whole image), when the service says it."""
    svc = result.image_service
    if svc is None:
        return None
    crop = _crop(result)
    if crop:
        w, h = (int(v) for v in crop.split(",")[2:])
        return w, h
    return (svc.width, svc.height) if svc.width and svc.height else None


def _canvas(result: s.Result, canvas_id: str, width: int, height: int, exact: bool) -> prezi.Canvas:
    svc = result.image_service
    if svc is not None:
        region = _crop(result) or "full"
        size = "max" if svc.api_version >= 3 else "full"
        image_id = f"{svc.id}/{region}/{size}/0/default.jpg"
    else:
        image_id = result.image_url or result.thumbnail.url or result.canvas or result.manifest
    dims = {"width": width, "height": height} if exact else {}
    body = prezi.AnnotationBody(
        id=image_id, type="Image", format="image/jpeg", service=_service(result), **dims
    )
    annotation = prezi.Annotation(
        id=f"{canvas_id}/painting", motivation="painting", body=body, target=canvas_id
    )
    fields: dict[str, Any] = {
        "id": canvas_id,
        "label": _lang(result.caption or result.label, result.id),
        "width": width,
        "height": height,
        "items": [prezi.AnnotationPage(id=f"{canvas_id}/page", items=[annotation])],
        "partOf": [{"id": result.manifest, "type": "Manifest"}],
        "metadata": [
            {"label": {"en": ["Score"]}, "value": {"none": [f"{result.score:.4f}"]}},
            {"label": {"en": ["Source canvas"]}, "value": {"none": [_source_target(result)]}},
        ],
    }
    if result.matched_region:
        fields["annotations"] = [_matched_detail(result, canvas_id, width, height)]
    if result.thumbnail.url:
        fields["thumbnail"] = [{"id": result.thumbnail.url, "type": "Image", "format": "image/jpeg"}]
    if result.attribution is not None:
        fields["requiredStatement"] = {
            "label": _lang(result.attribution.label, "Attribution"),
            "value": _lang(result.attribution.value, ""),
        }
    if result.providers:
        fields["provider"] = [
            {
                "id": p.id or f"{canvas_id}/provider/{i}",
                "type": "Agent",
                "label": _lang(p.label, "provider"),
                **(
                    {
                        "homepage": [
                            {
                                "id": p.homepage,
                                "type": "Text",
                                "label": _lang(p.label, "homepage"),
                                "format": "text/html",
                            }
                        ]
                    }
                    if p.homepage
                    else {}
                ),
            }
            for i, p in enumerate(result.providers)
        ]
    if result.homepage:
        fields["homepage"] = [
            {
                "id": h.id,
                "type": "Text",
                "label": _lang(h.label, "homepage"),
                "format": h.format or "text/html",
            }
            for h in result.homepage
        ]
    rights = canonical_rights(result.rights)
    if result.rights and rights is None:
        fields["metadata"].append({"label": {"en": ["Rights"]}, "value": {"none": [result.rights]}})
    optional = {"rights": rights} if rights else {}
    try:
        return prezi.Canvas(**fields, **optional)
    except ValidationError:
        # Upstream data the model refuses (an unusual rights URI, a malformed link) must not lose the result.
        log.debug("canvas %s: optional fields refused, keeping the essentials", canvas_id)
        essentials = {k: fields[k] for k in ("id", "label", "width", "height", "items", "partOf", "metadata")}
        return prezi.Canvas(**essentials)


def _source_target(result: s.Result) -> str:
    canvas = result.canvas or result.manifest  # search results always carry the canvas here (full)
    return f"{canvas}#xywh={result.region}" if result.matched_region and result.region else canvas


def _matched_detail(result: s.Result, canvas_id: str, width: int, height: int) -> prezi.AnnotationPage:
    """A highlighting annotation on the detail that matched (region search): all of the canvas when it
    shows the crop, else the crop's box on the whole image (a "no derivatives" item is never cut)."""
    box = f"0,0,{width},{height}"
    if not _crop(result) and result.region:
        x, y, w, h = (int(v) for v in result.region.split(","))
        x, y = min(x, width - 1), min(y, height - 1)
        box = f"{x},{y},{max(1, min(w, width - x))},{max(1, min(h, height - y))}"
    annotation = prezi.Annotation(
        id=f"{canvas_id}/matched",
        motivation="highlighting",
        body={"type": "TextualBody", "value": "The detail that matched the search", "format": "text/plain"},
        target=f"{canvas_id}#xywh={box}",
    )
    return prezi.AnnotationPage(id=f"{canvas_id}/annotations", items=[annotation])


def search_manifest(manifest_id: str, label: str, results: list[s.Result], *, next_url: str | None) -> dict:
    """The manifest document (JSON-able dict) of one page of results."""
    canvases = []
    for i, result in enumerate(results):
        shown = _shown_size(result)
        if shown is not None:
            width, height = shown
        elif result.aspect_ratio:
            width = (
                DEFAULT_CANVAS_PX
                if result.aspect_ratio >= 1
                else round(DEFAULT_CANVAS_PX * result.aspect_ratio)
            )
            height = round(width / result.aspect_ratio)
        else:
            width = height = DEFAULT_CANVAS_PX
        canvas_id = f"{manifest_id.split('?', maxsplit=1)[0]}/canvas/{i}-{result.id}"
        try:
            canvases.append(_canvas(result, canvas_id, max(1, width), max(1, height), shown is not None))
        except ValidationError:
            # A result whose upstream ids are not URLs cannot be a canvas; leave it out, keep the rest.
            log.warning("result %s cannot be expressed as a IIIF canvas; left out", result.id)
    summary = f"{len(results)} results from iconosearch."
    if next_url:
        summary += f" Next page: {next_url}"
    manifest = prezi.Manifest(
        id=manifest_id,
        label={"en": [label]},
        summary={"en": [summary]},
        items=canvases,
    )
    return json.loads(manifest.json())
