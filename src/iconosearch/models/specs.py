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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

LITE_NAME: Final = "iconosearch-lite"
HF_HUB_PREFIX: Final = "hf-hub:"
LOCAL_DIR_PREFIX: Final = "local-dir:"
CHECKPOINT_SUFFIXES: Final = (".safetensors", ".pt", ".pth", ".bin")


class ModelSpecError(ValueError):
    """A model spec string that names no model in any accepted form."""


class ModelUnavailableError(RuntimeError):
    """A well-formed spec whose model cannot be loaded here (offline hub, missing file, bad checksum)."""


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A parsed model spec. ``raw`` is the exact string, which is what indexes record."""

    raw: str
    kind: str
    """The registered spec kind that parsed it (see :func:`register_spec_kind`)."""
    name: str
    """open_clip architecture, hub repo id, or path, depending on ``kind``."""
    pretrained: str | None = None
    """open_clip pretrained tag or checkpoint file (``kind == "open_clip"`` only)."""
    needs_hub: bool = False
    """True when loading may download from the Hugging Face hub."""
    path: Path | None = None
    """The file or folder loading reads, for the kinds that read one."""


SpecParser = Callable[[str, str], ModelSpec | None]
"""(raw spec, stripped spec) → the spec, or None when the text is not of this form.

A parser raises :class:`ModelSpecError` for text that is of its form but malformed (``hf-hub:`` alone).
"""


@dataclass(frozen=True, slots=True)
class SpecKind:
    """One accepted form of model spec. Its loader is registered in :mod:`iconosearch.models.embedder`."""

    kind: str
    parse: SpecParser
    form: str
    """How the form is written, for error messages (``'hf-hub:ORG/REPO'``)."""
    catch_all: bool = False
    """Claims text by its shape rather than a prefix or name, so it is tried after all the others."""


_KINDS: dict[str, SpecKind] = {}


def register_spec_kind(kind: SpecKind) -> None:
    """Make a spec form parseable; registering a kind twice is a programming error."""
    if kind.kind in _KINDS:
        raise ValueError(f"model spec kind {kind.kind!r} is already registered")
    _KINDS[kind.kind] = kind


def spec_kinds() -> list[SpecKind]:
    """The registered forms in the order they are tried: named and prefixed ones, then catch-alls."""
    return sorted(_KINDS.values(), key=lambda k: k.catch_all)


def _looks_like_path(text: str) -> bool:
    if text.startswith(("/", "./", "../", "~")):
        return True
    if "/" not in text:
        return text.endswith(CHECKPOINT_SUFFIXES)
    return Path(text).expanduser().exists()


def parse_spec(spec: str) -> ModelSpec:
    """Parse one model spec string; raises :class:`ModelSpecError` with the accepted forms."""
    text = spec.strip()
    if not text:
        raise ModelSpecError("empty model spec; use e.g. 'iconosearch-lite' or 'ViT-B-32/laion2b_s34b_b79k'")
    kinds = spec_kinds()
    for kind in kinds:
        parsed = kind.parse(spec, text)
        if parsed is not None:
            return parsed
    forms = [k.form for k in kinds]
    raise ModelSpecError(f"unknown model spec {spec!r}: use {', '.join(forms[:-1])} or {forms[-1]}")


def _parse_lite(raw: str, text: str) -> ModelSpec | None:
    return ModelSpec(raw=raw, kind="lite", name=LITE_NAME) if text == LITE_NAME else None


def _parse_hub(raw: str, text: str) -> ModelSpec | None:
    if not text.startswith(HF_HUB_PREFIX):
        return None
    repo = text[len(HF_HUB_PREFIX) :].strip()
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise ModelSpecError(f"'hf-hub:' needs ORG/REPO, got {raw!r}")
    return ModelSpec(raw=raw, kind="hf-hub", name=repo, needs_hub=True)


def _parse_local_dir(raw: str, text: str) -> ModelSpec | None:
    if not text.startswith(LOCAL_DIR_PREFIX):
        return None
    path = text[len(LOCAL_DIR_PREFIX) :].strip()
    if not path:
        raise ModelSpecError(f"'local-dir:' needs a folder path, got {raw!r}")
    return ModelSpec(raw=raw, kind="local-dir", name=path, path=Path(path).expanduser())


def _parse_checkpoint(raw: str, text: str) -> ModelSpec | None:
    if not _looks_like_path(text):
        return None
    return ModelSpec(raw=raw, kind="checkpoint", name=text, path=Path(text).expanduser())


def _parse_open_clip(raw: str, text: str) -> ModelSpec | None:
    if "/" not in text:
        return None
    arch, pretrained = text.split("/", 1)
    if not arch or not pretrained:
        raise ModelSpecError(f"open_clip spec needs ARCH/PRETRAINED, got {raw!r}")
    is_file = _looks_like_path(pretrained)
    return ModelSpec(
        raw=raw,
        kind="open_clip",
        name=arch,
        pretrained=pretrained,
        needs_hub=not is_file,
        path=Path(pretrained).expanduser() if is_file else None,
    )


register_spec_kind(SpecKind("lite", _parse_lite, f"'{LITE_NAME}'"))
register_spec_kind(SpecKind("hf-hub", _parse_hub, "'hf-hub:ORG/REPO'"))
register_spec_kind(SpecKind("local-dir", _parse_local_dir, "'local-dir:PATH'"))
# A path is tried before ARCH/PRETRAINED: './ft/heads' has a slash but names a file.
register_spec_kind(SpecKind("checkpoint", _parse_checkpoint, "a checkpoint path", catch_all=True))
register_spec_kind(SpecKind("open_clip", _parse_open_clip, "'ARCH/PRETRAINED' (open_clip)", catch_all=True))


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
