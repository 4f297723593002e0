"""A build whose towers differ from its baseline's: the baseline's features, heads distilled from its heads.

The baseline (a lite checkpoint) is both the warm start and the model the new one is compared with. When
the new model keeps the baseline's towers, its heads start as the baseline's. When a tower differs (another
text tower such as USE-m3, or another image tower such as EfficientNet-Lite2), that side's head is distilled
from the baseline's (:func:`iconosearch.lite.heads.distil_head`): each training text or image is put where the
baseline puts it, so the other side's head stays valid. This needs every feature twice, through the new
towers and through the baseline's, and the baseline is evaluated on its own towers' features.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from iconosearch.lite.corpus import default_cache_dir
from iconosearch.lite.features import Features, Progress, feature_cache, towers_embedder
from iconosearch.lite.prototypes import PROTOTYPE_TEMPLATES, class_short_names
from iconosearch.models.lite import LiteConfig, LiteModel

if TYPE_CHECKING:
    from iconosearch.lite.build import Data
    from iconosearch.training.contrastive import ContrastiveHeads


def same_towers(a: LiteConfig, b: LiteConfig) -> tuple[bool, bool]:
    """(same image tower, same text tower) of two configs; the image side includes its input size."""
    return (a.image_tower, a.image_size) == (b.image_tower, b.image_size), a.text_tower == b.text_tower


def base_source(cache_dir: Path | None, base: LiteConfig, new: LiteConfig) -> Features | None:
    """Features through the baseline's towers; ``None`` when they are the new model's."""
    if all(same_towers(base, new)):
        return None
    cache = feature_cache(cache_dir or default_cache_dir())
    return Features(cache, lambda: towers_embedder(base), base)


def base_matrices(
    source: Features | None,
    same: tuple[bool, bool],
    paths: dict[str, Path],
    new: tuple[np.ndarray, np.ndarray, dict[str, int], dict[str, int]],
    progress: Progress | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The baseline's (image, text) feature matrices in the new ones' rows (the same array where a tower
    is shared)."""
    image, text, image_row, text_row = new
    base_image, base_text = image, text
    if source is not None and not same[0]:
        found = source.images({h: paths[h] for h in image_row}, progress=progress)
        missing = [h for h in image_row if h not in found]
        if missing:
            raise ValueError(
                f"the baseline's image tower could not read {len(missing)} images: {missing[:3]}"
            )
        base_image = np.stack([found[h] for h in image_row]).astype(np.float32)
    if source is not None and not same[1]:
        texts = source.texts(list(text_row))
        base_text = np.stack([texts[t] for t in text_row]).astype(np.float32)
    return base_image, base_text


def base_model(
    config: LiteConfig, class_text: torch.Tensor | None, new: LiteModel, source: Features | None
) -> LiteModel:
    """The baseline as a model over cached features: its concept bridge reads its own image tower's
    ImageNet classifier (``new``'s when the image tower is shared)."""
    towers = new
    if source is not None and not same_towers(config, new.config)[0]:
        towers = source.embedder.lite
    table = class_text.float() if class_text is not None else None
    return LiteModel(config, towers.clip, towers.classifier, table)


def distil_texts(clip_train: set[str], heritage_train: dict[str, dict[str, list[str]]]) -> set[str]:
    """What a text head for another tower is distilled on: the clip-art and heritage training captions and
    the ImageNet class templates (texts only, so all clip-art ones, not only the paired subsample)."""
    templates = {t.format(n) for n in class_short_names() for t in PROTOTYPE_TEMPLATES}
    return clip_train | templates | {t for v in heritage_train.values() for vs in v.values() for t in vs}


def warm_heads(data: Data, baseline: Path, config: LiteConfig) -> ContrastiveHeads:
    """The baseline's heads; a side whose tower differs gets a head distilled from the baseline's."""
    from iconosearch.lite.heads import distil_head, load_heads, new_heads

    base_config, base, _ = load_heads(baseline)
    same_image, same_text = same_towers(base_config, config)
    if same_image and same_text:
        return base
    heads = new_heads(LiteConfig(head="mlp", text_tower=config.text_tower))
    if same_image:
        heads.image_head.load_state_dict(base.image_head.state_dict())
    else:
        rows = data.distil_image_rows
        distil_head(heads.image_head, base.image_head, data.image[rows], data.base_image[rows])
    if same_text:
        heads.text_head.load_state_dict(base.text_head.state_dict())
    else:
        rows = data.distil_rows
        distil_head(heads.text_head, base.text_head, data.text[rows], data.base_text[rows])
    with torch.no_grad():
        heads.logit_scale.copy_(base.logit_scale)
    return heads
