"""Fine-tune an open_clip model on a collection's image–caption pairs.

Modes follow open_clip's locking conventions:

- ``full``: every weight trains;
- ``lit``: the image tower is locked (``lock_image_tower``), the text tower trains (LiT);
- ``text-locked``: the text tower is locked except its last N layers (``lock_text_tower(unlocked_layers=N)``),
  the image tower trains;
- ``heads``: both towers locked, only the projection heads and the temperature train (what
  iconosearch-lite itself is).

Towers always run in eval mode (dropout off, batch-norm statistics frozen): with a few thousand pairs,
updating BN statistics from small batches hurts more than it helps. Frozen trunks' outputs are cached on disk
(:mod:`iconosearch.training.inputs`), for iconosearch-lite and open_clip ViT bases alike.

Training: symmetric InfoNCE (open_clip's ``ClipLoss``, through ``training.contrastive.contrastive_loss``)
with a learnable, clamped temperature; AdamW (no decay on gains, biases and the temperature); linear warm-up
then cosine decay; gradient accumulation; mixed precision on GPU only; early stopping on validation mean
recall. A checkpoint is written before the first epoch and after every epoch, from which an interrupted run
resumes exactly (batch order and dropout are seeded per epoch). The base's own validation recall is the bar
to beat: when no epoch beats it, the saved model is the base (best epoch 0) — fine-tuning never ships a
model that validated worse.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from iconosearch.evaluation.benchmark import EvalSet, compare, eval_set
from iconosearch.evaluation.metrics import metrics_from_ranks, retrieval_ranks
from iconosearch.evaluation.pairs import Pair, Split
from iconosearch.models.precision import autocast, autocast_dtype
from iconosearch.training.epochs import EpochLog
from iconosearch.training.features import FeatureCache, digest
from iconosearch.training.finetune_config import (
    MODES,
    FinetuneConfig,
    FinetuneError,
    FinetuneResult,
    Mode,
)
from iconosearch.training.inputs import (
    Inputs,
    ProgressFn,
    build_inputs,
    embed_inputs,
    image_batch,
    text_batch,
)
from iconosearch.training.trainee import HEAD_PREFIXES, Trainee

if TYPE_CHECKING:
    import torch

    from iconosearch.models.embedder import Embedder

CHECKPOINT_FILE = "checkpoint.pt"
WORK_DIR = ".work"
LOGIT_SCALE_MAX = math.log(100.0)


# --------------------------------------------------------------------------------------------------
# Evaluation during training
# --------------------------------------------------------------------------------------------------


def mean_recall(metrics: dict[str, dict[str, float | int]]) -> float:
    """Mean of R@1/5/10 over both directions: the early-stopping criterion."""
    vals = [float(v) for d in ("t2i", "i2t") for k, v in metrics[d].items() if k.startswith("R@")]
    return sum(vals) / len(vals)


def evaluate(
    trainee: Trainee, inputs: Inputs, data: EvalSet, config: FinetuneConfig, clip_loss: Any
) -> tuple[float, dict[str, dict[str, float | int]]]:
    """Validation InfoNCE (first caption per image, batches of ``batch_size``) and retrieval metrics."""
    import torch

    emb = embed_inputs(trainee, inputs, config)
    metrics = metrics_from_ranks(
        retrieval_ranks(emb.texts, emb.images, data.text_items, data.image_items)
    ).as_dict()
    losses, weights = [], []
    first = [c[0] for c in inputs.caption_index]
    with torch.inference_mode():
        scale = trainee.model.logit_scale.exp()
        for a in range(0, len(first), config.batch_size):
            idx = list(range(a, min(len(first), a + config.batch_size)))
            if len(idx) < 2:
                continue
            img = torch.nn.functional.normalize(
                image_batch(trainee, inputs, idx, config, 0.0).float(), dim=-1
            )
            txt = torch.nn.functional.normalize(
                text_batch(trainee, inputs, [first[i] for i in idx], 0.0).float(), dim=-1
            )
            losses.append(float(clip_loss(img, txt, scale)))
            weights.append(len(idx))
    val_loss = float(np.average(losses, weights=weights)) if losses else float("nan")
    return val_loss, metrics


# --------------------------------------------------------------------------------------------------
# Optimisation
# --------------------------------------------------------------------------------------------------


def _param_groups(trainee: Trainee, config: FinetuneConfig) -> list[dict[str, Any]]:
    """AdamW groups: heads vs towers (own learning rates); no weight decay on gains, biases, temperature."""
    groups: dict[tuple[bool, bool], list[Any]] = {}
    for name, p in trainee.model.named_parameters():
        if not p.requires_grad:
            continue
        head = name.startswith(HEAD_PREFIXES)
        decay = p.ndim >= 2 and "logit" not in name and "embedding" not in name
        groups.setdefault((head, decay), []).append(p)
    return [
        {
            "params": params,
            "lr": config.lr if head else config.tower_lr,
            "weight_decay": config.weight_decay if decay else 0.0,
        }
        for (head, decay), params in sorted(groups.items())
    ]


def warmup_cosine(step: int, warmup: int, total: int) -> float:
    """LR multiplier: linear warm-up to 1, then cosine to 0 (open_clip's ``cosine_lr`` shape)."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _config_key(config: FinetuneConfig, base: Trainee, split: Split, n_train: int) -> str:
    payload = {
        "config": {k: v for k, v in asdict(config).items() if k not in ("patience", "threads")},
        "base": base.base_fingerprint,
        "split": sorted(split.assignment.items()),
        "n_train": n_train,
    }
    return digest(json.dumps(payload, sort_keys=True, default=str))


@contextlib.contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """Run with ``threads`` torch CPU threads (None: leave as is), restoring the previous count after."""
    import torch

    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@dataclass
class _Run:
    """One run's training state: what a checkpoint holds, plus the fixed parts it is rebuilt from."""

    trainee: Trainee
    config: FinetuneConfig
    train_in: Inputs
    val_in: Inputs
    val_data: EvalSet
    key: str
    ckpt_path: Path
    optimizer: Any
    scheduler: Any
    scaler: Any
    device: str
    precision: str
    batches_per_epoch: int
    best: dict[str, Any]
    history: list[EpochLog] = field(default_factory=list)
    bad_epochs: int = 0
    epoch: int = 0
    resumed_from: int | None = None
    train_s: float = 0.0
    examples: int = 0

    def save_checkpoint(self) -> None:
        import torch

        data = {
            "key": self.key,
            "epoch": self.epoch,
            "state": self.trainee.trainable_state(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "history": [asdict(h) for h in self.history],
            "best": self.best,
            "bad_epochs": self.bad_epochs,
        }
        self.ckpt_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.ckpt_path.with_suffix(".tmp")
        torch.save(data, tmp)
        tmp.replace(self.ckpt_path)

    def start(self, output_dir: Path, *, resume: bool) -> None:
        """Continue from the checkpoint when resuming, else write the epoch-0 one (so that a run killed in
        its first epoch can be resumed too)."""
        if not self.ckpt_path.is_file():
            self.save_checkpoint()
            return
        if not resume:
            raise FinetuneError(
                f"{output_dir} holds an unfinished run; resume it with --resume or choose another output"
            )
        self.restore(output_dir)

    def restore(self, output_dir: Path) -> None:
        import torch

        ck = torch.load(self.ckpt_path, map_location="cpu", weights_only=False)
        if ck["key"] != self.key:
            raise FinetuneError(
                f"the checkpoint in {self.ckpt_path} belongs to a run with other settings, base model or "
                f"split; use the same settings or another output folder than {output_dir}"
            )
        self.trainee.load_trainable_state(ck["state"])
        self.optimizer.load_state_dict(ck["optimizer"])
        self.scheduler.load_state_dict(ck["scheduler"])
        if self.scaler is not None and ck.get("scaler"):
            self.scaler.load_state_dict(ck["scaler"])
        self.history = [EpochLog(**h) for h in ck["history"]]
        self.best, self.bad_epochs = ck["best"], ck["bad_epochs"]
        self.epoch = self.resumed_from = ck["epoch"]


def _new_run(
    trainee: Trainee,
    config: FinetuneConfig,
    train_in: Inputs,
    val_in: Inputs,
    key: str,
    ckpt_path: Path,
    base_val_recall: float,
) -> _Run:
    import torch

    optimizer = torch.optim.AdamW(_param_groups(trainee, config))
    n = len(train_in.pairs)
    batches_per_epoch = max(1, n // config.batch_size) if n >= config.batch_size else 1
    steps_per_epoch = max(1, math.ceil(batches_per_epoch / config.accumulation_steps))
    total_steps = steps_per_epoch * config.epochs
    warmup = min(total_steps, max(1, round(config.warmup_epochs * steps_per_epoch)))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(s, warmup, total_steps))
    # Mixed precision only on CUDA: on CPU it is slower than fp32 for these models.
    precision = config.precision if trainee.device.startswith("cuda") else "fp32"
    scaler = (
        torch.amp.GradScaler("cuda") if autocast_dtype(trainee.device, precision) == torch.float16 else None
    )
    return _Run(
        trainee=trainee,
        config=config,
        train_in=train_in,
        val_in=val_in,
        val_data=eval_set(val_in.pairs),
        key=key,
        ckpt_path=ckpt_path,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=scaler,
        device=trainee.device,
        precision=precision,
        batches_per_epoch=batches_per_epoch,
        best={"recall": base_val_recall, "epoch": 0, "state": trainee.trainable_state()},
    )


def _train_epoch(run: _Run, epoch: int, clip_loss: Any, progress: ProgressFn | None) -> tuple[float, int]:
    """One pass over the training pairs; returns (mean loss, examples seen)."""
    import torch

    config, trainee = run.config, run.trainee
    # Seeded per epoch: a resumed run draws the same batches and dropout masks as an unbroken one.
    torch.manual_seed(config.seed * 100_003 + epoch)
    rng = np.random.default_rng([config.seed, epoch])
    order = rng.permutation(len(run.train_in.pairs))
    caption_pick = [c[int(rng.integers(len(c)))] for c in run.train_in.caption_index]
    epoch_loss, seen = 0.0, 0
    run.optimizer.zero_grad(set_to_none=True)
    for b in range(run.batches_per_epoch):
        idx = order[b * config.batch_size : (b + 1) * config.batch_size].tolist()
        if len(idx) < 2:
            continue
        with autocast(run.device, run.precision):
            img = image_batch(trainee, run.train_in, idx, config, config.feature_dropout)
            txt = text_batch(trainee, run.train_in, [caption_pick[i] for i in idx], config.feature_dropout)
            img = torch.nn.functional.normalize(img, dim=-1)
            txt = torch.nn.functional.normalize(txt, dim=-1)
            loss = clip_loss(img.float(), txt.float(), trainee.model.logit_scale.exp())
        scaled = loss / config.accumulation_steps
        (run.scaler.scale(scaled) if run.scaler is not None else scaled).backward()
        if (b + 1) % config.accumulation_steps == 0 or b == run.batches_per_epoch - 1:
            if run.scaler is not None:
                run.scaler.step(run.optimizer)
                run.scaler.update()
            else:
                run.optimizer.step()
            run.optimizer.zero_grad(set_to_none=True)
            run.scheduler.step()
            with torch.no_grad():
                trainee.model.logit_scale.clamp_(0, LOGIT_SCALE_MAX)
        epoch_loss += float(loss.detach()) * len(idx)
        seen += len(idx)
        if progress:
            progress(f"epoch {epoch}/{config.epochs}", b + 1, run.batches_per_epoch)
    return epoch_loss / max(1, seen), seen


def _train(
    run: _Run, clip_loss: Any, progress: ProgressFn | None, on_epoch: Callable[[EpochLog], None] | None
) -> bool:
    """Epochs from the run's next one until the last or early stopping; returns whether it stopped early."""
    config = run.config
    stopped_early = run.bad_epochs >= config.patience
    for epoch in range(run.epoch + 1, config.epochs + 1):
        if stopped_early:
            break
        t0 = time.perf_counter()
        train_loss, seen = _train_epoch(run, epoch, clip_loss, progress)
        run.train_s += time.perf_counter() - t0
        run.examples += seen
        val_loss, val_metrics = evaluate(run.trainee, run.val_in, run.val_data, config, clip_loss)
        score = mean_recall(val_metrics)
        log = EpochLog(
            epoch=epoch,
            train_loss=train_loss,
            val_loss=val_loss,
            val_mean_recall=score,
            val_metrics=val_metrics,
            lr=float(run.scheduler.get_last_lr()[0]),
            logit_scale=float(run.trainee.model.logit_scale.detach().exp()),
            seconds=time.perf_counter() - t0,
            examples=seen,
        )
        run.history.append(log)
        if score > float(run.best["recall"]):
            run.best = {"recall": score, "epoch": epoch, "state": run.trainee.trainable_state()}
            run.bad_epochs = 0
        else:
            run.bad_epochs += 1
        stopped_early = run.bad_epochs >= config.patience and epoch < config.epochs
        run.epoch = epoch
        run.save_checkpoint()
        if on_epoch:
            on_epoch(log)
    return stopped_early


# --------------------------------------------------------------------------------------------------
# The whole run
# --------------------------------------------------------------------------------------------------


def finetune(
    base: Embedder,
    pairs_train: Sequence[Pair],
    pairs_val: Sequence[Pair],
    pairs_test: Sequence[Pair],
    split: Split,
    output_dir: Path,
    config: FinetuneConfig,
    *,
    device: str | None = None,
    feature_cache: Path | None = None,
    resume: bool = False,
    progress: ProgressFn | None = None,
    on_epoch: Callable[[EpochLog], None] | None = None,
    n_resamples: int = 1000,
    excluded: dict[str, int] | None = None,
    write_docs: bool = True,
) -> FinetuneResult:
    """Train, keep the best epoch on validation, save a loadable model + card + datasheet; return the run."""
    import torch

    from iconosearch.training.contrastive import contrastive_loss

    t_start = time.perf_counter()
    if len(pairs_train) < 2 or len(pairs_val) < 2:
        raise FinetuneError(
            f"need at least 2 training and 2 validation pairs, got {len(pairs_train)}/{len(pairs_val)}"
        )
    trainee = Trainee(base, device or ("cuda" if torch.cuda.is_available() else "cpu"))
    trainee.lock(config)
    cache = FeatureCache(feature_cache)
    excluded = dict(excluded or {})
    train_in, val_in, feature_s = _training_inputs(
        trainee, pairs_train, pairs_val, config, cache, progress, excluded
    )
    work = output_dir / WORK_DIR
    key = _config_key(config, trainee, split, len(train_in.pairs))
    base_state = trainee.trainable_state()
    base_val_loss, base_val = evaluate(trainee, val_in, eval_set(val_in.pairs), config, contrastive_loss)
    run = _new_run(trainee, config, train_in, val_in, key, work / CHECKPOINT_FILE, mean_recall(base_val))
    run.start(output_dir, resume=resume)
    # Heads-only training is tiny: one thread avoids contention on shared cores (measured up to 10x faster).
    with _torch_threads(config.threads or (1 if config.mode == "heads" else None)):
        stopped_early = _train(run, contrastive_loss, progress, on_epoch)
    trainee.load_trainable_state(run.best["state"])
    test_in, test_result = _test_comparison(
        trainee,
        base.spec,
        base_state,
        run.best["state"],
        pairs_test,
        config,
        cache,
        progress,
        output_dir,
        n_resamples,
    )
    if test_in is not None:
        _count_rejected(excluded, test_in)
    result = _result(run, output_dir, test_result, base_val, base_val_loss, t_start, feature_s, stopped_early)
    counts = {
        "train": len(train_in.pairs),
        "val": len(val_in.pairs),
        "test": len(test_in.pairs) if test_in is not None else len(pairs_test),
        **{f"excluded:{k}": v for k, v in excluded.items()},
    }
    result = replace(result, counts=counts)
    _write_outputs(result, trainee, config, split, train_in, val_in, test_in, excluded, write_docs)
    # The run is complete: the checkpoint is no longer needed to resume.
    run.ckpt_path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        work.rmdir()
    return result


def _result(
    run: _Run,
    output_dir: Path,
    test_result: Any,
    base_val: dict[str, dict[str, float | int]],
    base_val_loss: float,
    t_start: float,
    feature_s: float,
    stopped_early: bool,
) -> FinetuneResult:
    return FinetuneResult(
        output_dir=output_dir,
        spec=f"local-dir:{output_dir}",
        best_epoch=int(run.best["epoch"]),
        history=tuple(run.history),
        test=test_result,
        base_val_mean_recall=mean_recall(base_val),
        base_val_loss=base_val_loss,
        wall_s=time.perf_counter() - t_start,
        train_s=run.train_s,
        feature_s=feature_s,
        examples_per_s=run.examples / run.train_s if run.train_s > 0 else float("nan"),
        resumed_from_epoch=run.resumed_from,
        stopped_early=stopped_early,
        counts={},
    )


def _training_inputs(
    trainee: Trainee,
    pairs_train: Sequence[Pair],
    pairs_val: Sequence[Pair],
    config: FinetuneConfig,
    cache: FeatureCache,
    progress: ProgressFn | None,
    excluded: dict[str, int],
) -> tuple[Inputs, Inputs, float]:
    """Training and validation inputs (frozen features on torch's threads: all cores) and their seconds."""
    t_feat = time.perf_counter()
    train_in = build_inputs(
        trainee, pairs_train, config, cache, keep_pixels=False, progress=progress, stage="train"
    )
    val_in = build_inputs(
        trainee, pairs_val, config, cache, keep_pixels=True, progress=progress, stage="validation"
    )
    for inputs in (train_in, val_in):
        _count_rejected(excluded, inputs)
    if len(train_in.pairs) < 2 or len(val_in.pairs) < 2:
        raise FinetuneError(
            f"too few decodable images: {len(train_in.pairs)} training, {len(val_in.pairs)} validation"
        )
    return train_in, val_in, time.perf_counter() - t_feat


def _count_rejected(excluded: dict[str, int], inputs: Inputs) -> None:
    for reason, k in inputs.rejected.items():
        excluded[f"image-{reason}"] = excluded.get(f"image-{reason}", 0) + k


def _test_comparison(
    trainee: Trainee,
    base_spec: str,
    base_state: dict[str, torch.Tensor],
    best_state: dict[str, torch.Tensor],
    pairs_test: Sequence[Pair],
    config: FinetuneConfig,
    cache: FeatureCache,
    progress: ProgressFn | None,
    output_dir: Path,
    n_resamples: int,
) -> tuple[Inputs | None, Any]:
    """Base and fine-tuned on the test pairs (paired bootstrap CIs); (None, None) without a test part."""
    if len(pairs_test) < 2:
        return None, None
    test_in = build_inputs(
        trainee, pairs_test, config, cache, keep_pixels=True, progress=progress, stage="test"
    )
    tuned = embed_inputs(trainee, test_in, config)
    trainee.load_trainable_state(base_state)
    base_emb = embed_inputs(trainee, test_in, config)
    trainee.load_trainable_state(best_state)
    result = compare(
        eval_set(test_in.pairs),
        {base_spec: base_emb, f"local-dir:{output_dir}": tuned},
        base=base_spec,
        n_resamples=n_resamples,
        seed=config.seed,
    )
    return test_in, result


def _write_outputs(
    result: FinetuneResult,
    trainee: Trainee,
    config: FinetuneConfig,
    split: Split,
    train_in: Inputs,
    val_in: Inputs,
    test_in: Inputs | None,
    excluded: dict[str, int],
    write_docs: bool,
) -> None:
    from iconosearch.training.saving import save_model, training_summary

    output_dir = result.output_dir
    save_model(trainee, output_dir, config, best_epoch=result.best_epoch)
    split.save(output_dir / "split.json")
    (output_dir / "training.json").write_text(
        json.dumps(training_summary(result, config, trainee), indent=2, default=str) + "\n", encoding="utf-8"
    )
    if write_docs:
        from iconosearch.training.cards import write_datasheet, write_finetune_card

        test_pairs = test_in.pairs if test_in is not None else ()
        write_finetune_card(
            output_dir / "MODEL_CARD.md",
            result,
            config,
            base_spec=trainee.base_spec,
            pairs_train=train_in.pairs,
        )
        write_datasheet(
            output_dir / "DATASHEET.md", train_in.pairs, val_in.pairs, test_pairs, split, excluded
        )


__all__ = [
    "MODES",
    "EpochLog",
    "FinetuneConfig",
    "FinetuneError",
    "FinetuneResult",
    "Mode",
    "finetune",
    "warmup_cosine",
]
