"""Text towers by kind: a registry of factories, so a new tower is added by registering, not by an if-chain.

A text tower turns texts into feature vectors (``encode(texts)`` → float tensor ``(n, dim)``), has a
``dim`` and a ``fingerprint`` (a hash of everything its output depends on). Projection heads trained into an
image space sit on top of it; the tower itself knows nothing of images.

Factories are called lazily (``load_text_tower``), once per process and kind, so importing this package
stays cheap.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from iconosearch.models.specs import ModelUnavailableError

if TYPE_CHECKING:
    import torch


@runtime_checkable
class TextTower(Protocol):
    kind: str
    dim: int
    fingerprint: str

    def encode(self, texts: Sequence[str]) -> torch.Tensor: ...


_FACTORIES: dict[str, Callable[[], TextTower]] = {}
_LOADED: dict[str, TextTower] = {}
_LOCK = threading.Lock()


def register_text_tower(kind: str, factory: Callable[[], TextTower]) -> None:
    """Make ``kind`` loadable; registering a kind twice is a programming error."""
    if kind in _FACTORIES:
        raise ValueError(f"text tower kind {kind!r} is already registered")
    _FACTORIES[kind] = factory


def text_tower_kinds() -> list[str]:
    return sorted(_FACTORIES)


def load_text_tower(kind: str) -> TextTower:
    """The tower of ``kind`` (loaded once per process); unknown kinds name the known ones."""
    factory = _FACTORIES.get(kind)
    if factory is None:
        raise ModelUnavailableError(
            f"unknown text tower kind {kind!r}; known: {', '.join(text_tower_kinds()) or 'none'}"
        )
    with _LOCK:
        tower = _LOADED.get(kind)
        if tower is None:
            tower = factory()
            _LOADED[kind] = tower
        return tower


def _use_m3() -> TextTower:
    from iconosearch.models.towers.use_m3 import load_use_m3

    return load_use_m3()


register_text_tower("use-m3", _use_m3)
