"""The committed heritage demo collection (demo/collection): complete, rights per item, small, by its rule."""

from __future__ import annotations

import csv
import importlib.util
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest

from iconosearch.iiif.dates import parse_date_text
from iconosearch.images import open_image
from iconosearch.rights import allows_derivatives, rights_class

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "demo" / "collection"
FIELDS = ["file", "title", "description", "date", "creator", "rights", "attribution", "source", "subjects"]
PD_MARK = "http://creativecommons.org/publicdomain/mark/1.0/"
BY_ND = "http://creativecommons.org/licenses/by-nd/4.0/"
# The heritage sets in the local-folder format, where this workspace has them (for the rebuild check).
HERITAGE = ROOT.parent / "shared" / "heritage"


def _builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_collection", ROOT / "demo" / "build_collection.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("build_collection", module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def rows() -> list[dict[str, str]]:
    with (DEMO / "metadata.csv").open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == FIELDS
        return list(reader)


def _set(row: dict[str, str]) -> str:
    return row["file"].split("/", 1)[0]


def test_every_image_has_metadata_and_vice_versa(rows: list[dict[str, str]]) -> None:
    listed = [r["file"] for r in rows]
    assert len(listed) == len(set(listed))
    on_disk = sorted(p.relative_to(DEMO).as_posix() for p in DEMO.rglob("*.jpg"))
    assert sorted(listed) == on_disk
    assert sorted(p.name for p in DEMO.iterdir() if p.is_file()) == ["metadata.csv"]


def test_all_paintings_and_manuscript_figures_and_a_slice_of_watercolours(rows: list[dict[str, str]]) -> None:
    counts = Counter(_set(r) for r in rows)
    assert counts == {
        "wga-paintings": 209,
        "stellarium-manuscripts": 85,
        "usda-pomological": 200,
        "maps": 4,
    }


def test_small_enough_to_commit() -> None:
    demo = ROOT / "demo"
    assert sum(p.stat().st_size for p in demo.rglob("*") if p.is_file()) <= 25 * 1024 * 1024


def test_rights_attribution_and_provenance_per_item(rows: list[dict[str, str]]) -> None:
    for row in rows:
        assert row["title"].strip() and row["source"].strip() and row["attribution"].strip(), row
        assert row["subjects"].split(";")[0], row
        expected = BY_ND if _set(row) == "stellarium-manuscripts" else PD_MARK
        assert row["rights"] == expected, row
    nd = [r for r in rows if not allows_derivatives(r["rights"])]
    assert len(nd) == 85 and all(rights_class(r["rights"]) == "restricted" for r in nd)
    assert all("Stellarium" in r["attribution"] for r in nd)
    assert all("Web Gallery of Art" in r["attribution"] for r in rows if _set(r) == "wga-paintings")
    assert all(
        "National Agricultural Library" in r["attribution"] for r in rows if _set(r) == "usda-pomological"
    )


def test_every_date_reads_as_a_plausible_year_range(rows: list[dict[str, str]]) -> None:
    for row in rows:
        if not row["date"]:
            assert _set(row) == "usda-pomological", row  # only some watercolours are undated
            continue
        found = parse_date_text(row["date"])
        assert found is not None, row
        assert 800 <= found.start_year <= found.end_year <= 1950, row


def test_images_decode_rgb_and_no_larger_than_built(rows: list[dict[str, str]]) -> None:
    for row in rows:
        im = open_image(DEMO / row["file"], max_pixels=2_000_000)
        assert im.mode == "RGB" and 100 <= max(im.size) <= 640, row["file"]


def test_painting_dates_are_rewritten_only_into_readable_forms() -> None:
    build = _builder()
    assert build.painting_date("1550-52") == "1550/1552"
    assert build.painting_date("1615-1620") == "1615/1620"
    assert build.painting_date("1640s") == "1640/1649"
    assert build.painting_date("XVII century") == "17th century"
    assert build.painting_date("second half of XVII century") == "second half of the 17th century"
    assert build.painting_date("c. 1620") == "c. 1620"
    assert build.painting_date("1888") == "1888"


def test_watercolour_rule_is_stratified_and_independent_of_row_order() -> None:
    build = _builder()
    rows = [
        {
            "file": f"images/{kind}-{i}.jpg",
            "title": f"{kind} {i % 7}",
            "date": str(1890 + i % 40),
            "subjects": f"x;{kind}",
        }
        for kind, n in (("apples", 400), ("pears", 100), ("figs", 4))
        for i in range(n)
    ]
    chosen = build.select_watercolours(rows, places=20)
    assert chosen == build.select_watercolours(list(reversed(rows)), places=20)
    kinds = Counter(build.fruit_kind(r) for r in chosen)
    # √400 : √100 : √4 = 20 : 10 : 2 → 12.5 : 6.25 : 1.25 places, largest remainders → 13 : 6 : 1.
    assert kinds == {"apples": 13, "pears": 6, "figs": 1}
    apples = [r for r in chosen if build.fruit_kind(r) == "apples"]
    # Seven varieties of apple: each is taken once before any is repeated; four decades are all covered.
    assert len({r["title"] for r in apples[:7]}) == 7
    assert {build.decade(r) for r in apples} == {"1890s", "1900s", "1910s", "1920s"}


@pytest.mark.slow
@pytest.mark.skipif(not HERITAGE.is_dir(), reason="the heritage sets (../shared/heritage) are not here")
def test_watercolours_are_exactly_the_rule_applied_to_the_source(rows: list[dict[str, str]]) -> None:
    build = _builder()
    source = build.read_rows(HERITAGE / "usda-pomological")
    chosen = {f"usda-pomological/{Path(r['file']).name}" for r in build.select_watercolours(source)}
    assert chosen == {r["file"] for r in rows if _set(r) == "usda-pomological"}
    by_file = {f"usda-pomological/{Path(r['file']).name}": r for r in source}
    for row in rows:
        if _set(row) == "usda-pomological":
            # Metadata verbatim and the thumbnail's bytes unchanged, under its original file name.
            assert row == {**by_file[row["file"]], "file": row["file"]}
            original = HERITAGE / "usda-pomological" / "images" / Path(row["file"]).name
            assert (DEMO / row["file"]).read_bytes() == original.read_bytes()
