"""Model specs: one string names a model everywhere (config, CLI, API, index manifests).

Accepted forms:

- ``iconosearch-lite`` — the embedded default (towers from installed packages, heads shipped here);
- ``ARCH/PRETRAINED`` — an open_clip architecture with a pretrained tag (``ViT-B-32/laion2b_s34b_b79k``)
  or a checkpoint file (``ViT-B-32//srv/ckpt.pt``: everything after the first ``/`` is the file);
- ``hf-hub:ORG/REPO`` — an open_clip model on the Hugging Face hub;
- ``local-dir:PATH`` — a folder with ``open_clip_config.json`` + weights, or an iconosearch-lite folder;
- a checkpoint path (``./ft/heads``, ``/srv/model.safetensors``) — an iconosearch-lite checkpoint folder or
  heads file written by fine-tuning.

Parsing is pure; whether a spec can be loaded here and now (files present, hub reachable) is decided when
loading, which raises :class:`ModelUnavailableError` with a readable reason instead of hanging.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

LITE_NAME: Final = "iconosearch-lite"
HF_HUB_PREFIX: Final = "hf-hub:"
LOCAL_DIR_PREFIX: Final = "local-dir:"
CHECKPOINT_SUFFIXES: Final = (".safetensors", ".pt", ".pth", ".bin")

SpecKind = Literal["lite", "open_clip", "hf-hub", "local-dir", "checkpoint"]


class ModelSpecError(ValueError):
    """A model spec string that names no model in any accepted form."""


class ModelUnavailableError(RuntimeError):
    """A well-formed spec whose model cannot be loaded here (offline hub, missing file, bad checksum)."""


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A parsed model spec. ``raw`` is the exact string, which is what indexes record."""

    raw: str
    kind: SpecKind
    name: str
    """open_clip architecture, hub repo id, or path, depending on ``kind``."""
    pretrained: str | None = None
    """open_clip pretrained tag or checkpoint file (``kind == "open_clip"`` only)."""

    @property
    def needs_hub(self) -> bool:
        """True when loading may download from the Hugging Face hub."""
        if self.kind == "hf-hub":
            return True
        return self.kind == "open_clip" and not _looks_like_path(self.pretrained or "")

    @property
    def path(self) -> Path | None:
        if self.kind in ("local-dir", "checkpoint"):
            return Path(self.name).expanduser()
        if self.kind == "open_clip" and self.pretrained and _looks_like_path(self.pretrained):
            return Path(self.pretrained).expanduser()
        return None


def _looks_like_path(text: str) -> bool:
    if text.startswith(("/", "./", "../", "~")):
        return True
    if "/" not in text:
        return text.endswith(CHECKPOINT_SUFFIXES)
    return Path(text).expanduser().exists()


def parse_spec(spec: str) -> ModelSpec:
    """Parse one model spec string; raises :class:`ModelSpecError` with the accepted forms."""
    raw = spec
    text = spec.strip()
    if not text:
        raise ModelSpecError("empty model spec; use e.g. 'iconosearch-lite' or 'ViT-B-32/laion2b_s34b_b79k'")
    if text == LITE_NAME:
        return ModelSpec(raw=raw, kind="lite", name=LITE_NAME)
    if text.startswith(HF_HUB_PREFIX):
        repo = text[len(HF_HUB_PREFIX) :].strip()
        if repo.count("/") != 1 or not all(repo.split("/")):
            raise ModelSpecError(f"'hf-hub:' needs ORG/REPO, got {spec!r}")
        return ModelSpec(raw=raw, kind="hf-hub", name=repo)
    if text.startswith(LOCAL_DIR_PREFIX):
        path = text[len(LOCAL_DIR_PREFIX) :].strip()
        if not path:
            raise ModelSpecError(f"'local-dir:' needs a folder path, got {spec!r}")
        return ModelSpec(raw=raw, kind="local-dir", name=path)
    if _looks_like_path(text):
        return ModelSpec(raw=raw, kind="checkpoint", name=text)
    if "/" in text:
        arch, pretrained = text.split("/", 1)
        if not arch or not pretrained:
            raise ModelSpecError(f"open_clip spec needs ARCH/PRETRAINED, got {spec!r}")
        return ModelSpec(raw=raw, kind="open_clip", name=arch, pretrained=pretrained)
    raise ModelSpecError(
        f"unknown model spec {spec!r}: use '{LITE_NAME}', 'ARCH/PRETRAINED' (open_clip), "
        "'hf-hub:ORG/REPO', 'local-dir:PATH' or a checkpoint path"
    )


def hub_offline() -> bool:
    """Whether the Hugging Face hub is switched off (``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE``)."""
    return any(
        os.environ.get(var, "").strip().lower() in {"1", "true", "yes", "on"}
        for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


# Well-known hub models worth suggesting; their dims and preprocessing are those of open_clip's configs.
KNOWN_HUB_MODELS: Final[tuple[tuple[str, int, str, str, str], ...]] = (
    (
        "ViT-B-32/laion2b_s34b_b79k",
        512,
        "224 px, resize shortest + center crop, OpenAI mean/std",
        "MIT (weights: LAION-2B, research use)",
        "English CLIP, good general default when the hub is reachable",
    ),
    (
        "xlm-roberta-base-ViT-B-32/laion5b_s13b_b90k",
        512,
        "224 px, resize shortest + center crop, OpenAI mean/std",
        "MIT (weights: LAION-5B, research use)",
        "multilingual text tower (XLM-RoBERTa)",
    ),
    (
        "ViT-B-16/laion2b_s34b_b88k",
        512,
        "224 px, resize shortest + center crop, OpenAI mean/std",
        "MIT (weights: LAION-2B, research use)",
        "stronger, ~3× slower than ViT-B-32",
    ),
)
