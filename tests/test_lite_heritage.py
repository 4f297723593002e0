"""Heritage pairs for the lite build: captions from catalogue fields, splits by work or series."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from iconosearch.evaluation.metrics import RetrievalRanks
from iconosearch.evaluation.pairs import Caption, Pair
from iconosearch.lite import evaluate as ev
from iconosearch.lite.heritage import (
    century,
    demo_item_ids,
    load_heritage,
    person_name,
    singular,
    split_heritage,
)

FIELDS = ["file", "title", "description", "date", "creator", "rights", "attribution", "source", "subjects"]


def _write_set(root: Path, folder: str, rows: list[dict[str, str]]) -> None:
    (root / folder / "images").mkdir(parents=True)
    with (root / folder / "metadata.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, FIELDS)
        writer.writeheader()
        for n, row in enumerate(rows):
            Image.new("RGB", (8, 8), (n % 256, (n * 7) % 256, 3)).save(root / folder / row["file"])
            writer.writerow({k: row.get(k, "") for k in FIELDS})


@pytest.fixture
def heritage(tmp_path: Path) -> Path:
    kinds = ("pears", "apples", "peaches")
    water = [
        {
            "file": f"images/image-{n}.jpg",
            "title": f"Pyrus: Variety {n // 3} ({kinds[n // 3 % 3]})",
            "description": f"Botanical watercolor of {kinds[n // 3 % 3]}: Pyrus: Variety {n // 3}",
            "date": "1905",
            "creator": "Newton, Amanda Almira, ca. 1860-1943",
            "subjects": f"Pyrus;{kinds[n // 3 % 3]}",
        }
        for n in range(150)
    ]
    paintings = [
        {
            "file": f"images/{n}.jpg",
            "title": f"Landscape {n % 40}",
            "date": "1640",
            "creator": "GOGH, Vincent van",
        }
        for n in range(80)
    ]
    figures = [
        {
            "file": f"images/fig-{n}.jpg",
            "title": f"Star {n % 30} (Leiden Aratea)",
            "description": "Figure.",
            "subjects": f"constellations;Star {n % 30}",
        }
        for n in range(60)
    ]
    _write_set(tmp_path, "usda-pomological", water)
    _write_set(tmp_path, "wga-paintings", paintings)
    _write_set(tmp_path, "stellarium-manuscripts", figures)
    return tmp_path


def test_catalogue_fields_become_researcher_queries() -> None:
    assert person_name("CONSTABLE, John") == "John Constable"
    assert person_name("GOGH, Vincent van") == "Vincent van Gogh"
    assert person_name("Newton, Amanda Almira, ca. 1860-1943") == "Amanda Almira Newton"
    assert century("1622-25") == "17th-century" and century("c. 816-840") is None
    assert [singular(w) for w in ("pears", "peaches", "cherries", "mangoes", "grapes")] == [
        "pear", "peach", "cherry", "mango", "grape"
    ]  # fmt: skip


def test_queries_per_set(heritage: Path) -> None:
    sets = load_heritage(heritage)
    painting = sets["paintings"][0]
    assert painting.queries["creator"] == "a painting by Vincent van Gogh"
    assert painting.queries["period"] == "a 17th-century painting"
    assert painting.queries["full"].startswith(painting.queries["title"] + ", a painting by Vincent van Gogh")
    water = sets["watercolours"][0]
    assert water.queries["subject"] in {"pears", "apples", "peaches"}
    assert "creator" in water.queries and "period" not in water.queries
    assert sets["manuscripts"][0].queries["subject"].startswith("Star ")


def test_split_keeps_groups_together_is_deterministic_and_holds_out_demo_varieties(heritage: Path) -> None:
    sets = load_heritage(heritage)
    held = {"watercolours/image-0.jpg"}
    split = split_heritage(sets, held_out=held)
    assert split.to_json() == split_heritage(load_heritage(heritage), held_out=held).to_json()
    for items in sets.values():
        parts_of_group: dict[str, set[str | None]] = {}
        for item in items:
            parts_of_group.setdefault(item.pair.group, set()).add(split.part_of(item.pair))
        assert all(len(parts) == 1 for parts in parts_of_group.values())
        assert {"train", "val", "test"} <= {p for parts in parts_of_group.values() for p in parts}
    # image-0 is variety 0 (images 0, 1, 2): the whole variety is held out, nothing else of it trains
    variety = {i.pair.item_id for i in sets["watercolours"] if split.part_of(i.pair) == "heldout"}
    assert variety == {"watercolours/image-0.jpg", "watercolours/image-1.jpg", "watercolours/image-2.jpg"}


def test_demo_item_ids_read_the_demo_metadata(tmp_path: Path) -> None:
    (tmp_path / "metadata.csv").write_text(
        "file,title\nusda-pomological/image-7.jpg,x\nwga-paintings/1_01.jpg,y\nmaps/a.jpg,z\n",
        encoding="utf-8",
    )
    assert demo_item_ids(tmp_path / "metadata.csv") == {"watercolours/image-7.jpg", "paintings/1_01.jpg"}


def test_chance_and_ranks_use_caption_relevance() -> None:
    def pair(n: int) -> Pair:
        return Pair(f"i{n}", f"g{n}", "set", Path(f"/x/{n}.jpg"), f"h{n}", (Caption("c", "en"),))

    entries = [(pair(n), "pears" if n < 3 else f"apple {n}") for n in range(10)]
    g = ev.gallery(
        entries,
        {f"h{n}": n for n in range(10)},
        {t: n for n, t in enumerate(sorted({e[1] for e in entries}))},
    )
    assert len(g.data.texts) == 8  # "pears" once, seven titles
    # "pears" has 3 relevant images of 10: chance R@1 = 0.3; each title has 1: chance R@1 = 0.1
    assert ev.chance_recall(g, 1) == pytest.approx((0.3 + 7 * 0.1) / 8)
    identity = np.eye(10, dtype=np.float32)
    # text rows follow the sorted captions: "apple 3" … "apple 9", then "pears" (like image 0)
    text = np.stack([identity[n] for n in range(3, 10)] + [identity[0]])
    ranks = ev.ranks(lambda i, t: (i, t), g, identity, text)
    assert isinstance(ranks, RetrievalRanks) and (ranks.t2i == 1).all()
    # images 1 and 2 are pears too, but only image 0 is like the "pears" query: their i2t rank is worse
    assert ranks.i2t[0] == 1 and (ranks.i2t[3:] == 1).all() and (ranks.i2t[1:3] > 1).all()
