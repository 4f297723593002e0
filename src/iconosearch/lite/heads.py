"""Trainable heads of iconosearch-lite: fresh ones for a build, the shipped ones for further training.

Runtime loading lives in :mod:`iconosearch.models.lite`; this module is the training side of the same
checkpoint format, so serving never imports the training code.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from timm.layers.mlp import Mlp
from torch import nn

from iconosearch.models.lite import (
    BUILTIN_DIR,
    IMAGE_FEATURE_DIM,
    LiteConfig,
    LiteModel,
    imagenet_class_names,
    read_checkpoint,
)
from iconosearch.training.contrastive import ContrastiveHeads


def new_heads(config: LiteConfig, *, seed: int = 0) -> ContrastiveHeads:
    """Freshly initialised heads shaped exactly like open_clip's (same module names), for training."""

    torch.manual_seed(seed)
    d, t = config.embed_dim, config.text_dim
    image: nn.Module
    text: nn.Module
    if config.head == "linear":
        image = nn.Sequential(
            OrderedDict(drop=nn.Dropout(0.0), proj=nn.Linear(IMAGE_FEATURE_DIM, d, bias=False))
        )
        text = nn.Linear(t, d, bias=False)
    else:
        image = nn.Sequential(
            OrderedDict(mlp=Mlp(IMAGE_FEATURE_DIM, 2 * d, d, drop=(0.0, 0.0), bias=(True, False)))
        )
        hidden = (t + d) // 2
        text = nn.Sequential(nn.Linear(t, hidden, bias=False), nn.GELU(), nn.Linear(hidden, d, bias=False))
    return ContrastiveHeads(image, text, math.log(1 / 0.07))


def heads_state(heads: ContrastiveHeads) -> dict[str, torch.Tensor]:
    """Trained heads under open_clip's names, ready for :func:`save_lite`."""
    state = {f"visual.head.{k}": v for k, v in heads.image_head.state_dict().items()}
    state.update({f"text.proj.{k}": v for k, v in heads.text_head.state_dict().items()})
    state["logit_scale"] = heads.logit_scale.detach().reshape(())
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}


def load_heads(path: Path | None = None) -> tuple[LiteConfig, ContrastiveHeads, torch.Tensor | None]:
    """The trainable heads of a lite checkpoint (built-in when ``path`` is None), without the towers.

    For heads-only fine-tuning on cached features: train the returned heads with
    :func:`~iconosearch.training.contrastive.train_heads`, then
    ``save_lite(folder, config, heads_state(heads), class_text=class_text)``.
    """
    config, tensors, _sha = read_checkpoint(path or BUILTIN_DIR)
    class_text = tensors.pop("bridge.class_text", None)
    heads = new_heads(config)
    state = {"logit_scale": tensors.pop("logit_scale")}
    for key, value in tensors.items():
        if key.startswith("visual.head."):
            state["image_head." + key.removeprefix("visual.head.")] = value
        elif key.startswith("text.proj."):
            state["text_head." + key.removeprefix("text.proj.")] = value
    heads.load_state_dict(state, strict=True)
    return config, heads, class_text


def compute_class_text(model: LiteModel, tokenizer: Any, *, batch_size: int = 128) -> torch.Tensor:
    """Text-tower embeddings of the ImageNet class names (the bridge table), normalised."""

    names = imagenet_class_names()
    rows = []
    with torch.inference_mode():
        for start in range(0, len(names), batch_size):
            rows.append(model.encode_text_features(names[start : start + batch_size], tokenizer))
    return torch.nn.functional.normalize(torch.cat(rows), dim=-1).cpu()


def distil_head(
    student: torch.nn.Module,
    teacher: torch.nn.Module,
    student_features: np.ndarray,
    teacher_features: np.ndarray,
    *,
    epochs: int = 40,
    batch_size: int = 256,
    lr: float = 1e-3,
    seed: int = 0,
) -> float:
    """Fit ``student`` (on another tower's features) to the teacher head's directions; returns the mean
    cosine over all inputs at the end.

    Teacher–student distillation of a sentence space (Reimers & Gurevych, 2020): the student learns to put
    each English training text where the teacher head puts it, so the image head, trained against the
    teacher, stays valid; a cross-lingual tower (USE-m3) then carries the other languages along. The same
    way an image head on another image tower (EfficientNet-Lite1/2) keeps the text head valid. AdamW on
    the cosine loss in mini-batches, cosine-decayed: a few thousand texts, about a minute on 2 busy cores.
    """
    import torch.nn.functional as F  # noqa: N812

    torch.manual_seed(seed)
    x = torch.from_numpy(np.ascontiguousarray(student_features, dtype=np.float32))
    with torch.no_grad():
        teacher_x = torch.from_numpy(np.ascontiguousarray(teacher_features, dtype=np.float32))
        target = F.normalize(teacher(teacher_x), dim=-1)
    optimizer = torch.optim.AdamW(student.parameters(), lr=lr, weight_decay=0.01)
    steps = epochs * max(1, -(-len(x) // batch_size))
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    generator = torch.Generator().manual_seed(seed)
    student.train()
    for _ in range(epochs):
        for rows in torch.randperm(len(x), generator=generator).split(batch_size):
            cosine = (F.normalize(student(x[rows]), dim=-1) * target[rows]).sum(dim=-1).mean()
            optimizer.zero_grad(set_to_none=True)
            (1 - cosine).backward()
            optimizer.step()
            schedule.step()
    student.eval()
    with torch.no_grad():
        return float((F.normalize(student(x), dim=-1) * target).sum(dim=-1).mean().item())
