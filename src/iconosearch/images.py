"""Safe image decoding: every image that reaches a model passes through here.

Images come from the network and from arbitrary folders, so they can be corrupt, truncated, enormous
(decompression bombs), CMYK, 16-bit, palette-based, animated or transparent. ``probe_image`` reads only
the header and rejects what must not be decoded; ``open_image`` decodes with a pixel cap and returns a
plain RGB image (transparency composited onto white, EXIF orientation applied, first frame only).
Failures raise ``ImageRejectedError`` whose ``reason`` is a short machine-readable code.

Memory per decode is bounded by design: the cap is on *decoded bytes* (pixels × the bytes per pixel
Pillow stores for the mode), checked from the header before decoding. JPEG (``draft``) and JPEG 2000
(``reduce``) decode directly at a reduced size. Pillow cannot decode PNG, WebP or TIFF at reduced
size, so those are decoded in full — within the byte cap — and high bit depths are then reduced in
row bands of about a megabyte, so no widened copy of the whole image is ever made (0.1 made two
``int64`` copies: a 124 KB 16-bit PNG took 1.4 GB). Peak memory of one decode is thus at most the
byte cap plus a few megabytes.
"""

from __future__ import annotations

import io
import math
import struct
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final, Literal

import numpy as np
from PIL import Image, ImageCms, ImageFile, ImageOps, UnidentifiedImageError

# We apply our own pixel cap (``max_pixels``); Pillow's warning at its global threshold is noise then.
# Its hard error (at twice that threshold) still applies and is mapped to "too-many-pixels".
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

RejectReason = Literal[
    "not-an-image",  # no decoder recognises the bytes
    "unreadable",  # the file cannot be read at all
    "too-large",  # more bytes than allowed
    "too-many-pixels",  # decompression-bomb guard
    "truncated",  # data ends before the image does
    "corrupt",  # the decoder failed on the data
    "unsupported",  # a mode or feature we cannot turn into RGB
    "empty",  # zero bytes or zero pixels
]

WHITE: Final = (255, 255, 255)
_SRGB: Final = ImageCms.createProfile("sRGB")


class ImageRejectedError(ValueError):
    """An image that cannot or must not be decoded, and why (a :data:`RejectReason`)."""

    def __init__(self, reason: RejectReason, message: str) -> None:
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


DEFAULT_MAX_DECODE_BYTES: Final = 256 * 1024 * 1024
"""Decoded bytes one image may take: an RGB image at the default 64-megapixel cap (Pillow stores RGB
in 4 bytes per pixel)."""

# Bytes per pixel in Pillow's own storage; every mode not listed takes 4 (RGB included).
_MODE_BYTES: Final = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}
_HIGH_DEPTH: Final = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I", "F"})
_BAND_BYTES: Final = 1 << 20
"""Size of one row band when reducing a high-depth image (see :func:`_high_depth_to_l`)."""


def decoded_bytes(width: int, height: int, mode: str) -> int:
    """Memory Pillow needs to hold the decoded image."""
    return width * height * _MODE_BYTES.get(mode, 4)


def _check_pixels(
    width: int, height: int, max_pixels: int, mode: str = "RGB", max_bytes: int | None = None
) -> None:
    if width <= 0 or height <= 0:
        raise ImageRejectedError("empty", f"image has no pixels ({width}×{height})")
    if width * height > max_pixels:
        raise ImageRejectedError(
            "too-many-pixels",
            f"{width}×{height} = {width * height} pixels is more than the limit of {max_pixels}",
        )
    cap = DEFAULT_MAX_DECODE_BYTES if max_bytes is None else max_bytes
    need = decoded_bytes(width, height, mode)
    if need > cap:
        raise ImageRejectedError(
            "too-many-pixels",
            f"{width}×{height} {mode} needs {need} bytes decoded, more than the limit of {cap}",
        )


def probe_image(
    data: ImageSource,
    *,
    max_pixels: int,
    max_bytes: int | None = None,
    max_decode_bytes: int | None = None,
) -> ImageInfo:
    """Read the header only; reject non-images and images over ``max_pixels`` pixels or over
    ``max_decode_bytes`` decoded (default :data:`DEFAULT_MAX_DECODE_BYTES`)."""
    with _source(data, max_bytes) as stream:
        im = _open(stream)
        with im:
            width, height = im.size
            _check_pixels(width, height, max_pixels, im.mode, max_decode_bytes)
            return ImageInfo(width, height, im.format or "unknown", im.mode, _frames(im))


def open_image(
    data: ImageSource,
    *,
    max_pixels: int,
    max_side: int | None = None,
    max_bytes: int | None = None,
    max_decode_bytes: int | None = None,
) -> Image.Image:
    """Decode safely to an RGB image whose long side is at most ``max_side`` (when given).

    JPEG and JPEG 2000 are decoded directly at a reduced scale, so the caps apply to the pixels
    actually decoded; other formats are decoded in full (the caps apply to the header size) and then
    shrunk with ``reduce`` before a final bicubic resize (see the module docstring for memory).
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
                width, height = _decode_reduced(im, width, height, max_side)
            _check_pixels(width, height, max_pixels, im.mode, max_decode_bytes)
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


def _decode_reduced(im: ImageFile.ImageFile, width: int, height: int, max_side: int) -> tuple[int, int]:
    """Ask the decoder for a smaller image where the format can; returns the size it will decode."""
    scale = max_side / max(width, height)
    if im.format == "JPEG":
        # draft picks the smallest JPEG scale whose size is still at least the requested one.
        im.draft(None, (max(1, math.ceil(width * scale)), max(1, math.ceil(height * scale))))
        return im.size
    if im.format == "JPEG2000":
        # Resolution levels halve the size; keep the long side at least max_side.
        level = int(math.log2(max(width, height) / max_side))
        if level > 0:
            im.reduce = level  # type: ignore[method-assign, assignment]
            return math.ceil(width / 2**level), math.ceil(height / 2**level)
    return width, height


_ORIENTATION: Final = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _finish(im: Image.Image, max_side: int | None) -> Image.Image:
    if im.mode in _HIGH_DEPTH:
        # Reduce before anything copies the full-size high-depth image (see the module docstring).
        try:
            orientation = im.getexif().get(0x0112)
        except (OSError, SyntaxError, ValueError, TypeError, KeyError):
            orientation = None
        out = _high_depth_to_l(im, max_side).convert("RGB")
        method = _ORIENTATION.get(orientation) if isinstance(orientation, int) else None
        out = out.transpose(method) if method is not None else out
        if max_side is not None and max(out.size) > max_side:
            out.thumbnail((max_side, max_side), Image.Resampling.BICUBIC, reducing_gap=2.0)
        return out
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


def _bands(im: Image.Image, rows: int) -> Iterator[np.ndarray]:
    width, height = im.size
    for top in range(0, height, rows):
        yield np.asarray(im.crop((0, top, width, min(height, top + rows))))


def _high_depth_to_l(im: Image.Image, max_side: int | None) -> Image.Image:
    """16-bit, 32-bit and float greyscale to 8-bit, reduced by an integer factor towards ``max_side``.

    Works in row bands of about :data:`_BAND_BYTES`, so the only full-size array is Pillow's own
    decoded image. Pillow's conversion clips instead of scaling, hence the explicit mapping: 16-bit
    data keeps its absolute scale (top byte), deeper or signed data and floats are stretched to their
    range (NaN becomes the minimum).
    """
    width, height = im.size
    factor = max(1, max(width, height) // max_side) if max_side else 1
    rows = factor * max(1, _BAND_BYTES // (max(width, 1) * 4 * factor))
    if im.mode.startswith("I;16"):
        low, high, stretch = 0.0, 0.0, False
    else:
        low, high = math.inf, -math.inf
        for band in _bands(im, rows):
            finite = band[np.isfinite(band)] if band.dtype.kind == "f" else band
            if finite.size:
                low, high = min(low, float(finite.min())), max(high, float(finite.max()))
        if low > high:
            low, high = 0.0, 1.0
        stretch = im.mode == "F" or low < 0 or high > 0xFFFF
    pieces: list[np.ndarray] = []
    for band in _bands(im, rows):
        if stretch:
            values = np.nan_to_num(band.astype(np.float32), nan=low)
            scaled = (values - low) * (255.0 / max(high - low, 1e-12))
            small = np.clip(scaled, 0, 255).astype(np.uint8)
        else:
            small = (band >> 8).astype(np.uint8)
        piece = Image.fromarray(small)
        pieces.append(np.asarray(piece.reduce(factor) if factor > 1 else piece))
    return Image.fromarray(np.concatenate(pieces, axis=0) if pieces else np.zeros((1, 1), np.uint8))
