"""Fine-tuning as a job: the pairs and split to train on, where the model goes, and the run itself.

The ``finetune`` command parses its options, calls :func:`plan_finetune` and :func:`run_finetune_job`,
and presents the result; the choices made here are tested without the CLI.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from iconosearch.evaluation.jobs import JobError

if TYPE_CHECKING:
    from iconosearch.evaluation.pairs import Pair, PairSet, Split
    from iconosearch.training.epochs import EpochLog
    from iconosearch.training.finetune import FinetuneResult
    from iconosearch.training.finetune_config import FinetuneConfig
    from iconosearch.training.inputs import ProgressFn


@dataclass(frozen=True, slots=True)
class SplitRequest:
    """How to split the pairs when no split file is given."""

    val_fraction: float
    test_fraction: float
    seed: int
    min_eval_pairs: int


@dataclass(frozen=True, slots=True)
class FinetunePlan:
    split: Split
    train: tuple[Pair, ...]
    val: tuple[Pair, ...]
    test: tuple[Pair, ...]
    excluded: dict[str, int]  # reason → records left out of the pairs
    out_dir: Path


def plan_finetune(
    pair_set: PairSet,
    data_dir: Path,
    *,
    collections: Sequence[str],
    holdout: Sequence[str],
    pairs_file: Path | None,
    split_file: Path | None,
    how: SplitRequest,
    mode: str,
    name: str | None,
    output: Path | None,
) -> FinetunePlan:
    """Split the pairs (of ``collections`` + ``holdout`` and/or ``pairs_file``, from :func:`load_pairs`) by
    manifest, or read the split, and choose the output folder."""
    from iconosearch.evaluation.pairs import Split, TooFewPairsError, split_by_group

    try:
        if split_file is not None:
            split = Split.load(split_file)
        else:
            split = split_by_group(
                pair_set.pairs,
                val_fraction=how.val_fraction,
                test_fraction=how.test_fraction,
                seed=how.seed,
                min_eval_pairs=how.min_eval_pairs,
                heldout_collections=holdout,
            )
    except TooFewPairsError as exc:
        raise JobError(str(exc)) from exc
    except (OSError, ValueError, KeyError) as exc:
        raise JobError(f"cannot use split file {split_file}: {exc}") from exc
    # The split names its material, so `evaluate --split FILE` needs nothing else.
    split = replace(split, collections=(*collections, *holdout), pairs_file=pairs_file)
    train, val, test = (tuple(split.select(pair_set.pairs, part)) for part in ("train", "val", "test"))
    if not train or not val:
        raise JobError(
            f"the split leaves {len(train)} training and {len(val)} validation pairs; nothing to train"
        )
    label = name or f"{'-'.join(collections) or (pairs_file.stem if pairs_file else 'model')}-{mode}"
    out_dir = (output or data_dir / "models" / label).resolve()
    return FinetunePlan(split, train, val, test, dict(pair_set.excluded), out_dir)


def run_finetune_job(
    plan: FinetunePlan,
    spec: str,
    config: FinetuneConfig,
    *,
    feature_cache: Path,
    device: str | None = None,
    resume: bool = False,
    n_resamples: int = 1000,
    progress: ProgressFn | None = None,
    on_epoch: Callable[[EpochLog], None] | None = None,
) -> FinetuneResult:
    """Load the base model and fine-tune it as planned; file-system errors end in one clear line."""
    from iconosearch.models.embedder import load_embedder
    from iconosearch.storage import writing
    from iconosearch.training.finetune import finetune

    base = load_embedder(spec, device=device)
    with writing(f"fine-tuning {spec}", plan.out_dir):
        return finetune(
            base,
            plan.train,
            plan.val,
            plan.test,
            plan.split,
            plan.out_dir,
            config,
            device=device,
            feature_cache=feature_cache,
            resume=resume,
            progress=progress,
            on_epoch=on_epoch,
            n_resamples=n_resamples,
            excluded=plan.excluded,
        )
