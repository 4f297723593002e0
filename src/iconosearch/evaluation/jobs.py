"""Evaluation as a job: which pairs to evaluate on, and comparing model specs on them.

The ``evaluate`` and ``finetune`` commands call these and only present the results, so the choices
(which collections, which part of a split, what is refused and why) are tested without the CLI.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from iconosearch.harvest.state import harvested_collections

if TYPE_CHECKING:
    from iconosearch.evaluation.benchmark import BenchResult
    from iconosearch.evaluation.pairs import Pair, PairSet

# (what is being done, done, total), e.g. ("embedding with iconosearch-lite", 120, 400).
StageProgress = Callable[[str, int, int], None]


class JobError(ValueError):
    """The job cannot run as asked; the message says why, for the user."""


def load_pairs(data_dir: Path, collections: Sequence[str], pairs_file: Path | None) -> PairSet:
    """Pairs of harvested collections and/or a JSON-lines file; unknown collection names are refused."""
    from iconosearch.evaluation.pairs import PairSet, pairs_from_harvest, pairs_from_jsonl

    if not collections and pairs_file is None:
        raise JobError("name at least one harvested collection, or give --pairs FILE")
    known = harvested_collections(data_dir)
    unknown = [c for c in collections if c not in known]
    if unknown:
        raise JobError(
            f"unknown collection(s) {', '.join(unknown)}: harvested ones are "
            f"{', '.join(sorted(known)) or 'none'} (run 'iconosearch harvest' first)"
        )
    parts: list[PairSet] = []
    if collections:
        parts.append(pairs_from_harvest(data_dir / "state.sqlite", list(collections)))
    if pairs_file is not None:
        try:
            parts.append(pairs_from_jsonl(pairs_file))
        except (OSError, ValueError) as exc:
            raise JobError(f"cannot read pairs from {pairs_file}: {exc}") from exc
    excluded: dict[str, int] = {}
    for p in parts:
        for k, v in p.excluded.items():
            excluded[k] = excluded.get(k, 0) + v
    return PairSet(pairs=tuple(x for p in parts for x in p.pairs), excluded=excluded)


@dataclass(frozen=True, slots=True)
class EvaluationPairs:
    pairs: tuple[Pair, ...]
    split_name: str
    excluded: dict[str, int]  # reason → records left out (unusable pairs, undecodable images)


def evaluation_pairs(
    data_dir: Path,
    *,
    collections: Sequence[str],
    pairs_file: Path | None,
    split_file: Path | None,
    part: str,
    max_pixels: int,
) -> EvaluationPairs:
    """The decodable pairs to evaluate on: all pairs, or one part of a split (which names its material)."""
    from iconosearch.evaluation.benchmark import decodable
    from iconosearch.evaluation.pairs import PARTS, Split

    if part not in PARTS:
        raise JobError(f"unknown --part {part!r}: choose one of {', '.join(PARTS)}")
    split = None
    if split_file is not None:
        try:
            split = Split.load(split_file)
        except (OSError, ValueError, KeyError) as exc:
            raise JobError(f"cannot read split file {split_file}: {exc}") from exc
    names, source_file = list(collections), pairs_file
    if split is not None and not names and source_file is None:
        # A split written by `finetune` names the collections and pairs file it was made from.
        names, source_file = list(split.collections), split.pairs_file
        if not names and source_file is None:
            raise JobError(
                f"{split_file} does not name its collections (written before 0.2): "
                "give --collection NAME or --pairs FILE"
            )
    pair_set = load_pairs(data_dir, names, source_file)
    pairs: Sequence[Pair] = pair_set.pairs
    split_name = "all pairs"
    if split is not None:
        pairs = split.select(pairs, part)
        split_name = f"{part} of {split_file}"
    if len(pairs) < 2:
        raise JobError(
            f"{len(pairs)} evaluation pairs: need at least 2 (check the collections, --split and --part)"
        )
    pairs, rejected = decodable(pairs, max_pixels)
    if len(pairs) < 2:
        raise JobError(f"{len(pairs)} decodable evaluation pairs: need at least 2")
    return EvaluationPairs(tuple(pairs), split_name, {**pair_set.excluded, **rejected})


@dataclass(frozen=True, slots=True)
class ComparisonSettings:
    base: str
    resamples: int = 1000
    confidence: float = 0.95
    seed: int = 0
    batch_size: int = 32
    latency_queries: int = 20
    max_pixels: int = 50_000_000
    threads: int | None = None
    device: str | None = None


def compare_models(
    specs: Sequence[str],
    chosen: EvaluationPairs,
    settings: ComparisonSettings,
    progress: StageProgress | None = None,
) -> BenchResult:
    """Embed the pairs with every spec and compare each with the base (paired bootstrap CIs)."""
    import torch

    from iconosearch.evaluation.benchmark import ModelEmbeddings, compare, embed_eval_set, eval_set
    from iconosearch.models.embedder import load_embedder

    if settings.threads:
        torch.set_num_threads(settings.threads)
    notes = (f"{torch.get_num_threads()} torch CPU threads; device {settings.device or 'default'}",)
    data = eval_set(chosen.pairs)
    embedders = {s: load_embedder(s, device=settings.device) for s in specs}
    embeddings: dict[str, ModelEmbeddings] = {}
    for spec, emb in embedders.items():
        embeddings[spec] = embed_eval_set(
            emb,
            data,
            batch_size=settings.batch_size,
            latency_queries=settings.latency_queries,
            max_pixels=settings.max_pixels,
            progress=_stage(progress, f"embedding with {spec}"),
        )
    result = compare(
        data,
        embeddings,
        base=settings.base,
        fingerprints={s: e.fingerprint for s, e in embedders.items()},
        n_resamples=settings.resamples,
        confidence=settings.confidence,
        seed=settings.seed,
        split_name=chosen.split_name,
    )
    return replace(result, notes=notes)


def _stage(progress: StageProgress | None, label: str) -> Callable[[int, int], None] | None:
    if progress is None:
        return None

    def update(done: int, total: int) -> None:
        progress(label, done, total)

    return update
