"""A local image folder → Presentation 3 + an Image API tree (level 2 as served), harvested like IIIF."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from iiif_prezi3 import Manifest
from PIL import Image

from iconosearch.config import CollectionConfig, Settings
from iconosearch.harvest.harvester import harvest
from iconosearch.harvest.state import HarvestState
from iconosearch.iiif.collection import parse_collection
from iconosearch.iiif.image_api import image_url, parse_service
from iconosearch.iiif.local import build_local_iiif
from iconosearch.iiif.manifest import parse_manifest
from tests.helpers.http_server import FixtureServer


def make_folder(folder: Path) -> None:
    (folder / "sub").mkdir(parents=True)
    Image.new("RGB", (1600, 1000), (200, 30, 30)).save(folder / "barn.jpg")
    Image.new("RGBA", (300, 500), (0, 0, 255, 0)).save(folder / "sub" / "ghost.png")
    Image.new("CMYK", (900, 900), (0, 100, 100, 0)).save(folder / "cmyk.jpg")
    (folder / "broken.jpg").write_bytes(b"not an image at all")
    (folder / "notes.txt").write_text("ignored")
    (folder / "metadata.csv").write_text(
        "file,title,description,date,creator,rights,attribution,source,subjects\n"
        "barn.jpg,A red barn,A barn in a field at dusk,1890,Jane Doe,"
        "http://creativecommons.org/publicdomain/zero/1.0/,Example Museum,https://example.org/barn,barn;farm\n"
        "sub/ghost.png,Ghost,,1850/1860,,,,,\n",
        encoding="utf-8",
    )


def test_build_writes_valid_iiif(tmp_path: Path) -> None:
    folder, out = tmp_path / "pics", tmp_path / "out" / "pics"
    make_folder(folder)
    built = build_local_iiif(folder, out, base_url="https://museum.example/iiif/local/pics", label="Pics")
    assert built.manifests == 3 and built.skipped == {"broken.jpg": "not-an-image"}
    coll = parse_collection(json.loads((out / "collection.json").read_text()))
    assert coll.name == "Pics" and len(coll.manifests) == 3
    for path in sorted((out / "manifests").glob("*.json")):
        doc = json.loads(path.read_text())
        Manifest(**doc)  # valid Presentation 3 per iiif-prezi3's own model
        (record,) = parse_manifest(doc, collection="pics").records
        assert record.service is not None and record.service.level == 2  # served by iiif_routes
        slug = record.service.id.rsplit("/", 1)[1]
        info = parse_service(json.loads((out / "images" / slug / "info.json").read_text()))
        assert info is not None and info.level == 2 and info.sizes
        for w, h in info.sizes:
            with Image.open(out / "images" / slug / "full" / f"{w},{h}" / "0" / "default.jpg") as im:
                assert im.size == (w, h)
        # The size a harvest would choose is one that exists in the static tree.
        rel = image_url(info, 384).split("/images/", 1)[1]
        assert (out / "images" / rel).is_file()
    barn = next(json.loads(p.read_text()) for p in (out / "manifests").glob("*.json") if "barn" in p.name)
    assert barn["rights"] == "http://creativecommons.org/publicdomain/zero/1.0/"
    assert barn["navDate"] == "1890-01-01T00:00:00Z"
    assert barn["requiredStatement"]["value"] == {"none": ["Example Museum"]}
    assert barn["homepage"][0]["id"] == "https://example.org/barn"

    stamp = (out / "images").stat().st_mtime_ns
    max_files = sorted(p.stat().st_mtime_ns for p in out.rglob("default.jpg"))
    again = build_local_iiif(folder, out, base_url="https://museum.example/iiif/local/pics", label="Pics")
    assert again.manifests == 3
    assert sorted(p.stat().st_mtime_ns for p in out.rglob("default.jpg")) == max_files  # incremental
    assert stamp <= (out / "images").stat().st_mtime_ns


def test_local_collection_harvest(tmp_path: Path) -> None:
    folder = tmp_path / "pics"
    make_folder(folder)
    settings = Settings(
        data_dir=tmp_path / "data", collections={"pics": CollectionConfig(kind="local", path=folder)}
    )
    summary = asyncio.run(harvest(settings, "pics"))
    assert (summary.records, summary.images_fetched, summary.images_failed) == (3, 3, 0)
    assert summary.skipped == {"bad-image": 1}
    assert summary.requests == 0  # read straight from the generated tree, no server needed
    assert (tmp_path / "data" / "local-iiif" / "pics" / "collection.json").is_file()
    with HarvestState(settings.data_dir / "state.sqlite") as state:
        records = {h.record.manifest_label["none"][0]: h for h in state.iter_images("pics")}
    barn = records["A red barn"].record
    # Subject "barn" is already said by the title, so only "farm" is added.
    assert barn.caption == {"none": ["A red barn. A barn in a field at dusk. farm"]}
    assert barn.date is not None and (barn.date.start_year, barn.date.end_year) == (1890, 1890)
    assert barn.rights == "http://creativecommons.org/publicdomain/zero/1.0/"
    assert barn.service is not None and barn.service.id.startswith("http://127.0.0.1:8000/iiif/local/pics/")
    assert records["Ghost"].record.date is not None
    assert records["Ghost"].record.date.start_year == 1850
    with Image.open(records["A red barn"].path) as im:
        assert im.size == (384, 240)


def test_local_tree_served_over_http(tmp_path: Path) -> None:
    """The generated tree works from a plain static web server, as the API serves it."""
    folder = tmp_path / "pics"
    make_folder(folder)
    www = tmp_path / "www"
    with FixtureServer(root=www) as srv:
        build_local_iiif(folder, www / "pics", base_url=srv.url("/pics"), label="Pics")
        settings = Settings(data_dir=tmp_path / "data")
        summary = asyncio.run(harvest(settings, srv.url("/pics/collection.json")))
        assert summary.images_fetched == 3 and summary.failed == {}
        assert all(srv.counter[p] for p in srv.counter)
        assert not any(p.endswith("/max/0/default.jpg") for p in srv.counter)  # listed sizes only
