"""The region-search benchmark: synthetic "pages" made of heritage images, searched by the items' captions.

Iconographic pages rarely hold one picture: a newspaper page has six engravings, a herbarium sheet
several plants. This builds such pages from single images with known placements —

- ``2x2`` and ``3x2`` collages: four or six images, each fitted into its cell;
- ``pasted``: one image pasted small (a quarter of the page's width) onto a large textured page —

and asks, for each placed image, its caption: is the page in the top 10 (text→page R@10), whole-image
embeddings only versus the best of the whole page and its crops (:mod:`iconosearch.index.regions`)?
And is the crop that matched where the image was placed (IoU ≥ 0.3)? Images whose licence forbids
derivatives (CC BY-ND) are never pasted. Scores are computed like the engine ranks (a page's score is
the best of its whole-image and crop cosines), on the vectors directly: no index is needed for 100 pages.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from iconosearch.index.regions import FracBox, crop, grid_layout
from iconosearch.rights import allows_derivatives

LAYOUTS: dict[str, tuple[int, int]] = {"2x2": (2, 2), "3x2": (3, 2)}
"""Collage layouts: columns × rows."""
PAGE_SIDE = 1200
"""Pages are this wide (collages are square; pasted pages 4:3)."""
PASTED_SCALE = 0.25
"""A pasted image is this fraction of the page's width."""
IOU_HIT = 0.3


@dataclass(frozen=True, slots=True)
class Source:
    """One heritage image that may be placed on a page."""

    path: Path
    caption: str
    rights: str | None
    group: str = ""
    """What resampling clusters on (e.g. the set it comes from)."""


@dataclass(slots=True)
class Page:
    kind: str
    image: Image.Image
    placements: list[tuple[int, FracBox]] = field(default_factory=list)
    """(index of the source, where it is, as fractions of the page)."""


def usable(sources: Sequence[Source]) -> list[Source]:
    """The sources that may be cut into collages: never an image whose licence forbids derivatives."""
    return [s for s in sources if allows_derivatives(s.rights)]


def _fit(image: Image.Image, width: int, height: int) -> Image.Image:
    scale = min(width / image.width, height / image.height)
    return image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))))


def _paste(page: Image.Image, image: Image.Image, left: int, top: int) -> FracBox:
    page.paste(image, (left, top))
    return (left / page.width, top / page.height, image.width / page.width, image.height / page.height)


def collage(kind: str, images: Sequence[Image.Image], ids: Sequence[int]) -> Page:
    """Images fitted (aspect kept, centred) into the cells of a ``kind`` grid on a white page."""
    cols, rows = LAYOUTS[kind]
    cell_w, cell_h = PAGE_SIDE // cols, PAGE_SIDE // rows
    page = Page(kind, Image.new("RGB", (PAGE_SIDE, PAGE_SIDE), (250, 248, 240)))
    for n, (image, sid) in enumerate(zip(images, ids, strict=True)):
        fitted = _fit(image, cell_w - 16, cell_h - 16)
        left = (n % cols) * cell_w + (cell_w - fitted.width) // 2
        top = (n // cols) * cell_h + (cell_h - fitted.height) // 2
        page.placements.append((sid, _paste(page.image, fitted, left, top)))
    return page


def pasted(image: Image.Image, sid: int, rng: np.random.Generator, *, scale: float = PASTED_SCALE) -> Page:
    """``image`` at ``scale`` of the page's width, somewhere on a large paper-textured page."""
    width, height = PAGE_SIDE, PAGE_SIDE * 3 // 4
    noise = rng.normal(0.0, 9.0, (height, width, 1))
    paper = np.clip(np.array([236.0, 228.0, 210.0]) + noise, 0, 255).astype(np.uint8)
    page = Page("pasted", Image.fromarray(paper))
    side = round(width * scale)
    fitted = _fit(image, side, side)
    left = int(rng.integers(0, width - fitted.width))
    top = int(rng.integers(0, height - fitted.height))
    page.placements.append((sid, _paste(page.image, fitted, left, top)))
    return page


def make_pages(sources: Sequence[Source], *, seed: int = 0) -> list[Page]:
    """Pages from ``sources`` (each used once, shuffled): a third each 2×2, 3×2 and pasted."""
    rng = np.random.default_rng(seed)
    order = [int(i) for i in rng.permutation(len(sources))]
    third = len(order) // 3
    pages: list[Page] = []
    for kind, chunk in (("2x2", order[:third]), ("3x2", order[third : 2 * third])):
        per = math.prod(LAYOUTS[kind])
        for start in range(0, len(chunk) - per + 1, per):
            ids = chunk[start : start + per]
            images = [_open(sources[i].path) for i in ids]
            pages.append(collage(kind, images, ids))
    pages += [pasted(_open(sources[i].path), i, rng) for i in order[2 * third :]]
    return pages


def _open(path: Path) -> Image.Image:
    with Image.open(path) as im:
        im.draft("RGB", (800, 800))  # JPEG: decode near the size a collage cell needs
        return im.convert("RGB")


def iou(a: FracBox, b: FracBox) -> float:
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    inter = max(0.0, w) * max(0.0, h)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


@dataclass(frozen=True, slots=True)
class PageVectors:
    whole: np.ndarray
    """(P, dim) unit vectors of the whole pages."""
    crops: list[tuple[np.ndarray, list[FracBox]]]
    """Per page: (n, dim) crop vectors and their boxes."""


def embed_pages(embedder: Any, pages: Sequence[Page]) -> PageVectors:
    """Whole-page and crop vectors, cut as the indexer cuts them (the ``grid`` layout)."""
    whole = np.asarray(embedder.embed_images([p.image for p in pages]), dtype=np.float32)
    crops = []
    for p in pages:
        boxes = grid_layout(*p.image.size)
        vectors = np.asarray(embedder.embed_images([crop(p.image, b) for b in boxes]), dtype=np.float32)
        crops.append((vectors, boxes))
    return PageVectors(whole, crops)


@dataclass(frozen=True, slots=True)
class QueryOutcome:
    kind: str
    """The layout of the page the query's image was placed on."""
    rank_whole: int
    """1-based rank of the right page by whole-page vectors only."""
    rank_regions: int
    """1-based rank of the right page by the best of whole page and crops."""
    iou: float
    """IoU of the right page's best-matching box (the whole page when that wins) with the placement."""


def score_queries(
    text_vectors: np.ndarray, targets: Sequence[tuple[int, FracBox]], pv: PageVectors, kinds: Sequence[str]
) -> list[QueryOutcome]:
    """For each caption vector, its page's rank both ways and the localisation of its best crop.

    ``targets``: per query, (page index, placement). Ties rank pessimistically (the right page after
    every page scoring the same), so a degenerate model cannot look good."""
    out = []
    for q, (page, placement) in zip(text_vectors, targets, strict=True):
        whole = pv.whole @ q
        best_crop = np.array([float((v @ q).max()) if len(v) else -math.inf for v, _ in pv.crops])
        merged = np.maximum(whole, best_crop)
        rank_whole = int((whole >= whole[page]).sum())
        rank_regions = int((merged >= merged[page]).sum())
        vectors, boxes = pv.crops[page]
        found: FracBox = (0.0, 0.0, 1.0, 1.0)
        if len(vectors) and best_crop[page] > whole[page]:
            found = boxes[int(np.argmax(vectors @ q))]
        out.append(QueryOutcome(kinds[page], rank_whole, rank_regions, iou(found, placement)))
    return out
