"""Safe image decoding: every image that reaches a model passes through here.

Images come from the network and from arbitrary folders, so they can be corrupt, truncated, enormous
(decompression bombs), CMYK, 16-bit, palette-based, animated or transparent. ``probe_image`` reads only
the header and rejects what must not be decoded; ``open_image`` decodes with a pixel cap and returns a
plain RGB image (transparency composited onto white, EXIF orientation applied, first frame only).
Failures raise ``ImageRejectedError`` whose ``reason`` is a short machine-readable code.
"""

from __future__ import annotations

import io
import math
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final

import numpy as np
from PIL import Image, ImageCms, ImageFile, ImageOps, UnidentifiedImageError

# We apply our own pixel cap (``max_pixels``); Pillow's warning at its global threshold is noise then.
# Its hard error (at twice that threshold) still applies and is mapped to "too-many-pixels".
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

REASONS: Final = (
    "not-an-image",  # no decoder recognises the bytes
    "unreadable",  # the file cannot be read at all
    "too-large",  # more bytes than allowed
    "too-many-pixels",  # decompression-bomb guard
    "truncated",  # data ends before the image does
    "corrupt",  # the decoder failed on the data
    "unsupported",  # a mode or feature we cannot turn into RGB
    "empty",  # zero bytes or zero pixels
)

WHITE: Final = (255, 255, 255)
_SRGB: Final = ImageCms.createProfile("sRGB")


class ImageRejectedError(ValueError):
    """An image that cannot or must not be decoded. ``reason`` is one of ``REASONS``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.reason}: {super().__str__()}"


@dataclass(frozen=True, slots=True)
class ImageInfo:
    width: int
    height: int
    format: str
    mode: str
    frames: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


ImageSource = bytes | Path | str
"""Encoded image bytes, or the path of an image file."""


def _source(data: ImageSource, max_bytes: int | None) -> IO[bytes]:
    if isinstance(data, bytes | bytearray | memoryview):
        size = len(data)
        stream: IO[bytes] = io.BytesIO(data)
    else:
        data = Path(data)
        try:
            size = data.stat().st_size
            stream = data.open("rb")
        except OSError as exc:
            raise ImageRejectedError("unreadable", f"cannot read {data}: {exc.strerror or exc}") from exc
    if size == 0:
        stream.close()
        raise ImageRejectedError("empty", "zero bytes")
    if max_bytes is not None and size > max_bytes:
        stream.close()
        raise ImageRejectedError("too-large", f"{size} bytes is more than the limit of {max_bytes}")
    return stream


def _open(stream: IO[bytes]) -> ImageFile.ImageFile:
    try:
        im = Image.open(stream)
    except Image.DecompressionBombError as exc:
        raise ImageRejectedError("too-many-pixels", str(exc)) from exc
    except UnidentifiedImageError as exc:
        raise ImageRejectedError("not-an-image", "not a recognised image format") from exc
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as exc:
        # Header parsers raise a zoo of exceptions on damaged headers.
        if isinstance(exc, EOFError) or "truncated" in str(exc).lower():
            raise ImageRejectedError("truncated", f"image header ends early: {exc}") from exc
        raise ImageRejectedError("corrupt", f"unreadable image header: {exc}") from exc
    assert isinstance(im, ImageFile.ImageFile)
    return im


def _frames(im: Image.Image) -> int:
    try:
        return int(getattr(im, "n_frames", 1))
    except (OSError, SyntaxError, ValueError, EOFError):
        return 1


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise ImageRejectedError("empty", f"image has no pixels ({width}×{height})")
    if width * height > max_pixels:
        raise ImageRejectedError(
            "too-many-pixels",
            f"{width}×{height} = {width * height} pixels is more than the limit of {max_pixels}",
        )


def probe_image(data: ImageSource, *, max_pixels: int, max_bytes: int | None = None) -> ImageInfo:
    """Read the header only; reject non-images and images with more than ``max_pixels`` pixels."""
    with _source(data, max_bytes) as stream:
        im = _open(stream)
        with im:
            width, height = im.size
            _check_pixels(width, height, max_pixels)
            return ImageInfo(width, height, im.format or "unknown", im.mode, _frames(im))


def open_image(
    data: ImageSource, *, max_pixels: int, max_side: int | None = None, max_bytes: int | None = None
) -> Image.Image:
    """Decode safely to an RGB image whose long side is at most ``max_side`` (when given).

    JPEGs are decoded directly at a reduced scale (``draft``), so the pixel cap applies to the pixels
    actually decoded; other formats are decoded in full (the cap applies to the header size) and then
    shrunk with ``reduce`` before a final bicubic resize, which keeps huge PNGs cheap.
    """
    if max_side is not None and max_side < 1:
        raise ValueError("max_side must be positive")
    with _source(data, max_bytes) as stream:
        im = _open(stream)
        with im:
            width, height = im.size
            if width <= 0 or height <= 0:
                raise ImageRejectedError("empty", f"image has no pixels ({width}×{height})")
            if max_side is not None and max(width, height) > max_side:
                scale = max_side / max(width, height)
                # draft picks the smallest JPEG scale whose size is still at least the requested one.
                im.draft(None, (max(1, math.ceil(width * scale)), max(1, math.ceil(height * scale))))
                width, height = im.size
            _check_pixels(width, height, max_pixels)
            try:
                im.seek(0)  # first frame of an animation
                im.load()
            except Image.DecompressionBombError as exc:
                raise ImageRejectedError("too-many-pixels", str(exc)) from exc
            except (OSError, EOFError) as exc:
                message = str(exc)
                if isinstance(exc, EOFError) or "truncated" in message or "broken data stream" in message:
                    raise ImageRejectedError("truncated", f"image data ends early: {message}") from exc
                raise ImageRejectedError("corrupt", f"cannot decode image: {message}") from exc
            except (SyntaxError, ValueError, struct.error) as exc:
                raise ImageRejectedError("corrupt", f"cannot decode image: {exc}") from exc
            except MemoryError as exc:
                raise ImageRejectedError("too-large", "not enough memory to decode image") from exc
            return _finish(im, max_side)


def _finish(im: Image.Image, max_side: int | None) -> Image.Image:
    try:
        oriented = ImageOps.exif_transpose(im)
    except (OSError, SyntaxError, ValueError, TypeError, KeyError):
        oriented = im  # an unreadable EXIF block must not cost the image
    out = _to_rgb_or_rgba(oriented if oriented is not None else im)
    if max_side is not None and max(out.size) > max_side:
        # thumbnail reduces by an integer factor first (cheap box filter), then resamples;
        # RGBA is resized premultiplied, so transparent pixels do not bleed colour.
        out.thumbnail((max_side, max_side), Image.Resampling.BICUBIC, reducing_gap=2.0)
    if out.mode == "RGBA":
        background = Image.new("RGBA", out.size, (*WHITE, 255))
        out = Image.alpha_composite(background, out).convert("RGB")
    if out is im:
        out = im.copy()
    return out


def _has_transparency(im: Image.Image) -> bool:
    return im.mode in {"RGBA", "LA", "PA", "RGBa", "La"} or "transparency" in im.info


def _to_rgb_or_rgba(im: Image.Image) -> Image.Image:
    """RGB, or RGBA when the image has transparency (composited by the caller after resizing)."""
    mode = im.mode
    try:
        if mode in {"I;16", "I;16B", "I;16L", "I;16N", "I", "F"}:
            return _high_depth_to_l(im).convert("RGB")
        managed = _to_srgb(im)
        if managed is not None:
            return managed
        if _has_transparency(im):
            return im.convert("RGBA")
        if mode == "RGB":
            return im
        return im.convert("RGB")
    except (ValueError, OSError) as exc:
        raise ImageRejectedError("unsupported", f"cannot convert mode {mode} to RGB: {exc}") from exc


def _to_srgb(im: Image.Image) -> Image.Image | None:
    """Colour-manage to sRGB: LAB always, and CMYK/RGB/L images that embed a non-sRGB ICC profile
    (print scans in Adobe RGB or CMYK look washed out or wrong when converted naively).
    ``None`` means a plain conversion is right (or colour management failed, which costs nothing)."""
    icc = im.info.get("icc_profile")
    try:
        if im.mode == "LAB":
            source = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB"))
        elif icc and im.mode in {"RGB", "CMYK", "L"} and not _has_transparency(im):
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            if "srgb" in (ImageCms.getProfileDescription(source) or "").lower():
                return None
        else:
            return None
        out = ImageCms.profileToProfile(im, source, _SRGB, outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        if im.mode == "LAB":
            raise ImageRejectedError("unsupported", "cannot convert a LAB image to RGB") from None
        return None
    return out if isinstance(out, Image.Image) else None


def _high_depth_to_l(im: Image.Image) -> Image.Image:
    """16-bit and float greyscale to 8-bit; Pillow's own conversion clips instead of scaling."""
    arr = np.asarray(im)
    if arr.dtype.kind == "f":
        finite = arr[np.isfinite(arr)]
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        scaled = (np.nan_to_num(arr, nan=low) - low) / max(high - low, 1e-12) * 255.0
        return Image.fromarray(np.clip(scaled, 0, 255).astype(np.uint8))
    values = arr.astype(np.int64)
    top = int(values.max()) if values.size else 0
    # 16-bit data (the common case) keeps its absolute scale; deeper data is stretched to its range.
    if top <= 0xFFFF and int(values.min()) >= 0:
        return Image.fromarray((values >> 8).astype(np.uint8))
    low = int(values.min())
    scaled = (values - low) * 255 // max(top - low, 1)
    return Image.fromarray(scaled.astype(np.uint8))
