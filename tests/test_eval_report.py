"""Bench comparison on a toy case with hand-computed recall, and the report files it writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from iconosearch.evaluation.benchmark import ModelEmbeddings, compare, eval_set
from iconosearch.evaluation.pairs import Caption, Pair
from iconosearch.evaluation.report import write_report


def _pairs() -> list[Pair]:
    out = []
    for i in range(4):
        caps = (Caption(f"picture {i}", "en"),) + ((Caption(f"image {i}", "fr"),) if i == 0 else ())
        out.append(
            Pair(f"item{i}", f"m{i // 2}", "east" if i < 2 else "west", Path(f"/x{i}.png"), f"h{i}", caps)
        )
    return out


def _toy() -> tuple[dict[str, ModelEmbeddings], object]:
    data = eval_set(_pairs())
    assert data.text_items == ("item0", "item0", "item1", "item2", "item3")
    images = np.eye(4, dtype=np.float32)
    # perfect: every caption points at its own image
    perfect = images[[0, 0, 1, 2, 3]]
    # weak: item1's and item3's captions point at the wrong image; item0's French caption too
    weak = images[[0, 2, 3, 2, 0]] * 0.9 + 0.1 * images[[0, 0, 1, 2, 3]]
    weak = weak / np.linalg.norm(weak, axis=1, keepdims=True)
    return {"base": ModelEmbeddings(weak, images), "tuned": ModelEmbeddings(perfect, images)}, data


def test_compare_reproduces_hand_computed_recall() -> None:
    embs, data = _toy()
    result = compare(data, embs, base="base", ks=(1, 5, 10), n_resamples=200, seed=0)  # type: ignore[arg-type]
    base, tuned = result.models
    assert base.spec == "base" and tuned.spec == "tuned"
    assert tuned.metrics.t2i.recall[1] == 1.0 and tuned.metrics.i2t.recall[1] == 1.0
    # weak text→image: item0/en rank 1; item0/fr → image 2 first, own image second (0.1 vs 0) → rank 2;
    # item1 → image 3 (0.9) then own image (0.1) → 2; item2 → 1; item3 → image 0 then own → 2.
    assert base.metrics.t2i.recall[1] == pytest.approx(2 / 5)
    assert base.metrics.t2i.median_rank == 2
    assert base.metrics.t2i.mrr == pytest.approx((1 + 0.5 + 0.5 + 1 + 0.5) / 5)
    assert base.metrics.t2i.recall[5] == 1.0
    # paired differences carry CIs; a gallery of 4 images caps all R@5/R@10 at 1 → no difference there
    assert tuned.vs_base["t2i R@1"].estimate == pytest.approx(3 / 5)
    assert tuned.vs_base["t2i R@10"].estimate == 0
    # text→image MRR gains significantly; image→text's interval touches 0 on 4 images
    assert tuned.verdict.startswith("tuned: better than base in one direction")
    assert set(tuned.breakdown) == {"collection", "language"}
    assert tuned.breakdown["language"]["fr"]["t2i"].n_queries == 1
    assert base.breakdown["language"]["fr"]["t2i"].recall[1] == 0.0
    assert base.breakdown["collection"]["east"]["t2i"].n_queries == 3


def test_report_writes_json_markdown_and_charts(tmp_path: Path) -> None:
    embs, data = _toy()
    result = compare(data, embs, base="base", n_resamples=100, seed=0)  # type: ignore[arg-type]
    files = write_report(result, tmp_path / "report")
    names = {f.name for f in files}
    assert names == {"report.json", "REPORT.md", "recall.png", "difference.png"}
    payload = json.loads((tmp_path / "report" / "report.json").read_text())
    assert payload["models"][1]["metrics"]["t2i"]["R@1"] == 1.0
    assert payload["models"][1]["vs_base"]["t2i R@1"]["estimate"] == pytest.approx(0.6)
    md = (tmp_path / "report" / "REPORT.md").read_text()
    assert "`tuned`" in md and "Verdicts" in md and "paired bootstrap" in md
    # every table states n and chance; 4 images are too few for R@5/R@10 and say so
    assert "n = 5 queries, each ranked against 4 candidates." in md
    assert "| chance (random ranking) | 25.0 | 100.0 | 100.0 |" in md
    assert "Warnings: too small to measure" in md and "t2i R@10: a random ranking already scores 100%" in md
    assert payload["chance"]["t2i"]["R@1"] == pytest.approx(0.25)
    assert any("only 4 queries from 2 manifests" in w for w in payload["warnings"])
    for png in ("recall.png", "difference.png"):
        with Image.open(tmp_path / "report" / png) as im:
            assert im.format == "PNG" and im.width > 300


def test_unknown_base_is_refused() -> None:
    embs, data = _toy()
    with pytest.raises(ValueError, match="base"):
        compare(data, embs, base="nope")  # type: ignore[arg-type]
