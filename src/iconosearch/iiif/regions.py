"""Regions in the two coordinate systems IIIF uses: canvas coordinates and image pixels.

A canvas ``#xywh=`` fragment (Presentation API, Content State) is in canvas coordinates; an Image API
``x,y,w,h`` region is in the pixels of the image. They agree only when the image is painted on the whole
canvas at the canvas's size, so every crossing from one to the other goes through :func:`canvas_to_image`.
"""

from __future__ import annotations

from typing import NamedTuple


class Box(NamedTuple):
    x: int
    y: int
    w: int
    h: int

    def __str__(self) -> str:
        return f"{self.x},{self.y},{self.w},{self.h}"


def parse_box(text: str | None) -> Box | None:
    """``"x,y,w,h"`` (numbers, possibly fractional) → a box with a positive size; ``None`` otherwise."""
    if not text:
        return None
    parts = text.split(",")
    if len(parts) != 4:
        return None
    try:
        x, y, w, h = (round(float(v)) for v in parts)
    except ValueError:
        return None
    return Box(x, y, w, h) if w > 0 and h > 0 and x >= 0 and y >= 0 else None


def _scale(box: Box, sx: float, sy: float, limit: tuple[int, int]) -> Box:
    # Edges are scaled (not origin and size separately), so adjacent boxes stay adjacent.
    x0, y0 = round(box.x * sx), round(box.y * sy)
    x1 = min(round((box.x + box.w) * sx), limit[0])
    y1 = min(round((box.y + box.h) * sy), limit[1])
    x0, y0 = min(x0, limit[0] - 1), min(y0, limit[1] - 1)
    return Box(x0, y0, max(1, x1 - x0), max(1, y1 - y0))


def canvas_to_image(box: Box, canvas: tuple[int, int], image: tuple[int, int]) -> Box:
    """A canvas region as pixels of the image painted on the whole canvas (clamped to the image)."""
    return _scale(box, image[0] / canvas[0], image[1] / canvas[1], image)
