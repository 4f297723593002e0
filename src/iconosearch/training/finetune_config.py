"""What a fine-tuning run is asked to do (:class:`FinetuneConfig`) and what it gives back.

Separate from :mod:`iconosearch.training.finetune` so the model card and the CLI can use these types
without importing the trainer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from iconosearch.training.epochs import EpochLog

if TYPE_CHECKING:
    from iconosearch.evaluation.benchmark import BenchResult

Mode = Literal["full", "lit", "text-locked", "heads"]
MODES: tuple[Mode, ...] = ("heads", "lit", "text-locked", "full")


class FinetuneError(RuntimeError):
    """Fine-tuning cannot run as asked (model not trainable here, bad resume, no usable pairs)."""


@dataclass(frozen=True, slots=True)
class FinetuneConfig:
    mode: Mode = "heads"
    unlocked_text_layers: int = 2
    """``text-locked`` mode: how many of the text tower's last layers stay trainable (open_clip's own text
    towers count the projection as the last layer, so 2 is the projection and the last block)."""
    epochs: int = 30
    batch_size: int = 256
    accumulation_steps: int = 1
    """Gradients of this many batches are summed per step (a larger effective batch on small machines)."""
    lr: float = 1e-3
    """Learning rate of the heads and temperature."""
    tower_lr: float = 1e-5
    """Learning rate of unlocked tower weights."""
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    patience: int = 6
    """Stop after this many epochs without a better validation mean recall."""
    seed: int = 0
    feature_dropout: float = 0.1
    """Dropout on cached tower features (heads see a slightly different input every epoch)."""
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    """``auto``: bf16/fp16 autocast on GPU, fp32 on CPU."""
    image_side: int = 448
    """Images are decoded with this long side at most before preprocessing."""
    max_pixels: int = 64_000_000
    threads: int | None = None
    """CPU threads for training; default: 1 for ``heads`` (its small matmuls gain nothing from threads and
    lose badly when cores are shared), torch's setting otherwise."""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; choose one of {', '.join(MODES)}")
        if self.epochs < 1 or self.batch_size < 2 or self.accumulation_steps < 1:
            raise ValueError("epochs ≥ 1, batch_size ≥ 2 and accumulation_steps ≥ 1 are required")
        if self.mode == "text-locked" and self.unlocked_text_layers < 0:
            raise ValueError("unlocked_text_layers must be ≥ 0")


@dataclass(frozen=True, slots=True)
class FinetuneResult:
    output_dir: Path
    spec: str
    """Model spec of the result (``local-dir:<output_dir>``)."""
    best_epoch: int
    history: tuple[EpochLog, ...]
    test: BenchResult | None
    """Base vs fine-tuned on the test split, with paired bootstrap CIs."""
    base_val_mean_recall: float
    base_val_loss: float
    wall_s: float
    train_s: float
    feature_s: float
    examples_per_s: float
    resumed_from_epoch: int | None
    stopped_early: bool
    counts: dict[str, int]
