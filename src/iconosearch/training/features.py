"""The on-disk cache of frozen tower features, shared by fine-tuning and the iconosearch-lite build.

One ``.npy`` per item under ``root/<key>/<ab>/<item>.npy``: ``key`` names what produced the features (tower
weights, preprocessing), ``item`` is a content digest (image hash, caption hash). Writes are atomic, so an
interrupted run leaves at worst a file that is recomputed.

Why this is not the index's embedding cache (``data/cache/embeddings``): that one stores *final* vectors
of a whole model, by model fingerprint, inside the data directory the indexer owns; training stores
*intermediate* tower outputs that outlive any one set of heads, in a cache outside the data directory.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np


def digest(text: str) -> str:
    """A stable file-safe name for any string key (captions, corpus keys)."""
    return hashlib.sha256(text.encode()).hexdigest()


class FeatureCache:
    """Frozen tower outputs on disk, one ``.npy`` per image content hash or caption hash."""

    def __init__(self, root: Path | None) -> None:
        self.root = root

    def _path(self, key: str, item: str) -> Path:
        assert self.root is not None
        return self.root / key / item[:2] / f"{item}.npy"

    def get(self, key: str, item: str) -> np.ndarray | None:
        if self.root is None:
            return None
        path = self._path(key, item)
        if not path.is_file():
            return None
        try:
            return np.load(path)
        except (OSError, ValueError):
            return None  # a torn write from an interrupted run: recompute

    def put(self, key: str, item: str, value: np.ndarray) -> None:
        if self.root is None:
            return
        path = self._path(key, item)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, value.astype(np.float32))
        tmp.replace(path)

    def get_many(self, key: str, names: Iterable[str]) -> dict[str, np.ndarray]:
        """Cached features of the named entries (any strings; hashed to file names), missing ones left out."""
        found = {}
        for name in names:
            value = self.get(key, digest(name))
            if value is not None:
                found[name] = value
        return found

    def put_many(self, key: str, values: dict[str, np.ndarray]) -> None:
        for name, value in values.items():
            self.put(key, digest(name), value)


def lite_tower_keys(config: Any, image_side: int, override: str = "") -> tuple[str, str]:
    """Feature-cache keys of a lite model's frozen towers (weights + preprocessing), image and text.

    ``override`` is the digest of fine-tuned tower weights replacing the packaged ones (see ``save_model``).
    """
    from iconosearch.models.lite import TEXT_TOWER_SHA256

    # The tower's weights (not its kind) key the features: lite0's keys are those written before kinds.
    image_tower = config.image_spec.sha256
    img = json.dumps([image_tower, config.preprocess_cfg(), image_side, override], sort_keys=True)
    text_tower = TEXT_TOWER_SHA256
    if config.text_tower != "minilm":
        from iconosearch.models.towers import load_text_tower

        text_tower = load_text_tower(config.text_tower).fingerprint
    txt = json.dumps([text_tower, config.context_length, override], sort_keys=True)
    return digest(img)[:24], digest(txt)[:24]
