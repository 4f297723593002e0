"""Region embeddings: besides the whole image, a multi-scale set of overlapping crops of it.

A small motif (the initial on a manuscript page, one engraving of six on a newspaper page) drowns in
the whole image's embedding; the crop that holds it does not. A collection opts in with
``regions = "grid"`` in its config. Crops are cut from the image already fetched by the harvest (no
extra requests) and each is stored with its box as fractions of the image, so that results can name the
region in canvas coordinates and in the image's pixels (:func:`region_fields`).

Files of an index version that has regions (all rows aligned)::

    regions.faiss        FAISS index of the crop vectors, ids = row numbers
    regions.npy          (R, dim) unit vectors: float32 when the crop index is exact (flat), else
                         float16 (see :data:`HALF_ABOVE`)
    region_ids.npy       int64 (R,) FAISS id of the record each crop belongs to
    region_boxes.npy     float32 (R, 4) x, y, w, h as fractions of the embedded image

Cost: the ``grid`` layout makes up to 13 crops per image (2×2 and 3×3), so indexing embeds up to 14×
as many images and the index holds up to 14× as many vectors (``iconosearch index`` reports both).

At scale (1M canvases are 13M crops: 27 GB as float32 at 512 dims) the crop index gets its own share
of the build's memory budget (:data:`BUDGET_SHARE`), which makes it IVF-PQ re-ranked by SQ8 codes on
disk, as the whole-image index is at 10M; :func:`write_streamed` builds it from batches without ever
holding the float vectors, and the stored vectors are float16. Queries never read them (the crop index
gives the scores, and a page's best crops are read as one batch); they are kept for rebuilds and
incremental updates (a re-ranked index cannot remove vectors), for exact filtered search of small
subsets, and float16's rounding (~5e-4) is below the 8-bit codes' (~4e-3) that rank them anyway.

Crop index: where it is approximate and its SQ8 codes would fit the crop share, it is ``ivf-pqfs``
instead (:func:`crop_kind`): 4-bit fast-scan PQ with dim/2 sub-quantisers, its shortlist re-ranked by
the same SQ8 codes. The crop index holds 13× the whole-image vectors at the same recall target, so a
query scans ~13× the SQ8 codes: that scan was the region path's cost (~5× the whole-image p50 at 200k
canvases × 13 crops of 64 dims). Measured with FAISS alone on those 2.6M crops (IVF2048, k=256, one
thread): SQ8 at nprobe 32/64/128 took 1.02/1.94/2.71 ms for recall@10 0.865/0.932/0.965, fast-scan
PQ32x4 re-ranked by SQ8 0.50/0.68/1.01 ms for 0.868/0.920/0.948 (16 sub-quantisers of 4 dims stopped at
0.74, hence dim/2 and :data:`FAST_SCAN_MIN_DIM`). Crop sets up to ``exact_max`` stay exact (flat), and
past the crop share the builder's IVF-PQ stays.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from iconosearch.iiif.regions import Box, parse_box
from iconosearch.records import ImageRecord

FAISS_FILE = "regions.faiss"
VECTORS_FILE = "regions.npy"
IDS_FILE = "region_ids.npy"
BOXES_FILE = "region_boxes.npy"

OVERLAP = 0.25
"""Neighbouring crops of one grid share a quarter of their side, so a motif on a cell border still
falls whole into some crop."""
BUDGET_SHARE = 4
"""The crop index may use this fraction (1/4) of the build's memory budget: crops are the secondary
ranking, 13× as many as records, and must not crowd the whole-image index (at the default 8 GiB, 13M
crops of 512 dims get IVF-PQ with 64-byte codes, ~1 GB resident, rather than 6.6 GB of SQ8 codes)."""
HALF_ABOVE = "flat"
"""Crop vectors are stored as float16 unless the crop index is of this (exact) kind, so that small
collections keep exact scores everywhere (filtered search of a subset reads the stored vectors)."""
FAST_SCAN_MIN_DIM = 32
"""Crop indexes of fewer dims stay ``ivf-sq8`` (their SQ8 scan is short already; 16 sub-quantisers of
2 dims were not measured)."""
TUNE_QUERIES = 200
PROBE_CAP = 1 / 8
"""Most of its lists a crop index that cannot reach its recall target probes (see :func:`capped`)."""
FAR_MISS = 0.05
"""A crop index this far below its recall target with its tuned probes is capped to :data:`PROBE_CAP`."""
MIN_CROP_SIDE = 96
"""Crops whose shorter side would be below this many pixels (of the fetched image) are skipped: the
model would see mostly upscaling blur."""
DECODE_MAX_SIDE = 1344
"""Images are decoded this big for cropping, so that a 3×3 crop (0.4 of the side) still has ~540 px,
more than the model's input, rather than the 448 px the whole image is decoded at."""

FracBox = tuple[float, float, float, float]
"""``x, y, w, h`` as fractions of the image's width and height."""


def _grid(n: int) -> list[FracBox]:
    """An ``n × n`` grid of equal cells overlapping by :data:`OVERLAP`, covering the image exactly."""
    side = 1.0 / (n - (n - 1) * OVERLAP)
    step = side * (1.0 - OVERLAP)
    starts = [min(i * step, 1.0 - side) for i in range(n)]
    return [(x, y, side, side) for y in starts for x in starts]


def grid_layout(width: int, height: int) -> list[FracBox]:
    """The ``grid`` layout: 2×2 and 3×3 overlapping grids, without crops below :data:`MIN_CROP_SIDE`."""
    boxes = [*_grid(2), *_grid(3)]
    return [b for b in boxes if min(b[2] * width, b[3] * height) >= MIN_CROP_SIDE]


LAYOUTS: dict[str, Callable[[int, int], list[FracBox]]] = {"grid": grid_layout}
"""Region layouts by the name a collection's ``regions`` setting gives (register new ones here)."""


def crop(image: Image.Image, box: FracBox) -> Image.Image:
    """The part of ``image`` that ``box`` (fractions) covers."""
    x, y, w, h = box
    width, height = image.size
    left, top = round(x * width), round(y * height)
    right, bottom = max(left + 1, round((x + w) * width)), max(top + 1, round((y + h) * height))
    return image.crop((left, top, min(right, width), min(bottom, height)))


@dataclass(frozen=True, slots=True)
class RegionSet:
    """Crop vectors of some records, row-aligned: what one index version stores."""

    vectors: np.ndarray
    """float32 (R, dim) unit vectors."""
    ids: np.ndarray
    """int64 (R,) FAISS id of each crop's record."""
    boxes: np.ndarray
    """float32 (R, 4) fractions of the image."""

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def empty(cls, dim: int) -> RegionSet:
        return cls(np.zeros((0, dim), np.float32), np.zeros(0, np.int64), np.zeros((0, 4), np.float32))

    @classmethod
    def concat(cls, parts: Sequence[RegionSet], dim: int) -> RegionSet:
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty(dim)
        return cls(
            np.concatenate([p.vectors for p in parts]).astype(np.float32),
            np.concatenate([p.ids for p in parts]).astype(np.int64),
            np.concatenate([p.boxes for p in parts]).astype(np.float32),
        )

    def without(self, ids: np.ndarray) -> RegionSet:
        """The crops of records not in ``ids``."""
        keep = ~np.isin(self.ids, ids)
        return RegionSet(np.asarray(self.vectors[keep]), self.ids[keep], self.boxes[keep])

    def save(self, folder: Path, *, half: bool = False) -> None:
        np.save(folder / VECTORS_FILE, self.vectors.astype(np.float16) if half else self.vectors)
        np.save(folder / IDS_FILE, self.ids)
        np.save(folder / BOXES_FILE, self.boxes)

    @classmethod
    def load(cls, folder: Path, *, mmap: bool = False) -> RegionSet | None:
        """The crops stored in a version folder, or ``None`` when it has none."""
        if not (folder / IDS_FILE).exists():
            return None
        vectors = np.load(folder / VECTORS_FILE, mmap_mode="r" if mmap else None)
        return cls(
            vectors if mmap else vectors.astype(np.float32, copy=False),
            np.load(folder / IDS_FILE),
            np.load(folder / BOXES_FILE),
        )


def for_record(record_int_id: int, vectors: np.ndarray, boxes: Sequence[FracBox]) -> RegionSet:
    """The crops of one record as a :class:`RegionSet`."""
    n = len(boxes)
    return RegionSet(
        np.asarray(vectors, dtype=np.float32).reshape(n, -1),
        np.full(n, record_int_id, dtype=np.int64),
        np.asarray(boxes, dtype=np.float32).reshape(n, 4),
    )


@dataclass(frozen=True, slots=True)
class CropStream:
    """Crops too many to hold at once (see :func:`write_streamed`): how many, a training sample, and a
    function giving them again as :class:`RegionSet` batches, in the order they are to be stored."""

    count: int
    dim: int
    sample: np.ndarray
    """Unit rows from the crops' distribution to train the quantiser on (and tune against)."""
    batches: Callable[[], Iterable[RegionSet]]

    def __len__(self) -> int:
        return self.count


def crop_kind(n: int, dim: int, *, memory_budget: int, exact_max: int = 0, shards: int = 1) -> str | None:
    """``ivf-pqfs`` where an approximate crop index would otherwise be ``ivf-sq8`` (see module doc, "Crop
    index"), else ``None``: the builder's own choice (exact up to ``exact_max``, IVF-PQ past the budget).
    Fast-scan codes need dims in pairs and :data:`FAST_SCAN_MIN_DIM` of them, and no shards (a sharded
    index is not re-ranked, and 4-bit codes alone do not reach the recall)."""
    from iconosearch.index import faiss_index

    if n <= exact_max or shards > 1 or dim < FAST_SCAN_MIN_DIM or dim % 2:
        return None
    sq8 = faiss_index.ivf_kind(n, dim, memory_budget=memory_budget) == "ivf-sq8"
    return "ivf-pqfs" if sq8 else None


def write_streamed(
    folder: Path,
    stream: CropStream,
    *,
    memory_budget: int,
    recall_target: float,
    text_queries: Callable[[], np.ndarray] | None = None,
) -> dict[str, Any]:
    """Write a version's region files from ``stream`` in one pass, holding one batch of float vectors.

    The index is :func:`crop_kind`'s, else planned by :func:`ivf_build.plan`, under ``memory_budget``
    (the caller gives the crop share); the vectors go to a memory-mapped float16 ``regions.npy`` as they
    pass, and each batch's exact top 10 for :data:`TUNE_QUERIES` queries drawn from the sample is merged
    on the way, so nprobe is tuned against exact search without a second pass; so are the text vectors
    ``text_queries`` makes, which must reach the target too (``faiss_index.tune``). Returns the
    manifest's ``regions`` entry.
    """
    from iconosearch.index import faiss_index, ivf_build

    n, dim = stream.count, stream.dim
    kind = crop_kind(n, dim, memory_budget=memory_budget)
    if kind is None:
        spec = ivf_build.plan(n, dim, memory_budget=memory_budget)
    else:
        spec = faiss_index.ivf_spec(kind, n, dim, memory_budget=memory_budget)
    noisy = faiss_index.sample_queries(stream.sample, TUNE_QUERIES, seed=11)
    texts = text_queries() if text_queries is not None else noisy[:0]
    queries = np.vstack([noisy, texts]).astype(np.float32)
    fmt = np.lib.format
    vectors = fmt.open_memmap(folder / VECTORS_FILE, mode="w+", dtype=np.float16, shape=(n, dim))
    ids = fmt.open_memmap(folder / IDS_FILE, mode="w+", dtype=np.int64, shape=(n,))
    boxes = fmt.open_memmap(folder / BOXES_FILE, mode="w+", dtype=np.float32, shape=(n, 4))
    top = (np.full((len(queries), 10), -np.inf, np.float32), np.full((len(queries), 10), -1, np.int64))
    done = 0

    def batches() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        nonlocal done, top
        for part in stream.batches():
            rows = np.arange(done, done + len(part), dtype=np.int64)
            if done + len(part) > n:
                raise ValueError(f"the crop stream gave more than the {n} crops it announced")
            vectors[rows[0] : rows[-1] + 1] = part.vectors
            ids[rows[0] : rows[-1] + 1] = part.ids
            boxes[rows[0] : rows[-1] + 1] = part.boxes
            scores, found = faiss_index.exact_knn(part.vectors, queries, 10)
            top = _merge_top(top, (scores, rows[found]))
            done += len(part)
            yield part.vectors, rows

    index = ivf_build.build_streaming(spec, stream.sample[: ivf_build.train_size(spec)], batches())
    if done != n:
        raise ValueError(f"the crop stream gave {done} crops, not the {n} it announced")
    for array in (vectors, ids, boxes):
        array.flush()
    exact, k = top[1], len(noisy)
    also = [(texts, exact[k:])] if len(texts) else []
    spec, recall = faiss_index.tune_against(index, spec, noisy, exact[:k], target=recall_target, also=also)
    spec, guard = capped(index, spec, recall, target=recall_target, tuning=lambda: (noisy, exact[:k]))
    faiss_index.write(index, folder / FAISS_FILE)
    return {"count": n, "faiss_type": spec.kind, "faiss_params": dict(spec.params), **guard}


def capped(
    index: Any,
    spec: Any,
    recall: float | None,
    *,
    target: float,
    tuning: Callable[[], tuple[np.ndarray, np.ndarray]],
) -> tuple[Any, dict[str, Any]]:
    """A tuned crop index's manifest entry, its probes capped when its recall is far below ``target``.

    Tuning (``faiss_index.tune``/``tune_against``) raises nprobe until the target is reached or every list
    is probed: an index whose codes cannot reach it (64-d crops under PQ reached 0.70 with all 2,048
    lists probed) would then probe them all on every query, silently ~16× the search a reachable target
    costs. An index more than :data:`FAR_MISS` below its target keeps :data:`PROBE_CAP` of its lists
    probed; a near miss keeps its probes. The entry says which: ``{"recall_at_10", "recall_target",
    "recall_reached"}`` (+ ``"probes_capped"``). ``tuning`` gives the tuning queries and their exact top
    10 ids again (called only to measure a capped index)."""
    from iconosearch.index import faiss_index

    if recall is None:  # exact
        return spec, {"recall_at_10": None}
    out: dict[str, Any] = {
        "recall_at_10": recall,
        "recall_target": target,
        "recall_reached": recall >= target,
    }
    nlist = int(spec.params.get("nlist", 0))
    cap = max(1, int(nlist * PROBE_CAP))
    if recall >= target - FAR_MISS or not spec.kind.startswith("ivf") or int(spec.params["nprobe"]) <= cap:
        return spec, out  # reached, or a near miss worth its probes (the summary line still says so)
    queries, exact_ids = tuning()
    limited = faiss_index.FaissSpec(spec.kind, {**spec.params, "nprobe": cap})
    _, approx = faiss_index.search(index, queries, 10, params=faiss_index.search_params(limited))
    faiss_index.set_search_params(index, limited)
    out["recall_at_10"] = round(faiss_index.recall_at_k(approx, exact_ids, 10), 4)
    out["probes_capped"] = f"{cap} of {nlist} lists (recall@10 {recall} with all probed)"
    return limited, out


def tuning_sample(vectors: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The queries ``faiss_index.tune`` tunes an in-memory index with, and their exact top 10 ids."""
    from iconosearch.index import faiss_index

    queries = faiss_index.sample_queries(vectors)
    _, found = faiss_index.exact_knn(vectors, queries, 10)
    return queries, rows[found]


def _merge_top(
    a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise top 10 of two ``(scores, ids)`` lists (best first)."""
    scores = np.concatenate([a[0], b[0]], axis=1)
    ids = np.concatenate([a[1], b[1]], axis=1)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :10]
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(ids, order, axis=1)


def best_per_record(
    owners: np.ndarray, rows: np.ndarray, scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crop hits (``rows`` best first, their ``scores`` and record ``owners``) → each record's best:
    ``(record ids, scores, crop rows)``, best first (ties by id), one record once."""
    if not len(owners):
        return owners, scores, rows
    # The first occurrence of an owner in a best-first list is its best crop.
    _, first = np.unique(owners, return_index=True)
    order = first[np.lexsort((owners[first], -scores[first]))]
    return owners[order], scores[order], rows[order]


def _scaled(base: Box, box: FracBox) -> Box:
    # Edges are rounded (not origin and size separately), so a crop never leaves its base box.
    x0 = base.x + round(box[0] * base.w)
    y0 = base.y + round(box[1] * base.h)
    x1 = base.x + min(base.w, round((box[0] + box[2]) * base.w))
    y1 = base.y + min(base.h, round((box[1] + box[3]) * base.h))
    return Box(x0, y0, max(1, x1 - x0), max(1, y1 - y0))


def region_fields(record: ImageRecord, box: FracBox) -> tuple[str, str] | None:
    """``(region, image_region)`` of a crop: canvas coordinates and the image's pixels.

    The crop is a fraction of what was embedded: the record's ``image_region`` of the image (or all of
    it), painted at the record's ``region`` of the canvas (or all of it). Records keep no canvas size, so
    an image painted on the whole canvas is taken to be at the canvas's size (IIIF's usual case).
    ``None`` when the image's size is unknown (the crop cannot be placed).
    """
    if not record.width or not record.height:
        return None
    whole = Box(0, 0, record.width, record.height)
    image_base = parse_box(record.image_region) or whole
    canvas_base = parse_box(record.region) or image_base._replace(x=0, y=0)
    return str(_scaled(canvas_base, box)), str(_scaled(image_base, box))


def image_box(text: str, size: tuple[int, int]) -> FracBox:
    """A query region (``x,y,w,h`` in the image's pixels, or ``pct:x,y,w,h``) as fractions.

    ``size`` is the image's full size in pixels. Raises ``ValueError`` with a clear message.
    """
    text = text.strip()
    pct = text.startswith("pct:")
    parts = (text[4:] if pct else text).split(",")
    try:
        x, y, w, h = (float(p) for p in parts)
    except ValueError:
        raise ValueError(f"region {text!r} is not 'x,y,w,h' or 'pct:x,y,w,h' (four numbers)") from None
    if not all(np.isfinite([x, y, w, h])) or w <= 0 or h <= 0 or x < 0 or y < 0:
        raise ValueError(f"region {text!r} needs x, y ≥ 0 and a positive width and height")
    full_w, full_h = (100.0, 100.0) if pct else (float(size[0]), float(size[1]))
    if x >= full_w or y >= full_h:
        what = "100 %" if pct else f"the {size[0]}×{size[1]} image"
        raise ValueError(f"region {text!r} lies outside {what}")
    w, h = min(w, full_w - x), min(h, full_h - y)
    return (x / full_w, y / full_h, w / full_w, h / full_h)


def embed_regions(
    embedder: Any,
    items: Sequence[tuple[int, str, Path]],
    layout: str,
    *,
    cache_dir: Path | None,
    max_pixels: int,
    progress: Callable[[int, int], None] | None = None,
    batch_size: int = 32,
) -> RegionSet:
    """Crop vectors of ``items`` (record FAISS id, content hash, image file) in ``layout``.

    Vectors are cached like whole images (content hash × model fingerprint), keyed by hash and box, so
    re-indexing unchanged images embeds nothing. An image that cannot be decoded simply has no crops
    (its whole-image embedding already reported why).
    """
    from iconosearch.images import ImageRejectedError, open_image
    from iconosearch.models.pipeline import EmbeddingCache, normalise

    boxes_of = LAYOUTS[layout]
    cache = EmbeddingCache(cache_dir, embedder.fingerprint, embedder.dim) if cache_dir is not None else None
    parts: list[RegionSet] = []
    try:
        for done, (iid, digest, path) in enumerate(items, 1):
            try:
                image = open_image(path, max_pixels=max_pixels, max_side=DECODE_MAX_SIDE)
            except (ImageRejectedError, OSError):
                continue
            boxes = boxes_of(*image.size)
            if not boxes:
                continue
            keys = [f"{digest}#{layout}:" + ",".join(f"{v:.4f}" for v in b) for b in boxes]
            found = cache.get_many(keys) if cache is not None else {}
            todo = [i for i, k in enumerate(keys) if k not in found]
            for start in range(0, len(todo), batch_size):
                chunk = todo[start : start + batch_size]
                made = normalise(np.asarray(embedder.embed_images([crop(image, boxes[i]) for i in chunk])))
                found.update({keys[i]: made[j] for j, i in enumerate(chunk)})
                if cache is not None:
                    cache.put_many([keys[i] for i in chunk], made)
            parts.append(for_record(iid, np.stack([found[k] for k in keys]), boxes))
            if progress is not None:
                progress(done, len(items))
    finally:
        if cache is not None:
            cache.close()
    return RegionSet.concat(parts, int(embedder.dim))


def embed_configured(
    embedder: Any,
    items: Sequence[tuple[ImageRecord, str, Path]],
    settings: Any,
    cache_dir: Path,
    progress: Callable[[str, int, int], None],
) -> RegionSet | None:
    """Crop vectors of the ``items`` whose collection asks for regions (``None`` when none does)."""
    from iconosearch.records import id_to_int64

    parts = []
    for name, config in sorted(settings.collections.items()):
        if config.regions is None:
            continue
        mine = [(id_to_int64(r.id), h, p) for r, h, p in items if r.collection == name]
        if mine:
            parts.append(
                embed_regions(
                    embedder,
                    mine,
                    config.regions,
                    cache_dir=cache_dir,
                    max_pixels=settings.limits.image_max_pixels,
                    progress=lambda done, total: progress("regions", done, total),
                )
            )
    return RegionSet.concat(parts, int(embedder.dim)) if parts else None


def cost_summary(count: int, info: dict[str, Any], folder: Path) -> str | None:
    """One line on what a version's regions cost (``None`` without regions): vectors, ×embeddings, disk."""
    if not info:
        return None
    n = int(info.get("count", 0))
    mine = sum((folder / f).stat().st_size for f in (FAISS_FILE, VECTORS_FILE, IDS_FILE, BOXES_FILE))
    whole = sum((folder / f).stat().st_size for f in ("vectors.faiss", "vectors.npy", "ids.npy"))
    line = (
        f"regions: {n} crop vectors ({n / max(count, 1):.1f} per record: ×{(count + n) / max(count, 1):.1f} "
        f"embeddings), {info.get('faiss_type')}; {mine / 1e6:.1f} MB on disk next to {whole / 1e6:.1f} MB "
        "for whole images"
    )
    if info.get("recall_reached") is False:
        capped = f"; probes capped at {info['probes_capped']}" if "probes_capped" in info else ""
        line += (
            f"; WARNING: crop recall@10 {info.get('recall_at_10')} is below its target "
            f"{info.get('recall_target')}{capped}"
        )
    return line
