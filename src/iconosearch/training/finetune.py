"""Fine-tune an open_clip model on a collection's image–caption pairs.

Modes follow open_clip's locking conventions:

- ``full``: every weight trains;
- ``lit``: the image tower is locked (``lock_image_tower``), the text tower trains (LiT);
- ``text-locked``: the text tower is locked except its last N layers (``lock_text_tower(unlocked_layers=N)``),
  the image tower trains;
- ``heads``: both towers locked, only the projection heads and the temperature train (what
  iconosearch-lite itself is).

Towers always run in eval mode (dropout off, batch-norm statistics frozen): with a few thousand pairs,
updating BN statistics from small batches hurts more than it helps. When a locked tower is separable from its
head (iconosearch-lite: timm trunk + head, MiniLM + projection), its outputs are computed once and cached on
disk by content hash, so heads-only and LiT epochs do not re-run that tower.

Training: symmetric InfoNCE (open_clip's ``ClipLoss``, through ``training.contrastive.contrastive_loss``)
with a learnable, clamped temperature; AdamW (no decay on gains, biases and the temperature); linear warm-up
then cosine decay; gradient accumulation; mixed precision on GPU only; early stopping on validation mean
recall; a checkpoint after every epoch from which an interrupted run resumes exactly (batch order and
dropout are seeded per epoch). The base's own validation recall is the bar to beat: when no epoch beats it,
the saved model is the base (best epoch 0) — fine-tuning never ships a model that validated worse.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import math
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from iconosearch.evaluation.benchmark import EvalSet, ModelEmbeddings, compare, eval_set
from iconosearch.evaluation.metrics import metrics_from_ranks, retrieval_ranks
from iconosearch.evaluation.pairs import Pair, Split
from iconosearch.models.precision import autocast, autocast_dtype
from iconosearch.training.epochs import EpochLog
from iconosearch.training.features import FeatureCache, digest, lite_tower_keys
from iconosearch.training.finetune_config import (
    MODES,
    FinetuneConfig,
    FinetuneError,
    FinetuneResult,
    Mode,
)

if TYPE_CHECKING:
    import torch

    from iconosearch.models.embedder import Embedder

CHECKPOINT_FILE = "checkpoint.pt"
WORK_DIR = ".work"
LOGIT_SCALE_MAX = math.log(100.0)
HEAD_PREFIXES = ("visual.head.", "visual.proj", "text.proj.", "text_projection", "logit_scale", "logit_bias")
ProgressFn = Callable[[str, int, int], None]
"""(stage, done, total)."""


# --------------------------------------------------------------------------------------------------
# The model under training
# --------------------------------------------------------------------------------------------------


class Trainee:
    """The parts of a base model that training needs, for iconosearch-lite and generic open_clip models."""

    def __init__(self, base: Embedder, device: str) -> None:
        from iconosearch.models.embedder import LiteEmbedder, OpenClipEmbedder

        self.base_spec = base.spec
        self.base_fingerprint = base.fingerprint
        self.device = device
        self.lite: Any = None
        self._override: str | None = None
        if isinstance(base, LiteEmbedder):
            from iconosearch.models.lite import LiteModel

            src = base.lite
            if src.text_tower is not None:
                raise FinetuneError(
                    f"fine-tuning a lite model with the {src.config.text_tower!r} text tower is not "
                    "supported: train its heads with the lite build instead"
                )
            # A private copy: the loaded base stays untouched (it is cached and used as the reference).
            self.lite = LiteModel(src.config, copy.deepcopy(src.clip), src.classifier, src.class_text)
            self.lite.to(device)
            self.model: Any = self.lite.clip
        elif isinstance(base, OpenClipEmbedder):
            self.model = copy.deepcopy(base.model).to(device)
        else:
            raise FinetuneError(f"model {base.spec!r} is not an open_clip model and cannot be fine-tuned")
        self.preprocess: Callable[[Any], torch.Tensor] = base.preprocess
        self.tokenizer: Callable[[Sequence[str]], torch.Tensor] = base.tokenizer
        self.model.eval()

    @property
    def is_lite(self) -> bool:
        return self.lite is not None

    def lock(self, config: FinetuneConfig) -> None:
        """Set ``requires_grad`` per mode with open_clip's own locking methods."""
        self.model.requires_grad_(True)
        # HF towers print "Unlocking N layers" on stdout; keep stdout clean for --json.
        with contextlib.redirect_stdout(io.StringIO()):
            if config.mode in ("lit", "heads"):
                # freeze_bn_stats=True swaps timm's BatchNormAct2d for FrozenBatchNorm2d, which drops the
                # activation and blows EfficientNet's features up (~1e15); eval mode already freezes BN stats.
                self.model.lock_image_tower(unlocked_groups=0, freeze_bn_stats=False)
            if config.mode == "heads":
                self.model.lock_text_tower(unlocked_layers=0, freeze_layer_norm=True)
            elif config.mode == "text-locked":
                try:
                    self.model.lock_text_tower(
                        unlocked_layers=config.unlocked_text_layers, freeze_layer_norm=True
                    )
                except KeyError:
                    # open_clip's HF architecture table lacks BERT's layer names: the same rule by hand.
                    _lock_hf_text(self.model.text, config.unlocked_text_layers)
        if config.mode == "heads":
            # Towers of built-in CLIPs lock their projections too; the heads are what this mode trains.
            for name, p in self.model.named_parameters():
                p.requires_grad_(name.startswith(HEAD_PREFIXES))
        self.model.logit_scale.requires_grad_(True)
        if not any(p.requires_grad for name, p in self.model.named_parameters() if name != "logit_scale"):
            raise FinetuneError(f"mode {config.mode!r} leaves nothing to train in {self.base_spec!r}")

    def trainable_state(self) -> dict[str, torch.Tensor]:
        return {n: p.detach().cpu().clone() for n, p in self.model.named_parameters() if p.requires_grad}

    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        _, unexpected = self.model.load_state_dict(state, strict=False)
        if unexpected:
            raise FinetuneError(f"checkpoint holds unknown weights: {unexpected[:5]}")

    # Image side: trunk (cacheable when frozen and separable) → head.
    def image_frozen(self) -> bool:
        if not self.is_lite:
            return False
        return not any(p.requires_grad for p in self.model.visual.trunk.parameters())

    def text_frozen(self) -> bool:
        if not self.is_lite:
            return False
        return not any(p.requires_grad for p in self.model.text.transformer.parameters())

    def image_trunk(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.lite.image_features(pixels) if self.is_lite else pixels

    def text_trunk(self, tokens: torch.Tensor) -> torch.Tensor:
        if not self.is_lite:
            return tokens
        return self.lite.text_features(tokens)  # it cuts the padding itself

    def image_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.visual.head(x) if self.is_lite else self.model.encode_image(x)

    def text_head(self, x: torch.Tensor) -> torch.Tensor:
        if self.is_lite:
            return self.model.text.proj(x)
        from iconosearch.models.embedder import encode_clip_text  # dynamic padding, where exact

        return encode_clip_text(self.model, x)

    def final_image(self, x: torch.Tensor) -> torch.Tensor:
        """Vectors as the saved model embeds them (lite: fused with the concept bridge when it has one)."""
        import torch

        if self.is_lite:
            return self.lite.embed_image_features(x)
        return torch.nn.functional.normalize(self.image_head(x), dim=-1)

    def final_text(self, x: torch.Tensor) -> torch.Tensor:
        import torch

        if self.is_lite:
            return self.lite.embed_text_features(x)
        return torch.nn.functional.normalize(self.text_head(x), dim=-1)

    def tower_keys(self, image_side: int) -> tuple[str, str]:
        if self._override is None:
            self._override = _tower_override_digest(self.base_spec)
        return lite_tower_keys(self.lite.config, image_side, self._override)


def _lock_hf_text(text: Any, unlocked_layers: int) -> None:
    """open_clip's ``HFTextEncoder.lock``: freeze embeddings and all but the last N transformer layers."""
    transformer = text.transformer
    encoder = getattr(transformer, "encoder", transformer)
    layers = getattr(encoder, "layer", None) or getattr(encoder, "layers", None)
    embeddings = getattr(transformer, "embeddings", None)
    if layers is None or embeddings is None:
        raise FinetuneError(f"cannot find the layers of text tower {type(transformer).__name__} to lock")
    for module in [embeddings, *layers][:-unlocked_layers]:
        module.requires_grad_(False)


def _tower_override_file(spec: str) -> Path | None:
    """A fine-tuned lite folder's tower weights (``towers.safetensors``), when the spec names one."""
    from iconosearch.models.lite import TOWERS_FILE
    from iconosearch.models.specs import parse_spec

    path = parse_spec(spec).path
    folder = path if path is None or path.is_dir() else path.parent
    towers = folder / TOWERS_FILE if folder is not None else None
    return towers if towers is not None and towers.is_file() else None


def _tower_override_digest(spec: str) -> str:
    """Digest of the tower weights replacing the packaged ones, "" when there are none."""
    towers = _tower_override_file(spec)
    return hashlib.sha256(towers.read_bytes()).hexdigest() if towers is not None else ""


# --------------------------------------------------------------------------------------------------
# Data: images and captions as tower inputs or cached tower outputs
# --------------------------------------------------------------------------------------------------


@dataclass
class Inputs:
    """Tower inputs of a set of pairs: cached features where the tower is frozen, else raw inputs."""

    pairs: tuple[Pair, ...]
    caption_index: list[list[int]]
    """Per pair, indices of its captions in the flat caption arrays."""
    image_feats: torch.Tensor | None
    text_feats: torch.Tensor | None
    tokens: torch.Tensor | None
    pixels: torch.Tensor | None = None
    """Preprocessed images kept in memory (validation/test only, when the image tower trains)."""
    rejected: dict[str, int] = field(default_factory=dict)
    """Pairs left out because their image cannot be decoded, by reason."""


def _chunks(n: int, size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, n, size):
        yield start, min(n, start + size)


def _decode(pair: Pair, config: FinetuneConfig) -> Any:
    from iconosearch.images import open_image

    return open_image(pair.image_path, max_pixels=config.max_pixels, max_side=config.image_side)


def build_inputs(
    trainee: Trainee,
    pairs: Sequence[Pair],
    config: FinetuneConfig,
    cache: FeatureCache,
    *,
    keep_pixels: bool,
    progress: ProgressFn | None = None,
    stage: str = "features",
    batch_size: int = 32,
) -> Inputs:
    """Tokenise captions and compute (or load) the frozen towers' features of ``pairs``.

    Pairs whose image cannot be decoded are left out and counted in ``Inputs.rejected``.
    """
    import torch

    from iconosearch.images import ImageRejectedError, probe_image

    rejected: dict[int, str] = {}
    if not trainee.image_frozen():
        # The image tower runs on every batch: weed out undecodable images now, not mid-epoch.
        for i, p in enumerate(pairs):
            try:
                probe_image(p.image_path, max_pixels=config.max_pixels)
            except ImageRejectedError as exc:
                rejected[i] = exc.reason
        if rejected:
            pairs = [p for i, p in enumerate(pairs) if i not in rejected]

    texts: list[str] = []
    caption_index: list[list[int]] = []
    for p in pairs:
        caption_index.append(list(range(len(texts), len(texts) + len(p.captions))))
        texts.extend(c.text for c in p.captions)
    tokens = trainee.tokenizer(texts) if texts else None
    image_feats = text_feats = pixels = None
    done, total = 0, len(pairs) + len(texts)
    if trainee.image_frozen():
        img_key, _ = trainee.tower_keys(config.image_side)
        rows: list[np.ndarray | None] = [cache.get(img_key, p.content_hash) for p in pairs]
        todo = [i for i, r in enumerate(rows) if r is None]
        done += len(pairs) - len(todo)
        for a, b in _chunks(len(todo), batch_size):
            idx = []
            decoded = []
            for i in todo[a:b]:
                try:
                    decoded.append(trainee.preprocess(_decode(pairs[i], config)))
                    idx.append(i)
                except ImageRejectedError as exc:
                    rejected[i] = exc.reason
            done += b - a - len(idx)
            if not idx:
                continue
            px = torch.stack(decoded).to(trainee.device)
            with torch.inference_mode():
                feats = trainee.image_trunk(px).float().cpu().numpy()
            for i, f in zip(idx, feats, strict=True):
                rows[i] = f
                cache.put(img_key, pairs[i].content_hash, f)
            done += len(idx)
            if progress:
                progress(stage, done, total)
        if any(r is None for r in rows):
            # Undecodable images: rebuild without them (their features stay cached for the others).
            keep = [p for p, r in zip(pairs, rows, strict=True) if r is not None]
            again = build_inputs(trainee, keep, config, cache, keep_pixels=keep_pixels, batch_size=batch_size)
            again.rejected = dict(Counter(rejected.values()))
            return again
        image_feats = torch.from_numpy(np.stack([r for r in rows if r is not None])) if rows else None
    else:
        done += len(pairs)
        if keep_pixels:
            pixels = torch.stack([trainee.preprocess(_decode(p, config)).half() for p in pairs])
    if trainee.text_frozen() and tokens is not None:
        _, txt_key = trainee.tower_keys(config.image_side)
        text_rows: list[np.ndarray | None] = [cache.get(txt_key, digest(t)) for t in texts]
        todo = [i for i, r in enumerate(text_rows) if r is None]
        done += len(texts) - len(todo)
        for a, b in _chunks(len(todo), batch_size * 4):
            idx = todo[a:b]
            with torch.inference_mode():
                feats = trainee.text_trunk(tokens[idx].to(trainee.device)).float().cpu().numpy()
            for i, f in zip(idx, feats, strict=True):
                text_rows[i] = f
                cache.put(txt_key, digest(texts[i]), f)
            done += len(idx)
            if progress:
                progress(stage, done, total)
        text_feats = torch.from_numpy(np.stack([r for r in text_rows if r is not None]))
    if progress:
        progress(stage, total, total)
    return Inputs(
        tuple(pairs), caption_index, image_feats, text_feats, tokens, pixels, dict(Counter(rejected.values()))
    )


def _image_batch(
    trainee: Trainee, inputs: Inputs, idx: Sequence[int], config: FinetuneConfig, dropout: float
) -> torch.Tensor:
    import torch

    if inputs.image_feats is not None:
        x = inputs.image_feats[list(idx)].to(trainee.device)
        return trainee.image_head(torch.nn.functional.dropout(x, dropout, training=dropout > 0))
    if inputs.pixels is not None:
        px = inputs.pixels[list(idx)].float().to(trainee.device)
    else:
        px = torch.stack([trainee.preprocess(_decode(inputs.pairs[i], config)) for i in idx]).to(
            trainee.device
        )
    return trainee.image_head(trainee.image_trunk(px))


def _text_batch(trainee: Trainee, inputs: Inputs, cidx: Sequence[int], dropout: float) -> torch.Tensor:
    import torch

    if inputs.text_feats is not None:
        x = inputs.text_feats[list(cidx)].to(trainee.device)
        return trainee.text_head(torch.nn.functional.dropout(x, dropout, training=dropout > 0))
    assert inputs.tokens is not None
    return trainee.text_head(trainee.text_trunk(inputs.tokens[list(cidx)].to(trainee.device)))


# --------------------------------------------------------------------------------------------------
# Evaluation during and after training
# --------------------------------------------------------------------------------------------------


def embed_inputs(trainee: Trainee, inputs: Inputs, config: FinetuneConfig) -> ModelEmbeddings:
    """Final (as-saved) vectors of every image and caption of ``inputs``."""
    import torch

    n_img = len(inputs.pairs)
    n_txt = sum(len(c) for c in inputs.caption_index)
    img_out, txt_out = [], []
    with torch.inference_mode():
        for a, b in _chunks(n_img, 64):
            idx = list(range(a, b))
            if inputs.image_feats is not None:
                x = inputs.image_feats[a:b].to(trainee.device)
            elif inputs.pixels is not None:
                x = trainee.image_trunk(inputs.pixels[a:b].float().to(trainee.device))
            else:
                px = [trainee.preprocess(_decode(inputs.pairs[i], config)) for i in idx]
                x = trainee.image_trunk(torch.stack(px).to(trainee.device))
            img_out.append(trainee.final_image(x).float().cpu().numpy())
        for a, b in _chunks(n_txt, 256):
            if inputs.text_feats is not None:
                x = inputs.text_feats[a:b].to(trainee.device)
            else:
                assert inputs.tokens is not None
                x = trainee.text_trunk(inputs.tokens[a:b].to(trainee.device))
            txt_out.append(trainee.final_text(x).float().cpu().numpy())
    return ModelEmbeddings(texts=np.concatenate(txt_out), images=np.concatenate(img_out))


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
        for a, b in _chunks(len(first), config.batch_size):
            if b - a < 2:
                continue
            idx = list(range(a, b))
            img = torch.nn.functional.normalize(
                _image_batch(trainee, inputs, idx, config, 0.0).float(), dim=-1
            )
            txt = torch.nn.functional.normalize(
                _text_batch(trainee, inputs, [first[i] for i in idx], 0.0).float(), dim=-1
            )
            losses.append(float(clip_loss(img, txt, scale)))
            weights.append(b - a)
    val_loss = float(np.average(losses, weights=weights)) if losses else float("nan")
    return val_loss, metrics


# --------------------------------------------------------------------------------------------------
# Training loop
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


def _save_checkpoint(path: Path, data: dict[str, Any]) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(data, tmp)
    tmp.replace(path)


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

    # Heads-only training is tiny: one thread avoids contention on shared cores (measured up to 10x faster).
    with _torch_threads(config.threads or (1 if config.mode == "heads" else None)):
        t_start = time.perf_counter()
        if len(pairs_train) < 2 or len(pairs_val) < 2:
            raise FinetuneError(
                f"need at least 2 training and 2 validation pairs, got {len(pairs_train)}/{len(pairs_val)}"
            )
        dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
        trainee = Trainee(base, dev)
        trainee.lock(config)
        cache = FeatureCache(feature_cache)
        work = output_dir / WORK_DIR
        ckpt_path = work / CHECKPOINT_FILE
        key = _config_key(config, trainee, split, len(pairs_train))

        t_feat = time.perf_counter()
        train_in = build_inputs(
            trainee, pairs_train, config, cache, keep_pixels=False, progress=progress, stage="train"
        )
        val_in = build_inputs(
            trainee, pairs_val, config, cache, keep_pixels=True, progress=progress, stage="validation"
        )
        feature_s = time.perf_counter() - t_feat
        excluded = dict(excluded or {})
        for inputs in (train_in, val_in):
            for reason, k in inputs.rejected.items():
                excluded[f"image-{reason}"] = excluded.get(f"image-{reason}", 0) + k
        pairs_train, pairs_val = train_in.pairs, val_in.pairs
        if len(pairs_train) < 2 or len(pairs_val) < 2:
            raise FinetuneError(
                f"too few decodable images: {len(pairs_train)} training, {len(pairs_val)} validation"
            )
        val_data = eval_set(pairs_val)
        clip_loss = contrastive_loss

        base_state = trainee.trainable_state()
        base_val_loss, base_val = evaluate(trainee, val_in, val_data, config, clip_loss)
        base_val_recall = mean_recall(base_val)

        optimizer = torch.optim.AdamW(_param_groups(trainee, config))
        n = len(pairs_train)
        batches_per_epoch = max(1, n // config.batch_size) if n >= config.batch_size else 1
        steps_per_epoch = max(1, math.ceil(batches_per_epoch / config.accumulation_steps))
        total_steps = steps_per_epoch * config.epochs
        warmup = min(total_steps, max(1, round(config.warmup_epochs * steps_per_epoch)))
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: warmup_cosine(s, warmup, total_steps)
        )
        # Mixed precision only on CUDA: on CPU it is slower than fp32 for these models.
        precision = config.precision if dev.startswith("cuda") else "fp32"
        scaler = torch.amp.GradScaler("cuda") if autocast_dtype(dev, precision) == torch.float16 else None

        history: list[EpochLog] = []
        best: dict[str, Any] = {"recall": base_val_recall, "epoch": 0, "state": base_state}
        bad_epochs = 0
        start_epoch = 1
        resumed_from: int | None = None
        if ckpt_path.is_file():
            if not resume:
                raise FinetuneError(
                    f"{output_dir} holds an unfinished run; resume it with --resume or choose another output"
                )
            ck = torch.load(ckpt_path, map_location="cpu", weights_only=False)
            if ck["key"] != key:
                raise FinetuneError(
                    f"the checkpoint in {ckpt_path} belongs to a run with other settings, base model or "
                    "split; use the same settings or another output folder"
                )
            trainee.load_trainable_state(ck["state"])
            optimizer.load_state_dict(ck["optimizer"])
            scheduler.load_state_dict(ck["scheduler"])
            if scaler is not None and ck.get("scaler"):
                scaler.load_state_dict(ck["scaler"])
            history = [EpochLog(**h) for h in ck["history"]]
            best = ck["best"]
            bad_epochs = ck["bad_epochs"]
            start_epoch = ck["epoch"] + 1
            resumed_from = ck["epoch"]

        stopped_early = bad_epochs >= config.patience
        train_s = 0.0
        examples = 0
        for epoch in range(start_epoch, config.epochs + 1):
            if stopped_early:
                break
            t0 = time.perf_counter()
            # Seeded per epoch: a resumed run draws the same batches and dropout masks as an unbroken one.
            torch.manual_seed(config.seed * 100_003 + epoch)
            rng = np.random.default_rng([config.seed, epoch])
            order = rng.permutation(n)
            caption_pick = [c[int(rng.integers(len(c)))] for c in train_in.caption_index]
            epoch_loss, seen = 0.0, 0
            optimizer.zero_grad(set_to_none=True)
            for b in range(batches_per_epoch):
                idx = order[b * config.batch_size : (b + 1) * config.batch_size].tolist()
                if len(idx) < 2:
                    continue
                with autocast(dev, precision):
                    img = torch.nn.functional.normalize(
                        _image_batch(trainee, train_in, idx, config, config.feature_dropout), dim=-1
                    )
                    txt = torch.nn.functional.normalize(
                        _text_batch(
                            trainee, train_in, [caption_pick[i] for i in idx], config.feature_dropout
                        ),
                        dim=-1,
                    )
                    loss = clip_loss(img.float(), txt.float(), trainee.model.logit_scale.exp())
                scaled = loss / config.accumulation_steps
                (scaler.scale(scaled) if scaler is not None else scaled).backward()
                last = b == batches_per_epoch - 1
                if (b + 1) % config.accumulation_steps == 0 or last:
                    if scaler is not None:
                        scaler.step(optimizer)
                        scaler.update()
                    else:
                        optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                    scheduler.step()
                    with torch.no_grad():
                        trainee.model.logit_scale.clamp_(0, LOGIT_SCALE_MAX)
                epoch_loss += float(loss.detach()) * len(idx)
                seen += len(idx)
                if progress:
                    progress(f"epoch {epoch}/{config.epochs}", b + 1, batches_per_epoch)
            train_time = time.perf_counter() - t0
            train_s += train_time
            examples += seen
            val_loss, val_metrics = evaluate(trainee, val_in, val_data, config, clip_loss)
            score = mean_recall(val_metrics)
            log = EpochLog(
                epoch=epoch,
                train_loss=epoch_loss / max(1, seen),
                val_loss=val_loss,
                val_mean_recall=score,
                val_metrics=val_metrics,
                lr=float(scheduler.get_last_lr()[0]),
                logit_scale=float(trainee.model.logit_scale.detach().exp()),
                seconds=time.perf_counter() - t0,
                examples=seen,
            )
            history.append(log)
            if score > float(best["recall"]):
                best = {"recall": score, "epoch": epoch, "state": trainee.trainable_state()}
                bad_epochs = 0
            else:
                bad_epochs += 1
            stopped_early = bad_epochs >= config.patience and epoch < config.epochs
            _save_checkpoint(
                ckpt_path,
                {
                    "key": key,
                    "epoch": epoch,
                    "state": trainee.trainable_state(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict() if scaler is not None else None,
                    "history": [asdict(h) for h in history],
                    "best": best,
                    "bad_epochs": bad_epochs,
                },
            )
            if on_epoch:
                on_epoch(log)

        trainee.load_trainable_state(best["state"])
        test_result = None
        spec = f"local-dir:{output_dir}"
        if len(pairs_test) >= 2:
            test_in = build_inputs(
                trainee, pairs_test, config, cache, keep_pixels=True, progress=progress, stage="test"
            )
            for reason, k in test_in.rejected.items():
                excluded[f"image-{reason}"] = excluded.get(f"image-{reason}", 0) + k
            pairs_test = test_in.pairs
            test_data = eval_set(pairs_test)
            tuned = embed_inputs(trainee, test_in, config)
            trainee.load_trainable_state(base_state)
            base_emb = embed_inputs(trainee, test_in, config)
            trainee.load_trainable_state(best["state"])
            test_result = compare(
                test_data,
                {base.spec: base_emb, spec: tuned},
                base=base.spec,
                n_resamples=n_resamples,
                seed=config.seed,
            )
        counts = {
            "train": len(pairs_train),
            "val": len(pairs_val),
            "test": len(pairs_test),
            **{f"excluded:{k}": v for k, v in excluded.items()},
        }
        save_model(trainee, output_dir, config, best_epoch=int(best["epoch"]))
        split.save(output_dir / "split.json")
        result = FinetuneResult(
            output_dir=output_dir,
            spec=spec,
            best_epoch=int(best["epoch"]),
            history=tuple(history),
            test=test_result,
            base_val_mean_recall=base_val_recall,
            base_val_loss=base_val_loss,
            wall_s=time.perf_counter() - t_start,
            train_s=train_s,
            feature_s=feature_s,
            examples_per_s=examples / train_s if train_s > 0 else float("nan"),
            resumed_from_epoch=resumed_from,
            stopped_early=stopped_early,
            counts=counts,
        )
        (output_dir / "training.json").write_text(
            json.dumps(training_summary(result, config, trainee), indent=2, default=str) + "\n",
            encoding="utf-8",
        )
        if write_docs:
            from iconosearch.training.cards import write_datasheet, write_finetune_card

            write_finetune_card(
                output_dir / "MODEL_CARD.md", result, config, base_spec=base.spec, pairs_train=pairs_train
            )
            write_datasheet(output_dir / "DATASHEET.md", pairs_train, pairs_val, pairs_test, split, excluded)
        # The run is complete: the checkpoint is no longer needed to resume.
        ckpt_path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            work.rmdir()
        return result


def training_summary(result: FinetuneResult, config: FinetuneConfig, trainee: Trainee) -> dict[str, Any]:
    return {
        "format": "iconosearch-finetune/1",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "base": {"spec": trainee.base_spec, "fingerprint": trainee.base_fingerprint},
        "spec": result.spec,
        "config": asdict(config),
        "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early,
        "resumed_from_epoch": result.resumed_from_epoch,
        "base_val_mean_recall": result.base_val_mean_recall,
        "base_val_loss": result.base_val_loss,
        "counts": result.counts,
        "timing": {
            "wall_s": result.wall_s,
            "train_s": result.train_s,
            "feature_s": result.feature_s,
            "examples_per_s": result.examples_per_s,
        },
        "history": [asdict(h) for h in result.history],
    }


# --------------------------------------------------------------------------------------------------
# Output: a folder usable as ``local-dir:<folder>``
# --------------------------------------------------------------------------------------------------


def save_model(trainee: Trainee, folder: Path, config: FinetuneConfig, *, best_epoch: int) -> None:
    """Write the fine-tuned model: an iconosearch-lite folder (heads, + changed tower weights) for lite bases,
    an open_clip ``local-dir`` folder (``open_clip_config.json`` + weights + tokenizer) otherwise."""
    folder.mkdir(parents=True, exist_ok=True)
    if trainee.is_lite:
        from safetensors.torch import save_file

        from iconosearch.models.lite import TOWERS_FILE, head_state, save_lite

        lite = trainee.lite
        extra = {
            **dict(lite.config.extra),
            "finetuned_from": trainee.base_spec,
            "base_fingerprint": trainee.base_fingerprint,
            "finetune_mode": config.mode,
            "best_epoch": best_epoch,
        }
        save_lite(
            folder, replace(lite.config, extra=extra), head_state(lite.clip), class_text=lite.class_text
        )
        heads = set(head_state(lite.clip))
        params = dict(lite.clip.named_parameters())
        # Tower weights the base already changed (a fine-tuned base) carry over, with this run's changes.
        changed = {n for n, p in params.items() if p.requires_grad and n not in heads}
        inherited = _tower_override_file(trainee.base_spec)
        if inherited is not None:
            from safetensors import safe_open

            with safe_open(str(inherited), framework="pt") as fh:
                changed |= set(fh.keys())
        towers = {n: params[n].detach().cpu().contiguous() for n in sorted(changed)}
        tower_path = folder / TOWERS_FILE
        if towers:
            save_file(towers, str(tower_path), metadata={"format": "iconosearch-lite-towers/1"})
        else:
            tower_path.unlink(missing_ok=True)
        return
    from safetensors.torch import save_file

    model = trainee.model
    model_cfg = _open_clip_config(trainee.base_spec)
    pp = getattr(model.visual, "preprocess_cfg", {})
    preprocess_cfg = {"mean": list(model.visual.image_mean), "std": list(model.visual.image_std)}
    preprocess_cfg.update({k: pp[k] for k in ("interpolation", "resize_mode") if k in pp})
    (folder / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": model_cfg, "preprocess_cfg": preprocess_cfg}, indent=2) + "\n",
        encoding="utf-8",
    )
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / "open_clip_model.safetensors"))
    inner = getattr(trainee.tokenizer, "tokenizer", None)
    if inner is not None and hasattr(inner, "save_pretrained"):
        inner.save_pretrained(str(folder))


def _open_clip_config(spec: str) -> dict[str, Any]:
    import open_clip

    from iconosearch.models.specs import parse_spec

    parsed = parse_spec(spec)
    name = (
        f"local-dir:{parsed.path}"
        if parsed.kind == "local-dir"
        else parsed.raw
        if parsed.kind == "hf-hub"
        else parsed.name
    )
    cfg = open_clip.get_model_config(name)
    if not cfg:
        raise FinetuneError(f"cannot find the open_clip config of {spec!r} to save the fine-tuned model")
    return dict(cfg)


def check_trainable_offline(spec: str) -> None:
    """Refuse early, with a reason, a base model that cannot be had (and so not trained) offline."""
    from iconosearch.models.specs import ModelUnavailableError, hub_offline, parse_spec

    parsed = parse_spec(spec)
    if parsed.needs_hub and hub_offline():
        from iconosearch.models.embedder import hub_cached

        if not hub_cached(parsed):
            raise ModelUnavailableError(
                f"cannot fine-tune {spec!r} offline: its weights must come from the Hugging Face hub, which "
                "is switched off (HF_HUB_OFFLINE=1), and they are not in the local cache. Fine-tune "
                "'iconosearch-lite' or a local checkpoint instead, or download the model once with network "
                "access."
            )


__all__ = [
    "MODES",
    "EpochLog",
    "FinetuneConfig",
    "FinetuneError",
    "FinetuneResult",
    "Mode",
    "finetune",
    "save_model",
    "warmup_cosine",
]
