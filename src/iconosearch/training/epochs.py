"""One record per training epoch, shared by every trainer (heads on cached features, fine-tuning)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class EpochLog:
    epoch: int
    train_loss: float
    seconds: float
    logit_scale: float
    """The similarity multiplier, exp of the learned log-scale (1 / temperature)."""
    val_mean_recall: float | None = None
    """The score the best epoch is chosen by (mean of validation recalls); None without validation."""
    val_loss: float | None = None
    val_metrics: dict[str, dict[str, float | int]] = field(default_factory=dict)
    lr: float | None = None
    examples: int = 0

    @property
    def temperature(self) -> float:
        return 1.0 / self.logit_scale
