"""IIIF for local collections over HTTP: the level-2 Image API service and the Presentation documents.

``/iiif/local/<collection>/…`` is the tree :mod:`iconosearch.iiif.local` wrote. Here it gets what a static
file server cannot give: image requests rendered on the fly (:mod:`iconosearch.iiif.image_server`), the
303 from a service's bare URL to its ``info.json`` (Image API 3.0 §2.2), and JSON-LD content negotiation
(``application/ld+json`` with the API's profile unless plain ``application/json`` is asked for).
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.responses import RedirectResponse, Response

from iconosearch.api.problems import ProblemError
from iconosearch.config import Settings
from iconosearch.datadir import DataDir
from iconosearch.iiif.image_server import FORMATS, ImageRequestError, RenderCache, parse_request, render
from iconosearch.images import ImageRejectedError
from iconosearch.rights import allows_derivatives

IMAGE_CONTEXT = "http://iiif.io/api/image/3/context.json"
PRESENTATION_CONTEXT = "http://iiif.io/api/presentation/3/context.json"
RENDER_WAIT_S = 20.0
"""How long a request waits for a render slot before it is answered 503."""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
Name = Annotated[str, PathParam(description="A collection, image or document name.")]
router = APIRouter(tags=["iiif"])


class LocalImages:
    """Where the local trees are, the render cache, and the admission gate for renders."""

    def __init__(self, settings: Settings) -> None:
        data = DataDir(settings.data_dir)
        self.root = data.local_iiif
        self.max_pixels = settings.limits.image_max_pixels
        self.cache = RenderCache(data.render_cache, settings.limits.iiif_render_cache_bytes)
        # Renders decode at most one master each (≤ MAX_SIDE², ~12 MB RGB); a few at a time bounds memory.
        self.gate = threading.BoundedSemaphore(settings.limits.iiif_render_concurrency)

    def image_dir(self, collection: str, slug: str) -> Path:
        path = self.root / _safe(collection) / "images" / _safe(slug)
        if not (path / "info.json").is_file():
            raise ProblemError(404, "unknown-image", f"no image {slug!r} in local collection {collection!r}")
        return path


def _safe(name: str) -> str:
    """A path segment that names a file we wrote (no separators, no dot-dot); 404 otherwise (§4.1: an
    identifier the server does not know is "not found", however it is spelled)."""
    if not _NAME.match(name):
        raise ProblemError(404, "not-found", f"no resource named {name[:60]!r}")
    return name


def _local(request: Request) -> LocalImages:
    images: LocalImages = request.app.state.local_images
    return images


def _json_ld(request: Request, doc: dict[str, Any], context: str) -> Response:
    """JSON-LD with the API's profile unless the client asks for plain JSON only (content negotiation)."""
    accept = request.headers.get("accept", "")
    plain = "application/json" in accept and "application/ld+json" not in accept
    media = "application/json" if plain else f'application/ld+json;profile="{context}"'
    return Response(json.dumps(doc, ensure_ascii=False), media_type=media, headers={"Vary": "Accept"})


def _read_json(path: Path) -> dict[str, Any]:
    try:
        doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ProblemError(404, "not-found", f"no document {path.name!r} here") from None
    return doc


def _problems(**described: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the problem answers (RFC 9457) a local IIIF route gives, keyed by status."""
    return {int(code[1:]): {"description": text} for code, text in described.items()}


NOT_FOUND = _problems(s404="No such local collection, image or manifest.")


@router.get("/iiif/local/{collection}/images/{slug}", include_in_schema=False)
async def image_service_base(request: Request, collection: Name, slug: Name) -> Response:
    """The service's bare URL redirects to its description (Image API 3.0 §2.2)."""
    _local(request).image_dir(collection, slug)
    return RedirectResponse(f"{request.url.path}/info.json", status_code=303)


@router.get(
    "/iiif/local/{collection}/images/{slug}/info.json",
    summary="Image information (info.json)",
    responses=NOT_FOUND,
)
def image_info(request: Request, collection: Name, slug: Name) -> Response:
    """The Image API 3.0 description of one local image: level 2, or level 0 for "no derivatives" items."""
    info = _read_json(_local(request).image_dir(collection, slug) / "info.json")
    return _json_ld(request, info, IMAGE_CONTEXT)


@router.get(
    "/iiif/local/{collection}/images/{slug}/{region}/{size}/{rotation}/{quality_format}",
    summary="Image request (Image API 3.0, level 2)",
    response_class=Response,
    responses={
        200: {"content": {m: {} for _, m in FORMATS.values()}},
        **_problems(
            s400="The region, size, rotation, quality or format is not valid or not offered.",
            s403="The image's licence forbids derivatives (crops, rotations, mirroring).",
            s404="No such local collection or image.",
            s500="The image's master cannot be read.",
            s503="Too many images are being rendered; retry shortly.",
        ),
    },
)
def image_request(
    request: Request, collection: Name, slug: Name, region: str, size: str, rotation: str, quality_format: str
) -> Response:
    """`region/size/rotation/quality.format` of a local image, rendered from its master and cached."""
    local = _local(request)
    folder = local.image_dir(collection, slug)
    info = _read_json(folder / "info.json")
    full = (int(info["width"]), int(info["height"]))
    try:
        parsed = parse_request(region, size, rotation, quality_format, full)
    except ImageRequestError as exc:
        raise ProblemError(exc.status, exc.code, str(exc)) from None
    if parsed.is_derivative(full) and not allows_derivatives(info.get("rights")):
        raise ProblemError(
            403,
            "no-derivatives",
            "its licence forbids derivatives: the image is served whole, at any size, never cropped",
        )
    canonical = parsed.canonical(full)
    headers = {
        "Link": f'<http://iiif.io/api/image/3/{info["profile"]}.json>;rel="profile", '
        f'<{info["id"]}/{canonical}>;rel="canonical"',
        "Cache-Control": "public, max-age=86400",
    }
    media = FORMATS[parsed.format][1]
    ahead = folder / canonical  # rendered at build time (the listed sizes)
    if ahead.is_file():
        return Response(ahead.read_bytes(), media_type=media, headers=headers)
    key = f"{collection}/{slug}/{canonical}"
    data = local.cache.get(key)
    if data is None:
        if not local.gate.acquire(timeout=RENDER_WAIT_S):
            raise ProblemError(503, "busy", "too many images are being rendered; try again shortly")
        try:
            data = render(
                folder / "full" / "max" / "0" / "default.jpg", parsed, full, max_pixels=local.max_pixels
            )
        except ImageRejectedError as exc:
            raise ProblemError(
                500, "master-unreadable", f"the image's master cannot be read: {exc}"
            ) from None
        finally:
            local.gate.release()
        local.cache.put(key, data)
    return Response(data, media_type=media, headers=headers)


@router.get(
    "/iiif/local/{collection}/collection.json",
    summary="Local collection (Presentation 3)",
    responses=NOT_FOUND,
)
def local_collection(request: Request, collection: Name) -> Response:
    """The Presentation 3 Collection of one local collection."""
    return _json_ld(
        request, _read_json(_local(request).root / collection / "collection.json"), PRESENTATION_CONTEXT
    )


@router.get(
    "/iiif/local/{collection}/manifests/{name}",
    summary="Local manifest (Presentation 3)",
    responses=NOT_FOUND,
)
def local_manifest(request: Request, collection: Name, name: Name) -> Response:
    """One Presentation 3 Manifest of a local collection."""
    path = _local(request).root / _safe(collection) / "manifests" / _safe(name)
    return _json_ld(request, _read_json(path), PRESENTATION_CONTEXT)
