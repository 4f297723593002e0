"""Retrieval metrics: pure functions of a similarity matrix and who-belongs-to-whom.

A query is relevant to every gallery entry of the same *item* (one image record with one or more captions,
or one caption matching several identical images). The rank of a query is the 1-based position of its
best-ranked relevant entry. Ties are broken pessimistically (a non-relevant entry scoring exactly as high
as the best relevant one counts as ranked above it), so a constant model never looks better than chance.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_KS: tuple[int, ...] = (1, 5, 10)


@dataclass(frozen=True, slots=True)
class DirectionMetrics:
    """Metrics of one retrieval direction (text→image or image→text)."""

    n_queries: int
    gallery_size: int
    recall: dict[int, float]
    """Recall@K as a fraction in [0, 1]."""
    median_rank: float
    mrr: float
    """Mean reciprocal rank of the first relevant entry."""


@dataclass(frozen=True, slots=True)
class RetrievalRanks:
    """Per-query ranks of both directions; what bootstrapping and breakdowns work from."""

    t2i: np.ndarray
    """Rank of the first relevant image for each text query, int64, shape (n_texts,)."""
    i2t: np.ndarray
    """Rank of the first relevant caption for each image query, int64, shape (n_images,)."""
    n_images: int
    n_texts: int


def first_relevant_ranks(
    similarity: np.ndarray, query_items: Sequence[str] | np.ndarray, gallery_items: Sequence[str] | np.ndarray
) -> np.ndarray:
    """1-based rank of the best relevant gallery entry for each query (row of ``similarity``).

    ``similarity`` has shape (n_queries, n_gallery). Every query must have at least one relevant entry.
    """
    sim = np.asarray(similarity, dtype=np.float64)
    q = np.asarray(query_items)
    g = np.asarray(gallery_items)
    if sim.ndim != 2 or sim.shape != (len(q), len(g)):
        raise ValueError(f"similarity shape {sim.shape} does not match {len(q)} queries × {len(g)} gallery")
    relevant = q[:, None] == g[None, :]
    missing = ~relevant.any(axis=1)
    if missing.any():
        raise ValueError(f"{int(missing.sum())} queries have no relevant entry in the gallery")
    best_relevant = np.where(relevant, sim, -np.inf).max(axis=1)
    above = (~relevant) & (sim >= best_relevant[:, None])
    return (above.sum(axis=1) + 1).astype(np.int64)


def summarize(ranks: np.ndarray, gallery_size: int, ks: Sequence[int] = DEFAULT_KS) -> DirectionMetrics:
    r = np.asarray(ranks)
    if r.size == 0:
        raise ValueError("no queries to summarise")
    return DirectionMetrics(
        n_queries=int(r.size),
        gallery_size=gallery_size,
        recall={k: recall_at(r, k) for k in ks},
        median_rank=float(np.median(r)),
        mrr=mean_reciprocal_rank(r),
    )


def recall_at(ranks: np.ndarray, k: int) -> float:
    return float(np.mean(np.asarray(ranks) <= k))


def mean_reciprocal_rank(ranks: np.ndarray) -> float:
    return float(np.mean(1.0 / np.asarray(ranks, dtype=np.float64)))


def retrieval_ranks(
    text_embeddings: np.ndarray,
    image_embeddings: np.ndarray,
    text_items: Sequence[str] | np.ndarray,
    image_items: Sequence[str] | np.ndarray,
) -> RetrievalRanks:
    """Ranks of both directions from L2-normalised embeddings (cosine = inner product)."""
    t = np.asarray(text_embeddings, dtype=np.float32)
    i = np.asarray(image_embeddings, dtype=np.float32)
    if t.ndim != 2 or i.ndim != 2 or t.shape[1] != i.shape[1]:
        raise ValueError(f"embedding shapes {t.shape} and {i.shape} are not comparable")
    sim = t @ i.T
    return RetrievalRanks(
        t2i=first_relevant_ranks(sim, text_items, image_items),
        i2t=first_relevant_ranks(sim.T, image_items, text_items),
        n_images=i.shape[0],
        n_texts=t.shape[0],
    )


@dataclass(frozen=True, slots=True)
class RetrievalMetrics:
    t2i: DirectionMetrics
    i2t: DirectionMetrics

    def as_dict(self) -> dict[str, dict[str, float | int]]:
        return {"t2i": direction_as_dict(self.t2i), "i2t": direction_as_dict(self.i2t)}


def direction_as_dict(m: DirectionMetrics) -> dict[str, float | int]:
    out: dict[str, float | int] = {f"R@{k}": v for k, v in m.recall.items()}
    out["median_rank"] = m.median_rank
    out["mrr"] = m.mrr
    out["n_queries"] = m.n_queries
    out["gallery_size"] = m.gallery_size
    return out


def metrics_from_ranks(ranks: RetrievalRanks, ks: Sequence[int] = DEFAULT_KS) -> RetrievalMetrics:
    return RetrievalMetrics(
        t2i=summarize(ranks.t2i, ranks.n_images, ks), i2t=summarize(ranks.i2t, ranks.n_texts, ks)
    )


def chance_levels(
    query_items: Sequence[str], gallery_items: Sequence[str], ks: Sequence[int] = DEFAULT_KS
) -> dict[str, float]:
    """Expected metrics of a random ranking, averaged over the queries: ``R@k``, ``mrr``, ``median_rank``.

    A query with ``m`` relevant entries among ``N``: R@k = 1 − C(N−m, k)/C(N, k); the first relevant entry
    is at rank r with probability C(N−r, m−1)/C(N, m), which gives the MRR; its expected rank (N+1)/(m+1)
    stands in for the median.
    """
    n = len(gallery_items)
    counts = Counter(gallery_items)
    per_m: dict[int, dict[str, float]] = {}
    for m in {counts[q] for q in query_items}:
        rank_p = m / n  # P(first relevant at rank 1), then the next ranks by the recurrence
        mrr, recall_k = 0.0, {k: 0.0 for k in ks}
        for r in range(1, n - m + 2):
            mrr += rank_p / r
            for k in ks:
                recall_k[k] += rank_p if r <= k else 0.0
            rank_p *= (n - r - m + 1) / (n - r) if n - r > 0 else 0.0
        per_m[m] = {**{f"R@{k}": min(1.0, v) for k, v in recall_k.items()}, "mrr": mrr}
        per_m[m]["median_rank"] = (n + 1) / (m + 1)
    keys = [*(f"R@{k}" for k in ks), "mrr", "median_rank"]
    return {key: float(np.mean([per_m[counts[q]][key] for q in query_items])) for key in keys}
