"""The multilingual evaluation: human ICONCLASS queries, relevance by catalogue words, honest metrics."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("iconclass")

from iconosearch.evaluation import multilingual as ml
from iconosearch.subjects import vocabulary
from iconosearch.subjects.iconclass import LANGUAGES, Iconclass

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def iconclass() -> Iconclass:
    vocab = vocabulary("iconclass")
    assert isinstance(vocab, Iconclass)
    return vocab


def _collection(tmp_path: Path, rows: list[tuple[str, str]]) -> Path:
    lines = ["file,title,subjects"]
    for i, (title, subjects) in enumerate(rows):
        (tmp_path / f"{i}.jpg").write_bytes(b"not decoded here")
        lines.append(f'{i}.jpg,"{title}","{subjects}"')
    (tmp_path / "metadata.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return tmp_path


def test_query_set_uses_human_texts_of_the_concepts_shown(iconclass: Iconclass, tmp_path: Path) -> None:
    folder = _collection(
        tmp_path,
        [
            ("Malus domestica: Baldwin", "apples;Malus domestica"),
            ("Pyrus communis", "pears"),
            ("Vitis: Concord", "grapes;Vitis"),
            ("A harbour at dusk", "paintings"),
            ("Portrait of a man", "paintings"),
        ],
    )
    images = ml.read_collection(folder)
    concepts = {c.notation: c for c in ml.query_set(iconclass, images)}
    assert set(concepts) == {"25G21(APPLE)", "25G21(PEAR)", "47I4222", "46C223"}
    apple = concepts["25G21(APPLE)"]
    assert apple.relevant == (0,)
    assert apple.queries["de"] == ("Früchte: Apfel", "Apfel")
    assert apple.queries["pt"] == ("frutos: maçã", "maçã")
    assert set(apple.queries) == set(LANGUAGES)
    # a concept whose texts are only the generic fallback ("fruits (GRAPE)") is never a query
    for c in concepts.values():
        for texts in c.queries.values():
            assert not any("(GRAPE)" in t or "(BANANA)" in t for t in texts)


def test_hits_and_chance() -> None:
    sims = np.array([0.1, 0.9, 0.5, 0.3])
    assert ml.hit_at_k(sims, [1], k=1) and not ml.hit_at_k(sims, [0], k=2)
    assert ml.chance_at_k(100, 1) == pytest.approx(0.1)
    assert ml.chance_at_k(20, 15) == 1.0
    assert ml.chance_at_k(50, 2) == pytest.approx(1 - math.comb(48, 10) / math.comb(50, 10))


def test_text_to_image_reports_each_language_next_to_english(iconclass: Iconclass, tmp_path: Path) -> None:
    rows = [("Apples", "apples"), ("Pears", "pears")] + [("Portrait", "paintings")] * 13
    concepts = ml.query_set(iconclass, ml.read_collection(_collection(tmp_path, rows)))
    assert [c.notation for c in concepts] == ["25G21(APPLE)", "25G21(PEAR)"]
    images = np.eye(len(rows), dtype=np.float32)
    target = {"fruits: apple": 0, "apple": 0, "fruits: pear": 1, "pear": 1}

    def english_only(texts: object) -> np.ndarray:
        """A stand-in encoder that understands English only: other texts point at the portraits."""
        out = np.zeros((len(texts), len(rows)), dtype=np.float32)  # type: ignore[arg-type]
        for i, text in enumerate(texts):  # type: ignore[attr-defined]
            if text in target:
                out[i, target[text]] = 1.0
            else:
                out[i, 2:] = 1.0
        return out

    report = ml.text_to_image(concepts, images, english_only)
    assert report["per_language"]["en"] == {"r10": 1.0, "queries": 4, "minus_en": 0.0}
    for lang in ("de", "fr", "it", "pt"):
        assert report["per_language"][lang] == {"r10": 0.0, "queries": 4, "minus_en": -1.0}
    assert report["mean_non_english_minus_en"] == -1.0 and report["worst_minus_en"] == -1.0
    assert report["chance_r10"] == pytest.approx(1 - math.comb(14, 10) / math.comb(15, 10), abs=1e-4)
    assert report["per_concept"]["25G21(PEAR)"] == {"en": 1.0, "de": 0.0, "fr": 0.0, "it": 0.0, "pt": 0.0}


def test_cross_lingual_retrieval_with_use_m3(iconclass: Iconclass) -> None:
    from iconosearch.models.towers import load_text_tower

    texts = ml.parallel_texts(iconclass, 60)
    assert len(texts) == 60 and len({t["en"] for t in texts}) == 60
    assert texts == ml.parallel_texts(iconclass, 60)  # seeded
    tower = load_text_tower("use-m3")
    result = ml.cross_lingual(texts, lambda batch: tower.encode(list(batch)).numpy())
    assert set(result) == {"de", "fr", "it", "pt"}
    for row in result.values():
        # a multilingual encoder finds most translations among 60 texts (chance: 1/60)
        assert row["to_en_r1"] > 0.5 and row["from_en_r1"] > 0.5
