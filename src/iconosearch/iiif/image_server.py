"""An IIIF Image API 3.0 level-2 server for local collections: requests parsed, rendered with Pillow.

Why level 2 on the fly rather than level 0 plus region derivatives: results need arbitrary regions
(``x,y,w,h`` of a detail), viewers need tiles, and precomputing every region a search could return is
impossible. The master each image is cut from is the local tree's largest derivative (at most
``iiif.local.MAX_SIDE`` px on the long side), so one decode is bounded at about 12 MB of pixels whatever
the original was; renders are admitted a few at a time and kept in a bounded on-disk cache
(:class:`RenderCache`), so a repeated request costs a file read.

This module is pure apart from reading the master and the cache files: the HTTP side is in
:mod:`iconosearch.api.iiif_routes`.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from PIL import Image, ImageOps

from iconosearch.iiif.regions import Box
from iconosearch.images import open_image

FORMATS: Final = {"jpg": ("JPEG", "image/jpeg"), "png": ("PNG", "image/png"), "webp": ("WEBP", "image/webp")}
QUALITIES: Final = ("default", "color", "gray", "bitonal")
EXTRA_FEATURES: Final = ("mirroring",)
"""Beyond level 2. Upscaling (``^``) and arbitrary rotation are not offered."""
TILE: Final = 512
_NUMBER = r"\d+(?:\.\d+)?"
_PX = re.compile(r"^(\d+),(\d+),(\d+),(\d+)$")
_PCT = re.compile(rf"^pct:({_NUMBER}),({_NUMBER}),({_NUMBER}),({_NUMBER})$")
_ROTATION = re.compile(r"^(!?)(\d+(?:\.\d+)?)$")
_CLOCKWISE: Final = {
    90: Image.Transpose.ROTATE_270,  # IIIF turns clockwise, Pillow's names count counter-clockwise
    180: Image.Transpose.ROTATE_180,
    270: Image.Transpose.ROTATE_90,
}


class ImageRequestError(ValueError):
    """A request the service refuses: ``status`` (400, 403, 404, 503) and a short ``code``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


@dataclass(frozen=True, slots=True)
class ImageRequest:
    """One parsed image request, in canonical terms: pixels of the master."""

    region: Box
    size: tuple[int, int]
    mirror: bool
    rotation: int
    quality: str
    format: str

    def canonical(self, full: tuple[int, int]) -> str:
        """The canonical ``region/size/rotation/quality.format`` path (Image API 3.0 §4.7)."""
        region = "full" if self.region == Box(0, 0, *full) else str(self.region)
        size = "max" if self.size == (self.region.w, self.region.h) else f"{self.size[0]},{self.size[1]}"
        rotation = f"{'!' if self.mirror else ''}{self.rotation}"
        return f"{region}/{size}/{rotation}/{self.quality}.{self.format}"

    def is_derivative(self, full: tuple[int, int]) -> bool:
        """A crop, rotation or mirror: what a "no derivatives" licence forbids (scaling is allowed)."""
        return self.mirror or self.rotation != 0 or self.region != Box(0, 0, *full)


def parse_request(
    region: str, size: str, rotation: str, quality_format: str, full: tuple[int, int]
) -> ImageRequest:
    """Parse the four path segments against an image of ``full`` size; raises :class:`ImageRequestError`."""
    box = _region(region, full)
    quality, _, fmt = quality_format.rpartition(".")
    if quality not in QUALITIES:
        raise ImageRequestError(400, "bad-quality", f"quality {quality!r} is not one of {QUALITIES}")
    if fmt not in FORMATS:
        raise ImageRequestError(400, "bad-format", f"format {fmt!r} is not one of {tuple(FORMATS)}")
    m = _ROTATION.match(rotation)
    if not m:
        raise ImageRequestError(400, "bad-rotation", f"rotation {rotation!r} is not a number")
    degrees = float(m.group(2))
    if degrees not in (0, 90, 180, 270):
        raise ImageRequestError(400, "bad-rotation", "only rotations by 0, 90, 180 or 270 degrees are served")
    return ImageRequest(box, _size(size, box), bool(m.group(1)), int(degrees), quality, fmt)


def _region(text: str, full: tuple[int, int]) -> Box:
    width, height = full
    if text == "full":
        return Box(0, 0, width, height)
    if text == "square":
        side = min(width, height)
        return Box((width - side) // 2, (height - side) // 2, side, side)
    if m := _PX.match(text):
        x, y, w, h = (int(g) for g in m.groups())
    elif m := _PCT.match(text):
        px, py, pw, ph = (float(g) for g in m.groups())
        x, y = round(px * width / 100), round(py * height / 100)
        w, h = round(pw * width / 100), round(ph * height / 100)
    else:
        raise ImageRequestError(400, "bad-region", f"region {text!r} is not full, square, x,y,w,h or pct:…")
    if w <= 0 or h <= 0:
        raise ImageRequestError(400, "bad-region", "a region needs a positive width and height")
    if x >= width or y >= height:
        raise ImageRequestError(400, "bad-region", f"region {text!r} lies outside the {width}×{height} image")
    # A region reaching past the edges is cut at them (§4.1).
    return Box(x, y, min(w, width - x), min(h, height - y))


def _size(text: str, region: Box) -> tuple[int, int]:
    rw, rh = region.w, region.h
    if text.startswith("^"):
        raise ImageRequestError(400, "no-upscaling", "this service does not upscale (sizes with ^)")
    if text == "max":
        return rw, rh
    if text.startswith("pct:"):
        try:
            pct = float(text[4:])
        except ValueError:
            raise ImageRequestError(400, "bad-size", f"size {text!r} is not pct:n") from None
        w, h = round(rw * pct / 100), round(rh * pct / 100)
    else:
        confined = text.startswith("!")
        parts = text.lstrip("!").split(",")
        if len(parts) != 2 or not all(p.isdigit() or p == "" for p in parts) or parts == ["", ""]:
            raise ImageRequestError(400, "bad-size", f"size {text!r} is not max, w,, ,h, w,h, !w,h or pct:n")
        bw, bh = (int(p) if p else None for p in parts)
        if confined:
            if bw is None or bh is None:
                raise ImageRequestError(400, "bad-size", "!w,h needs both a width and a height")
            scale = min(bw / rw, bh / rh)  # larger than the region is refused below (3.0: only with ^)
            w, h = max(1, math.floor(rw * scale)), max(1, math.floor(rh * scale))
        elif bh is None:
            w, h = bw or 0, round(rh * (bw or 0) / rw)
        elif bw is None:
            w, h = round(rw * bh / rh), bh
        else:
            w, h = bw, bh
    if w <= 0 or h <= 0:
        raise ImageRequestError(400, "bad-size", f"size {text!r} gives an empty image")
    if w > rw or h > rh:
        raise ImageRequestError(400, "no-upscaling", f"{w}×{h} is larger than the {rw}×{rh} region")
    return max(1, w), max(1, h)


def decode_master(path: Path, *, max_pixels: int, max_side: int | None) -> Image.Image:
    """The one place images are decoded for the service (the hardening issue's bounded decode swaps in)."""
    return open_image(path, max_pixels=max_pixels, max_side=max_side)


def render(master_path: Path, request: ImageRequest, full: tuple[int, int], *, max_pixels: int) -> bytes:
    """Encode the requested image. A request smaller than its region decodes the JPEG master at a
    reduced scale (``draft``: 1/2, 1/4, 1/8), so a thumbnail of a region never costs a full decode."""
    region, (w, h) = request.region, request.size
    scale = max(w / region.w, h / region.h)
    factor = next((f for f in (8, 4, 2) if scale * f <= 1), 1)
    image = decode_master(master_path, max_pixels=max_pixels, max_side=-(-max(full) // factor))
    sx, sy = image.width / full[0], image.height / full[1]
    box = (
        round(region.x * sx),
        round(region.y * sy),
        round((region.x + region.w) * sx),
        round((region.y + region.h) * sy),
    )
    if box != (0, 0, image.width, image.height):
        image = image.crop(box)
    if image.size != (w, h):
        image = image.resize((w, h), Image.Resampling.LANCZOS, reducing_gap=3.0)
    if request.mirror:
        image = ImageOps.mirror(image)
    if request.rotation:
        image = image.transpose(_CLOCKWISE[request.rotation])
    if request.quality == "gray":
        image = image.convert("L")
    elif request.quality == "bitonal":
        image = image.convert("1")
    pil_format = FORMATS[request.format][0]
    out = io.BytesIO()
    image.save(out, pil_format, **({"quality": 88} if pil_format in ("JPEG", "WEBP") else {}))
    return out.getvalue()


class RenderCache:
    """Rendered images on disk by canonical request, at most ``max_bytes`` in all (least recently used
    go first). Files are written whole then renamed, so a reader never sees half a file."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        root.mkdir(parents=True, exist_ok=True)
        self._sizes = {p: p.stat().st_size for p in root.glob("*/*") if p.suffix != ".tmp"}

    def path(self, key: str) -> Path:
        digest = hashlib.sha256(key.encode()).hexdigest()
        return self.root / digest[:2] / f"{digest}.{key.rsplit('.', 1)[-1]}"

    def get(self, key: str) -> bytes | None:
        path = self.path(key)
        try:
            data = path.read_bytes()
            os.utime(path)  # recently used
        except FileNotFoundError:
            return None
        return data

    def put(self, key: str, data: bytes) -> None:
        if len(data) > self.max_bytes:
            return
        path = self.path(key)
        path.parent.mkdir(exist_ok=True)
        tmp = path.with_name(f"{path.name}.{threading.get_ident()}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
        with self._lock:
            self._sizes[path] = len(data)
            if sum(self._sizes.values()) > self.max_bytes:
                self._evict()

    def _evict(self) -> None:
        def used(p: Path) -> float:
            try:
                return p.stat().st_mtime
            except FileNotFoundError:
                return 0.0

        total = sum(self._sizes.values())
        for p in sorted(self._sizes, key=used):
            if total <= self.max_bytes * 0.9:  # some headroom, so that not every put evicts
                break
            total -= self._sizes.pop(p)
            p.unlink(missing_ok=True)
