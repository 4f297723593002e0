"""Canvas coordinates → image pixels."""

from __future__ import annotations

import pytest

from iconosearch.iiif.regions import Box, canvas_to_image, parse_box


@pytest.mark.parametrize(
    ("text", "box"),
    [
        ("1,2,3,4", Box(1, 2, 3, 4)),
        ("1.4,2.6,3,4", Box(1, 3, 3, 4)),
        ("0,0,0,4", None),
        ("-1,0,3,4", None),
        ("1,2,3", None),
        ("a,b,c,d", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_box(text: str | None, box: Box | None) -> None:
    assert parse_box(text) == box


def test_canvas_regions_scale_to_the_image() -> None:
    # A 384×272 image painted on a 1000×708 canvas (sizes from 0.1's made-up canvases).
    assert canvas_to_image(Box(500, 354, 500, 354), (1000, 708), (384, 272)) == Box(192, 136, 192, 136)
    assert canvas_to_image(Box(0, 0, 1000, 708), (1000, 708), (384, 272)) == Box(0, 0, 384, 272)
    # Same size: unchanged.
    assert canvas_to_image(Box(10, 20, 30, 40), (384, 272), (384, 272)) == Box(10, 20, 30, 40)


def test_regions_are_clamped_to_the_image() -> None:
    assert canvas_to_image(Box(900, 600, 500, 500), (1000, 708), (384, 272)) == Box(346, 231, 38, 41)
    tiny = canvas_to_image(Box(999, 707, 1, 1), (1000, 708), (10, 10))
    assert tiny.w >= 1 and tiny.h >= 1 and tiny.x < 10 and tiny.y < 10
    assert str(Box(1, 2, 3, 4)) == "1,2,3,4"
