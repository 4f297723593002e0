"""Image–caption pairs and the split by manifest."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iconosearch.evaluation.pairs import (
    Caption,
    Pair,
    Split,
    TooFewPairsError,
    collect_pairs,
    minimum_pairs,
    split_by_group,
)
from iconosearch.records import HarvestedImage, ImageRecord, record_id


def _pair(i: int, group: str, collection: str = "c") -> Pair:
    return Pair(
        item_id=f"item{i}",
        group=group,
        collection=collection,
        image_path=Path(f"/x/{i}.png"),
        content_hash=f"h{i}",
        captions=(Caption(f"caption {i}", "en"),),
    )


group_sizes = st.lists(st.integers(min_value=1, max_value=12), min_size=1, max_size=60)


@settings(max_examples=150, deadline=None)
@given(sizes=group_sizes, seed=st.integers(0, 2**16), heldout=st.booleans())
def test_split_never_leaks_a_manifest(sizes: list[int], seed: int, heldout: bool) -> None:
    pairs = []
    n = 0
    for g, size in enumerate(sizes):
        for _ in range(size):
            # With held-out on, every 5th manifest also has pages in a second, held-out collection.
            coll = "other" if heldout and g % 5 == 0 and n % 2 == 0 else "c"
            pairs.append(_pair(n, f"https://example.org/manifest/{g}", coll))
            n += 1
    try:
        split = split_by_group(
            pairs, seed=seed, min_eval_pairs=2, heldout_collections=("other",) if heldout else ()
        )
    except TooFewPairsError as exc:
        assert exc.minimum_pairs >= 3
        assert "at least" in str(exc)
        return
    parts_of_group: dict[str, set[str]] = {}
    for p in pairs:
        part = split.part_of(p)
        assert part is not None  # every pair is assigned
        parts_of_group.setdefault(p.group, set()).add(part)
    assert all(len(parts) == 1 for parts in parts_of_group.values())
    counts = split.counts(pairs)
    assert counts["val"] >= 2 and counts["test"] >= 2 and counts["train"] >= 1
    assert sum(counts.values()) == len(pairs)
    # deterministic, and survives the split file's round trip
    again = split_by_group(pairs, seed=seed, min_eval_pairs=2, heldout_collections=split.heldout_collections)
    assert again.assignment == split.assignment
    assert Split.from_json(split.to_json()).assignment == split.assignment


def test_split_fractions_roughly_hold_and_file_round_trips(tmp_path: Path) -> None:
    pairs = [_pair(i, f"m{i // 4}") for i in range(400)]
    split = split_by_group(pairs, seed=3)
    counts = split.counts(pairs)
    assert 30 <= counts["test"] <= 50 and 30 <= counts["val"] <= 50
    path = tmp_path / "split.json"
    split.save(path)
    loaded = Split.load(path)
    assert loaded.assignment == split.assignment and loaded.seed == 3
    # a manifest the split has never seen is never silently trained on
    assert loaded.part_of(_pair(999, "new-manifest")) is None
    assert split_by_group(pairs, seed=4).assignment != split.assignment


def test_too_few_pairs_is_refused_with_the_minimum() -> None:
    pairs = [_pair(i, f"m{i}") for i in range(20)]
    with pytest.raises(TooFewPairsError) as exc:
        split_by_group(pairs)
    assert exc.value.minimum_pairs == minimum_pairs(0.1, 0.1, 10) == 100
    assert "at least 100 pairs" in str(exc.value) and "got 20 pairs" in str(exc.value)
    one_book = [_pair(i, "book") for i in range(500)]
    with pytest.raises(TooFewPairsError, match="manifests"):
        split_by_group(one_book)


def _record(i: int, caption: dict[str, list[str]], manifest: str = "m") -> ImageRecord:
    return ImageRecord(
        id=record_id(manifest, f"c{i}", f"i{i}"),
        collection="demo",
        manifest_id=manifest,
        canvas_id=f"c{i}",
        image_id=f"i{i}",
        caption=caption,
    )


def test_captionless_and_duplicate_images_are_excluded_and_counted(tmp_path: Path) -> None:
    img = tmp_path / "a.png"
    img.write_bytes(b"x")
    images = [
        HarvestedImage(_record(0, {"en": ["A map", "of Europe"], "fr": ["Une carte"]}), "h0", img),
        HarvestedImage(_record(1, {}), "h1", img),
        HarvestedImage(_record(2, {"en": ["  "]}), "h2", img),
        HarvestedImage(_record(3, {"en": ["Same picture"]}), "h0", img),
        HarvestedImage(_record(4, {"en": ["Gone"]}), "h4", tmp_path / "missing.png"),
    ]
    result = collect_pairs(images)
    assert len(result.pairs) == 1
    assert result.pairs[0].captions == (Caption("A map. of Europe", "en"), Caption("Une carte", "fr"))
    assert result.excluded == {"captionless": 2, "duplicate-image": 1, "missing-file": 1}


def test_pairs_from_a_real_harvest_state(tmp_path: Path) -> None:
    from iconosearch.evaluation.pairs import pairs_from_harvest
    from tests.helpers.finetune_data import fake_harvest

    db = tmp_path / "state.sqlite"
    assert fake_harvest(db, tmp_path / "img", "maps", manifests=3, pages=2) == 3
    result = pairs_from_harvest(db, ["maps"])
    assert len(result.pairs) == 3
    assert result.excluded == {"captionless": 3}
    assert {p.group for p in result.pairs} == {f"https://example.org/iiif/{m}/manifest" for m in range(3)}
    assert {p.captions[0].text for p in result.pairs} == {f"Map {m}, sheet 0" for m in range(3)}


def test_undecodable_evaluation_images_are_left_out_and_counted(tmp_path: Path) -> None:
    from PIL import Image

    from iconosearch.evaluation.benchmark import decodable

    good = tmp_path / "good.png"
    Image.new("RGB", (8, 8), "red").save(good)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"GIF89a but not really")
    pairs = [_pair(0, "m0"), _pair(1, "m1")]
    pairs = [_with_path(p, path) for p, path in zip(pairs, (good, bad), strict=True)]
    ok, rejected = decodable(pairs, max_pixels=1_000_000)
    assert [p.image_path for p in ok] == [good]
    assert sum(rejected.values()) == 1 and all(k.startswith("image-") for k in rejected)


def _with_path(p: Pair, path: Path) -> Pair:
    from dataclasses import replace

    return replace(p, image_path=path)
