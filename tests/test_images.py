"""Safe decoding of awkward real images: every case is a real file made with Pillow (or by hand)."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from iconosearch.images import ImageRejectedError, open_image, probe_image

CAP = 4_000_000


def _encode(im: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width×height, with one tiny IDAT: a decompression-bomb header."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + _png_chunk(b"IEND", b"")
    )


def _gradient(width: int = 64, height: int = 48) -> Image.Image:
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None].repeat(width, 1)
    return Image.fromarray(np.stack([x, y, 255 - x], axis=-1).astype(np.uint8), "RGB")


def test_plain_jpeg_from_bytes_and_path(tmp_path: Path) -> None:
    data = _encode(_gradient(), "JPEG", quality=95)
    path = tmp_path / "a.jpg"
    path.write_bytes(data)
    for source in (data, path):
        info = probe_image(source, max_pixels=CAP)
        assert (info.width, info.height, info.format, info.frames) == (64, 48, "JPEG", 1)
        im = open_image(source, max_pixels=CAP)
        assert im.mode == "RGB" and im.size == (64, 48)
        assert abs(int(np.asarray(im)[24, 0, 2]) - 255) < 12  # left edge is blue-ish: colours survive


def test_non_image_bytes_and_empty_and_missing(tmp_path: Path) -> None:
    for data in (b"<html><body>not found</body></html>", b"%PDF-1.4 hello"):
        with pytest.raises(ImageRejectedError) as err:
            probe_image(data, max_pixels=CAP)
        assert err.value.reason == "not-an-image"
        with pytest.raises(ImageRejectedError):
            open_image(data, max_pixels=CAP)
    with pytest.raises(ImageRejectedError) as err:
        open_image(b"", max_pixels=CAP)
    assert err.value.reason == "empty"
    with pytest.raises(ImageRejectedError) as err:
        open_image(tmp_path / "missing.png", max_pixels=CAP)
    assert err.value.reason == "unreadable"


def test_too_many_bytes() -> None:
    data = _encode(_gradient(), "PNG")
    with pytest.raises(ImageRejectedError) as err:
        open_image(data, max_pixels=CAP, max_bytes=len(data) - 1)
    assert err.value.reason == "too-large"
    assert open_image(data, max_pixels=CAP, max_bytes=len(data)).size == (64, 48)


@pytest.mark.parametrize("size", [(100_000, 100_000), (3000, 2000)])
def test_decompression_bomb_header_rejected_before_decoding(size: tuple[int, int]) -> None:
    data = _png_header_only(*size)
    assert len(data) < 200
    with pytest.raises(ImageRejectedError) as err:
        probe_image(data, max_pixels=CAP)
    assert err.value.reason == "too-many-pixels"
    with pytest.raises(ImageRejectedError) as err:
        open_image(data, max_pixels=CAP)
    assert err.value.reason == "too-many-pixels"


def test_truncated_and_corrupt() -> None:
    jpeg = _encode(_gradient(400, 300), "JPEG", quality=90)
    png = _encode(Image.effect_noise((300, 300), 60).convert("RGB"), "PNG")
    for data in (jpeg[: len(jpeg) // 2], png[: len(png) // 2]):
        probe_image(data, max_pixels=CAP)  # the header is intact
        with pytest.raises(ImageRejectedError) as err:
            open_image(data, max_pixels=CAP)
        assert err.value.reason == "truncated"
    # A PNG whose compressed data is garbage: the header parses, decoding fails.
    corrupt = bytearray(png)
    start = corrupt.index(b"IDAT") + 4
    corrupt[start : start + 200] = bytes(range(200))
    with pytest.raises(ImageRejectedError) as err:
        open_image(bytes(corrupt), max_pixels=CAP)
    assert err.value.reason in {"corrupt", "truncated"}
    # A damaged header is a rejection too, never a stray exception.
    with pytest.raises(ImageRejectedError):
        open_image(png[:30], max_pixels=CAP)
    with pytest.raises(ImageRejectedError) as err:
        open_image(jpeg[:300], max_pixels=CAP)
    assert err.value.reason == "truncated"


def test_cmyk_jpeg_becomes_rgb() -> None:
    red = Image.new("RGB", (40, 30), (220, 20, 20)).convert("CMYK")
    data = _encode(red, "JPEG", quality=95)
    assert probe_image(data, max_pixels=CAP).mode == "CMYK"
    im = open_image(data, max_pixels=CAP)
    assert im.mode == "RGB"
    r, g, b = np.asarray(im)[15, 20].tolist()
    assert r > 180 and g < 70 and b < 70


def test_16_bit_png_keeps_its_scale() -> None:
    arr = np.tile(np.linspace(0, 65535, 50, dtype=np.uint16), (20, 1))
    data = _encode(Image.fromarray(arr), "PNG")
    info = probe_image(data, max_pixels=CAP)
    assert info.mode.startswith("I")
    out = np.asarray(open_image(data, max_pixels=CAP))
    assert out.shape == (20, 50, 3)
    assert out[0, 0, 0] < 5 and out[0, -1, 0] > 250 and 100 < out[0, 25, 0] < 160  # a ramp, not clipped
    assert (out[..., 0] == out[..., 1]).all()


def test_animated_gif_first_frame() -> None:
    frames = [Image.new("RGB", (32, 32), colour) for colour in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    data = buf.getvalue()
    assert probe_image(data, max_pixels=CAP).frames == 3
    r, g, b = np.asarray(open_image(data, max_pixels=CAP))[16, 16].tolist()
    assert r > 240 and g < 15 and b < 15


def _transparent_rgba() -> Image.Image:
    im = Image.new("RGBA", (60, 60), (0, 0, 0, 0))  # fully transparent *black*
    im.paste((200, 30, 30, 255), (20, 20, 40, 40))
    return im


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_transparency_composited_onto_white(mode: str) -> None:
    src = _transparent_rgba()
    if mode == "LA":
        src = src.convert("LA")
    elif mode == "P":
        src = src.convert("P")  # keeps transparency as a tRNS palette entry
    data = _encode(src, "PNG")
    im = open_image(data, max_pixels=CAP)
    arr = np.asarray(im)
    assert im.mode == "RGB"
    assert arr[2, 2].tolist() == [255, 255, 255]  # white, not black
    assert arr[30, 30].max() < 230  # the opaque square survives


def test_transparent_huge_png_shrinks_without_dark_fringe() -> None:
    src = _transparent_rgba().resize((3000, 3000), Image.Resampling.NEAREST)
    data = _encode(src, "PNG")
    im = open_image(data, max_pixels=10_000_000, max_side=300)
    assert im.size == (300, 300)
    arr = np.asarray(im).astype(int)
    assert arr[5, 5].tolist() == [255, 255, 255]
    # Pixels at the square's border mix red with white, never with the hidden black.
    edge = arr[100, 95:105]
    assert edge.sum(axis=1).min() >= 200 + 30 + 30 - 10


def test_max_side_downscales_jpeg_on_decode() -> None:
    data = _encode(_gradient(4000, 3000), "JPEG", quality=85)
    # 12 MP is over the cap, but draft decodes at 1/8 scale, so the decoded pixels are within it.
    im = open_image(data, max_pixels=2_000_000, max_side=384)
    assert max(im.size) == 384 and im.size == (384, 288)
    with pytest.raises(ImageRejectedError):
        open_image(data, max_pixels=2_000_000)


def test_max_side_never_upscales() -> None:
    assert open_image(_encode(_gradient(), "PNG"), max_pixels=CAP, max_side=384).size == (64, 48)


def test_exif_orientation_applied() -> None:
    im = _gradient(80, 40)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise when displayed
    data = _encode(im, "JPEG", exif=exif.tobytes(), quality=95)
    out = open_image(data, max_pixels=CAP)
    assert out.size == (40, 80)


def test_greyscale_and_bilevel() -> None:
    for mode in ("L", "1"):
        src = _gradient().convert(mode)
        out = open_image(_encode(src, "PNG"), max_pixels=CAP)
        assert out.mode == "RGB" and out.size == (64, 48)


def test_error_carries_reason() -> None:
    err = ImageRejectedError("truncated", "image data ends early")
    assert isinstance(err, ValueError)
    assert err.reason == "truncated"
    assert "truncated" in str(err)


def test_lab_tiff_is_colour_managed() -> None:
    lab = Image.new("LAB", (20, 10), (128, 188, 168))  # L* 50, a* +60, b* +40: a brick red
    r, g, b = np.asarray(open_image(_encode(lab, "TIFF"), max_pixels=CAP))[5, 5].tolist()
    assert r > 150 and g < 110 and b < 110  # a naive channel copy gives a dark blue


def test_high_bit_depth_and_multi_frame_formats() -> None:
    gray16 = _encode(Image.fromarray(np.full((10, 20), 30000, np.uint16)), "TIFF")
    assert abs(int(np.asarray(open_image(gray16, max_pixels=CAP))[5, 5, 0]) - 117) <= 1
    ramp = np.linspace(0, 1, 200, dtype=np.float32).reshape(10, 20)
    out = np.asarray(open_image(_encode(Image.fromarray(ramp), "TIFF"), max_pixels=CAP))
    assert out[0, 0, 0] == 0 and out[-1, -1, 0] == 255
    frames = [Image.new("RGBA", (20, 10), (255, 0, 0, 255)), Image.new("RGBA", (20, 10), (0, 0, 255, 255))]
    for fmt in ("WEBP", "PNG"):  # animated WebP and APNG: the first frame
        buf = io.BytesIO()
        frames[0].save(buf, format=fmt, save_all=True, append_images=frames[1:])
        assert probe_image(buf.getvalue(), max_pixels=CAP).frames == 2
        r, g, b = np.asarray(open_image(buf.getvalue(), max_pixels=CAP))[5, 5].tolist()
        assert r > 240 and g < 15 and b < 15


def test_16bit_greyscale_is_reduced_in_bands_with_the_same_result() -> None:
    """Banded reduction of 16-bit data gives what a whole-image conversion gives (top byte)."""
    import numpy as np

    from iconosearch.images import open_image

    rng = np.random.default_rng(3)
    arr = rng.integers(0, 65536, (600, 900), dtype=np.uint16)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    full = open_image(buf.getvalue(), max_pixels=10**7)
    assert full.mode == "RGB" and full.size == (900, 600)
    assert np.array_equal(np.asarray(full)[..., 0], (arr >> 8).astype(np.uint8))
    small = open_image(buf.getvalue(), max_pixels=10**7, max_side=300)
    assert max(small.size) == 300


def test_decoded_bytes_are_capped_before_decoding() -> None:
    from iconosearch.images import decoded_bytes, probe_image

    buf = io.BytesIO()
    Image.new("RGBA", (1000, 1000)).save(buf, "PNG")
    assert decoded_bytes(1000, 1000, "RGBA") == 4_000_000
    with pytest.raises(ImageRejectedError) as err:
        probe_image(buf.getvalue(), max_pixels=10**7, max_decode_bytes=3_000_000)
    assert err.value.reason == "too-many-pixels" and "bytes decoded" in str(err.value)
    with pytest.raises(ImageRejectedError):
        open_image(buf.getvalue(), max_pixels=10**7, max_decode_bytes=3_000_000)
    assert probe_image(buf.getvalue(), max_pixels=10**7, max_decode_bytes=4_000_000).width == 1000
