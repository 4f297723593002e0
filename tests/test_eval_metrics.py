"""Retrieval metrics against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from iconosearch.evaluation.metrics import (
    first_relevant_ranks,
    metrics_from_ranks,
    retrieval_ranks,
)

# Texts a1, a2 caption image A; b1 captions B; c1 captions C.
SIM = np.array(
    [
        [0.9, 0.1, 0.2],  # a1: A first → rank 1
        [0.3, 0.5, 0.4],  # a2: B, C above A → rank 3
        [0.6, 0.5, 0.1],  # b1: A above B → rank 2
        [0.2, 0.1, 0.8],  # c1: rank 1
    ]
)
TEXT_ITEMS = ["A", "A", "B", "C"]
IMAGE_ITEMS = ["A", "B", "C"]


def test_text_to_image_ranks_by_hand() -> None:
    ranks = first_relevant_ranks(SIM, TEXT_ITEMS, IMAGE_ITEMS)
    assert ranks.tolist() == [1, 3, 2, 1]


def test_image_to_text_uses_best_of_several_captions_and_pessimistic_ties() -> None:
    ranks = first_relevant_ranks(SIM.T, IMAGE_ITEMS, TEXT_ITEMS)
    # A: a1 (0.9) is the best of its two captions → 1; B: a2 ties b1 at 0.5 → counted above → 2; C → 1.
    assert ranks.tolist() == [1, 2, 1]


def test_summary_matches_hand_computation() -> None:
    t2i = first_relevant_ranks(SIM, TEXT_ITEMS, IMAGE_ITEMS)
    i2t = first_relevant_ranks(SIM.T, IMAGE_ITEMS, TEXT_ITEMS)
    from iconosearch.evaluation.metrics import RetrievalRanks

    m = metrics_from_ranks(RetrievalRanks(t2i=t2i, i2t=i2t, n_images=3, n_texts=4), ks=(1, 2, 10))
    assert m.t2i.recall == {1: 0.5, 2: 0.75, 10: 1.0}
    assert m.t2i.median_rank == 1.5
    assert m.t2i.mrr == pytest.approx((1 + 1 / 3 + 1 / 2 + 1) / 4)
    assert m.i2t.recall[1] == pytest.approx(2 / 3)
    assert m.i2t.mrr == pytest.approx((1 + 0.5 + 1) / 3)
    assert m.t2i.n_queries == 4 and m.t2i.gallery_size == 3


def test_constant_model_is_not_better_than_chance() -> None:
    sim = np.zeros((5, 5))
    ranks = first_relevant_ranks(sim, list("abcde"), list("abcde"))
    assert ranks.tolist() == [5] * 5


def test_retrieval_ranks_from_embeddings() -> None:
    eye = np.eye(3, dtype=np.float32)
    texts = np.stack([eye[0], eye[0], eye[1], eye[2]])
    r = retrieval_ranks(texts, eye, ["x", "x", "y", "z"], ["x", "y", "z"])
    assert r.t2i.tolist() == [1, 1, 1, 1]
    assert r.i2t.tolist() == [1, 1, 1]
    swapped = retrieval_ranks(texts, eye[[1, 0, 2]], ["x", "x", "y", "z"], ["x", "y", "z"])
    # x-captions now score y's image 1 and tie x's and z's at 0; the tie counts against them → rank 3.
    assert swapped.t2i.tolist() == [3, 3, 3, 1]


def test_query_without_relevant_entry_is_refused() -> None:
    with pytest.raises(ValueError, match="no relevant"):
        first_relevant_ranks(np.zeros((1, 2)), ["q"], ["a", "b"])
    with pytest.raises(ValueError, match="shape"):
        first_relevant_ranks(np.zeros((2, 2)), ["a"], ["a", "b"])


def test_chance_levels_of_a_random_ranking() -> None:
    from iconosearch.evaluation.metrics import chance_levels

    ten = [str(i) for i in range(10)]
    c = chance_levels(ten, ten)
    assert c["R@1"] == pytest.approx(0.1) and c["R@5"] == pytest.approx(0.5) and c["R@10"] == pytest.approx(1)
    assert c["mrr"] == pytest.approx(sum(1 / r for r in range(1, 11)) / 10)
    assert c["median_rank"] == pytest.approx(5.5)
    # two relevant entries among four: the first is at rank 1 with p 1/2, 2 with 1/3, 3 with 1/6
    two = chance_levels(["a", "b"], ["a", "a", "b", "b"])
    assert two["R@1"] == pytest.approx(0.5) and two["mrr"] == pytest.approx(1 / 2 + 1 / 6 + 1 / 18)
