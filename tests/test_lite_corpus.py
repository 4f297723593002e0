"""Corpus parsing (captions from SVG metadata) and the deterministic split, incl. the shipped split.json."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from iconosearch.lite.corpus import (
    CorpusItem,
    cap_duplicates,
    clean_keywords,
    clean_stem,
    make_caption,
    make_split,
    parse_svg_metadata,
    read_split,
    split_from_json,
    split_to_json,
)

SVG = """<?xml version="1.0"?>
<svg xmlns="http://www.w3.org/2000/svg" xmlns:cc="http://web.resource.org/cc/"
     xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <metadata><rdf:RDF><cc:Work rdf:about="">
    <dc:title>Sailing ship &amp; harbour</dc:title>
    <dc:description>A three-masted ship. See http://example.org/x for more</dc:description>
    <dc:subject><rdf:Bag><rdf:li>ship</rdf:li><rdf:li>boat, sea</rdf:li><rdf:li>clipart</rdf:li>
      <rdf:li>hash(0x8a091c0)</rdf:li></rdf:Bag></dc:subject>
    <dc:publisher><cc:Agent><dc:title>Open Clip Art Library</dc:title></cc:Agent></dc:publisher>
    <dc:creator><cc:Agent><dc:title>Jane Doe</dc:title></cc:Agent></dc:creator>
  </cc:Work></rdf:RDF></metadata>
</svg>"""


def test_parse_svg_metadata() -> None:
    meta = parse_svg_metadata(SVG)
    assert meta.title == "Sailing ship & harbour"
    assert meta.description.startswith("A three-masted ship.")
    assert meta.keywords == ("ship", "boat", "sea", "clipart", "hash(0x8a091c0)")
    assert meta.creator == "Jane Doe"


def test_parse_svg_without_metadata() -> None:
    meta = parse_svg_metadata("<svg/>")
    assert (meta.title, meta.description, meta.keywords, meta.creator) == ("", "", (), None)


def test_caption_recipe() -> None:
    meta = parse_svg_metadata(SVG)
    caption = make_caption(meta.title, meta.description, clean_keywords(meta.keywords, creator=meta.creator))
    assert caption == "Sailing ship & harbour. A three-masted ship. See for more. Keywords: ship, boat, sea"


def test_caption_truncates_long_descriptions() -> None:
    caption = make_caption("Map", "word " * 100, ())
    assert len(caption) < 180
    assert caption.startswith("Map. word")


def test_clean_stem_drops_author_and_number() -> None:
    assert clean_stem("armadillo_architetto_fra_01", "Architetto Francesco Rollandin") == "armadillo"
    assert clean_stem("old_sailing_ship_01", None) == "old sailing ship"


def _item(key: str, caption: str, source: str = "openclipart-png", category: str = "misc") -> CorpusItem:
    return CorpusItem(
        key=key,
        image=Path(f"/x/{key}.png"),
        caption=caption,
        source=source,
        license="x",
        title=caption,
        description="",
        keywords=(),
        creator=None,
        category=category,
    )


def test_cap_duplicates() -> None:
    items = [_item(f"k{i}", "Same caption") for i in range(5)] + [_item("z", "Other")]
    kept = cap_duplicates(items, limit=2)
    assert Counter(i.caption for i in kept) == {"Same caption": 2, "Other": 1}


def test_split_is_deterministic_disjoint_and_complete() -> None:
    items = [_item(f"c{i}", f"thing number {i}") for i in range(400)]
    items += [_item(f"m{i}", f"Old map of region {i}", category="geography") for i in range(20)]
    items += [_item(f"t{i}", f"A stamp {i}.", source="tuxpaint-stamps-default") for i in range(30)]
    split = make_split(items, seed=7)
    again = make_split(list(reversed(items)), seed=7)
    assert split == again
    keys = [k for part in split.parts.values() for k in part]
    assert len(keys) == len(set(keys)) == len(items)
    assert set(split.parts["institution"]) == {f"t{i}" for i in range(30)}
    demo = split.parts["demo"]
    assert 0 < len(demo) <= 10  # at most half of the "maps" concept is held out
    assert all(split.demo_concepts[k] == "maps" for k in demo)
    counts = {p: len(v) for p, v in split.parts.items()}
    assert 300 < counts["train"] < 360 and counts["val"] > 20 and counts["test"] > 20
    assert split_from_json(split_to_json(split)) == split
    assert make_split(items, seed=8) != split


def test_identical_captions_stay_in_one_part() -> None:
    items = [_item(f"a{i}", f"pair {i // 2}") for i in range(200)]
    split = make_split(items)
    part_of = split.part_of()
    for i in range(0, 200, 2):
        assert part_of[f"a{i}"] == part_of[f"a{i + 1}"]


def test_shipped_split_manifest() -> None:
    split = read_split()
    counts = {p: len(v) for p, v in split.parts.items()}
    assert set(counts) == {"train", "val", "test", "demo", "institution"}
    keys = [k for part in split.parts.values() for k in part]
    assert len(keys) == len(set(keys))
    assert counts["test"] >= 150 and counts["train"] >= 1500
    assert 400 <= counts["demo"] <= 600
    assert 500 <= counts["institution"] <= 900
    assert all(k.startswith("tuxpaint:") for k in split.parts["institution"])
    assert all(k.startswith("openclipart:") for k in split.parts["demo"])
    assert set(split.demo_concepts) == set(split.parts["demo"])
    assert {"maps", "ships", "buildings", "people", "animals", "plants", "instruments"} <= set(
        split.demo_concepts.values()
    )
