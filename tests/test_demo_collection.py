"""The committed demo collection (demo/collection): complete, public domain, small, never trained on."""

from __future__ import annotations

import csv
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

from iconosearch.images import open_image
from iconosearch.lite.corpus import read_split

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "demo" / "collection"
FIELDS = ["file", "title", "description", "date", "creator", "rights", "attribution", "source", "subjects"]
OPEN_RIGHTS = {
    "https://creativecommons.org/publicdomain/zero/1.0/",
    "https://creativecommons.org/publicdomain/mark/1.0/",
}


@pytest.fixture(scope="module")
def rows() -> list[dict[str, str]]:
    with (DEMO / "metadata.csv").open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == FIELDS
        return list(reader)


def test_every_image_has_metadata_and_vice_versa(rows: list[dict[str, str]]) -> None:
    listed = [r["file"] for r in rows]
    assert len(listed) == len(set(listed))
    on_disk = sorted(p.name for p in DEMO.iterdir() if p.name != "metadata.csv")
    assert sorted(listed) == on_disk
    assert 300 <= len(rows) <= 600


def test_small_enough_to_commit() -> None:
    assert sum(p.stat().st_size for p in DEMO.iterdir()) <= 15 * 1024 * 1024


def test_rights_captions_and_provenance(rows: list[dict[str, str]]) -> None:
    for row in rows:
        assert row["rights"] in OPEN_RIGHTS, row
        assert row["title"].strip() and row["source"].strip() and row["attribution"].strip(), row
        assert "&amp;" not in row["title"] and "&#" not in row["title"] and "Ã" not in row["title"]
        assert row["subjects"].split(";")[0], row
        if row["date"]:
            assert re.fullmatch(r"\d{4}(-\d{2}-\d{2})?(/\d{4})?", row["date"]), row


def test_drawn_only_from_images_the_lite_model_never_trained_on(rows: list[dict[str, str]]) -> None:
    split = read_split()
    demo = set(split.parts["demo"])
    trained = set(split.parts["train"]) | set(split.parts["val"])
    openclipart = [r for r in rows if "/usr/share/openclipart/png/" in r["source"]]
    assert len(openclipart) >= 300
    for row in openclipart:
        rel = row["source"].split("/usr/share/openclipart/png/", 1)[1].removesuffix(".png")
        key = f"openclipart:{rel}"
        assert key in demo and key not in trained, key
    others = [r for r in rows if r not in openclipart]
    assert others and all("marble-qt-data" in r["source"] for r in others)


def test_images_decode_small_and_rgb(rows: list[dict[str, str]]) -> None:
    for row in rows:
        im = open_image(DEMO / row["file"], max_pixels=1_000_000)
        assert im.mode == "RGB" and 16 <= max(im.size) <= 384, row["file"]


def _builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_collection", ROOT / "demo" / "build_collection.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("build_collection", module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_builder_text_repair() -> None:
    build = _builder()
    assert build.fix_text("L&Atilde;&copy;zard") == "Lézard"
    assert build.fix_text("Chodovian&#39;s Dog") == "Chodovian's Dog"
    assert build.fix_text("  plain   text ") == "plain text"
    assert build.slug("Dog 03 Drawn With Straight Lines!") == "dog-03-drawn-with-straight-lines"
