"""Paired bootstrap: seed control, sign, coverage of a known difference."""

from __future__ import annotations

import numpy as np
import pytest

from iconosearch.evaluation.bootstrap import (
    median_rank_statistic,
    mrr_statistic,
    paired_bootstrap,
    recall_statistic,
)


def test_identical_models_give_a_zero_interval() -> None:
    ranks = np.array([1, 2, 3, 10, 40, 1, 1])
    iv = paired_bootstrap(ranks, ranks, recall_statistic(5), n_resamples=200, seed=1)
    assert iv.estimate == 0 and iv.low == 0 and iv.high == 0 and not iv.significant


def test_clear_improvement_is_significant_and_seeded() -> None:
    rng = np.random.default_rng(0)
    base = rng.integers(5, 50, size=300)
    better = np.where(rng.random(300) < 0.6, 1, base)  # 60 % of queries move to rank 1
    a = paired_bootstrap(better, base, recall_statistic(1), n_resamples=500, seed=7)
    b = paired_bootstrap(better, base, recall_statistic(1), n_resamples=500, seed=7)
    c = paired_bootstrap(better, base, recall_statistic(1), n_resamples=500, seed=8)
    assert a == b
    assert a != c
    assert a.estimate == pytest.approx(np.mean(better == 1))
    assert a.low > 0.5 and a.high < 0.7 and a.significant and a.p_not_better == 0
    worse = paired_bootstrap(base, better, mrr_statistic, n_resamples=300, seed=0)
    assert worse.high < 0 and worse.p_not_better == 1


def test_median_rank_lower_is_better() -> None:
    base = np.array([10] * 50 + [20] * 50)
    model = np.array([2] * 50 + [4] * 50)
    iv = paired_bootstrap(model, base, median_rank_statistic, n_resamples=300, seed=0, higher_is_better=False)
    assert iv.high < 0 and iv.p_not_better == 0


def test_cluster_resampling_widens_the_interval_for_correlated_queries() -> None:
    rng = np.random.default_rng(3)
    # 20 books of 20 pages: whole books either improve or not, so pages are not independent.
    book_gain = rng.random(20) < 0.5
    clusters = np.repeat([f"m{i}" for i in range(20)], 20)
    base = np.full(400, 20)
    model = np.where(np.repeat(book_gain, 20), 1, 20)
    by_query = paired_bootstrap(model, base, recall_statistic(1), n_resamples=400, seed=0)
    by_book = paired_bootstrap(model, base, recall_statistic(1), n_resamples=400, seed=0, clusters=clusters)
    assert (by_book.high - by_book.low) > 2 * (by_query.high - by_query.low)


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="paired"):
        paired_bootstrap(np.ones(3), np.ones(4), mrr_statistic)
    with pytest.raises(ValueError, match="zero"):
        paired_bootstrap(np.ones(0), np.ones(0), mrr_statistic)
