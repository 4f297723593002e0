"""Text towers for iconosearch-lite: a small registry of kind → factory.

The built-in kind ``minilm`` is the all-MiniLM-L6-v2 tower inside the lite model's open_clip
``CustomTextCLIP`` (fine-tuning can unlock its layers, so it stays part of that model). Any other text
encoder plugs in by registering a factory here, from the module where it lives::

    register_text_tower("use-m3", dim=512, factory=load_use_m3)

and adding that module to :data:`TOWER_MODULES`, so it registers itself on first lookup. A lite model
names its tower in ``config.json`` (``"text_tower": "use-m3"``); its text head then maps ``dim`` → the
embedding, and the concept bridge embeds the ImageNet class names with the same tower. Such towers are
frozen: only the heads are trained on them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol

if TYPE_CHECKING:
    import torch

BUILTIN: Final = "minilm"
"""The MiniLM tower inside the lite model; not in the registry because it is part of the open_clip model."""
BUILTIN_DIM: Final = 384

TOWER_MODULES: tuple[str, ...] = ()
"""Modules that register text towers when imported (imported lazily, on the first lookup)."""


class TextTower(Protocol):
    """A frozen sentence encoder: texts → feature vectors (before the lite model's text head)."""

    dim: int
    fingerprint: str
    """Hash of the tower's weights and settings: part of the lite model's fingerprint and feature keys."""

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """(len(texts), dim) float32 features, unnormalised, on the CPU."""
        ...


@dataclass(frozen=True, slots=True)
class TowerEntry:
    dim: int
    factory: Callable[[], TextTower]


_REGISTRY: dict[str, TowerEntry] = {}


def register_text_tower(kind: str, *, dim: int, factory: Callable[[], TextTower]) -> None:
    if kind == BUILTIN or kind in _REGISTRY:
        raise ValueError(f"text tower kind {kind!r} is already registered")
    _REGISTRY[kind] = TowerEntry(dim, factory)


def _load_modules() -> None:
    for module in TOWER_MODULES:
        importlib.import_module(module)


def text_tower_kinds() -> tuple[str, ...]:
    _load_modules()
    return (BUILTIN, *sorted(_REGISTRY))


def _entry(kind: str) -> TowerEntry:
    _load_modules()
    entry = _REGISTRY.get(kind)
    if entry is None:
        raise KeyError(f"unknown text tower {kind!r}; known: {', '.join(text_tower_kinds())}")
    return entry


def text_tower_dim(kind: str) -> int:
    """Feature size of a text tower kind, without loading it."""
    return BUILTIN_DIM if kind == BUILTIN else _entry(kind).dim


def load_text_tower(kind: str) -> TextTower:
    """A registered (non-built-in) text tower, loaded."""
    if kind == BUILTIN:
        raise ValueError("the MiniLM tower is part of the lite model; it is not loaded on its own")
    return _entry(kind).factory()
