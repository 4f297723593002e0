"""Which open_clip architecture a bare checkpoint file holds, read from its tensor shapes.

A checkpoint written by open_clip (``torch.save(model.state_dict())``, a training run's ``epoch_N.pt`` with
a ``state_dict`` inside, or a ``.safetensors`` file) does not name its architecture. The shapes do: embedding
width, patch size, image size and layer counts of both towers are compared with every open_clip config. When
exactly one fits, it is used; otherwise the error names the ``ARCH/PATH`` form that states it
(``ViT-B-32//srv/weights.pt``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from iconosearch.models.specs import ModelUnavailableError

_VISUAL_BLOCK = re.compile(r"^visual\.transformer\.resblocks\.(\d+)\.")
_TEXT_BLOCK = re.compile(r"^transformer\.resblocks\.(\d+)\.")


def _shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name → shape, without keeping the weights in memory (mmap / lazy safetensors)."""
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            return {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}  # noqa: SIM118
    import torch

    try:
        data: Any = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except Exception as exc:  # torch raises several types for files that are not checkpoints
        raise ModelUnavailableError(f"cannot read checkpoint {path}: {exc}") from exc
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict):
        raise ModelUnavailableError(f"{path} holds no state dict")
    return {k.removeprefix("module."): tuple(v.shape) for k, v in data.items() if hasattr(v, "shape")}


def _signature(shapes: dict[str, tuple[int, ...]]) -> dict[str, int] | None:
    """The numbers that tell architectures apart; None when the layout is not a ViT + text transformer."""
    conv = shapes.get("visual.conv1.weight")
    pos = shapes.get("visual.positional_embedding")
    proj = shapes.get("text_projection")
    tokens = shapes.get("token_embedding.weight")
    text_pos = shapes.get("positional_embedding")
    if not (conv and pos and proj and tokens and text_pos):
        return None
    grid = round((pos[0] - 1) ** 0.5)
    return {
        "embed_dim": proj[1],
        "vision_width": conv[0],
        "patch_size": conv[-1],
        "image_size": grid * conv[-1],
        "vision_layers": 1 + max((int(m[1]) for k in shapes if (m := _VISUAL_BLOCK.match(k))), default=-1),
        "text_width": tokens[1],
        "vocab_size": tokens[0],
        "context_length": text_pos[0],
        "text_layers": 1 + max((int(m[1]) for k in shapes if (m := _TEXT_BLOCK.match(k))), default=-1),
    }


def _config_signature(cfg: dict[str, Any]) -> dict[str, int] | None:
    vision, text = cfg.get("vision_cfg", {}), cfg.get("text_cfg", {})
    if "timm_model_name" in vision or "hf_model_name" in text or "layers" not in vision:
        return None
    image_size = vision.get("image_size", 224)
    return {
        "embed_dim": cfg.get("embed_dim", 0),
        "vision_width": vision.get("width", 768),
        "patch_size": vision.get("patch_size", 16),
        "image_size": image_size if isinstance(image_size, int) else image_size[0],
        "vision_layers": vision["layers"],
        "text_width": text.get("width", 512),
        "vocab_size": text.get("vocab_size", 49408),
        "context_length": text.get("context_length", 77),
        "text_layers": text.get("layers", 12),
    }


def architecture_of(path: Path) -> str:
    """The one open_clip architecture whose shapes match the checkpoint; a clear error otherwise."""
    import open_clip

    hint = f"name it in the spec as 'ARCH/{path}' (e.g. 'ViT-B-32/{path}')"
    signature = _signature(_shapes(path))
    if signature is None:
        raise ModelUnavailableError(
            f"{path} is neither an iconosearch-lite checkpoint nor an open_clip ViT checkpoint whose "
            f"architecture can be read from its shapes; {hint}"
        )
    fits = [
        name
        for name in open_clip.list_models()
        if _config_signature(open_clip.get_model_config(name) or {}) == signature
    ]
    if len(fits) == 1:
        return fits[0]
    if not fits:
        raise ModelUnavailableError(f"no open_clip architecture has the shapes of {path}; {hint}")
    raise ModelUnavailableError(
        f"the shapes of {path} fit several open_clip architectures ({', '.join(fits)}), which differ in "
        f"what shapes cannot show (e.g. the activation); name it in the spec as '{fits[0]}/{path}'"
    )
