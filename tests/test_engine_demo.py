"""The engine on the heritage demo collection with the real default model (iconosearch-lite)."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import pytest

from iconosearch.config import CollectionConfig, Settings
from iconosearch.datadir import DataDir
from iconosearch.harvest.state import HarvestState
from iconosearch.index.builder import build_index
from iconosearch.index.consistency import check_consistency
from iconosearch.index.engine import SearchEngine
from iconosearch.query import Filters, Query, Term
from iconosearch.records import DateRange, ImageRecord, Provider, record_id

pytestmark = pytest.mark.slow

DEMO = Path(__file__).resolve().parents[1] / "demo" / "collection"
STEP = 8
"""Every 8th item (~60): all four sets, with their real rights (the manuscript figures are CC BY-ND)."""


@pytest.fixture(scope="module")
def lite() -> object:
    from iconosearch.models.embedder import load_embedder
    from iconosearch.models.specs import ModelUnavailableError

    if not (DEMO / "metadata.csv").is_file():
        pytest.skip("demo/collection is absent")
    try:
        return load_embedder("iconosearch-lite", device="cpu")
    except ModelUnavailableError as exc:
        pytest.skip(f"iconosearch-lite is not available here: {exc}")


def _record(row: dict[str, str], manifest: str) -> ImageRecord:
    canvas = f"{manifest}/canvas/1"
    image = f"{manifest}/image"
    caption = [v for v in (row["title"], row["description"], row["subjects"].replace(";", ", ")) if v]
    date = None
    if row["date"][:4].isdigit():
        date = DateRange(int(row["date"][:4]), int(row["date"][:4]), source="metadata:date")
    return ImageRecord(
        id=record_id(manifest, canvas, image),
        collection="demo",
        manifest_id=manifest,
        canvas_id=canvas,
        image_id=image,
        manifest_label={"en": [row["title"]]},
        rights=row["rights"] or None,
        providers=(Provider(label={"en": [row["creator"] or "unknown"]}),),
        date=date,
        caption={"en": caption},
    )


@pytest.fixture(scope="module")
def demo_index(
    lite: object, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, list[tuple[ImageRecord, str]]]:
    data_dir = tmp_path_factory.mktemp("demo")
    with (DEMO / "metadata.csv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))[::STEP]
    state = HarvestState(DataDir(data_dir).state_db)
    entries: list[tuple[ImageRecord, str]] = []
    try:
        run = state.start_run("demo", "test")
        items = [(_record(r, f"https://demo.test/{r['file']}/manifest"), r["file"]) for r in rows]
        # The first picture also appears in a second manifest (another institution's copy).
        items.append((_record(rows[0], "https://elsewhere.test/copy/manifest"), rows[0]["file"]))
        for record, file in items:
            path = DEMO / file
            state.save_manifest_records(
                "demo", record.manifest_id, [(record, f"https://img.test/{file}")], run
            )
            state.save_image(
                "demo",
                record.id,
                url=f"https://img.test/{file}",
                content_hash=hashlib.sha256(path.read_bytes()).hexdigest(),
                path=path,
                width=None,
                height=None,
                fmt="JPEG",
                size=path.stat().st_size,
                etag=None,
                last_modified=None,
            )
            entries.append((record, file))
        state.finish_run(run, complete=True, summary={})
    finally:
        state.close()
    settings = Settings(data_dir=data_dir, collections={"demo": CollectionConfig(kind="local", path=DEMO)})
    version = build_index(settings, "default", ["demo"], lite)
    assert version.manifest.model_spec == "iconosearch-lite"
    assert version.manifest.count == len(entries)
    assert check_consistency(version).ok
    return data_dir, entries


def test_image_query_finds_the_same_picture(demo_index: tuple[Path, list[tuple[ImageRecord, str]]]) -> None:
    data_dir, entries = demo_index
    engine = SearchEngine.open(data_dir)
    record, file = entries[7]
    page = engine.search(Query(terms=(Term("image", (DEMO / file).read_bytes()),), k=5))
    assert page.hits[0].record.id == record.id
    assert page.hits[0].score > 0.95
    assert all(-1.0 <= h.score <= 1.0 for h in page.hits)


def test_same_picture_in_two_manifests_is_one_hit(
    demo_index: tuple[Path, list[tuple[ImageRecord, str]]],
) -> None:
    data_dir, entries = demo_index
    engine = SearchEngine.open(data_dir)
    original, copy = entries[0][0], entries[-1][0]
    page = engine.search(Query(terms=(Term("item", original.id),), k=5))
    top = page.hits[0]
    assert {top.record.id, *top.duplicates} == {original.id, copy.id}
    assert copy.id not in {h.record.id for h in page.hits[1:]}


def test_text_and_hybrid_queries(demo_index: tuple[Path, list[tuple[ImageRecord, str]]]) -> None:
    data_dir, entries = demo_index
    engine = SearchEngine.open(data_dir)
    page = engine.search(Query(terms=(Term("text", "a winter landscape"),), k=10))
    assert len(page.hits) == 10
    scores = [h.score for h in page.hits]
    assert scores == sorted(scores, reverse=True)
    # Hybrid: records whose caption names the Leiden Aratea come first, fused with the
    # visual ranking of "a constellation figure".
    hybrid = engine.search(Query(terms=(Term("text", "a constellation figure"),), keywords="Leiden", k=30))
    leiden = {r.id for r, _ in entries if "leiden" in " ".join(r.caption["en"]).lower()}
    assert leiden and {h.record.id for h in hybrid.hits[: len(leiden)]} == leiden
    # Filters on the real rights URIs of metadata.csv: the public-domain marks are "open", the
    # manuscript figures' CC BY-ND licence is "restricted".
    open_page = engine.search(Query(terms=(Term("text", "animal"),), filters=Filters(rights=("open",)), k=5))
    assert len(open_page.hits) == 5
    assert all("publicdomain/mark" in (h.record.rights or "") for h in open_page.hits)
    nd = engine.search(Query(terms=(Term("text", "animal"),), filters=Filters(rights=("restricted",)), k=100))
    figures = {r.id for r, _ in entries if "by-nd" in (r.rights or "")}
    assert figures and {h.record.id for h in nd.hits} == figures
