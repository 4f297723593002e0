"""Contrastive training of projection heads over cached frozen features (LiT-style).

The towers are frozen, so their outputs are computed once and cached; training only runs the heads, which
takes seconds per epoch on a CPU. The pieces:

- :class:`ContrastiveHeads` — an image head, a text head and a learnable logit scale (temperature); the
  heads are the *actual* open_clip modules of the model being trained (``model.visual.head``,
  ``model.text.proj``), so trained weights need no conversion;
- :func:`contrastive_loss` — symmetric InfoNCE, via open_clip's ``ClipLoss``;
- :func:`train_heads` — AdamW, linear warm-up then cosine decay (open_clip_train's schedule), feature
  dropout, optional extra (pseudo-)pairs mixed into every epoch, and the epoch chosen by a caller-supplied
  validation score (the best state is restored at the end).

Usage (heads-only fine-tune of a lite model on cached features)::

    heads = ContrastiveHeads(model.visual.head, model.text.proj, model.logit_scale)
    result = train_heads(heads, PairFeatures(img, txt), config=TrainConfig(epochs=30),
                         evaluate=lambda h: recall_at_10(h, val))
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the conventional alias
from open_clip.loss import ClipLoss
from open_clip_train.scheduler import cosine_lr
from torch import nn

from iconosearch.training.epochs import EpochLog


@dataclass(frozen=True, slots=True)
class TrainConfig:
    epochs: int = 40
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    feature_dropout: float = 0.2
    """Dropout on the frozen input features: the main regulariser when the data is small."""
    logit_scale_max: float = math.log(100.0)
    seed: int = 0


@dataclass(frozen=True, slots=True)
class PairFeatures:
    """Aligned frozen features: row ``k`` of ``image`` and of ``text`` are a positive pair."""

    image: np.ndarray
    text: np.ndarray

    def __post_init__(self) -> None:
        if self.image.ndim != 2 or self.text.ndim != 2 or len(self.image) != len(self.text):
            raise ValueError(f"unaligned pair features: image {self.image.shape}, text {self.text.shape}")

    def __len__(self) -> int:
        return len(self.image)


ExtraPairs = Callable[[int, np.random.Generator], PairFeatures]
"""Called once per epoch with (epoch, rng); returns extra pairs shuffled into that epoch's batches."""


@dataclass(frozen=True, slots=True)
class TrainResult:
    best_epoch: int
    best_score: float | None
    history: tuple[EpochLog, ...]
    state: dict[str, torch.Tensor] = field(repr=False)
    """State dict of the best epoch (already loaded into the heads)."""


class ContrastiveHeads(nn.Module):
    """Image head + text head + learnable logit scale (log of the inverse temperature)."""

    def __init__(
        self, image_head: nn.Module, text_head: nn.Module, logit_scale: torch.Tensor | float
    ) -> None:
        super().__init__()
        self.image_head = image_head
        self.text_head = text_head
        if isinstance(logit_scale, nn.Parameter):
            self.logit_scale = logit_scale
        else:
            value = (
                float(logit_scale) if not isinstance(logit_scale, torch.Tensor) else float(logit_scale.item())
            )
            self.logit_scale = nn.Parameter(torch.tensor(value))

    @classmethod
    def linear(cls, image_dim: int, text_dim: int, embed_dim: int, *, seed: int = 0) -> ContrastiveHeads:
        """Fresh bias-free linear heads (what open_clip's ``linear`` projections are)."""

        generator = torch.Generator().manual_seed(seed)
        image = nn.Linear(image_dim, embed_dim, bias=False)
        text = nn.Linear(text_dim, embed_dim, bias=False)
        for lin in (image, text):
            with torch.no_grad():
                lin.weight.copy_(
                    torch.randn(lin.weight.shape, generator=generator) / math.sqrt(lin.in_features)
                )
        return cls(image, text, math.log(1 / 0.07))

    def forward(
        self, image_features: torch.Tensor, text_features: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        img = F.normalize(self.image_head(image_features), dim=-1)
        txt = F.normalize(self.text_head(text_features), dim=-1)
        return img, txt, self.logit_scale.exp()

    def embed(self, features: PairFeatures, *, batch_size: int = 4096) -> tuple[np.ndarray, np.ndarray]:
        """Normalised (image, text) embeddings of cached features, float32, in eval mode."""
        was_training = self.training
        self.eval()
        outs_i, outs_t = [], []
        device = self.logit_scale.device
        with torch.inference_mode():
            for start in range(0, len(features), batch_size):
                img = torch.from_numpy(features.image[start : start + batch_size]).float().to(device)
                txt = torch.from_numpy(features.text[start : start + batch_size]).float().to(device)
                i, t, _ = self(img, txt)
                outs_i.append(i.cpu().numpy())
                outs_t.append(t.cpu().numpy())
        self.train(was_training)
        return np.concatenate(outs_i).astype(np.float32), np.concatenate(outs_t).astype(np.float32)


def contrastive_loss(
    image_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale: torch.Tensor
) -> torch.Tensor:
    """Symmetric InfoNCE over a batch of normalised embeddings (open_clip's ``ClipLoss``)."""
    return ClipLoss()(image_emb, text_emb, logit_scale)


def train_heads(
    heads: ContrastiveHeads,
    train: PairFeatures,
    *,
    config: TrainConfig = TrainConfig(),
    evaluate: Callable[[ContrastiveHeads], float] | None = None,
    extra_pairs: ExtraPairs | None = None,
    on_epoch: Callable[[EpochLog], None] | None = None,
) -> TrainResult:
    """Train ``heads`` on ``train`` (+ ``extra_pairs`` per epoch); keep the epoch ``evaluate`` scores best.

    Without ``evaluate`` the last epoch is kept. Deterministic for a given ``config.seed`` on CPU.
    """
    if len(train) < 2:
        raise ValueError("contrastive training needs at least 2 pairs")
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    device = heads.logit_scale.device
    decay = [p for n, p in heads.named_parameters() if p.ndim >= 2 and p.requires_grad]
    no_decay = [p for n, p in heads.named_parameters() if p.ndim < 2 and p.requires_grad]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.lr,
    )
    extra_n = len(extra_pairs(0, np.random.default_rng(0))) if extra_pairs else 0
    steps_per_epoch = max(1, math.ceil((len(train) + extra_n) / config.batch_size))
    total_steps = steps_per_epoch * config.epochs
    schedule = cosine_lr(optimizer, config.lr, int(config.warmup_epochs * steps_per_epoch), total_steps)
    dropout = torch.nn.Dropout(config.feature_dropout)

    best_state = copy.deepcopy(heads.state_dict())
    best_score: float | None = None
    best_epoch = 0
    history: list[EpochLog] = []
    step = 0
    for epoch in range(1, config.epochs + 1):
        started = time.perf_counter()
        image, text = train.image, train.text
        if extra_pairs is not None:
            extra = extra_pairs(epoch, rng)
            image = np.concatenate([image, extra.image.astype(np.float32)])
            text = np.concatenate([text, extra.text.astype(np.float32)])
        order = rng.permutation(len(image))
        image_t = torch.from_numpy(np.ascontiguousarray(image[order], dtype=np.float32)).to(device)
        text_t = torch.from_numpy(np.ascontiguousarray(text[order], dtype=np.float32)).to(device)
        heads.train()
        losses = []
        for start in range(0, len(order), config.batch_size):
            if len(order) - start < 2:
                break  # a batch of one has no negatives
            schedule(step)
            step += 1
            img, txt, scale = heads(
                dropout(image_t[start : start + config.batch_size]),
                dropout(text_t[start : start + config.batch_size]),
            )
            loss = contrastive_loss(img, txt, scale)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                heads.logit_scale.clamp_(0, config.logit_scale_max)
            losses.append(float(loss.item()))
        heads.eval()
        score = evaluate(heads) if evaluate is not None else None
        log = EpochLog(
            epoch=epoch,
            train_loss=float(np.mean(losses)) if losses else float("nan"),
            val_mean_recall=score,
            logit_scale=float(heads.logit_scale.exp().item()),
            seconds=time.perf_counter() - started,
            examples=len(image),
        )
        history.append(log)
        if on_epoch is not None:
            on_epoch(log)
        if evaluate is None or best_score is None or (score is not None and score > best_score):
            best_score, best_epoch = score, epoch
            best_state = copy.deepcopy(heads.state_dict())
    heads.load_state_dict(best_state)
    heads.eval()
    return TrainResult(best_epoch=best_epoch, best_score=best_score, history=tuple(history), state=best_state)
