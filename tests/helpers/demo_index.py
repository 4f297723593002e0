"""A small real index for the API and browser tests: real images, real IIIF level-0 trees, real embeddings.

Images come from the demo collection (``demo/collection``) when it is there, else are drawn here. Each
image gets a static IIIF Image API 3 tree (the ``iiif`` reference implementation) under
``data_dir/local-iiif/apitest/``, which the app serves at ``/iiif/local/``, so thumbnails and deep zoom
work in the browser. Records are embedded with the real default model and written through the index
builder; the engine under test then reads that version like any other.
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw

from iconosearch.datadir import DataDir
from iconosearch.iiif.regions import Box, canvas_to_image
from iconosearch.index.store import IndexStore
from iconosearch.index.versions import BuildOptions, EmbeddedRecord, ModelInfo, write_version
from iconosearch.models.embedder import load_embedder
from iconosearch.records import DateRange, ImageRecord, ImageService, Link, MetadataPair, Provider, record_id
from iconosearch.rights import allows_derivatives

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "demo" / "collection"
COLLECTION = "apitest"
MODEL = "iconosearch-lite"

RIGHTS = (
    "http://creativecommons.org/publicdomain/zero/1.0/",
    "http://creativecommons.org/publicdomain/mark/1.0/",
    "http://rightsstatements.org/vocab/InC/1.0/",
    None,
)
PROVIDERS = ("Example Museum", "Example Library")

# Drawn scenes: (name, caption, painter). Distinct colours and shapes so image queries are unambiguous.
SCENES: tuple[tuple[str, str, tuple[int, int, int], tuple[int, int, int], str], ...] = (
    ("red-circle", "a red circle on a white background", (255, 255, 255), (200, 20, 20), "circle"),
    ("blue-sea", "a blue sea under a pale sky", (200, 220, 240), (20, 60, 170), "sea"),
    ("green-field", "a green field with a yellow sun", (170, 210, 250), (40, 150, 40), "field"),
    ("black-stripes", "black and white stripes", (255, 255, 255), (0, 0, 0), "stripes"),
    ("orange-square", "an orange square", (240, 240, 235), (240, 130, 20), "square"),
    ("purple-triangle", "a purple triangle", (250, 250, 250), (120, 40, 160), "triangle"),
    ("night-moon", "a night sky with a moon", (10, 10, 40), (240, 240, 200), "moon"),
    ("brown-map", "an old map with brown paper", (200, 170, 120), (90, 60, 30), "map"),
    ("grey-portrait", "a grey portrait of a man", (230, 225, 215), (90, 90, 90), "portrait"),
    ("pink-flower", "a pink flower", (245, 245, 240), (230, 100, 160), "flower"),
    ("yellow-stars", "yellow stars on blue", (20, 40, 120), (250, 220, 40), "stars"),
    ("red-house", "a red house with a roof", (190, 220, 250), (170, 30, 30), "house"),
    ("tall-tower", "a tall grey tower", (200, 220, 240), (110, 110, 120), "tower"),
    ("wide-river", "a wide river landscape", (190, 215, 235), (60, 110, 170), "river"),
)


@dataclass(frozen=True, slots=True)
class DemoIndex:
    data_dir: Path
    base_url: str
    """Where a live server for this data dir must listen (IIIF URLs in the records point there)."""
    port: int
    records: tuple[ImageRecord, ...]
    image_files: dict[str, Path]
    """Record id → the source image file (for image-query tests)."""
    duplicate_pair: tuple[str, str]
    """Two ids of the same picture in two manifests (one duplicate group)."""
    region_id: str
    """A record that is a region of its canvas."""


def _draw(
    size: tuple[int, int], bg: tuple[int, int, int], fg: tuple[int, int, int], kind: str
) -> Image.Image:
    w, h = size
    im = Image.new("RGB", size, bg)
    d = ImageDraw.Draw(im)
    if kind == "circle":
        d.ellipse((w * 0.25, h * 0.2, w * 0.75, h * 0.8), fill=fg)
    elif kind == "sea":
        d.rectangle((0, h * 0.45, w, h), fill=fg)
    elif kind == "field":
        d.rectangle((0, h * 0.55, w, h), fill=fg)
        d.ellipse((w * 0.7, h * 0.1, w * 0.85, h * 0.3), fill=(250, 220, 0))
    elif kind == "stripes":
        for x in range(0, w, max(8, w // 12)):
            d.rectangle((x, 0, x + max(4, w // 24), h), fill=fg)
    elif kind == "square":
        d.rectangle((w * 0.25, h * 0.25, w * 0.75, h * 0.75), fill=fg)
    elif kind == "triangle":
        d.polygon([(w * 0.5, h * 0.15), (w * 0.85, h * 0.85), (w * 0.15, h * 0.85)], fill=fg)
    elif kind == "moon":
        d.ellipse((w * 0.55, h * 0.15, w * 0.8, h * 0.5), fill=fg)
    elif kind == "map":
        for i in range(6):
            d.line((0, h * i / 6, w, h * (i + 1) / 7), fill=fg, width=3)
        d.rectangle((w * 0.05, h * 0.05, w * 0.95, h * 0.95), outline=fg, width=6)
    elif kind == "portrait":
        d.ellipse((w * 0.35, h * 0.15, w * 0.65, h * 0.5), fill=fg)
        d.rectangle((w * 0.25, h * 0.5, w * 0.75, h), fill=fg)
    elif kind == "flower":
        for dx, dy in ((0, -1), (1, 0), (0, 1), (-1, 0)):
            cx, cy = w / 2 + dx * w * 0.12, h / 2 + dy * h * 0.12
            d.ellipse((cx - w * 0.1, cy - h * 0.1, cx + w * 0.1, cy + h * 0.1), fill=fg)
        d.ellipse((w * 0.45, h * 0.45, w * 0.55, h * 0.55), fill=(250, 220, 0))
    elif kind == "stars":
        for i in range(12):
            x, y = (i * 97) % w, (i * 53) % h
            d.regular_polygon((x, y, max(6, w // 30)), 5, fill=fg)
    elif kind == "house":
        d.rectangle((w * 0.3, h * 0.45, w * 0.7, h * 0.9), fill=fg)
        d.polygon([(w * 0.25, h * 0.45), (w * 0.5, h * 0.2), (w * 0.75, h * 0.45)], fill=(80, 40, 20))
    elif kind == "tower":
        d.rectangle((w * 0.42, h * 0.1, w * 0.58, h), fill=fg)
    elif kind == "river":
        d.polygon([(0, h * 0.7), (w, h * 0.5), (w, h * 0.65), (0, h * 0.9)], fill=fg)
        d.rectangle((0, h * 0.9, w, h), fill=(70, 130, 60))
    return im


@dataclass(frozen=True, slots=True)
class _Source:
    name: str
    caption: str
    path: Path
    rights: str | None = None
    attribution: str | None = None
    creator: str | None = None


def _sources(work: Path, limit: int = 36) -> list[_Source]:
    """The images to index: a spread of the demo collection, or drawn scenes when it is absent."""
    metadata = DEMO / "metadata.csv"
    if metadata.is_file():
        rows = []
        with metadata.open(newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                path = DEMO / (row.get("file") or "")
                if path.is_file() and path.suffix.lower() in {".jpg", ".jpeg", ".png"}:
                    caption = ". ".join(v for v in (row.get("title"), row.get("description")) if v)
                    rows.append(
                        _Source(
                            path.stem,
                            caption or path.stem,
                            path,
                            row.get("rights") or None,
                            row.get("attribution") or None,
                            row.get("creator") or None,
                        )
                    )
        if len(rows) >= 8:
            return rows[:: max(1, len(rows) // limit)][:limit]
    out = []
    for i, (name, caption, bg, fg, kind) in enumerate(SCENES):
        size = (640, 420) if i % 3 else (420, 640)  # portrait and landscape: aspect ratios matter in the grid
        path = work / f"{name}.jpg"
        _draw(size, bg, fg, kind).save(path, quality=90)
        out.append(_Source(name, caption, path))
    return out


def _iiif_tree(src: Path, identifier: str, out_dir: Path, base: str) -> ImageService:
    from iiif.static import IIIFStatic

    gen = IIIFStatic(dst=str(out_dir), tilesize=512, api_version="3.0", prefix=base)
    gen.generate(src=str(src), identifier=identifier)
    # Level 0 must serve full/max too; the generator leaves it out for images smaller than a tile.
    full_max = out_dir / identifier / "full" / "max" / "0" / "default.jpg"
    full_max.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(src) as im:
        im.convert("RGB").save(full_max, quality=90)
    # The sizes the generator wrote (it halves with rounding), as its info.json lists them.
    info = json.loads((out_dir / identifier / "info.json").read_text())
    width, height = int(info["width"]), int(info["height"])
    sizes = [(s["width"], s["height"]) for s in info.get("sizes", [])]
    return ImageService(
        id=f"{base}/{identifier}", api_version=3, level=0, width=width, height=height, sizes=tuple(sizes)
    )


def _cache_image(data_dir: Path, path: Path) -> str:
    """Put the image in the data dir's image cache as a harvest does (by content hash), so that a detail of
    its record can be searched ("search this detail" crops the cached image); returns the hash."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    target = DataDir(data_dir).image_cache / digest[:2] / f"{digest}{path.suffix.lower()}"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, target)
    return digest


def build_demo_index(
    data_dir: Path, base_url: str, *, embedder: Any = None, options: BuildOptions | None = None
) -> DemoIndex:
    """Write images, IIIF trees and one index version under ``data_dir``; URLs start with ``base_url``.
    ``options``: how the version is built (e.g. with machine-suggested subjects)."""
    work = data_dir / "sources"
    work.mkdir(parents=True, exist_ok=True)
    iiif_root = data_dir / "local-iiif" / COLLECTION
    if iiif_root.exists():
        shutil.rmtree(iiif_root)
    iiif_root.mkdir(parents=True)
    sources = _sources(work)
    embedder = embedder or load_embedder(MODEL)
    records: list[ImageRecord] = []
    images: list[Image.Image] = []
    files: dict[str, Path] = {}
    hashes: list[str] = []
    base = f"{base_url}/iiif/local/{COLLECTION}"
    for i, src in enumerate(sources):
        name, caption, path = src.name, src.caption, src.path
        service = _iiif_tree(path, name, iiif_root, base)
        manifest = f"{base_url}/iiif/local/{COLLECTION}/{name}/manifest.json"
        canvas = f"{manifest.rsplit('/', 1)[0]}/canvas/1"
        lang = ("en", "en", "nl", "fr")[i % 4]
        rec = ImageRecord(
            id=record_id(manifest, canvas, service.id),
            collection=COLLECTION if i % 2 else "apitest-prints",
            manifest_id=manifest,
            canvas_id=canvas,
            image_id=service.id,
            service=service,
            width=service.width,
            height=service.height,
            canvas_label={"none": [f"p. {i + 1}"]},
            manifest_label={"en": [caption.capitalize()]},
            summary={"en": [f"Test image {i + 1}: {caption}."]},
            metadata=(
                MetadataPair(label={"en": ["Creator"]}, value={"none": [src.creator or f"Artist {i % 3}"]}),
            ),
            # Some records without rights, so that every rights class is present.
            rights=(src.rights or RIGHTS[i % len(RIGHTS)]) if i % 5 else RIGHTS[i % len(RIGHTS)],
            required_statement=MetadataPair(
                label={"en": ["Attribution"]},
                value={"en": [src.attribution or f"Courtesy of {PROVIDERS[i % 2]}"]},
            ),
            providers=(Provider(label={"en": [PROVIDERS[i % 2]]}, homepage="https://museum.example.org/"),),
            date=DateRange(1500 + (i * 29) % 420, 1500 + (i * 29) % 420 + 10),
            homepage=(Link(id=f"https://museum.example.org/objects/{name}", label={"en": ["Object page"]}),),
            caption={lang: [caption]},
        )
        records.append(rec)
        files[rec.id] = path
        with Image.open(path) as im:
            images.append(im.convert("RGB"))
        hashes.append(_cache_image(data_dir, path))
    # The same picture published in a second manifest: a duplicate group.
    first = records[0]
    dup_manifest = f"{base_url}/iiif/local/{COLLECTION}/copy-of-{sources[0].name}/manifest.json"
    dup_canvas = f"{dup_manifest.rsplit('/', 1)[0]}/canvas/1"
    dup = ImageRecord(
        **{
            **{f: getattr(first, f) for f in first.__dataclass_fields__},
            "id": record_id(dup_manifest, dup_canvas, first.image_id),
            "manifest_id": dup_manifest,
            "canvas_id": dup_canvas,
            "collection": COLLECTION,
        }
    )
    # A detail of a canvas (the left half of an image), on a canvas twice the image's size, so canvas
    # coordinates (content states) and image pixels (Image API) differ. The image is the first after the
    # first whose licence allows crops (a CC BY-ND manuscript figure of the demo collection does not).
    k = next(i for i in range(1, len(records)) if allows_derivatives(records[i].rights))
    second = records[k]
    assert second.width and second.height
    canvas_size = (second.width * 2, second.height * 2)
    region = Box(0, 0, second.width, second.height * 2)
    crop = canvas_to_image(region, canvas_size, (second.width, second.height))
    reg_canvas = f"{second.canvas_id}/detail"
    reg = ImageRecord(
        **{
            **{f: getattr(second, f) for f in second.__dataclass_fields__},
            "id": record_id(second.manifest_id, reg_canvas, second.image_id),
            "canvas_id": reg_canvas,
            "region": str(region),
            "image_region": str(crop),
            "caption": {"en": [f"detail of {sources[k].caption}"]},
        }
    )
    with Image.open(sources[k].path) as im:
        reg_image = im.convert("RGB").crop((0, 0, second.width // 2, second.height))
    records += [dup, reg]
    images += [images[0], reg_image]
    hashes += [hashes[0], "sha-region"]
    files[dup.id] = files[first.id]
    vectors = embedder.embed_images(images)
    items = [EmbeddedRecord(r, h, vectors[i]) for i, (r, h) in enumerate(zip(records, hashes, strict=True))]
    store = IndexStore(data_dir / "indexes", "default")
    write_version(
        store,
        items,
        ModelInfo(spec=embedder.spec, fingerprint=embedder.fingerprint, dim=embedder.dim),
        options=options or BuildOptions(),
    )
    return DemoIndex(
        data_dir=data_dir,
        base_url=base_url,
        port=int(base_url.rsplit(":", 1)[1]),
        records=tuple(records),
        image_files=files,
        duplicate_pair=(first.id, dup.id),
        region_id=reg.id,
    )


def free_port() -> int:
    """A free port BELOW the kernel's ephemeral range. A server may bind it minutes later (the demo builds
    its IIIF first); a port from the ephemeral range can meanwhile be taken by any outgoing connection on
    the machine, which made the e2e server fail with "address already in use"."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(max(1024, low - 12_000), low)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


_SHARED: dict[str, DemoIndex] = {}


def shared_demo_index(tmp_path_factory: pytest.TempPathFactory) -> DemoIndex:
    """One index per test session, shared by the API and browser tests (building it embeds every image)."""
    if "index" not in _SHARED:
        data_dir = tmp_path_factory.mktemp("api-data")
        _SHARED["index"] = build_demo_index(data_dir, f"http://127.0.0.1:{free_port()}")
    return _SHARED["index"]


def calibrate_demo_index(demo: DemoIndex) -> Path:
    """Relevance bands for the test index's model, measured on its own images (the item's title as the
    query), stored where a deployment's own calibration goes; once per session."""
    from iconosearch.evaluation.calibration import EvalItem, calibrate
    from iconosearch.relevance import stored_path

    embedder = load_embedder(MODEL)
    target = stored_path(demo.data_dir, embedder.fingerprint)
    if not target.is_file():
        items = [
            EvalItem(demo.image_files[r.id], r.manifest_label["en"][0])
            for r in demo.records
            if r.id in demo.image_files and r.manifest_label.get("en")
        ]
        calibrate(embedder, items, measured_on=f"test images ({len(items)})").save(target)
    return target
