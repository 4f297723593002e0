"""Fine-tuning a generic open_clip model (a tiny random CLIP saved as an open_clip local-dir folder)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from iconosearch.evaluation.pairs import split_by_group
from iconosearch.models.embedder import OpenClipEmbedder, load_embedder
from iconosearch.training.finetune import FinetuneConfig, finetune
from tests.helpers.finetune_data import FinetuneWorld, finetune_world  # noqa: F401 - the fixture

TINY = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> str:
    import open_clip
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("tiny-clip")
    torch.manual_seed(0)
    model = open_clip.CLIP(**TINY)  # type: ignore[arg-type]
    config = {"model_cfg": TINY, "preprocess_cfg": {"mean": [0.5] * 3, "std": [0.5] * 3}}
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()},
        str(folder / "open_clip_model.safetensors"),
    )
    return f"local-dir:{folder}"


@pytest.mark.parametrize(
    ("mode", "trained"),
    [
        ("heads", {"visual.proj", "text_projection", "logit_scale"}),
        ("lit", {"transformer.resblocks.1.mlp.c_fc.weight", "text_projection"}),
        ("text-locked", {"visual.conv1.weight", "transformer.resblocks.1.mlp.c_fc.weight"}),
        ("full", {"visual.conv1.weight", "token_embedding.weight"}),
    ],
)
def test_every_mode_trains_what_open_clip_unlocks_and_saves_a_loadable_model(
    tiny_clip: str,
    finetune_world: FinetuneWorld,  # noqa: F811
    tmp_path: Path,
    mode: str,
    trained: set[str],
) -> None:
    pairs = finetune_world.pairs
    split = split_by_group(pairs, val_fraction=0.25, test_fraction=0.25, min_eval_pairs=6, seed=0)
    base = load_embedder(tiny_clip, device="cpu")
    # open_clip counts the projection as the text tower's last "layer": 2 unlocks it and the last block.
    config = FinetuneConfig(
        mode=mode,  # type: ignore[arg-type]
        unlocked_text_layers=2,
        epochs=2,
        batch_size=8,
        accumulation_steps=2,
        lr=1e-3,
        tower_lr=1e-3,
        threads=1,  # the cores are shared: one thread is faster than two contended ones
    )
    result = finetune(
        base, split.select(pairs, "train"), split.select(pairs, "val"), (), split, tmp_path / mode, config
    )
    assert min(h.val_loss for h in result.history) < result.base_val_loss
    assert (tmp_path / mode / "open_clip_config.json").is_file()
    tuned = load_embedder(result.spec, device="cpu")
    assert isinstance(tuned, OpenClipEmbedder) and isinstance(base, OpenClipEmbedder)
    changed = {
        n
        for (n, a), b in zip(base.model.named_parameters(), tuned.model.parameters(), strict=True)
        if not torch.equal(a, b)
    }
    assert trained <= changed
    if mode == "heads":
        assert changed == trained
    if mode == "lit":
        assert not any(n.startswith("visual.") for n in changed)  # the image tower is locked
    if mode == "text-locked":
        assert "transformer.resblocks.0.mlp.c_fc.weight" not in changed  # only the last layer unlocked
    assert tuned.embed_texts(["a red circle"]).shape == (1, 32)
