"""The contrastive heads trainer: loss, learning, epoch choice, extra pairs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from iconosearch.training.contrastive import (
    ContrastiveHeads,
    PairFeatures,
    TrainConfig,
    contrastive_loss,
    train_heads,
)


def _toy(n: int = 96, seed: int = 0) -> PairFeatures:
    """Pairs whose image and text features are two different noisy linear views of one latent."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 8))
    image = latent @ rng.normal(size=(8, 32)) + 0.05 * rng.normal(size=(n, 32))
    text = latent @ rng.normal(size=(8, 24)) + 0.05 * rng.normal(size=(n, 24))
    return PairFeatures(image.astype(np.float32), text.astype(np.float32))


def _recall_at_1(heads: ContrastiveHeads, data: PairFeatures) -> float:
    img, txt = heads.embed(data)
    return float(np.mean((txt @ img.T).argmax(axis=1) == np.arange(len(data))))


def test_loss_prefers_aligned_pairs() -> None:
    torch.manual_seed(0)
    emb = torch.nn.functional.normalize(torch.randn(16, 8), dim=-1)
    scale = torch.tensor(10.0)
    aligned = contrastive_loss(emb, emb, scale)
    shuffled = contrastive_loss(emb, emb[torch.randperm(16)], scale)
    assert aligned < shuffled
    # symmetric: swapping the modalities gives the same loss
    other = torch.nn.functional.normalize(torch.randn(16, 8), dim=-1)
    assert torch.isclose(contrastive_loss(emb, other, scale), contrastive_loss(other, emb, scale))


def test_training_lowers_loss_and_aligns() -> None:
    train, held_out = _toy(seed=1), _toy(seed=1)
    heads = ContrastiveHeads.linear(32, 24, 16, seed=0)
    before = _recall_at_1(heads, held_out)
    result = train_heads(
        heads, train, config=TrainConfig(epochs=30, batch_size=32, lr=1e-2, feature_dropout=0.0, seed=0)
    )
    losses = [e.train_loss for e in result.history]
    assert losses[-1] < 0.5 * losses[0]
    after = _recall_at_1(heads, held_out)
    assert after > 0.8 > before
    assert result.best_epoch == 30  # no evaluate: the last epoch is kept
    # the learnable temperature moved and stayed within the clamp
    assert 0 < heads.logit_scale.item() <= math.log(100.0) + 1e-6
    assert heads.logit_scale.item() != pytest.approx(math.log(1 / 0.07))


def test_best_epoch_is_restored() -> None:
    train = _toy(seed=2)
    heads = ContrastiveHeads.linear(32, 24, 16, seed=0)
    scores = iter([0.1, 0.9, 0.2, 0.3])
    seen: dict[int, dict[str, torch.Tensor]] = {}

    def evaluate(h: ContrastiveHeads) -> float:
        seen[len(seen) + 1] = {k: v.clone() for k, v in h.state_dict().items()}
        return next(scores)

    result = train_heads(heads, train, config=TrainConfig(epochs=4, batch_size=32), evaluate=evaluate)
    assert result.best_epoch == 2 and result.best_score == 0.9
    for key, value in heads.state_dict().items():
        assert torch.equal(value, seen[2][key])


def test_extra_pairs_are_mixed_in() -> None:
    train = _toy(n=40, seed=3)
    extra = _toy(n=24, seed=4)
    calls: list[int] = []

    def sampler(epoch: int, rng: np.random.Generator) -> PairFeatures:
        calls.append(epoch)
        return extra

    heads = ContrastiveHeads.linear(32, 24, 16, seed=0)
    train_heads(heads, train, config=TrainConfig(epochs=3, batch_size=16), extra_pairs=sampler)
    assert calls[1:] == [1, 2, 3]  # call 0 sizes the schedule


def test_rejects_degenerate_input() -> None:
    with pytest.raises(ValueError):
        PairFeatures(np.zeros((3, 4), np.float32), np.zeros((2, 4), np.float32))
    heads = ContrastiveHeads.linear(4, 4, 2)
    with pytest.raises(ValueError):
        train_heads(heads, PairFeatures(np.zeros((1, 4), np.float32), np.zeros((1, 4), np.float32)))
