"""Record ids depend on what the object is, never on where iconosearch is served.

The demo flow (local folder → static IIIF served by the real API → harvested over HTTP → indexed) runs
on two ports over one data directory; ids, permalinks and the index must not change. A data directory
whose ids were made the 0.1 way (a hash of the served URLs) is migrated and its old links still resolve.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import httpx
import pytest
from PIL import Image

from iconosearch.config import Settings
from iconosearch.demo_job import DemoRun, run_demo
from iconosearch.harvest.state import HarvestState
from iconosearch.records import HarvestedImage, ImageRecord, legacy_record_id, local_identity, record_id
from tests.helpers.demo_index import free_port

pytestmark = pytest.mark.slow


def _folder(root: Path) -> Path:
    folder = root / "pics"
    (folder / "sub").mkdir(parents=True)
    colours = {"red.jpg": (200, 30, 30), "green.jpg": (30, 200, 30), "sub/blue.jpg": (30, 30, 200)}
    for rel, rgb in colours.items():
        Image.new("RGB", (320, 240), rgb).save(folder / rel)
    (folder / "metadata.csv").write_text(
        "file,title\nred.jpg,A red square\ngreen.jpg,A green square\nsub/blue.jpg,A blue square\n",
        encoding="utf-8",
    )
    return folder


def _demo(data_dir: Path, folder: Path) -> DemoRun:
    return run_demo(Settings(data_dir=data_dir), collection_dir=folder, port=free_port())


def _ids(data_dir: Path) -> set[str]:
    with HarvestState(data_dir / "state.sqlite") as state:
        return {r.id for r in state.iter_records("demo")}


def test_local_identity_ignores_the_address() -> None:
    a = "http://127.0.0.1:8000/iiif/local/demo/manifests/red-1a2b3c.json"
    b = "https://search.library.example/prefix/iiif/local/demo/manifests/red-1a2b3c.json"
    assert local_identity(a) == local_identity(b) == "local:demo/manifests/red-1a2b3c.json"
    assert local_identity("https://example.org/iiif/manifest.json") is None
    canvas = "/manifests/red-1a2b3c/canvas/1"
    assert record_id(a, a.replace(".json", "") + "/canvas/1", a + "/i") == record_id(
        b, b.rsplit("/manifests/", 1)[0] + canvas, b + "/j"
    )
    # Another collection name or file is another object.
    assert record_id(a, a + "/c", "i") != record_id(a.replace("/demo/", "/other/"), a + "/c", "i")
    # Remote sources keep the 0.1 formula: their own canonical ids.
    m = "https://example.org/iiif/m1.json"
    assert record_id(m, m + "/c1", m + "/i1") == legacy_record_id(m, m + "/c1", m + "/i1")


def test_split_groups_do_not_depend_on_the_address(tmp_path: Path) -> None:
    from iconosearch.evaluation.pairs import pair_of

    made = []
    for port in (8000, 9123):
        m = f"http://127.0.0.1:{port}/iiif/local/demo/manifests/red-1a2b3c.json"
        rec = ImageRecord(
            id=record_id(m, m.replace(".json", "/canvas/1"), "i"),
            collection="demo",
            manifest_id=m,
            canvas_id=m.replace(".json", "/canvas/1"),
            image_id="i",
            caption={"en": ["A red square"]},
        )
        made.append(pair_of(HarvestedImage(rec, "h", tmp_path / "x.jpg")))
    assert made[0] is not None and made[1] is not None
    assert made[0].group == made[1].group == "local:demo/manifests/red-1a2b3c.json"
    assert made[0].item_id == made[1].item_id


def test_two_ports_keep_ids_and_permalinks(tmp_path: Path) -> None:
    folder, data_dir = _folder(tmp_path), tmp_path / "data"
    first = _demo(data_dir, folder)
    try:
        ids = _ids(data_dir)
        assert len(ids) == 3 and first.indexed == 3
        item = next(iter(sorted(ids)))
        assert httpx.get(f"{first.url}/api/items/{item}").status_code == 200
    finally:
        first.server.stop()

    second = _demo(data_dir, folder)
    try:
        assert second.url != first.url
        assert _ids(data_dir) == ids
        assert second.harvest["records_deleted"] == 0 and second.harvest["records_new"] == 0
        page = httpx.get(f"{second.url}/api/search", params={"q": "a square", "k": 10}).json()
        assert {hit["id"] for hit in page["results"]} == ids
        for rid in ids:
            resp = httpx.get(f"{second.url}/api/items/{rid}")
            assert resp.status_code == 200 and resp.json()["id"] == rid
            # The record now points at the address it is served at.
            assert resp.json()["manifest"].startswith(f"{second.url}/iiif/local/demo/")
    finally:
        second.server.stop()


def test_a_01_data_directory_is_migrated_and_old_links_resolve(tmp_path: Path) -> None:
    folder, data_dir = _folder(tmp_path), tmp_path / "data"
    _demo(data_dir, folder).server.stop()
    ids = _ids(data_dir)
    # Turn the state back into what 0.1 wrote: ids hashed from the served URLs, schema version 0.
    db = sqlite3.connect(data_dir / "state.sqlite")
    legacy: dict[str, str] = {}
    for rid, data in db.execute("SELECT id, data FROM records").fetchall():
        rec = json.loads(data)
        old = legacy_record_id(rec["manifest_id"], rec["canvas_id"], rec["image_id"])
        legacy[old] = rid
        rec["id"] = old
        db.execute("UPDATE records SET id = ?, data = ? WHERE id = ?", (old, json.dumps(rec), rid))
    db.execute("DELETE FROM id_aliases")
    db.execute("PRAGMA user_version = 0")
    db.commit()
    db.close()
    assert set(legacy) != ids

    second = _demo(data_dir, folder)
    try:
        assert _ids(data_dir) == ids
        with HarvestState(data_dir / "state.sqlite") as state:
            assert state.aliases() == legacy
        assert second.harvest["records_deleted"] == 0
        for old, new in legacy.items():
            resp = httpx.get(f"{second.url}/api/items/{old}")
            assert resp.status_code == 200 and resp.json()["id"] == new
            similar = httpx.get(f"{second.url}/api/items/{old}/similar", params={"k": 3})
            assert similar.status_code == 200
    finally:
        second.server.stop()
