"""Compare model specs on the same held-out pairs: metrics, breakdowns, paired bootstrap, speed.

The model-free part (:func:`compare`) works on embeddings and is pure; :func:`embed_eval_set` is the edge
that runs an :class:`~iconosearch.models.embedder.Embedder` over the images and captions.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from iconosearch.evaluation.bootstrap import (
    Interval,
    median_rank_statistic,
    mrr_statistic,
    paired_bootstrap,
    recall_statistic,
)
from iconosearch.evaluation.metrics import (
    DEFAULT_KS,
    RetrievalMetrics,
    RetrievalRanks,
    chance_levels,
    metrics_from_ranks,
    retrieval_ranks,
    summarize,
)
from iconosearch.evaluation.pairs import Pair

if TYPE_CHECKING:
    from PIL import Image

    from iconosearch.models.embedder import Embedder

Progress = Callable[[int, int], None]
"""(done, total) callback."""


@dataclass(frozen=True, slots=True)
class EvalSet:
    """The gallery of a benchmark: every image once, every caption once, with who belongs to whom."""

    pairs: tuple[Pair, ...]
    texts: tuple[str, ...]
    text_items: tuple[str, ...]
    text_langs: tuple[str, ...]
    text_groups: tuple[str, ...]
    text_collections: tuple[str, ...]

    @property
    def image_items(self) -> tuple[str, ...]:
        return tuple(p.item_id for p in self.pairs)

    @property
    def image_groups(self) -> tuple[str, ...]:
        return tuple(p.group for p in self.pairs)

    @property
    def image_collections(self) -> tuple[str, ...]:
        return tuple(p.collection for p in self.pairs)


def eval_set(pairs: Sequence[Pair]) -> EvalSet:
    if not pairs:
        raise ValueError("no pairs to evaluate on")
    texts: list[str] = []
    items: list[str] = []
    langs: list[str] = []
    groups: list[str] = []
    colls: list[str] = []
    for p in pairs:
        for c in p.captions:
            texts.append(c.text)
            items.append(p.item_id)
            langs.append(c.lang)
            groups.append(p.group)
            colls.append(p.collection)
    return EvalSet(tuple(pairs), tuple(texts), tuple(items), tuple(langs), tuple(groups), tuple(colls))


@dataclass(frozen=True, slots=True)
class Speed:
    images_per_s: float
    """Model throughput on decoded images (decoding excluded), batched."""
    text_query_ms: float
    """Median latency of embedding one query text."""

    def as_dict(self) -> dict[str, float]:
        return {"images_per_s": self.images_per_s, "text_query_ms": self.text_query_ms}


@dataclass(frozen=True, slots=True)
class ModelEmbeddings:
    texts: np.ndarray
    images: np.ndarray
    speed: Speed | None = None


def embed_eval_set(
    embedder: Embedder,
    data: EvalSet,
    *,
    batch_size: int = 32,
    max_pixels: int = 64_000_000,
    image_side: int = 512,
    latency_queries: int = 20,
    progress: Progress | None = None,
    images: Sequence[Image.Image] | None = None,
) -> ModelEmbeddings:
    """Embed the gallery with one model and time it (model time only: decoding is not counted).

    Images are decoded batch by batch (memory stays flat on big test sets) unless ``images`` are given.
    """
    total = len(data.pairs) + len(data.texts)
    done = 0
    model_s = 0.0
    image_vecs: list[np.ndarray] = []
    for start in range(0, len(data.pairs), batch_size):
        if images is not None:
            batch = list(images[start : start + batch_size])
        else:
            batch = decode_images(data.pairs[start : start + batch_size], max_pixels, image_side)
        t0 = time.perf_counter()
        image_vecs.append(embedder.embed_images(batch))
        model_s += time.perf_counter() - t0
        done += len(batch)
        if progress:
            progress(done, total)
    text_vecs: list[np.ndarray] = []
    for start in range(0, len(data.texts), batch_size * 4):
        batch_t = data.texts[start : start + batch_size * 4]
        text_vecs.append(embedder.embed_texts(list(batch_t)))
        done += len(batch_t)
        if progress:
            progress(done, total)
    latencies = []
    for text in data.texts[:latency_queries]:
        t0 = time.perf_counter()
        embedder.embed_texts([text])
        latencies.append((time.perf_counter() - t0) * 1000)
    speed = Speed(
        images_per_s=len(data.pairs) / model_s if model_s > 0 else float("nan"),
        text_query_ms=statistics.median(latencies) if latencies else float("nan"),
    )
    return ModelEmbeddings(texts=np.concatenate(text_vecs), images=np.concatenate(image_vecs), speed=speed)


def decode_images(pairs: Sequence[Pair], max_pixels: int, image_side: int) -> list[Image.Image]:
    from iconosearch.images import open_image

    return [open_image(p.image_path, max_pixels=max_pixels, max_side=image_side) for p in pairs]


def decodable(pairs: Sequence[Pair], max_pixels: int) -> tuple[list[Pair], dict[str, int]]:
    """Pairs whose image header is sound, and how many were left out by reason (header-only check)."""
    from iconosearch.images import ImageRejectedError, probe_image

    ok: list[Pair] = []
    rejected: dict[str, int] = {}
    for p in pairs:
        try:
            probe_image(p.image_path, max_pixels=max_pixels)
            ok.append(p)
        except ImageRejectedError as exc:
            rejected[f"image-{exc.reason}"] = rejected.get(f"image-{exc.reason}", 0) + 1
    return ok, rejected


@dataclass(frozen=True, slots=True)
class ModelResult:
    spec: str
    fingerprint: str
    metrics: RetrievalMetrics
    breakdown: dict[str, dict[str, dict[str, Any]]]
    """``{"collection": {name: {"t2i": ..., "i2t": ...}}, "language": {lang: {"t2i": ...}}}``."""
    speed: Speed | None
    vs_base: dict[str, Interval] = field(default_factory=dict)
    """Difference model − base per statistic (``t2i R@10``, ``i2t MRR``…), in metric units."""
    verdict: str = ""


@dataclass(frozen=True, slots=True)
class BenchResult:
    base: str
    split_name: str
    n_images: int
    n_texts: int
    n_groups: int
    models: tuple[ModelResult, ...]
    seed: int
    confidence: float
    n_resamples: int
    created: str = ""
    notes: tuple[str, ...] = ()
    chance: dict[str, dict[str, float]] = field(default_factory=dict)
    """Per direction, what a random ranking scores on this set (``R@k``, ``mrr``, ``median_rank``)."""
    warnings: tuple[str, ...] = ()
    """Metrics this set is too small to measure, said plainly."""


SMALL_N_QUERIES = 30
"""Fewer test queries than this give intervals too wide to tell most models apart."""


def small_n_warnings(
    chance: Mapping[str, Mapping[str, float]], n_queries: Mapping[str, int], n_groups: int
) -> tuple[str, ...]:
    """Warnings for metrics a set this small cannot measure (R@10 among 10 candidates is always 100 %)."""
    out = []
    for direction, levels in chance.items():
        for name, level in levels.items():
            if name.startswith("R@") and level >= 0.5:
                out.append(
                    f"{direction} {name}: a random ranking already scores {level:.0%} here "
                    f"({n_queries[direction]} queries); it cannot tell models apart, read MRR and median rank"
                )
    smallest = min(n_queries.values(), default=0)
    if smallest < SMALL_N_QUERIES:
        out.append(
            f"only {smallest} queries from {n_groups} manifests: confidence intervals are wide, and only "
            "large differences can show"
        )
    return tuple(out)


def _breakdown(
    ranks: RetrievalRanks, data: EvalSet, ks: Sequence[int]
) -> dict[str, dict[str, dict[str, Any]]]:
    out: dict[str, dict[str, dict[str, Any]]] = {}
    colls = sorted(set(data.image_collections))
    if len(colls) > 1:
        ic = np.asarray(data.image_collections)
        tc = np.asarray(data.text_collections)
        out["collection"] = {
            c: {
                "t2i": summarize(ranks.t2i[tc == c], ranks.n_images, ks),
                "i2t": summarize(ranks.i2t[ic == c], ranks.n_texts, ks),
            }
            for c in colls
        }
    langs = sorted(set(data.text_langs))
    if len(langs) > 1:
        tl = np.asarray(data.text_langs)
        out["language"] = {
            lang: {"t2i": summarize(ranks.t2i[tl == lang], ranks.n_images, ks)} for lang in langs
        }
    return out


def verdict(spec: str, vs_base: Mapping[str, Interval], base: str) -> str:
    """One line saying whether a model beats the base.

    Judged on mean reciprocal rank in both directions (it uses every query's whole ranking, so it does not
    saturate like R@10 on small galleries); R@10 is quoted because it is the figure people know.
    """
    if not vs_base:
        return f"{spec}: the base model (reference)"
    judged = (vs_base["t2i MRR"], vs_base["i2t MRR"])

    def fmt(name: str, key: str) -> str:
        r, m = vs_base[f"{key} R@10"], vs_base[f"{key} MRR"]
        return (
            f"{name} R@10 {r.estimate * 100:+.1f} pts [{r.low * 100:+.1f}, {r.high * 100:+.1f}], "
            f"MRR {m.estimate:+.3f} [{m.low:+.3f}, {m.high:+.3f}]"
        )

    detail = f"{fmt('text→image', 't2i')}; {fmt('image→text', 'i2t')} ({judged[0].confidence:.0%} CI)"
    better = [iv.low > 0 for iv in judged]
    worse = [iv.high < 0 for iv in judged]
    if all(better):
        word = f"BETTER than {base}"
    elif any(better) and not any(worse):
        word = f"better than {base} in one direction"
    elif all(worse):
        word = f"WORSE than {base}"
    elif any(worse) and not any(better):
        word = f"worse than {base} in one direction"
    elif any(better) and any(worse):
        word = f"mixed versus {base}"
    else:
        word = f"no clear difference from {base}"
    return f"{spec}: {word}: {detail}"


def compare(
    data: EvalSet,
    embeddings: Mapping[str, ModelEmbeddings],
    *,
    base: str,
    fingerprints: Mapping[str, str] | None = None,
    ks: Sequence[int] = DEFAULT_KS,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    cluster_by_group: bool = True,
    split_name: str = "test",
) -> BenchResult:
    """Metrics of every model and paired-bootstrap differences of each against ``base``."""
    if base not in embeddings:
        raise ValueError(f"base model {base!r} is not among the compared models")
    ranks = {
        spec: retrieval_ranks(e.texts, e.images, data.text_items, data.image_items)
        for spec, e in embeddings.items()
    }
    base_ranks = ranks[base]
    stats: list[tuple[str, str, Any, bool]] = []
    for direction in ("t2i", "i2t"):
        for k in ks:
            stats.append((f"{direction} R@{k}", direction, recall_statistic(k), True))
        stats.append((f"{direction} MRR", direction, mrr_statistic, True))
        stats.append((f"{direction} median rank", direction, median_rank_statistic, False))
    clusters = {
        "t2i": np.asarray(data.text_groups) if cluster_by_group else None,
        "i2t": np.asarray(data.image_groups) if cluster_by_group else None,
    }
    results: list[ModelResult] = []
    for spec, r in ranks.items():
        vs: dict[str, Interval] = {}
        if spec != base:
            for name, direction, statistic, higher in stats:
                vs[name] = paired_bootstrap(
                    getattr(r, direction),
                    getattr(base_ranks, direction),
                    statistic,
                    n_resamples=n_resamples,
                    confidence=confidence,
                    seed=seed,
                    clusters=clusters[direction],
                    higher_is_better=higher,
                )
        results.append(
            ModelResult(
                spec=spec,
                fingerprint=(fingerprints or {}).get(spec, ""),
                metrics=metrics_from_ranks(r, ks),
                breakdown=_breakdown(r, data, ks),
                speed=embeddings[spec].speed,
                vs_base=vs,
                verdict=verdict(spec, vs, base) if 10 in ks else "",
            )
        )
    results.sort(key=lambda m: (m.spec != base,))
    chance = {
        "t2i": chance_levels(data.text_items, data.image_items, ks),
        "i2t": chance_levels(data.image_items, data.text_items, ks),
    }
    n_groups = len(set(data.image_groups))
    return BenchResult(
        base=base,
        split_name=split_name,
        n_images=len(data.pairs),
        n_texts=len(data.texts),
        n_groups=n_groups,
        models=tuple(results),
        seed=seed,
        confidence=confidence,
        n_resamples=n_resamples,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        chance=chance,
        warnings=small_n_warnings(chance, {"t2i": len(data.texts), "i2t": len(data.pairs)}, n_groups),
    )
