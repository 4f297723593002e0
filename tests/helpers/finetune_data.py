"""A tiny, learnable image–caption set for fine-tuning tests: coloured shapes on white."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from iconosearch.evaluation.pairs import Caption, Pair

COLOURS = {"red": (220, 30, 30), "green": (30, 170, 50), "blue": (30, 60, 220), "yellow": (240, 210, 20)}
SHAPES = ("circle", "square", "triangle", "cross")


def _draw(shape: str, rgb: tuple[int, int, int], variant: int) -> Image.Image:
    im = Image.new("RGB", (96, 96), "white")
    d = ImageDraw.Draw(im)
    o = 6 + 5 * variant
    box = (o, o, 96 - o, 96 - o)
    if shape == "circle":
        d.ellipse(box, fill=rgb)
    elif shape == "square":
        d.rectangle(box, fill=rgb)
    elif shape == "triangle":
        d.polygon([(48, o), (96 - o, 96 - o), (o, 96 - o)], fill=rgb)
    else:
        d.rectangle((40, o, 56, 96 - o), fill=rgb)
        d.rectangle((o, 40, 96 - o, 56), fill=rgb)
    return im


def shape_pairs(folder: Path, variants: int = 5) -> list[Pair]:
    """4 colours × 4 shapes × ``variants`` images, one manifest per image, captions 'a red circle'."""
    folder.mkdir(parents=True, exist_ok=True)
    pairs = []
    for colour, rgb in COLOURS.items():
        for shape in SHAPES:
            for v in range(variants):
                path = folder / f"{colour}-{shape}-{v}.png"
                _draw(shape, rgb, v).save(path)
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                pairs.append(
                    Pair(
                        item_id=f"{colour}-{shape}-{v}",
                        group=f"https://example.org/iiif/{colour}-{shape}-{v}/manifest",
                        collection="shapes",
                        image_path=path,
                        content_hash=digest,
                        captions=(Caption(f"a {colour} {shape}", "en"),),
                        rights="http://creativecommons.org/publicdomain/zero/1.0/",
                        provider="Test Museum",
                    )
                )
    return pairs


@dataclass(frozen=True)
class FinetuneWorld:
    """What the fine-tuning tests share (built once per session): an untrained lite base and the shapes."""

    root: Path
    base_dir: Path
    pairs: list[Pair]

    @property
    def base_spec(self) -> str:
        return f"local-dir:{self.base_dir}"

    @property
    def data_dir(self) -> Path:
        """A data dir whose feature cache the tests share, so frozen features are computed once."""
        return self.root / "data"

    @property
    def feature_cache(self) -> Path:
        return self.data_dir / "cache" / "features"


@pytest.fixture(scope="session")
def finetune_world(tmp_path_factory: pytest.TempPathFactory) -> FinetuneWorld:
    from iconosearch.models.lite import LiteConfig, build_clip, head_state, save_lite, tower_files

    root = tmp_path_factory.mktemp("finetune-world")
    config = LiteConfig()
    clip, _ = build_clip(
        config, tower_files(config.image_tower)
    )  # fresh, untrained heads: a base that knows nothing
    save_lite(root / "base", config, head_state(clip))
    return FinetuneWorld(root, root / "base", shape_pairs(root / "images"))


def fake_harvest(db: Path, images: Path, collection: str, manifests: int, pages: int) -> int:
    """Records in a real harvest state database, each with a cached image; the last page of every manifest
    has no caption. Returns the number of captioned records."""
    from iconosearch.harvest.state import HarvestState
    from iconosearch.records import ImageRecord, record_id

    images.mkdir(parents=True, exist_ok=True)
    with HarvestState(db) as state:
        run = state.start_run(collection, "https://example.org/collection.json")
        for m in range(manifests):
            manifest = f"https://example.org/iiif/{m}/manifest"
            records = []
            for c in range(pages):
                canvas, image = f"{manifest}/canvas/{c}", f"{manifest}/image/{c}"
                caption = {"en": [f"Map {m}, sheet {c}"]} if c < pages - 1 else {}
                rec = ImageRecord(
                    id=record_id(manifest, canvas, image),
                    collection=collection,
                    manifest_id=manifest,
                    canvas_id=canvas,
                    image_id=image,
                    caption=caption,
                )
                records.append((rec, f"https://example.org/img/{m}/{c}.png"))
            state.save_manifest_records(collection, manifest, records, run)
            for rec, url in records:
                path = images / f"{rec.id}.png"
                Image.new("RGB", (8, 8), (m * 10 % 255, c * 20 % 255, 90)).save(path)
                state.save_image(
                    collection, rec.id, url=url, content_hash=rec.id, path=path, width=8, height=8, fmt="png",
                    size=path.stat().st_size, etag=None, last_modified=None,
                )  # fmt: skip
    return manifests * (pages - 1)
