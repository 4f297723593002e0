"""Calibrate a model's relevance bands (:mod:`iconosearch.relevance`) on evaluation data.

The evaluation data is a folder in the local-folder format (images + ``metadata.csv``), such as the demo
collection or a heritage test split. For every item:

- **text queries**: the item's title is the query; its own image is the true match and every other image
  counts as unrelated. (Some "unrelated" images are in fact related — two pears — so the thresholds are
  on the strict side: a band never claims more than it measured.)
- **image queries**: a degraded copy of the image (half size, JPEG quality 60: what a researcher's photo
  or screenshot of it looks like) is the query; the original is the true match, every other image counts
  as unrelated.

Thresholds are quantiles of the unrelated scores (:data:`~iconosearch.relevance.STRONG_FPR`,
:data:`~iconosearch.relevance.POSSIBLE_FPR`); the share of true matches above each is recorded with them.
Re-run for any model with ``iconosearch models calibrate FOLDER --model SPEC``.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from iconosearch.models.embedder import Embedder
from iconosearch.relevance import POSSIBLE_FPR, STRONG_FPR, Calibration, Thresholds

MIN_ITEMS = 20
"""Fewer items than this give quantiles too coarse to mean anything."""
IMAGE_SIDE = 512


@dataclass(frozen=True, slots=True)
class EvalItem:
    image: Path
    title: str


def folder_items(folder: Path, limit: int | None = None) -> list[EvalItem]:
    """Items of a local-folder collection that have a title and an image file, in file order."""
    from iconosearch.iiif.local import read_sidecar

    rows = read_sidecar(folder)
    items = [
        EvalItem(folder / rel, row["title"])
        for rel, row in sorted(rows.items())
        if row.get("title") and (folder / rel).is_file()
    ]
    return items[:limit] if limit is not None else items


def thresholds_from_scores(positive: np.ndarray, negative: np.ndarray) -> Thresholds:
    """Bands from the scores of true matches and of unrelated pairs."""
    if positive.size == 0 or negative.size == 0:
        raise ValueError("calibration needs scores of both true matches and unrelated pairs")
    strong = float(np.quantile(negative, 1.0 - STRONG_FPR))
    possible = float(np.quantile(negative, 1.0 - POSSIBLE_FPR))
    return Thresholds(
        strong=round(strong, 4),
        possible=round(possible, 4),
        strong_recall=round(float(np.mean(positive >= strong)), 4),
        possible_recall=round(float(np.mean(positive >= possible)), 4),
    )


def split_scores(similarity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(diagonal, off-diagonal) of a square query × gallery similarity matrix (query i matches image i)."""
    n = similarity.shape[0]
    if similarity.shape != (n, n):
        raise ValueError("one query per gallery image")
    mask = ~np.eye(n, dtype=bool)
    return np.diag(similarity).copy(), similarity[mask]


def degraded(image: Image.Image) -> Image.Image:
    """Half size, JPEG quality 60: a query image that is the same picture, not the same file."""
    small = image.convert("RGB").resize((max(1, image.width // 2), max(1, image.height // 2)))
    buf = io.BytesIO()
    small.save(buf, "JPEG", quality=60)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def _load(path: Path) -> Image.Image:
    with Image.open(path) as im:
        im.draft("RGB", (IMAGE_SIDE, IMAGE_SIDE))
        image = im.convert("RGB")
    image.thumbnail((IMAGE_SIDE, IMAGE_SIDE))
    return image


def calibrate(
    embedder: Embedder,
    items: Sequence[EvalItem],
    *,
    measured_on: str,
    batch_size: int = 32,
    progress: Callable[[int, int], None] | None = None,
) -> Calibration:
    """Relevance thresholds of ``embedder`` measured on ``items``."""
    if len(items) < MIN_ITEMS:
        raise ValueError(
            f"calibration needs at least {MIN_ITEMS} items with a title and image, got {len(items)}"
        )
    gallery: list[np.ndarray] = []
    copies: list[np.ndarray] = []
    for start in range(0, len(items), batch_size):
        images = [_load(it.image) for it in items[start : start + batch_size]]
        gallery.append(embedder.embed_images(images))
        copies.append(embedder.embed_images([degraded(im) for im in images]))
        if progress is not None:
            progress(start + len(images), len(items))
    g = np.concatenate(gallery).astype(np.float32)
    c = np.concatenate(copies).astype(np.float32)
    t = np.asarray(embedder.embed_texts([it.title for it in items]), dtype=np.float32)
    text = thresholds_from_scores(*split_scores(t @ g.T))
    image = thresholds_from_scores(*split_scores(c @ g.T))
    return Calibration(
        model_spec=embedder.spec,
        model_fingerprint=embedder.fingerprint,
        measured_on=measured_on,
        n_queries=len(items),
        n_images=len(items),
        text=text,
        image=image,
    )


def calibrate_folder(
    spec: str, folder: Path, *, data_dir: Path, out: Path | None = None, limit: int | None = None
) -> tuple[Path, Calibration]:
    """Calibrate model ``spec`` on a folder of images with ``metadata.csv`` and save the result.

    Saved to ``out``, else where the model's relevance file belongs (its own folder for a local model,
    else the data directory); returns (where it was saved, the calibration).
    """
    from iconosearch.models.embedder import load_embedder
    from iconosearch.relevance import default_target

    items = folder_items(folder, limit)
    embedder = load_embedder(spec)
    cal = calibrate(embedder, items, measured_on=f"{folder.name} ({len(items)} items)")
    target = out or default_target(spec, embedder.fingerprint, data_dir)
    cal.save(target)
    return target, cal
