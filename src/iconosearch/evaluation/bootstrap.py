"""Paired bootstrap confidence intervals for the difference between two models on the same queries.

Both models are scored on the very same queries, so each resample draws one set of queries and computes
the statistic for both models on it: the interval is of the *difference*, which is much tighter than two
separate intervals. Queries from one manifest (pages of one book) are correlated, so resampling can be
done by cluster: whole clusters are drawn with replacement.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

Statistic = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""(values (n,), weights (B, n)) → one value per resample (B,)."""


def recall_statistic(k: int) -> Statistic:
    def stat(ranks: np.ndarray, weights: np.ndarray) -> np.ndarray:
        return _weighted_mean((ranks <= k).astype(np.float64), weights)

    return stat


def mrr_statistic(ranks: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return _weighted_mean(1.0 / ranks.astype(np.float64), weights)


def median_rank_statistic(ranks: np.ndarray, weights: np.ndarray) -> np.ndarray:
    order = np.argsort(ranks, kind="stable")
    sorted_ranks = ranks[order].astype(np.float64)
    cum = np.cumsum(weights[:, order], axis=1)
    half = cum[:, -1:] / 2.0
    idx = (cum < half).sum(axis=1)
    return sorted_ranks[np.minimum(idx, len(sorted_ranks) - 1)]


def _weighted_mean(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return (weights @ values) / weights.sum(axis=1)


@dataclass(frozen=True, slots=True)
class Interval:
    """Observed difference (model − base) and its bootstrap percentile interval."""

    estimate: float
    low: float
    high: float
    confidence: float
    n_resamples: int
    p_not_better: float
    """Fraction of resamples where the model was not better than the base (one-sided, for higher-is-better
    statistics; for lower-is-better ones the sign convention is flipped by ``higher_is_better``)."""

    @property
    def significant(self) -> bool:
        """True when the interval excludes zero."""
        return self.low > 0 or self.high < 0

    def as_dict(self) -> dict[str, float | int | bool]:
        return {
            "estimate": self.estimate,
            "low": self.low,
            "high": self.high,
            "confidence": self.confidence,
            "n_resamples": self.n_resamples,
            "p_not_better": self.p_not_better,
            "significant": self.significant,
        }


def resample_weights(
    n: int,
    *,
    n_resamples: int,
    rng: np.random.Generator,
    clusters: Sequence[str] | np.ndarray | None = None,
) -> np.ndarray:
    """(n_resamples, n) multiplicities of each query in each resample, drawn by query or by cluster."""
    if n == 0:
        raise ValueError("cannot bootstrap zero queries")
    if clusters is None:
        return rng.multinomial(n, np.full(n, 1.0 / n), size=n_resamples).astype(np.float64)
    labels = np.asarray(clusters)
    if len(labels) != n:
        raise ValueError(f"{len(labels)} cluster labels for {n} queries")
    _, inverse = np.unique(labels, return_inverse=True)
    m = int(inverse.max()) + 1
    counts = rng.multinomial(m, np.full(m, 1.0 / m), size=n_resamples).astype(np.float64)
    return counts[:, inverse]


def paired_bootstrap(
    model_values: np.ndarray,
    base_values: np.ndarray,
    statistic: Statistic,
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    clusters: Sequence[str] | np.ndarray | None = None,
    higher_is_better: bool = True,
) -> Interval:
    """Percentile interval of ``statistic(model) − statistic(base)`` over paired resamples of the queries."""
    a = np.asarray(model_values)
    b = np.asarray(base_values)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired values must be two 1-d arrays of one length, got {a.shape} and {b.shape}")
    if a.size == 0:
        raise ValueError("cannot bootstrap zero queries")
    if not 0 < confidence < 1:
        raise ValueError("confidence must be in (0, 1)")
    n = len(a)
    ones = np.ones((1, n))
    estimate = float(statistic(a, ones)[0] - statistic(b, ones)[0])
    diffs = np.empty(n_resamples)
    chunk = max(1, 2_000_000 // max(n, 1))  # bound memory: weights are (chunk, n) float64
    rng = np.random.default_rng(seed)
    for start in range(0, n_resamples, chunk):
        size = min(chunk, n_resamples - start)
        w = resample_weights(n, n_resamples=size, rng=rng, clusters=clusters)
        diffs[start : start + chunk] = statistic(a, w) - statistic(b, w)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(diffs, [alpha, 1 - alpha])
    not_better = diffs <= 0 if higher_is_better else diffs >= 0
    return Interval(
        estimate=estimate,
        low=float(low),
        high=float(high),
        confidence=confidence,
        n_resamples=n_resamples,
        p_not_better=float(np.mean(not_better)),
    )
