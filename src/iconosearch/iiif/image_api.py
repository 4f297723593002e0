"""IIIF Image API: reading service descriptions and choosing an image URL the server will serve.

Service descriptions come embedded in manifests or as ``info.json`` documents (Image API 1.0–3.0, with
the usual real-world quirks: profiles as strings, arrays or objects, Stanford 1.x compliance URIs,
``level3`` typos). :func:`choose_size` picks the largest size no bigger than the target that the server is
*allowed* to serve; :func:`image_url` spells it in the version's syntax. Pure functions.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from iconosearch.iiif.document import VersionMarkers, as_list, contexts, marked_version
from iconosearch.records import ImageService

_IMAGE_CONTEXTS: VersionMarkers = (
    (3, ("iiif.io/api/image/3",)),
    (2, ("iiif.io/api/image/2",)),
    (1, ("iiif.io/api/image/1", "library.stanford.edu/iiif/image-api")),
)
_IMAGE_PROFILES: VersionMarkers = (
    (3, ("image/3",)),
    (2, ("image/2",)),
    (1, ("image/1", "stanford.edu/iiif/image-api")),
)

_LEVEL = re.compile(r"level\s*([0-9])", re.IGNORECASE)


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and value > 0:
        return value
    if isinstance(value, float) and value > 0 and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit() and int(value) > 0:
        return int(value)
    return None


def _profile_strings(obj: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for p in as_list(obj.get("profile")):
        if isinstance(p, str):
            out.append(p)
        elif isinstance(p, dict):
            for key in ("@id", "id"):
                if isinstance(p.get(key), str):
                    out.append(p[key])
    return out


def service_version(obj: dict[str, Any]) -> int | None:
    """Image API major version of a service description, or None when it is not an image service."""
    typ = str(obj.get("type") or obj.get("@type") or "")
    if typ == "ImageService3":
        return 3
    if typ == "ImageService2":
        return 2
    if typ == "ImageService1":
        return 1
    version = marked_version(contexts(obj), _IMAGE_CONTEXTS)
    if version is None:
        version = marked_version(_profile_strings(obj), _IMAGE_PROFILES)
    if version is not None:
        return version
    protocol = obj.get("protocol")
    if isinstance(protocol, str) and "iiif.io/api/image" in protocol:
        return 2  # "protocol" appeared in 2.0; 1.1 services did not carry it
    if "identifier" in obj and ("scale_factors" in obj or "tile_width" in obj):
        return 1  # Image API 1.0 info.json: no context, no @id
    return None


def service_level(obj: dict[str, Any]) -> int | None:
    """Compliance level 0–2 from the profile (``level1``, ``…/level2.json``, ``compliance.html#level1``)."""
    for prof in _profile_strings(obj):
        m = _LEVEL.search(prof)
        if m and int(m.group(1)) <= 2:
            return int(m.group(1))
    return None


def _base_id(obj: dict[str, Any]) -> str | None:
    ident = obj.get("id") if isinstance(obj.get("id"), str) else obj.get("@id")
    if not isinstance(ident, str) or not ident.strip():
        return None
    ident = ident.strip()
    if ident.endswith("/info.json"):
        ident = ident[: -len("/info.json")]
    return ident.rstrip("/")


def parse_service(
    obj: Any, *, default_version: int | None = None, fallback_id: str | None = None
) -> ImageService | None:
    """The :class:`ImageService` described by ``obj`` (embedded service or info.json), else None.

    ``fallback_id`` (the URL an info.json came from) stands in for a missing id, as in Image API 1.0.
    """
    if not isinstance(obj, dict):
        return None
    version = service_version(obj) or default_version
    ident = _base_id(obj) or (_base_id({"id": fallback_id}) if fallback_id else None)
    if version is None or ident is None:
        return None
    sizes: list[tuple[int, int]] = []
    for s in as_list(obj.get("sizes")):
        if isinstance(s, dict):
            w, h = _int(s.get("width")), _int(s.get("height"))
            if w and h:
                sizes.append((w, h))
    max_width = _int(obj.get("maxWidth"))
    max_height = _int(obj.get("maxHeight"))
    max_area = _int(obj.get("maxArea"))
    # In 2.1 these limits live inside the profile's description object.
    for prof in as_list(obj.get("profile")):
        if isinstance(prof, dict):
            max_width = max_width or _int(prof.get("maxWidth"))
            max_height = max_height or _int(prof.get("maxHeight"))
            max_area = max_area or _int(prof.get("maxArea"))
    return ImageService(
        id=ident,
        api_version=version,
        level=service_level(obj),
        width=_int(obj.get("width")),
        height=_int(obj.get("height")),
        sizes=tuple(sorted(set(sizes))),
        max_width=max_width,
        max_height=max_height,
        max_area=max_area,
    )


def find_image_service(services: Any, *, default_version: int | None = None) -> ImageService | None:
    """The first image service among a ``service`` value (object or list); newest API version wins ties."""
    found = [s for s in (parse_service(o, default_version=None) for o in as_list(services)) if s is not None]
    if not found and default_version is not None:
        # Old manifests embed services with nothing but @id and a profile URI we cannot classify.
        found = [
            s
            for o in as_list(services)
            if isinstance(o, dict) and _looks_like_image_service(o)
            for s in [parse_service(o, default_version=default_version)]
            if s is not None
        ]
    if not found:
        return None
    return max(found, key=lambda s: s.api_version)


def _looks_like_image_service(obj: dict[str, Any]) -> bool:
    text = " ".join(_profile_strings(obj) + contexts(obj)).lower()
    return "image" in text or "level" in text


@dataclass(frozen=True, slots=True)
class SizeChoice:
    """The size to request: ``None`` width/height means the full/max size."""

    width: int | None
    height: int | None
    listed: bool = False
    """True when taken from the service's ``sizes`` (the only sizes a level-0 server must serve)."""


def _fit(width: int, height: int, target: int) -> tuple[int, int]:
    scale = min(1.0, target / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _clamp(w: int, h: int, svc: ImageService) -> tuple[int, int]:
    scale = 1.0
    max_h = svc.max_height or svc.max_width
    if svc.max_width and w > svc.max_width:
        scale = min(scale, svc.max_width / w)
    if max_h and h > max_h:
        scale = min(scale, max_h / h)
    if svc.max_area and w * h > svc.max_area:
        scale = min(scale, math.sqrt(svc.max_area / (w * h)))
    if scale < 1.0:
        # Floor, so that rounding never lands one pixel over a limit.
        return max(1, math.floor(w * scale)), max(1, math.floor(h * scale))
    return w, h


def _within_limits(w: int, h: int, svc: ImageService) -> bool:
    return _clamp(w, h, svc) == (w, h)


def choose_size(svc: ImageService, target: int) -> SizeChoice:
    """Largest size with long side ≤ ``target`` that ``svc`` may serve (never upscaling)."""
    listed = [s for s in svc.sizes if _within_limits(*s, svc)]
    if svc.level == 0 or (svc.level is None and listed and not (svc.width and svc.height)):
        if listed:
            fitting = [s for s in listed if max(s) <= target]
            area = lambda s: s[0] * s[1]  # noqa: E731
            # Nothing small enough: the smallest listed size, downscaled after fetching.
            w, h = max(fitting, key=area) if fitting else min(listed, key=area)
            return SizeChoice(w, h, listed=True)
        # A level-0 server without listed sizes only promises the full image.
        return SizeChoice(None, None)
    if svc.width and svc.height:
        w, h = _clamp(*_fit(svc.width, svc.height, target), svc)
        if (w, h) == (svc.width, svc.height):
            return SizeChoice(None, None)
        return SizeChoice(w, h)
    # Unknown dimensions: ask for a bounded box when the level allows it, else a width.
    side = target
    if svc.max_width:
        side = min(side, svc.max_width)
    if svc.level is None or svc.level >= 2:
        return SizeChoice(side, side)
    return SizeChoice(side, None)


def size_parameter(svc: ImageService, choice: SizeChoice, *, unknown_box: bool = False) -> str:
    """The size segment in the service's syntax (``full``/``max``, ``w,``, ``w,h``, ``!w,h``)."""
    if choice.width is None:
        return "max" if svc.api_version >= 3 else "full"
    if choice.height is None:
        return f"{choice.width},"
    if unknown_box:
        return f"!{choice.width},{choice.height}"
    if choice.listed:
        # A listed size is asked for exactly as listed ("sizeByWhListed", the one form level 0 promises).
        return f"{choice.width},{choice.height}"
    if svc.api_version >= 3:
        return f"{choice.width},{choice.height}"
    return f"{choice.width},"


def image_url(svc: ImageService, target: int) -> str:
    """URL of the whole image at the chosen size, in the service's syntax."""
    choice = choose_size(svc, target)
    unknown_box = not (svc.width and svc.height) and choice.height is not None and not choice.listed
    size = size_parameter(svc, choice, unknown_box=unknown_box)
    quality = "native" if svc.api_version == 1 else "default"
    return f"{svc.id}/full/{size}/0/{quality}.jpg"


def info_url(svc: ImageService) -> str:
    return f"{svc.id}/info.json"
