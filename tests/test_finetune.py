"""Fine-tuning: gradients flow, the result loads as a model spec, interrupted runs resume exactly."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from iconosearch.evaluation.pairs import Pair, Split, split_by_group
from iconosearch.models.embedder import Embedder, LiteEmbedder, load_embedder
from iconosearch.models.hub import check_available
from iconosearch.models.specs import ModelUnavailableError
from iconosearch.training.finetune import (
    FinetuneConfig,
    FinetuneError,
    FinetuneResult,
    finetune,
)
from tests.helpers.finetune_data import FinetuneWorld, finetune_world  # noqa: F401 - the fixture

pytestmark = pytest.mark.slow

CONFIG = FinetuneConfig(mode="heads", epochs=8, batch_size=16, lr=5e-3, patience=100, seed=1, threads=1)


@pytest.fixture(scope="module")
def setup(finetune_world: FinetuneWorld) -> tuple[Path, Embedder, list[Pair], Split]:  # noqa: F811
    pairs = finetune_world.pairs
    base = load_embedder(finetune_world.base_spec, device="cpu")
    split = split_by_group(pairs, val_fraction=0.25, test_fraction=0.25, min_eval_pairs=6, seed=0)
    return finetune_world.root, base, pairs, split


def _run(
    setup: tuple[Path, Embedder, list[Pair], Split],
    out: str,
    config: FinetuneConfig,
    base: Embedder | None = None,
    **kw: object,
) -> FinetuneResult:
    root, default_base, pairs, split = setup
    return finetune(
        base or default_base,
        split.select(pairs, "train"),
        split.select(pairs, "val"),
        split.select(pairs, "test"),
        split,
        root / out,
        config,
        device="cpu",
        feature_cache=root / "data" / "cache" / "features",
        n_resamples=200,
        **kw,  # type: ignore[arg-type]
    )


def test_heads_finetune_lowers_validation_loss_and_loads_as_a_spec(setup) -> None:  # type: ignore[no-untyped-def]
    root, base, pairs, split = setup
    result = _run(setup, "heads", CONFIG, excluded={"captionless": 3})
    losses = [h.val_loss for h in result.history]
    # Would fail if no gradient reached the heads: the loss would stay at the base's.
    assert min(losses) < 0.6 * result.base_val_loss
    assert result.history[-1].train_loss < result.history[0].train_loss
    assert result.best_epoch >= 1
    assert result.test is not None
    tuned_metrics = next(m for m in result.test.models if m.spec == result.spec).metrics
    base_metrics = next(m for m in result.test.models if m.spec == base.spec).metrics
    assert tuned_metrics.t2i.recall[5] > base_metrics.t2i.recall[5]

    out = root / "heads"
    for name in (
        "config.json",
        "heads.safetensors",
        "split.json",
        "MODEL_CARD.md",
        "DATASHEET.md",
        "training.json",
    ):
        assert (out / name).is_file(), name
    assert not (out / "towers.safetensors").exists()  # heads-only: the towers are the base's
    assert not (out / ".work").exists()  # finished runs drop their resume checkpoint
    assert Split.load(out / "split.json").assignment == split.assignment
    card = (out / "MODEL_CARD.md").read_text()
    assert base.spec in card and "Verdict" in card and "heads" in card
    sheet = (out / "DATASHEET.md").read_text()
    assert "3 captionless" in sheet and "Test Museum" in sheet

    tuned = load_embedder(result.spec, device="cpu")
    assert isinstance(tuned, LiteEmbedder) and tuned.fingerprint != base.fingerprint
    # towers untouched, heads changed
    assert isinstance(base, LiteEmbedder)
    for (name, a), b in zip(base.model.named_parameters(), tuned.model.parameters(), strict=True):
        same = torch.equal(a, b)
        assert same == (".head." not in name and "text.proj" not in name and name != "logit_scale"), name
    image = Image.open(pairs[0].image_path).convert("RGB")
    vec_i = tuned.embed_images([image])
    vec_t = tuned.embed_texts(["a red circle", "a blue square"])
    assert vec_i.shape == (1, tuned.dim) and vec_t.shape == (2, tuned.dim)
    assert np.allclose(np.linalg.norm(vec_t, axis=1), 1, atol=1e-5)
    assert pairs[0].captions[0].text == "a red circle"
    assert float(vec_i[0] @ vec_t[0]) > float(vec_i[0] @ vec_t[1])


def test_interrupted_training_resumes_where_it_stopped(setup) -> None:  # type: ignore[no-untyped-def]
    root, *_ = setup
    config = replace(CONFIG, epochs=4)
    straight = _run(setup, "straight", config)

    def interrupt(log: object) -> None:
        if getattr(log, "epoch", 0) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(setup, "resumed", config, on_epoch=interrupt)
    assert (root / "resumed" / ".work" / "checkpoint.pt").is_file()
    with pytest.raises(FinetuneError, match="--resume"):
        _run(setup, "resumed", config)
    with pytest.raises(FinetuneError, match="other settings"):
        _run(setup, "resumed", replace(config, lr=1e-2), resume=True)
    resumed = _run(setup, "resumed", config, resume=True)
    assert resumed.resumed_from_epoch == 2
    assert [h.epoch for h in resumed.history] == [1, 2, 3, 4]
    assert [round(h.val_loss, 6) for h in resumed.history] == [round(h.val_loss, 6) for h in straight.history]
    a = (root / "straight" / "heads.safetensors").read_bytes()
    b = (root / "resumed" / "heads.safetensors").read_bytes()
    assert a == b

    def kill_in_epoch_1(stage: str, done: int, total: int) -> None:
        if stage.startswith("epoch 1/"):
            raise KeyboardInterrupt

    # killed in its first epoch: the epoch-0 checkpoint is there, and resuming gives the same weights
    with pytest.raises(KeyboardInterrupt):
        _run(setup, "early", config, progress=kill_in_epoch_1)
    early = _run(setup, "early", config, resume=True)
    assert early.resumed_from_epoch == 0 and [h.epoch for h in early.history] == [1, 2, 3, 4]
    assert (root / "early" / "heads.safetensors").read_bytes() == a


def test_lit_mode_trains_the_text_tower_and_saves_it(setup) -> None:  # type: ignore[no-untyped-def]
    root, base, _, _ = setup
    config = replace(CONFIG, mode="lit", epochs=1, tower_lr=1e-4)
    result = _run(setup, "lit", config)
    assert (root / "lit" / "towers.safetensors").is_file()
    tuned = load_embedder(result.spec, device="cpu")
    assert isinstance(tuned, LiteEmbedder) and isinstance(base, LiteEmbedder)
    text_base = dict(base.model.text.transformer.named_parameters())
    changed = [
        n for n, p in tuned.model.text.transformer.named_parameters() if not torch.equal(p, text_base[n])
    ]
    assert changed  # the text tower moved
    for a, b in zip(base.model.visual.trunk.parameters(), tuned.model.visual.trunk.parameters(), strict=True):
        assert torch.equal(a, b)  # the image tower is locked (LiT)
    from iconosearch.training.trainee import Trainee

    # features cached for the packaged towers must never be reused for fine-tuned ones
    base_keys = Trainee(base, "cpu").tower_keys(448)
    tuned_keys = Trainee(tuned, "cpu").tower_keys(448)
    assert base_keys[0] != tuned_keys[0] and base_keys[1] != tuned_keys[1]

    # fine-tuning the fine-tuned model again keeps its text tower
    again = _run(setup, "lit-then-heads", replace(CONFIG, epochs=1), base=tuned)
    twice = load_embedder(again.spec, device="cpu")
    assert isinstance(twice, LiteEmbedder)
    for a, b in zip(
        tuned.model.text.transformer.parameters(), twice.model.text.transformer.parameters(), strict=True
    ):
        assert torch.equal(a, b)


def test_hub_model_cannot_be_trained_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError, match="HF_HUB_OFFLINE"):
        check_available("hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K")
    check_available("iconosearch-lite")  # built in: fine


def test_bad_configs_are_refused() -> None:
    with pytest.raises(ValueError, match="mode"):
        FinetuneConfig(mode="everything")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="epochs"):
        FinetuneConfig(epochs=0)


def test_undecodable_images_are_left_out_and_counted(setup) -> None:  # type: ignore[no-untyped-def]
    root, base, pairs, split = setup
    broken = root / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    bad = replace(split.select(pairs, "train")[0], item_id="broken", content_hash="broken", image_path=broken)
    result = finetune(
        base,
        [*split.select(pairs, "train"), bad],
        split.select(pairs, "val"),
        (),
        split,
        root / "with-broken",
        replace(CONFIG, epochs=1),
        device="cpu",
        feature_cache=root / "data" / "cache" / "features",
    )
    assert result.counts["train"] == len(split.select(pairs, "train"))
    assert sum(v for k, v in result.counts.items() if k.startswith("excluded:image-")) == 1


def test_text_locked_mode_unlocks_only_the_last_text_layers_of_lite(setup) -> None:  # type: ignore[no-untyped-def]
    from iconosearch.training.trainee import Trainee

    _, base, _, _ = setup
    trainee = Trainee(base, "cpu")
    trainee.lock(replace(CONFIG, mode="text-locked", unlocked_text_layers=1))
    grads = {n: p.requires_grad for n, p in trainee.model.named_parameters()}
    last = max(int(n.split(".")[4]) for n in grads if n.startswith("text.transformer.encoder.layer."))
    assert all(v for n, v in grads.items() if n.startswith(f"text.transformer.encoder.layer.{last}."))
    assert not any(v for n, v in grads.items() if n.startswith("text.transformer.encoder.layer.0."))
    assert not any(v for n, v in grads.items() if n.startswith("text.transformer.embeddings."))
    assert all(v for n, v in grads.items() if n.startswith("visual."))  # the image tower trains
    assert trainee.image_frozen() is False and trainee.text_frozen() is False
    # the loaded base itself is never touched by locking a trainee
    assert not any(p.requires_grad for p in base.model.visual.trunk.parameters())
