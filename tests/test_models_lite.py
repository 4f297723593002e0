"""iconosearch-lite: loads offline from the installed towers + shipped heads, and really aligns."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from iconosearch.models import lite as lite_module
from iconosearch.models.embedder import Embedder, LiteEmbedder, load_embedder
from iconosearch.models.lite import LiteConfig, read_checkpoint, save_lite
from iconosearch.models.specs import ModelUnavailableError

HELDOUT = Path(__file__).parent / "data" / "lite_heldout"


def _heldout() -> tuple[list[Image.Image], list[str]]:
    rows = json.loads((HELDOUT / "captions.json").read_text(encoding="utf-8"))
    images = [Image.open(HELDOUT / r["file"]).convert("RGB") for r in rows]
    return images, [r["caption"] for r in rows]


def _pair_accuracy(embedder: Embedder, images: list[Image.Image], captions: list[str]) -> tuple[float, float]:
    """Share of (image, other caption) comparisons the own caption wins, and text→image R@1."""
    sim = embedder.embed_texts(captions) @ embedder.embed_images(images).T  # (texts, images)
    own = np.diag(sim)
    n = len(captions)
    wins = [(own[i] > sim[j, i]) for i in range(n) for j in range(n) if j != i and captions[j] != captions[i]]
    r1 = float(np.mean(sim.argmax(axis=1) == np.arange(n)))
    return float(np.mean(wins)), r1


def test_config_round_trip_and_unknown_keys() -> None:
    config = LiteConfig(head="mlp", bridge_weight=0.3, extra={"seed": 1})
    assert LiteConfig.from_json(json.loads(json.dumps(config.to_json()))) == config
    with pytest.raises(ValueError, match="unknown keys"):
        LiteConfig.from_json({"embed_dim": 256, "surprise": 1})


def test_shipped_checkpoint_is_small_and_complete() -> None:
    config, tensors, _sha = read_checkpoint(lite_module.BUILTIN_DIR)
    size = (lite_module.BUILTIN_DIR / lite_module.HEADS_FILE).stat().st_size
    assert size < 8 * 1024 * 1024
    assert "logit_scale" in tensors
    assert (config.bridge_weight > 0) == ("bridge.class_text" in tensors)
    for name in ("MODEL_CARD.md", "split.json", "metrics.json"):
        assert (lite_module.BUILTIN_DIR / name).is_file()


@pytest.mark.slow
def test_lite_loads_offline_and_embeds() -> None:
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    embedder = load_embedder("iconosearch-lite", device="cpu")
    assert isinstance(embedder, LiteEmbedder)
    assert embedder is load_embedder("iconosearch-lite", device="cpu")  # cached per (spec, device)
    assert embedder.spec == "iconosearch-lite"
    assert len(embedder.fingerprint) == 64
    images, captions = _heldout()
    img = embedder.embed_images([*images[:3], Image.new("RGBA", (50, 80), (0, 0, 0, 0))])
    txt = embedder.embed_texts(captions[:5])
    assert img.shape == (4, embedder.dim) and txt.shape == (5, embedder.dim)
    assert img.dtype == np.float32 and txt.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(img, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(txt, axis=1), 1.0, atol=1e-5)
    assert embedder.embed_texts([]).shape == (0, embedder.dim)
    # deterministic
    np.testing.assert_allclose(embedder.embed_texts(captions[:2]), txt[:2], atol=1e-5)


@pytest.mark.slow
def test_images_match_their_own_captions() -> None:
    """On held-out test-split images, the own caption beats the others (chance: 50 %, R@1 chance 4 %)."""
    embedder = load_embedder("iconosearch-lite", device="cpu")
    images, captions = _heldout()
    accuracy, r1 = _pair_accuracy(embedder, images, captions)
    assert accuracy >= 0.8, accuracy
    assert r1 >= 0.25, r1


@pytest.mark.slow
def test_untrained_heads_fail_the_same_check(tmp_path: Path) -> None:
    """The check above is meaningful: the same towers with untrained heads (no bridge) fail it."""
    from iconosearch.lite.heads import heads_state, new_heads

    config = LiteConfig(head=read_checkpoint(lite_module.BUILTIN_DIR)[0].head)
    save_lite(tmp_path / "untrained", config, heads_state(new_heads(config, seed=3)))
    embedder = load_embedder(str(tmp_path / "untrained"), device="cpu")
    images, captions = _heldout()
    accuracy, _r1 = _pair_accuracy(embedder, images, captions)
    assert accuracy < 0.75, accuracy


@pytest.mark.slow
def test_checkpoint_round_trip_keeps_fingerprint(tmp_path: Path) -> None:
    builtin = load_embedder("iconosearch-lite", device="cpu")
    assert isinstance(builtin, LiteEmbedder)
    config, tensors, _sha = read_checkpoint(lite_module.BUILTIN_DIR)
    class_text = tensors.pop("bridge.class_text", None)
    folder = save_lite(tmp_path / "copy", config, tensors, class_text=class_text)
    copy = load_embedder(str(folder), device="cpu")
    assert copy.fingerprint == builtin.fingerprint
    assert copy.spec == str(folder)
    # different heads, different fingerprint
    tensors["logit_scale"] = tensors["logit_scale"] + 1
    other = load_embedder(
        str(save_lite(tmp_path / "other", config, tensors, class_text=class_text)), device="cpu"
    )
    assert other.fingerprint != builtin.fingerprint


def test_tower_checksum_mismatch_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from iconosearch.models.towers import image

    monkeypatch.setitem(image._SPECS, "lite0", replace(image.image_tower("lite0"), sha256="0" * 64))
    with pytest.raises(ModelUnavailableError, match="SHA-256"):
        lite_module.tower_files()


class _HashTower:
    """A stand-in registered text tower: deterministic 48-d features from the text's bytes."""

    kind = "test-hash"
    dim = 48
    fingerprint = "test-hash-v1"

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        rows = [np.frombuffer(hashlib.sha256(t.encode()).digest() * 2, dtype=np.uint8)[:48] for t in texts]
        return torch.from_numpy(np.stack(rows).astype(np.float32) / 255.0)


@pytest.mark.slow
def test_lite_model_with_a_registered_text_tower(tmp_path: Path) -> None:
    """A lite checkpoint naming another text tower embeds queries through it, bridge included."""
    from iconosearch.lite.heads import compute_class_text, heads_state, new_heads
    from iconosearch.models import towers

    if "test-hash" not in towers.text_tower_kinds():
        towers.register_text_tower("test-hash", _HashTower)
    config = LiteConfig(text_tower="test-hash", bridge_weight=0.3)
    assert config.text_dim == 48 and config.dim == 256 + 48
    heads = new_heads(config, seed=1)
    untrained = save_lite(tmp_path / "plain", replace(config, bridge_weight=0.0), heads_state(heads))
    model, _ = lite_module.load_lite(untrained)
    class_text = compute_class_text(model, None)
    assert class_text.shape == (1000, 48)
    folder = save_lite(tmp_path / "hash", config, heads_state(heads), class_text=class_text)
    embedder = load_embedder(str(folder), device="cpu")
    vectors = embedder.embed_texts(["a pear", "a ship", "a pear"])
    assert vectors.shape == (3, 256 + 48)
    assert np.allclose(vectors[0], vectors[2]) and not np.allclose(vectors[0], vectors[1])
    assert embedder.fingerprint != load_embedder("iconosearch-lite", device="cpu").fingerprint
