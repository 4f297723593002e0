"""The lite build's choices: the macro-averaged selection score and the per-epoch heritage captions."""

from __future__ import annotations

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
        image_row={},
        text_row=text_row,
        clipart_train=PairFeatures(np.zeros((2, 2), np.float32), np.zeros((2, 3), np.float32)),
        heritage_train=[(0, [("full", 0.9), ("rare", 0.1)]), (2, [("title", 1.0)])],
        val={},
        test={},
        counts={},
    )
    sample = heritage_sampler(data)
    rng = np.random.default_rng(0)
    draws = [sample(epoch, rng) for epoch in range(400)]
    assert all(len(d) == 2 and (d.image[1] == data.image[2]).all() for d in draws)
    assert all((d.text[1] == data.text[1]).all() for d in draws)  # the only caption of image 2
    rare = sum(int(d.text[0][2] == 1) for d in draws)
    assert 10 <= rare <= 80  # ~10 % of 400, far from 0 and from 50 %
