"""build_index from a real harvest state (SQLite) through the real embedding pipeline, and the CLI."""

from __future__ import annotations

import hashlib
import io
import json
import re
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from iconosearch.cli import app
from iconosearch.config import CollectionConfig, Settings
from iconosearch.datadir import DataDir
from iconosearch.harvest.state import HarvestState
from iconosearch.index.builder import build_index
from iconosearch.index.consistency import check_consistency
from iconosearch.index.engine import SearchEngine
from iconosearch.index.store import IndexStore, IndexStoreError
from iconosearch.query import Query, Term
from iconosearch.records import ImageRecord
from tests.helpers.index_data import HashEmbedder, make_record


class CountingEmbedder(HashEmbedder):
    def __init__(self) -> None:
        super().__init__()
        self.images_embedded = 0

    def embed_images(self, images):  # type: ignore[no-untyped-def]
        self.images_embedded += len(images)
        return super().embed_images(images)


def _png(colour: tuple[int, int, int], pattern: int) -> bytes:
    im = Image.new("RGB", (32, 32), colour)
    for x in range(0, 32, 1 + pattern % 7):
        im.putpixel((x, (x * pattern) % 32), (255 - colour[0], 255, 0))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def _harvest(data_dir: Path, collection: str, records: list[tuple[ImageRecord, bytes]]) -> None:
    """Put records with cached images into the harvest state, as the harvester does."""
    data = DataDir(data_dir)
    state = HarvestState(data.state_db)
    try:
        run = state.start_run(collection, "test")
        by_manifest: dict[str, list[tuple[ImageRecord, bytes]]] = {}
        for record, body in records:
            by_manifest.setdefault(record.manifest_id, []).append((record, body))
        for manifest, recs in by_manifest.items():
            state.save_manifest_records(
                collection, manifest, [(r, f"https://img.test/{r.id}.png") for r, _ in recs], run
            )
            for record, body in recs:
                digest = hashlib.sha256(body).hexdigest()
                path = data.image_cache / f"{digest}.png"
                path.write_bytes(body)
                state.save_image(
                    collection,
                    record.id,
                    url=f"https://img.test/{record.id}.png",
                    content_hash=digest,
                    path=path,
                    width=32,
                    height=32,
                    fmt="PNG",
                    size=len(body),
                    etag=None,
                    last_modified=None,
                )
        state.finish_run(run, complete=True, summary={})
    finally:
        state.close()


def _settings(data_dir: Path) -> Settings:
    return Settings(
        data_dir=data_dir,
        model="test-hash",
        collections={"maps": CollectionConfig(kind="local", path=data_dir / "src")},
    )


def _records(start: int, n: int) -> list[tuple[ImageRecord, bytes]]:
    return [
        (make_record(i, collection="maps"), _png(((i * 37) % 256, (i * 91) % 256, (i * 13) % 256), i))
        for i in range(start, start + n)
    ]


def test_full_then_incremental_build_from_harvest_state(tmp_path: Path) -> None:
    records = _records(0, 40)
    # The same picture published in a second manifest (another institution's copy).
    twin = make_record(500, collection="maps", manifest="https://other.example/manifest/9")
    _harvest(tmp_path, "maps", [*records, (twin, records[3][1])])
    settings = _settings(tmp_path)
    embedder = CountingEmbedder()
    stages: set[str] = set()
    v1 = build_index(settings, "default", [], embedder, progress=lambda s, d, t: stages.add(s))
    assert v1.manifest.count == 41 and v1.manifest.collections == ("maps",)
    assert v1.manifest.harvest_state["maps"] is not None
    assert {"harvest", "embed", "faiss", "metadata"} <= stages
    assert embedder.images_embedded == 40  # identical bytes are embedded once
    assert check_consistency(v1).ok

    engine = SearchEngine.open(tmp_path, embedder_loader=lambda spec: embedder)
    hit = engine.search(Query(terms=(Term("item", records[3][0].id),), k=3)).hits[0]
    assert {hit.record.id, *hit.duplicates} == {records[3][0].id, twin.id}

    # Next harvest: one manifest deleted, two records added, one record's metadata changed.
    state = HarvestState(DataDir(tmp_path).state_db)
    state.delete_manifest("maps", records[0][0].manifest_id)
    state.close()
    changed = make_record(5, collection="maps", caption="a renamed map of Leiden")
    _harvest(tmp_path, "maps", [*_records(100, 2), (changed, records[5][1])])
    before = embedder.images_embedded
    v2 = build_index(settings, "default", ["maps"], embedder, incremental=True)
    assert v2.manifest.parent == v1.version
    assert v2.manifest.count == 41 - 1 + 2
    assert embedder.images_embedded - before == 2  # only the new images; the changed one came from the cache
    assert check_consistency(v2).ok
    # Nothing new harvested: no new version, nothing embedded.
    again = build_index(settings, "default", ["maps"], embedder, incremental=True)
    assert again.version == v2.version and embedder.images_embedded - before == 2
    assert engine.reload_if_changed()
    assert engine.get(records[0][0].id) is None
    got = engine.get(changed.id)
    assert got is not None and got.caption == changed.caption
    only = engine.search(Query(keywords="Leiden", k=5))
    assert [h.record.id for h in only.hits] == [changed.id]

    # Another model must not be mixed in.
    class Other(CountingEmbedder):
        fingerprint = "other-model"

    with pytest.raises(IndexStoreError, match="never mix"):
        build_index(settings, "default", ["maps"], Other(), incremental=True)
    # A full build with it is fine, and replaces the version.
    v3 = build_index(settings, "default", ["maps"], Other())
    assert v3.manifest.model_fingerprint == "other-model"


def test_nothing_harvested_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(IndexStoreError, match="harvest"):
        build_index(_settings(tmp_path), "default", [], HashEmbedder())


def test_cli_check_gc_and_search(tmp_path: Path) -> None:
    records = _records(0, 12)
    _harvest(tmp_path, "maps", records)
    build_index(_settings(tmp_path), "default", [], HashEmbedder())
    config = tmp_path / "iconosearch.toml"
    config.write_text(
        f'data_dir = "{tmp_path}"\nmodel = "test-hash"\n'
        f'[collections.maps]\nkind = "local"\npath = "{tmp_path}"\n'
    )
    runner = CliRunner()
    result = runner.invoke(app, ["--config", str(config), "--json", "index", "--check"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["ok"] is True
    result = runner.invoke(app, ["--config", str(config), "--json", "index", "--gc"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["removed"] == []
    rid = records[2][0].id
    result = runner.invoke(app, ["--config", str(config), "--json", "search", "--item", rid, "-k", "3"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    # The same document GET /api/search returns: it validates against the API's own response model.
    from iconosearch.api.schemas import SearchResponse

    SearchResponse.model_validate(data)
    assert data["results"][0]["id"] == rid and len(data["results"]) == 3
    assert data["facets"] and data["templates"]["viewer"].endswith("?iiif-content={content_state}")
    result = runner.invoke(app, ["--config", str(config), "search", "--item", rid, "-f", "rights=open"])
    assert result.exit_code == 0, result.output
    assert "score" in result.stdout
    # Every result's id is printed whole, on one line, however narrow the table (ids are copied).
    shown = int(re.search(r"(\d+) result", result.stdout)[1])  # type: ignore[index]
    assert shown > 0 and len(re.findall(r"\b[0-7][0-9a-f]{15}\b", result.stdout)) == shown
    result = runner.invoke(app, ["--config", str(config), "search", "--item", rid, "-f", "colour=red"])
    assert result.exit_code == 2 and "unknown filter" in result.output
    result = runner.invoke(app, ["--config", str(config), "search", "--item", rid, "-f", "collection=nope"])
    assert result.exit_code == 2 and "unknown collection" in result.output
    result = runner.invoke(app, ["--config", str(config), "index", "nope"])
    assert result.exit_code == 2
    store = IndexStore(DataDir(tmp_path).indexes, "default")
    assert store.current() is not None
