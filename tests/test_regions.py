"""Region embeddings: crop layout, coordinates, ranking by the best of image and crops, detail queries."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from iconosearch.datadir import DataDir
from iconosearch.index import regions
from iconosearch.index.builder import BuildOptions, EmbeddedRecord, update_version, write_version
from iconosearch.index.ranking import merge_best
from iconosearch.index.regions import RegionSet, for_record, grid_layout, image_box, region_fields
from iconosearch.index.store import IndexStore
from iconosearch.query import Filters, InvalidRegionError, Query, Term
from iconosearch.records import id_to_int64
from tests.helpers.index_data import MODEL, HashEmbedder, make_items
from tests.test_engine import engine_for


def test_grid_layout_is_13_overlapping_crops_covering_the_image() -> None:
    boxes = grid_layout(2000, 1500)
    assert len(boxes) == 13
    for x, y, w, h in boxes:
        assert min(x, y) >= 0.0 and max(x + w, y + h) <= 1.0 + 1e-9
    # Each grid reaches both far edges, and neighbours overlap by a quarter of their side.
    two = boxes[:4]
    assert max(b[0] + b[2] for b in two) == pytest.approx(1.0)
    assert two[1][0] == pytest.approx(two[0][2] * 0.75)


def test_small_images_skip_crops_below_the_minimum_side() -> None:
    assert len(grid_layout(200, 200)) == 4  # 3×3 crops would be 80 px: skipped
    assert grid_layout(120, 120) == []


def test_region_fields_in_canvas_coordinates_and_image_pixels() -> None:
    record = make_items(1)[0].record
    assert region_fields(record, (0.5, 0.5, 0.5, 0.5)) is None  # size unknown: cannot place it
    sized = replace(record, width=4000, height=3000)
    assert region_fields(sized, (0.5, 0.25, 0.5, 0.5)) == ("2000,750,2000,1500", "2000,750,2000,1500")
    # An image painted on part of a canvas (an overlay, cropped by a selector): both offsets apply.
    overlay = replace(sized, region="100,200,400,300", image_region="1000,0,2000,1500")
    assert region_fields(overlay, (0.5, 0.0, 0.5, 1.0)) == ("300,200,200,300", "2000,0,1000,1500")


def test_query_regions_parse_pixels_and_percent_and_refuse_bad_ones() -> None:
    assert image_box("100,50,200,100", (400, 200)) == (0.25, 0.25, 0.5, 0.5)
    assert image_box("pct:10,20,30,40", (999, 999)) == pytest.approx((0.1, 0.2, 0.3, 0.4))
    assert image_box("300,0,500,200", (400, 200)) == (0.75, 0.0, 0.25, 1.0)  # clipped to the image
    for bad, why in [
        ("1,2,3", "four numbers"),
        ("a,b,c,d", "four numbers"),
        ("0,0,0,10", "positive width"),
        ("-5,0,10,10", "positive width"),
        ("500,0,10,10", "outside"),
        ("pct:0,100,10,10", "outside"),
    ]:
        with pytest.raises(ValueError, match=why):
            image_box(bad, (400, 200))


def _ranking(pairs: list[tuple[int, float]]) -> tuple[np.ndarray, np.ndarray]:
    return np.array([i for i, _ in pairs], np.int64), np.array([s for _, s in pairs], np.float32)


def _pairs(ids: np.ndarray, scores: np.ndarray) -> list[tuple[int, float]]:
    return [(int(i), round(float(s), 4)) for i, s in zip(ids, scores, strict=True)]


def test_merge_best_keeps_only_what_both_rankings_have_seen() -> None:
    whole = _ranking([(1, 0.9), (2, 0.5), (3, 0.4)])
    crops = _ranking([(3, 0.8), (4, 0.6), (1, 0.55)])
    ids, scores, exhausted = merge_best(whole, False, crops, False)
    # Cut at max(0.4, 0.55): ids 2 and 3's whole score are below what the crop list has seen.
    assert _pairs(ids, scores) == [(1, 0.9), (3, 0.8), (4, 0.6)]
    assert not exhausted
    ids, scores, exhausted = merge_best(whole, True, crops, True)
    assert _pairs(ids, scores) == [(1, 0.9), (3, 0.8), (4, 0.6), (2, 0.5)] and exhausted
    # Equal scores: the smaller id first, whichever list it came from.
    ids, _, _ = merge_best(_ranking([(7, 0.5)]), True, _ranking([(3, 0.5)]), True)
    assert ids.tolist() == [3, 7]


def test_best_per_record_keeps_each_records_best_crop() -> None:
    owners = np.array([9, 4, 9, 2, 4], np.int64)
    rows = np.array([10, 11, 12, 13, 14], np.int64)
    scores = np.array([0.9, 0.7, 0.6, 0.7, 0.5], np.float32)
    ids, best, crop_rows = regions.best_per_record(owners, rows, scores)
    assert ids.tolist() == [9, 2, 4]  # 2 and 4 tie at 0.7: smaller id first
    assert crop_rows.tolist() == [10, 13, 11]
    assert best.tolist() == pytest.approx([0.9, 0.7, 0.7])


def _unit(v: np.ndarray) -> np.ndarray:
    out: np.ndarray = (v / np.linalg.norm(v)).astype(np.float32)
    return out


@pytest.fixture()
def region_index(tmp_path: Path) -> tuple[Path, list[EmbeddedRecord], np.ndarray]:
    """300 records; record 5 has a crop equal to record 299's whole vector (a detail seen elsewhere)."""
    items = [replace(i, record=replace(i.record, width=1000, height=800)) for i in make_items(300)]
    target = items[299].vector
    rng = np.random.default_rng(3)
    parts = []
    for j in (5, 10, 20):
        vectors = [_unit(rng.standard_normal(32)) for _ in range(3)]
        if j == 5:
            vectors[2] = _unit(np.asarray(target, dtype=np.float32) + 0.02 * rng.standard_normal(32))
        boxes = [(0.0, 0.0, 0.5, 0.5), (0.5, 0.0, 0.5, 0.5), (0.25, 0.5, 0.5, 0.5)]
        parts.append(for_record(id_to_int64(items[j].record.id), np.stack(vectors), boxes))
    crops = RegionSet.concat(parts, 32)
    version = write_version(IndexStore(tmp_path / "indexes", "default"), items, MODEL, crops=crops)
    assert version.manifest.regions["count"] == 9
    assert (version.path / regions.FAISS_FILE).is_file()
    return tmp_path, items, target


def test_a_canvas_ranks_by_its_best_crop_and_names_it(
    region_index: tuple[Path, list[EmbeddedRecord], np.ndarray],
) -> None:
    data_dir, items, _ = region_index
    engine = engine_for(data_dir)
    page = engine.search(Query(terms=(Term("item", items[299].record.id),), k=5))
    assert page.hits[0].record.id == items[299].record.id and not page.hits[0].matched_region
    second = page.hits[1]
    assert second.record.id == items[5].record.id
    assert second.score > 0.95 and second.matched_region
    assert second.record.region == "250,400,500,400"  # canvas = image size here
    assert second.record.image_region == "250,400,500,400"
    assert len({h.record.id for h in page.hits}) == len(page.hits)  # one hit per canvas


def test_filters_and_paging_keep_working_with_regions(
    region_index: tuple[Path, list[EmbeddedRecord], np.ndarray],
) -> None:
    data_dir, items, _ = region_index
    engine = engine_for(data_dir)
    rid = items[299].record.id
    mine = items[5].record.collection
    kept = engine.search(Query(terms=(Term("item", rid),), filters=Filters(collections=(mine,)), k=3))
    assert items[5].record.id in {h.record.id for h in kept.hits}
    other = next(c for c in ("maps", "prints", "photos") if c != mine)
    dropped = engine.search(Query(terms=(Term("item", rid),), filters=Filters(collections=(other,)), k=50))
    assert items[5].record.id not in {h.record.id for h in dropped.hits}
    # Paging through everything visits each canvas exactly once, in score order.
    seen: list[str] = []
    scores: list[float] = []
    cursor = None
    while True:
        page = engine.search(Query(terms=(Term("item", rid),), k=50, cursor=cursor))
        seen += [h.record.id for h in page.hits]
        scores += [h.score for h in page.hits]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 300
    assert scores == sorted(scores, reverse=True)


def test_incremental_updates_carry_and_drop_crops(
    region_index: tuple[Path, list[EmbeddedRecord], np.ndarray],
) -> None:
    data_dir, items, _ = region_index
    store = IndexStore(data_dir / "indexes", "default")
    base = store.current()
    assert base is not None
    updated = update_version(store, base, remove=[items[5].record.id], model=MODEL)
    assert updated.manifest.regions["count"] == 6
    engine = engine_for(data_dir)
    page = engine.search(Query(terms=(Term("item", items[299].record.id),), k=5))
    assert items[5].record.id not in {h.record.id for h in page.hits}
    assert not any(h.matched_region for h in page.hits)


def _streamed(
    items: list[EmbeddedRecord], target: np.ndarray, count: int | None = None
) -> regions.CropStream:
    """13 crops per record; record 7's crop 12 is (nearly) ``target``."""
    rng = np.random.default_rng(8)
    boxes = np.asarray(grid_layout(2000, 1500), np.float32)
    vectors = np.stack(
        [_unit(np.asarray(i.vector) + 0.6 * rng.standard_normal(32)) for i in items for _ in boxes]
    )
    vectors[7 * 13 + 12] = _unit(np.asarray(target, np.float32) + 0.02 * rng.standard_normal(32))
    ids = np.repeat(np.array([id_to_int64(i.record.id) for i in items], np.int64), len(boxes))

    def batches() -> list[RegionSet]:
        return [
            RegionSet(
                vectors[s : s + 1000], ids[s : s + 1000], np.tile(boxes, (80, 1))[: len(ids[s : s + 1000])]
            )
            for s in range(0, len(ids), 1000)
        ]

    return regions.CropStream(
        count or len(ids), 32, vectors[rng.choice(len(ids), 2500, replace=False)], batches
    )


def test_a_streamed_crop_index_is_ivf_pq_at_scale_and_ranks_like_the_engine_expects(tmp_path: Path) -> None:
    items = [replace(i, record=replace(i.record, width=2000, height=1500)) for i in make_items(400)]
    target = items[399].vector
    store = IndexStore(tmp_path / "indexes", "default")
    # A budget that leaves the crops too little for 8-bit codes: IVF-PQ re-ranked by SQ8, as 13M crops get.
    options = BuildOptions(memory_budget=700_000)
    version = write_version(store, items, MODEL, options=options, crops=_streamed(items, target))
    info = version.manifest.regions
    assert info["count"] == 400 * 13 and info["faiss_type"] == "ivf-pq" and info["recall_at_10"] >= 0.9
    stored = RegionSet.load(version.path, mmap=True)
    assert stored is not None and stored.vectors.dtype == np.float16  # approximate index: half floats
    page = engine_for(tmp_path).search(Query(terms=(Term("item", items[399].record.id),), k=5))
    assert page.hits[1].record.id == items[7].record.id and page.hits[1].matched_region
    x, y, w, h = grid_layout(2000, 1500)[12]
    assert (
        page.hits[1].record.region
        == f"{round(x * 2000)},{round(y * 1500)},{round(w * 2000)},{round(h * 1500)}"
    )
    with pytest.raises(ValueError, match="not the 5300"):
        write_version(store, items, MODEL, options=options, crops=_streamed(items, target, count=5300))


def test_small_collections_keep_exact_float32_crops(
    region_index: tuple[Path, list[EmbeddedRecord], np.ndarray],
) -> None:
    data_dir, _, _ = region_index
    version = IndexStore(data_dir / "indexes", "default").current()
    assert version is not None and version.manifest.regions["faiss_type"] == "flat"
    stored = RegionSet.load(version.path)
    assert stored is not None and stored.vectors.dtype == np.float32


def test_a_detail_of_an_indexed_item_is_a_query(tmp_path: Path) -> None:
    embedder = HashEmbedder()
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    path = tmp_path / "page.png"
    image.save(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    cached = DataDir(tmp_path).image_cache / digest[:2] / f"{digest}.png"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(path.read_bytes())
    items = make_items(50)
    page_item = EmbeddedRecord(replace(items[0].record, width=800, height=600), digest, items[0].vector)
    # Another record whose image is exactly the top-right quarter of the page.
    quarter = embedder.embed_images([image.crop((200, 0, 400, 150))])[0]
    twin = EmbeddedRecord(items[1].record, "twin", quarter)
    write_version(IndexStore(tmp_path / "indexes", "default"), [page_item, twin, *items[2:]], MODEL)
    engine = engine_for(tmp_path)
    for region in ("400,0,400,300", "pct:50,0,50,50"):  # the record's pixels are twice the cached image's
        found = engine.search(Query(terms=(Term("item", page_item.record.id, region=region),), k=3))
        assert found.hits[0].record.id == twin.record.id
        assert found.hits[0].score > 0.99
    with pytest.raises(InvalidRegionError, match="outside"):
        engine.search(Query(terms=(Term("item", page_item.record.id, region="900,0,10,10"),), k=3))
    with pytest.raises(InvalidRegionError, match="not cached"):
        engine.search(Query(terms=(Term("item", twin.record.id, region="0,0,10,10"),), k=3))
    with pytest.raises(InvalidRegionError, match="only an item term"):
        engine.search(Query(terms=(Term("text", "a ship", region="0,0,10,10"),), k=3))
    assert math.isfinite(found.hits[1].score)


def test_build_index_embeds_crops_only_for_collections_that_ask(tmp_path: Path) -> None:
    import io

    from iconosearch.config import CollectionConfig, Settings
    from iconosearch.index.builder import build_index
    from iconosearch.records import ImageRecord
    from tests.helpers.index_data import make_record
    from tests.test_index_builder import CountingEmbedder, _harvest

    def png(i: int) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (256, 256, 3), dtype=np.uint8)).save(
            buf, format="PNG"
        )
        return buf.getvalue()

    pages: list[tuple[ImageRecord, bytes]] = [(make_record(i, collection="pages"), png(i)) for i in range(6)]
    maps = [(make_record(i, collection="maps"), png(i)) for i in range(6, 10)]
    _harvest(tmp_path, "pages", pages)
    _harvest(tmp_path, "maps", maps)
    settings = Settings(
        data_dir=tmp_path,
        model="test-hash",
        collections={
            "pages": CollectionConfig(kind="local", path=tmp_path / "src", regions="grid"),
            "maps": CollectionConfig(kind="local", path=tmp_path / "src"),
        },
    )
    embedder = CountingEmbedder()
    stages: set[str] = set()
    v1 = build_index(settings, "default", [], embedder, progress=lambda s, d, t: stages.add(s))
    assert "regions" in stages
    assert v1.manifest.regions["count"] == 6 * 13  # 256 px: every 2×2 and 3×3 crop is big enough
    assert embedder.images_embedded == 10 + 6 * 13
    crops = RegionSet.load(v1.path)
    assert crops is not None
    assert set(crops.ids.tolist()) == {id_to_int64(r.id) for r, _ in pages}
    summary = regions.cost_summary(v1.manifest.count, v1.manifest.regions, v1.path)
    assert summary is not None and "×8.8 embeddings" in summary
    # Crops are cached like whole images: building again embeds nothing.
    again = CountingEmbedder()
    v2 = build_index(settings, "default", [], again)
    assert again.images_embedded == 0 and v2.manifest.regions == v1.manifest.regions
    with pytest.raises(ValueError, match="'regions' must be one of grid"):
        CollectionConfig(kind="local", path=tmp_path, regions="tiles")
    # The CLI refuses a detail query it cannot answer, saying why (answering one needs a real model,
    # see test_regions_eval.py and the API test above).
    from typer.testing import CliRunner

    from iconosearch.cli import app

    config = tmp_path / "iconosearch.toml"
    config.write_text(
        f'data_dir = "{tmp_path}"\nmodel = "test-hash"\n'
        f'[collections.pages]\nkind = "local"\npath = "{tmp_path}"\nregions = "grid"\n'
    )
    rid = pages[2][0].id
    for _, body in pages:  # where a harvest caches an image: cache/images/<ab>/<sha256>.<ext>
        digest = hashlib.sha256(body).hexdigest()
        (DataDir(tmp_path).image_cache / digest[:2]).mkdir(parents=True, exist_ok=True)
        (DataDir(tmp_path).image_cache / digest[:2] / f"{digest}.png").write_bytes(body)
    runner = CliRunner()
    result = runner.invoke(app, ["--config", str(config), "search", "--region", "0,0,10,10"])
    assert result.exit_code == 2 and "give --item too" in result.output
    result = runner.invoke(
        app, ["--config", str(config), "search", "--item", rid, "--region", "0,0,999,10,1"]
    )
    assert result.exit_code == 2 and "four numbers" in result.output


def test_api_results_show_the_matched_region_and_refuse_bad_detail_queries(
    region_index: tuple[Path, list[EmbeddedRecord], np.ndarray],
) -> None:

    import httpx

    from iconosearch.api.app import create_app
    from iconosearch.api.content_state import decode_content_state
    from iconosearch.api.server import BackgroundServer
    from iconosearch.config import Settings
    from iconosearch.records import ImageService
    from tests.helpers.demo_index import free_port

    data_dir, items, _ = region_index
    # Give record 5 an image service, and make record 10 (a crop-matching one, see below) "no derivatives".
    svc = ImageService(
        id="https://iiif.example.org/iiif/3/page5", api_version=3, level=2, width=1000, height=800
    )
    store = IndexStore(data_dir / "indexes", "default")
    base = store.current()
    assert base is not None
    changed = [
        EmbeddedRecord(replace(items[5].record, service=svc), items[5].content_hash, items[5].vector),
        EmbeddedRecord(
            replace(items[10].record, service=svc, rights="http://creativecommons.org/licenses/by-nd/4.0/"),
            items[10].content_hash,
            items[10].vector,
        ),
    ]
    crops = RegionSet.load(base.path)
    assert crops is not None
    keep = np.isin(crops.ids, [id_to_int64(c.record.id) for c in changed])
    kept = RegionSet(np.array(crops.vectors[keep]), crops.ids[keep], crops.boxes[keep])
    # Record 10's first crop now looks like record 298: querying by 298 matches 10 by that crop.
    first_of_10 = int(np.flatnonzero(kept.ids == id_to_int64(items[10].record.id))[0])
    kept.vectors[first_of_10] = _unit(np.asarray(items[298].vector) + 0.02 * np.ones(32, np.float32))
    update_version(store, base, add=changed, model=MODEL, add_crops=kept)
    embedder = HashEmbedder()
    engine = engine_for(data_dir)
    srv = BackgroundServer(
        create_app(Settings(data_dir=data_dir), engine=engine, reload_interval_s=0), "127.0.0.1", free_port()
    )
    srv.start()
    try:
        body = {"terms": [{"kind": "item", "value": items[299].record.id}], "k": 5, "fields": ["full"]}
        r = httpx.post(f"{srv.url}/api/search", json=body, timeout=60)
        assert r.status_code == 200, r.text
        results = r.json()["results"]
        assert results[0]["matched_region"] is False and results[0]["region"] is None
        hit = next(x for x in results if x["id"] == items[5].record.id)
        assert hit["matched_region"] is True
        assert hit["region"] == "250,400,500,400" and hit["image_region"] == "250,400,500,400"
        assert hit["thumbnail"]["url"].startswith(f"{svc.id}/250,400,500,400/")
        decoded = decode_content_state(hit["viewers"]["content_state"])
        assert "#xywh=250,400,500,400" in json.dumps(decoded)
        # The compact default keeps a matched hit's viewer links (they open on the detail), no one else's.
        compact = httpx.post(f"{srv.url}/api/search", json={**body, "fields": []}, timeout=60).json()[
            "results"
        ]
        assert {x["id"]: "viewers" in x for x in compact} == {x["id"]: x["matched_region"] for x in compact}
        assert next(x for x in compact if x["id"] == items[5].record.id)["viewers"] == hit["viewers"]
        # A "no derivatives" item matched by a crop: still whole-image thumbnail, region still reported.
        query = {"terms": [{"kind": "item", "value": items[298].record.id}], "k": 5, "fields": ["iiif"]}
        nd = httpx.post(f"{srv.url}/api/search", json=query, timeout=60).json()["results"][1]
        assert nd["id"] == items[10].record.id and nd["matched_region"] is True
        assert nd["region"] == "0,0,500,400" and nd["image_region"] is None
        assert nd["thumbnail"]["url"].startswith(f"{svc.id}/full/")
        manifest = httpx.get(
            f"{srv.url}/api/search.iiif", params={"like": items[299].record.id, "k": 5}, timeout=60
        ).json()
        matched = [c for c in manifest["items"] if c["id"].endswith(items[5].record.id)]
        assert matched and matched[0]["annotations"][0]["items"][0]["motivation"] == "highlighting"
        bad = {"terms": [{"kind": "item", "value": items[5].record.id, "region": "0,0,-4,2"}]}
        r = httpx.post(f"{srv.url}/api/search", json=bad, timeout=60)
        assert r.status_code == 400 and r.json()["code"] == "invalid-region"
        assert "positive width" in r.json()["detail"]
    finally:
        srv.stop()
        engine.close()
    assert embedder.text_calls == 0


@pytest.mark.parametrize("streamed", [True, False])
def test_a_crop_index_below_its_recall_target_says_so_and_is_capped_when_far_below(
    tmp_path: Path, streamed: bool
) -> None:
    items = [replace(i, record=replace(i.record, width=2000, height=1500)) for i in make_items(400)]
    store = IndexStore(tmp_path / "indexes", "default")
    # No approximate index gives back every exact top 10: a target of 1.0 is never reached.
    options = BuildOptions(memory_budget=700_000, recall_target=1.0, exact_max=1000)
    stream = _streamed(items, items[399].vector)
    crops = stream if streamed else RegionSet.concat(list(stream.batches()), stream.dim)
    version = write_version(store, items, MODEL, options=options, crops=crops)
    info = version.manifest.regions
    nlist = int(info["faiss_params"]["nlist"])
    assert info["recall_reached"] is False and info["recall_target"] == 1.0 and 0 < info["recall_at_10"] < 1
    line = regions.cost_summary(len(items), info, version.path)
    assert line is not None and "WARNING: crop recall@10" in line
    cap = max(1, int(nlist * regions.PROBE_CAP))
    if "probes_capped" in info:
        assert info["recall_at_10"] < 1.0 - regions.FAR_MISS
        assert int(info["faiss_params"]["nprobe"]) == cap < nlist
        assert info["probes_capped"].startswith(f"{info['faiss_params']['nprobe']} of {nlist} lists")
        assert "probes capped" in line
    elif info["recall_at_10"] < 1.0 - regions.FAR_MISS:  # tuning settled where recall stopped rising
        assert streamed and int(info["faiss_params"]["nprobe"]) <= cap < nlist
    else:  # a near miss keeps the probes tuning gave it
        assert "probes capped" not in line
    # The engine serves it as tuned (or capped).
    page = engine_for(tmp_path).search(Query(terms=(Term("item", items[399].record.id),), k=5))
    assert page.hits[0].record.id == items[399].record.id


def test_a_near_miss_keeps_its_probes_and_an_exact_crop_index_has_no_target() -> None:
    from iconosearch.index.faiss_index import FaissSpec

    def never() -> tuple[np.ndarray, np.ndarray]:
        raise AssertionError("a kept index is not measured again")

    spec = FaissSpec("ivf-sq8", {"nlist": 64, "nprobe": 64})
    kept, info = regions.capped(None, spec, 0.96, target=1.0, tuning=never)
    assert kept == spec and info == {"recall_at_10": 0.96, "recall_target": 1.0, "recall_reached": False}
    assert regions.capped(None, FaissSpec("flat", {}), None, target=0.95, tuning=never)[1] == {
        "recall_at_10": None
    }
