"""The region benchmark's pages, and a motif pasted onto a page found and localised by the real model."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from iconosearch.evaluation import collages
from iconosearch.evaluation.collages import Source
from iconosearch.iiif.regions import parse_box

DEMO = Path(__file__).resolve().parents[1] / "demo" / "collection"
ND = "http://creativecommons.org/licenses/by-nd/4.0/"
PD = "http://creativecommons.org/publicdomain/mark/1.0/"


def _tmp_sources(tmp_path: Path, n: int) -> list[Source]:
    out = []
    for i in range(n):
        path = tmp_path / f"{i}.png"
        Image.new("RGB", (60 + 10 * i, 80), (i * 20 % 256, 100, 150)).save(path)
        out.append(Source(path, f"picture {i}", ND if i % 5 == 0 else PD))
    return out


def test_pages_never_use_no_derivatives_images_and_record_placements(tmp_path: Path) -> None:
    every = _tmp_sources(tmp_path, 40)
    sources = collages.usable(every)
    assert len(sources) == 32 and all(s.rights == PD for s in sources)
    pages = collages.make_pages(sources, seed=1)
    kinds = [p.kind for p in pages]
    assert kinds.count("2x2") == 2 and kinds.count("3x2") == 1 and kinds.count("pasted") == 12
    placed = [sid for p in pages for sid, _ in p.placements]
    assert len(placed) == len(set(placed))  # each source at most once
    for page in pages:
        for sid, (x, y, w, h) in page.placements:
            assert x >= 0 and y >= 0 and x + w <= 1 and y + h <= 1
            # The pixels at the placement's centre are the source's colour, not the page's.
            cx, cy = round((x + w / 2) * page.image.width), round((y + h / 2) * page.image.height)
            original = int(sources[sid].path.stem)
            assert page.image.getpixel((cx, cy)) == (original * 20 % 256, 100, 150)


def test_iou() -> None:
    assert collages.iou((0, 0, 0.5, 0.5), (0, 0, 0.5, 0.5)) == 1.0
    assert collages.iou((0, 0, 0.5, 0.5), (0.5, 0.5, 0.5, 0.5)) == 0.0
    assert collages.iou((0, 0, 0.5, 0.5), (0.25, 0, 0.5, 0.5)) == pytest.approx(1 / 3)


@pytest.mark.slow
def test_a_big_pasted_motif_is_found_and_localised(tmp_path: Path) -> None:
    """Through the real indexer (``regions = "grid"``) and engine, with the default model: an image query
    for a picture pasted onto a page finds that page by a crop, and the crop is where the picture is."""
    import csv

    from iconosearch.config import CollectionConfig, Settings
    from iconosearch.index.builder import build_index
    from iconosearch.index.engine import SearchEngine
    from iconosearch.models.embedder import load_embedder
    from iconosearch.models.specs import ModelUnavailableError
    from iconosearch.query import Query, Term
    from tests.helpers.index_data import make_record
    from tests.test_index_builder import _harvest

    if not (DEMO / "metadata.csv").is_file():
        pytest.skip("demo/collection is absent")
    try:
        lite = load_embedder("iconosearch-lite", device="cpu")
    except ModelUnavailableError as exc:
        pytest.skip(f"iconosearch-lite is not available here: {exc}")
    with (DEMO / "metadata.csv").open(newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r["rights"] == PD]
    pool = [Source(DEMO / r["file"], r["title"], r["rights"]) for r in rows[::25]][:9]
    images = [Image.open(s.path).convert("RGB") for s in pool]
    rng = np.random.default_rng(0)
    page = collages.pasted(images[0], 0, rng, scale=0.4)
    pages = [
        page,
        collages.collage("2x2", images[1:5], [1, 2, 3, 4]),
        collages.collage("2x2", images[5:9], [5, 6, 7, 8]),
    ]
    harvested = []
    for i, p in enumerate(pages):
        buf = io.BytesIO()
        p.image.save(buf, format="PNG")
        record = replace(make_record(i, collection="pages"), width=p.image.width, height=p.image.height)
        harvested.append((record, buf.getvalue()))
    _harvest(tmp_path, "pages", harvested)
    config = CollectionConfig(kind="local", path=tmp_path / "src", regions="grid")
    settings = Settings(data_dir=tmp_path, collections={"pages": config})
    version = build_index(settings, "default", [], lite)
    assert version.manifest.regions["count"] == 3 * 13
    engine = SearchEngine.open(tmp_path, embedder_loader=lambda spec: lite)
    query = io.BytesIO()
    images[0].save(query, format="PNG")
    hits = engine.search(Query(terms=(Term("image", query.getvalue()),), k=3)).hits
    top = hits[0]
    assert top.record.id == harvested[0][0].id and top.matched_region
    box = parse_box(top.record.region)
    assert box is not None
    found = (
        box.x / page.image.width,
        box.y / page.image.height,
        box.w / page.image.width,
        box.h / page.image.height,
    )
    assert collages.iou(found, page.placements[0][1]) >= collages.IOU_HIT
