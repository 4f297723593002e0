"""The lite build's choices: the macro-averaged selection score and the per-epoch heritage captions."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from iconosearch.evaluation.metrics import RetrievalRanks
from iconosearch.lite.build import Data, heritage_sampler, selection_score
from iconosearch.training.contrastive import PairFeatures


def _ranks(t2i: list[int]) -> RetrievalRanks:
    return RetrievalRanks(t2i=np.array(t2i), i2t=np.array(t2i), n_images=20, n_texts=len(t2i))


def test_selection_score_counts_each_set_once_however_many_queries() -> None:
    ranks = {
        "paintings/full": _ranks([1, 50]),  # R@10 0.5
        "paintings/title": _ranks([1, 1]),  # 1.0 → paintings 0.75
        "watercolours/full": _ranks([1] * 900 + [50] * 100),  # 0.9, a thousand queries
        "manuscripts/full": _ranks([50, 50, 1, 1]),  # 0.5
        "photos/full": _ranks([50]),  # 0.0
        "clipart/full": _ranks([1]),  # not a selection set
    }
    assert selection_score(ranks) == (0.75 + 0.9 + 0.5 + 0.0) / 4


def test_heritage_sampler_draws_one_caption_per_image_by_weight() -> None:
    text_row = {"full": 0, "title": 1, "rare": 2}
    data = Data(
        image=np.arange(6, dtype=np.float32).reshape(3, 2),
        text=np.eye(3, dtype=np.float32),
        base_text=np.eye(3, dtype=np.float32),
        base_image=np.arange(6, dtype=np.float32).reshape(3, 2),
        image_row={},
        text_row=text_row,
        clipart_train=PairFeatures(np.zeros((2, 2), np.float32), np.zeros((2, 3), np.float32)),
        heritage_train=[(0, [("full", 0.9), ("rare", 0.1)]), (2, [("title", 1.0)])],
        val={},
        test={},
        counts={},
        distil_rows=np.arange(3),
        distil_image_rows=np.arange(3),
    )
    sample = heritage_sampler(data)
    rng = np.random.default_rng(0)
    draws = [sample(epoch, rng) for epoch in range(400)]
    assert all(len(d) == 2 and (d.image[1] == data.image[2]).all() for d in draws)
    assert all((d.text[1] == data.text[1]).all() for d in draws)  # the only caption of image 2
    rare = sum(int(d.text[0][2] == 1) for d in draws)
    assert 10 <= rare <= 80  # ~10 % of 400, far from 0 and from 50 %


def test_model_card_renders_every_section_from_build_metrics(tmp_path: Path) -> None:
    from iconosearch.lite.build import BRIDGE_WEIGHTS, BuildReport
    from iconosearch.lite.card import write_model_card

    def gallery_report(r10: float) -> dict[str, object]:
        t2i = {"R@1": r10 / 3, "R@5": r10 / 2, "R@10": r10, "median_rank": 12.0}
        ci = {"R@1": [0.1, 0.2], "R@5": [0.2, 0.3], "R@10": [r10 - 0.1, r10 + 0.1], "median_rank": [8, 15]}
        return {"gallery": 50, "queries": 40, "t2i": t2i, "i2t": {"R@10": 0.4}, "ci_t2i": ci,
                "chance_t2i": {"R@1": 0.02, "R@5": 0.1, "R@10": 0.2}}  # fmt: skip

    cmp = {"estimate": 0.12, "low": 0.05, "high": 0.2, "significant": True}
    curve = {str(w): {"score": 0.4, "clipart": 0.6} for w in BRIDGE_WEIGHTS}
    metrics = {
        "test": {"paintings/full": {"new": gallery_report(0.5), "baseline": gallery_report(0.3)}},
        "vs_baseline_t2i_R@10": {"heritage, all query types": cmp},
        "baseline": {"clipart_floor": 0.58},
        "variants": {"warm": {"best_epoch": 3, "bridge_curve": curve}},
        "counts": {
            "clipart": {"train": 200, "val": 214, "test": 216, "stamps": 719},
            "photos": 150,
            "heritage": {
                n: {"train": 10, "val": 3, "test": 4} for n in ("paintings", "watercolours", "manuscripts")
            },
            "heritage_heldout": {"paintings": 0, "watercolours": 5, "manuscripts": 0},
            "demo_in_training": ["paintings/1_01.jpg"],
        },
    }
    path = write_model_card(BuildReport(tmp_path, "warm", 3, 0.4, metrics))
    text = path.read_text(encoding="utf-8")
    for heading in (
        "## Data",
        "## Choice of variant",
        "## Results on the test splits",
        "## Compared with 0.1",
    ):
        assert heading in text
    assert "| paintings/full | 50 / 40 | 16.7 [10.0, 20.0]" in text
    assert "| heritage, all query types | +12.0 | [+5.0, +20.0] | yes |" in text
    assert "`paintings/1_01.jpg`" in text


def test_model_card_names_another_text_tower_and_its_baseline(tmp_path: Path) -> None:
    from iconosearch.lite.build import BRIDGE_WEIGHTS, BuildReport
    from iconosearch.lite.card import write_model_card

    curve = {str(w): {"score": 0.4, "clipart": 0.6} for w in BRIDGE_WEIGHTS}
    counts = {
        "clipart": {"train": 200, "val": 214, "test": 216, "stamps": 719},
        "photos": 150,
        "heritage": {
            n: {"train": 1, "val": 1, "test": 1} for n in ("paintings", "watercolours", "manuscripts")
        },
        "heritage_heldout": {"paintings": 0, "watercolours": 0, "manuscripts": 0},
        "demo_in_training": [],
    }
    metrics = {
        "test": {},
        "vs_baseline_t2i_R@10": {},
        "text_tower": "use-m3",
        "baseline": {
            "clipart_floor": 0.58,
            "path": "bench/baselines/iconosearch-lite-en",
            "text_tower": "minilm",
        },
        "variants": {"distilled": {"best_epoch": 0, "bridge_curve": curve}},
        "counts": counts,
    }
    text = write_model_card(BuildReport(tmp_path, "distilled", 0, 0.2, metrics)).read_text(encoding="utf-8")
    assert "Universal Sentence Encoder multilingual v3" in text
    assert "(1280→256, 512→256)" in text and "(768-d)" in text
    assert "## Compared with the baseline (`bench/baselines/iconosearch-lite-en`)" in text
    assert "text head distilled from its text head" in text
    assert "English only (MiniLM)" not in text


def test_distilled_text_head_puts_texts_where_the_teacher_does() -> None:
    import torch

    from iconosearch.lite.heads import distil_head

    rng = np.random.default_rng(0)
    teacher_in = rng.normal(size=(400, 6)).astype(np.float32)
    # The student's tower sees the same texts through another (here: a random linear) view.
    student_in = (teacher_in @ rng.normal(size=(6, 10))).astype(np.float32)
    torch.manual_seed(0)
    teacher = torch.nn.Linear(6, 4, bias=False)
    student = torch.nn.Sequential(torch.nn.Linear(10, 8, bias=False), torch.nn.GELU(), torch.nn.Linear(8, 4))
    with torch.no_grad():
        target = torch.nn.functional.normalize(teacher(torch.from_numpy(teacher_in)), dim=-1)
        before = float(
            (torch.nn.functional.normalize(student(torch.from_numpy(student_in)), dim=-1) * target)
            .sum(-1)
            .mean()
        )
    after = distil_head(student, teacher, student_in, teacher_in, epochs=200, batch_size=64)
    assert before < 0.5 < 0.9 < after  # from unrelated directions to nearly the teacher's


def test_choice_keeps_clip_art_or_else_loses_least_then_scores_best() -> None:
    from iconosearch.lite.build import BRIDGE_WEIGHTS, _choose

    def curve(clipart: float, best_w: float) -> dict[float, dict[str, float]]:
        return {w: {"clipart": clipart, "score": 0.9 if w == best_w else 0.1} for w in BRIDGE_WEIGHTS}

    keeps, loses_least = curve(0.70, 0.2), curve(0.55, 0.3)
    assert _choose([loses_least, keeps], clip_floor=0.68) == (1, 0.2)
    # Nothing keeps 0.68: the floor is 2 points below the best reached (0.55), so both others qualify.
    by_score = [curve(0.55, 0.3), {w: {"clipart": 0.54, "score": 0.95} for w in BRIDGE_WEIGHTS}]
    assert _choose(by_score, clip_floor=0.68) == (1, 0.0)
    assert _choose([loses_least, curve(0.40, 0.1)], clip_floor=0.68) == (0, 0.3)
