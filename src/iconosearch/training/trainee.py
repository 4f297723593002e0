"""The model under training: which weights train per mode, and each tower split into trunk and head.

Modes follow open_clip's locking conventions (see :mod:`iconosearch.training.finetune`). Towers are split
into a *trunk* (everything up to the projection) and a *head* (the projection), for iconosearch-lite and for
open_clip CLIPs whose projections are separate weights (the ViT/transformer ``CLIP`` class). When a trunk is
frozen, its outputs are computed once and cached on disk (:mod:`iconosearch.training.features`), keyed by
the trunk's weights and preprocessing, so heads-only and LiT epochs only run the heads. Other open_clip
models (timm or Hugging Face towers) are treated as one piece: they train, but nothing is cached.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from iconosearch.training.features import digest, lite_tower_keys
from iconosearch.training.finetune_config import FinetuneConfig, FinetuneError

if TYPE_CHECKING:
    import torch

    from iconosearch.models.embedder import Embedder

HEAD_PREFIXES = ("visual.head.", "visual.proj", "text.proj.", "text_projection", "logit_scale", "logit_bias")
"""Parameter names of the projection heads and the temperature: what ``heads`` mode trains."""


@contextlib.contextmanager
def _without(module: Any, name: str) -> Iterator[None]:
    """Run with ``module.<name>`` (a projection) set to None, so the forward pass stops before it."""
    saved = getattr(module, name)
    setattr(module, name, None)
    try:
        yield
    finally:
        setattr(module, name, saved)


def _weights_digest(named: Iterator[tuple[str, Any]]) -> str:
    import numpy as np

    h = hashlib.sha256()
    for name, tensor in named:
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().view(-1).numpy().view(np.uint8).tobytes())
    return h.hexdigest()


class Trainee:
    """The parts of a base model that training needs, for iconosearch-lite and generic open_clip models."""

    def __init__(self, base: Embedder, device: str) -> None:
        from iconosearch.models.embedder import LiteEmbedder, OpenClipEmbedder

        self.base_spec = base.spec
        self.base_fingerprint = base.fingerprint
        self.device = device
        self.lite: Any = None
        self._override: str | None = None
        self._keys: tuple[str, str] | None = None
        if isinstance(base, LiteEmbedder):
            from iconosearch.models.lite import LiteModel

            src = base.lite
            if src.text_tower is not None:
                raise FinetuneError(
                    f"fine-tuning a lite model with the {src.config.text_tower!r} text tower is not "
                    "supported: train its heads with the lite build instead"
                )
            # A private copy: the loaded base stays untouched (it is cached and used as the reference).
            self.lite = LiteModel(src.config, copy.deepcopy(src.clip), src.classifier, src.class_text)
            self.lite.to(device)
            self.model: Any = self.lite.clip
        elif isinstance(base, OpenClipEmbedder):
            self.model = copy.deepcopy(base.model).to(device)
        else:
            raise FinetuneError(f"model {base.spec!r} is not an open_clip model and cannot be fine-tuned")
        self.preprocess: Callable[[Any], torch.Tensor] = base.preprocess
        self.tokenizer: Callable[[Sequence[str]], torch.Tensor] = base.tokenizer
        self.model.eval()

    @property
    def is_lite(self) -> bool:
        return self.lite is not None

    def lock(self, config: FinetuneConfig) -> None:
        """Set ``requires_grad`` per mode with open_clip's own locking methods."""
        self.model.requires_grad_(True)
        # HF towers print "Unlocking N layers" on stdout; keep stdout clean for --json.
        with contextlib.redirect_stdout(io.StringIO()):
            if config.mode in ("lit", "heads"):
                # freeze_bn_stats=True swaps timm's BatchNormAct2d for FrozenBatchNorm2d, which drops the
                # activation and blows EfficientNet's features up (~1e15); eval mode already freezes BN stats.
                self.model.lock_image_tower(unlocked_groups=0, freeze_bn_stats=False)
            if config.mode == "heads":
                self.model.lock_text_tower(unlocked_layers=0, freeze_layer_norm=True)
            elif config.mode == "text-locked":
                try:
                    self.model.lock_text_tower(
                        unlocked_layers=config.unlocked_text_layers, freeze_layer_norm=True
                    )
                except KeyError:
                    # open_clip's HF architecture table lacks BERT's layer names: the same rule by hand.
                    _lock_hf_text(self.model.text, config.unlocked_text_layers)
        if config.mode == "heads":
            # Towers of built-in CLIPs lock their projections too; the heads are what this mode trains.
            for name, p in self.model.named_parameters():
                p.requires_grad_(name.startswith(HEAD_PREFIXES))
        self.model.logit_scale.requires_grad_(True)
        if not any(p.requires_grad for name, p in self.model.named_parameters() if name != "logit_scale"):
            raise FinetuneError(f"mode {config.mode!r} leaves nothing to train in {self.base_spec!r}")

    def trainable_state(self) -> dict[str, torch.Tensor]:
        return {n: p.detach().cpu().clone() for n, p in self.model.named_parameters() if p.requires_grad}

    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        _, unexpected = self.model.load_state_dict(state, strict=False)
        if unexpected:
            raise FinetuneError(f"checkpoint holds unknown weights: {unexpected[:5]}")

    # Image side: trunk (cacheable when frozen and separable) → head.
    @property
    def separable(self) -> bool:
        """Whether both towers split into trunk + projection head (lite, or an open_clip ViT ``CLIP``)."""
        import torch

        if self.is_lite:
            return True
        proj = getattr(self.model.visual, "proj", None)
        return isinstance(proj, torch.nn.Parameter) and hasattr(self.model, "text_projection")

    def _trunk_parameters(self, tower: str) -> list[Any]:
        if self.is_lite:
            part = self.model.visual.trunk if tower == "image" else self.model.text.transformer
            return list(part.parameters())
        return [p for n, p in self._trunk_named(tower)]

    def _trunk_named(self, tower: str) -> Iterator[tuple[str, Any]]:
        """Named weights of an open_clip CLIP's image or text trunk (everything but heads and temperature)."""
        for name, p in self.model.state_dict(keep_vars=True).items():
            if name.startswith(HEAD_PREFIXES) or name.startswith("visual.") != (tower == "image"):
                continue
            yield name, p

    def image_frozen(self) -> bool:
        return self.separable and not any(p.requires_grad for p in self._trunk_parameters("image"))

    def text_frozen(self) -> bool:
        return self.separable and not any(p.requires_grad for p in self._trunk_parameters("text"))

    def image_trunk(self, pixels: torch.Tensor) -> torch.Tensor:
        if self.is_lite:
            return self.lite.image_features(pixels)
        if not self.separable:
            return pixels
        with _without(self.model.visual, "proj"):
            return self.model.encode_image(pixels)

    def text_trunk(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.is_lite:
            return self.lite.text_features(tokens)  # it cuts the padding itself
        if not self.separable:
            return tokens
        from iconosearch.models.embedder import encode_clip_text  # dynamic padding, where exact

        with _without(self.model, "text_projection"):
            return encode_clip_text(self.model, tokens)

    def image_head(self, x: torch.Tensor) -> torch.Tensor:
        if self.is_lite:
            return self.model.visual.head(x)
        return x @ self.model.visual.proj if self.separable else self.model.encode_image(x)

    def text_head(self, x: torch.Tensor) -> torch.Tensor:
        import torch

        if self.is_lite:
            return self.model.text.proj(x)
        if not self.separable:
            from iconosearch.models.embedder import encode_clip_text  # dynamic padding, where exact

            return encode_clip_text(self.model, x)
        proj = self.model.text_projection
        return proj(x) if isinstance(proj, torch.nn.Linear) else x @ proj

    def final_image(self, x: torch.Tensor) -> torch.Tensor:
        """Vectors as the saved model embeds them (lite: fused with the concept bridge when it has one)."""
        import torch

        if self.is_lite:
            return self.lite.embed_image_features(x)
        return torch.nn.functional.normalize(self.image_head(x), dim=-1)

    def final_text(self, x: torch.Tensor) -> torch.Tensor:
        import torch

        if self.is_lite:
            return self.lite.embed_text_features(x)
        return torch.nn.functional.normalize(self.text_head(x), dim=-1)

    def tower_keys(self, image_side: int) -> tuple[str, str]:
        """Feature-cache keys of the frozen trunks (weights + preprocessing), image and text."""
        if self.is_lite:
            if self._override is None:
                self._override = _tower_override_digest(self.base_spec)
            return lite_tower_keys(self.lite.config, image_side, self._override)
        if self._keys is None:
            from iconosearch.models.embedder import preprocess_signature

            # Digests of the trunk weights themselves: the same weights loaded any way share the cache,
            # and a fine-tuned trunk never reads its base's features.
            img: list[Any] = ["open_clip-image", _weights_digest(self._trunk_named("image"))]
            img += [preprocess_signature(self.preprocess), image_side]
            txt = ["open_clip-text", _weights_digest(self._trunk_named("text"))]
            self._keys = (
                digest(json.dumps(img, sort_keys=True))[:24],
                digest(json.dumps(txt, sort_keys=True))[:24],
            )
        return self._keys


def _lock_hf_text(text: Any, unlocked_layers: int) -> None:
    """open_clip's ``HFTextEncoder.lock``: freeze embeddings and all but the last N transformer layers."""
    transformer = text.transformer
    encoder = getattr(transformer, "encoder", transformer)
    layers = getattr(encoder, "layer", None) or getattr(encoder, "layers", None)
    embeddings = getattr(transformer, "embeddings", None)
    if layers is None or embeddings is None:
        raise FinetuneError(f"cannot find the layers of text tower {type(transformer).__name__} to lock")
    for module in [embeddings, *layers][:-unlocked_layers]:
        module.requires_grad_(False)


def tower_override_file(spec: str) -> Path | None:
    """A fine-tuned lite folder's tower weights (``towers.safetensors``), when the spec names one."""
    from iconosearch.models.lite import TOWERS_FILE
    from iconosearch.models.specs import parse_spec

    path = parse_spec(spec).path
    folder = path if path is None or path.is_dir() else path.parent
    towers = folder / TOWERS_FILE if folder is not None else None
    return towers if towers is not None and towers.is_file() else None


def _tower_override_digest(spec: str) -> str:
    """Digest of the tower weights replacing the packaged ones, "" when there are none."""
    towers = tower_override_file(spec)
    return hashlib.sha256(towers.read_bytes()).hexdigest() if towers is not None else ""
