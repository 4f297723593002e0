"""Evaluating lite heads on cached features: galleries per set and query type, chance, bootstrap CIs.

A gallery is an :class:`~iconosearch.evaluation.benchmark.EvalSet` whose relevance is by *caption*:
every image is relevant to each query that equals one of its captions, so a subject query ("pears") is
answered by any pear, and a title query by the work(s) with that title.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from math import comb

import numpy as np

from iconosearch.evaluation.benchmark import EvalSet
from iconosearch.evaluation.bootstrap import paired_bootstrap, recall_statistic, resample_weights
from iconosearch.evaluation.metrics import RetrievalRanks, metrics_from_ranks, retrieval_ranks
from iconosearch.evaluation.pairs import Caption, Pair

Encoder = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
"""(image features, text features) → (image embeddings, text embeddings), L2-normalised."""
KS = (1, 5, 10)


def normalise_query(text: str) -> str:
    return " ".join(text.lower().split()).rstrip(".")


@dataclass(frozen=True, slots=True)
class Gallery:
    """An eval set with the row of each image's and each query's cached features."""

    data: EvalSet
    image_rows: np.ndarray
    """Row of each gallery image in the image-feature matrix."""
    text_rows: np.ndarray
    """Row of each query in the text-feature matrix."""


def gallery(
    entries: Sequence[tuple[Pair, str]], image_row: dict[str, int], text_row: dict[str, int]
) -> Gallery:
    """A gallery of ``(pair, caption)`` entries: each image once, each distinct caption once as a query."""
    pairs: list[Pair] = []
    seen: set[str] = set()
    captions: dict[str, str] = {}
    for pair, caption in entries:
        key = normalise_query(caption)
        captions.setdefault(key, caption)
        if pair.item_id in seen:
            continue
        seen.add(pair.item_id)
        # item_id becomes the caption key: relevance is by caption, see the module docstring.
        pairs.append(
            Pair(
                key,
                pair.group,
                pair.collection,
                pair.image_path,
                pair.content_hash,
                (Caption(caption, "en"),),
            )
        )
    group_of = {p.item_id: p.group for p in pairs}
    keys = sorted(captions)
    data = EvalSet(
        pairs=tuple(pairs),
        texts=tuple(captions[k] for k in keys),
        text_items=tuple(keys),
        text_langs=tuple("en" for _ in keys),
        text_groups=tuple(group_of[k] for k in keys),
        text_collections=tuple(pairs[0].collection for _ in keys),
    )
    return Gallery(
        data,
        np.array([image_row[p.content_hash] for p in pairs]),
        np.array([text_row[captions[k]] for k in keys]),
    )


def ranks(encoder: Encoder, g: Gallery, image_feats: np.ndarray, text_feats: np.ndarray) -> RetrievalRanks:
    img, txt = encoder(image_feats[g.image_rows], text_feats[g.text_rows])
    return retrieval_ranks(txt, img, g.data.text_items, g.data.image_items)


def chance_recall(g: Gallery, k: int) -> float:
    """Expected text→image R@k of a random ranking: 1 − C(N−m, k)/C(N, k) per query, averaged."""
    n = len(g.data.pairs)
    counts: dict[str, int] = {}
    for item in g.data.image_items:
        counts[item] = counts.get(item, 0) + 1
    values = [1 - comb(n - counts[q], k) / comb(n, k) if k < n else 1.0 for q in g.data.text_items]
    return float(np.mean(values))


def _ci(
    values: np.ndarray, statistic: Callable[[np.ndarray, np.ndarray], np.ndarray], clusters: Sequence[str]
) -> list[float]:
    weights = resample_weights(len(values), n_resamples=1000, rng=np.random.default_rng(0), clusters=clusters)
    low, high = np.quantile(statistic(values, weights), [0.025, 0.975])
    return [float(low), float(high)]


def report(r: RetrievalRanks, g: Gallery) -> dict[str, object]:
    """Both directions' R@1/5/10 and median rank with 95 % bootstrap CIs (by group), plus chance."""
    metrics = metrics_from_ranks(r, KS).as_dict()
    t2i = metrics["t2i"]
    out: dict[str, object] = {
        "gallery": len(g.data.pairs),
        "queries": len(g.data.texts),
        "t2i": t2i,
        "i2t": metrics["i2t"],
        "chance_t2i": {f"R@{k}": chance_recall(g, k) for k in KS},
        "chance_median_rank": (len(g.data.pairs) + 1) / 2,
        "ci_t2i": {
            **{f"R@{k}": _ci(r.t2i, recall_statistic(k), g.data.text_groups) for k in KS},
            "median_rank": _ci(r.t2i, _median, g.data.text_groups),
        },
    }
    return out


def recall_ci(t2i: np.ndarray, groups: Sequence[str], k: int = 10) -> list[float]:
    """95 % bootstrap interval of text→image R@k over ranks whose queries belong to ``groups``."""
    return _ci(t2i, recall_statistic(k), groups)


def _median(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    from iconosearch.evaluation.bootstrap import median_rank_statistic

    return median_rank_statistic(values, weights)


def compare(
    new: Sequence[RetrievalRanks], base: Sequence[RetrievalRanks], galleries: Sequence[Gallery], k: int = 10
) -> dict[str, float | bool]:
    """Paired bootstrap of text→image R@k, new − base, over the queries of all ``galleries`` together,
    resampling whole groups (works, series)."""
    a = np.concatenate([r.t2i for r in new])
    b = np.concatenate([r.t2i for r in base])
    groups = [group for g in galleries for group in g.data.text_groups]
    iv = paired_bootstrap(a, b, recall_statistic(k), clusters=groups, seed=0)
    return {"estimate": iv.estimate, "low": iv.low, "high": iv.high, "significant": iv.significant}


def r10(r: RetrievalRanks) -> float:
    return float(np.mean(r.t2i <= 10))
