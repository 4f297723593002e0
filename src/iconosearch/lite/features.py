"""Frozen tower features for the lite build: computed once, cached on disk with fine-tuning's keys.

Images are keyed by content hash and texts by their digest under keys that name the towers and the
preprocessing (:func:`iconosearch.training.features.lite_tower_keys`), so a feature computed here is
reused by ``iconosearch finetune`` and the other way round.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final

import numpy as np

from iconosearch.models.lite import LiteConfig
from iconosearch.training.features import FeatureCache, lite_tower_keys

if TYPE_CHECKING:
    from iconosearch.models.embedder import LiteEmbedder

DECODE_MAX_SIDE: Final = 448
DECODE_MAX_PIXELS: Final = 400_000_000  # trusted Debian content; some PNGs are 13k×13k

Progress = Callable[[int, int], None]
"""(done, total) callback."""


def feature_cache(cache_dir: Path) -> FeatureCache:
    """The frozen-feature cache of the build: the same layout and keys as fine-tuning's."""
    return FeatureCache(cache_dir / "features")


def tower_keys(config: LiteConfig | None = None) -> tuple[str, str]:
    """(image key, text key) of the packaged towers at the build's decode size."""
    return lite_tower_keys(config or LiteConfig(), DECODE_MAX_SIDE)


def towers_embedder(config: LiteConfig | None = None, device: str = "cpu") -> LiteEmbedder:
    """A lite embedder with fresh (untrained) heads: for frozen-feature extraction and for training."""
    from open_clip.tokenizer import HFTokenizer

    from iconosearch.models.embedder import LiteEmbedder
    from iconosearch.models.lite import LiteModel, build_clip, tower_files

    cfg = config or LiteConfig()
    towers = tower_files(cfg.image_tower)
    clip, classifier = build_clip(cfg, towers)
    tower = None
    if cfg.text_tower != "minilm":
        from iconosearch.models.towers import load_text_tower

        tower = load_text_tower(cfg.text_tower)
    lite = LiteModel(cfg, clip, classifier, None, tower).to(device)
    tokenizer = HFTokenizer(str(towers.text_dir), context_length=cfg.context_length)
    return LiteEmbedder("iconosearch-lite (untrained heads)", lite, "untrained", device, tokenizer)


class Features:
    """Image features by content hash and text features by text, filled from the cache or the towers."""

    def __init__(
        self, cache: FeatureCache, towers: Callable[[], LiteEmbedder], config: LiteConfig | None = None
    ) -> None:
        self.cache = cache
        self._towers = towers
        self._embedder: LiteEmbedder | None = None
        self.image_key, self.text_key = tower_keys(config)

    @property
    def embedder(self) -> LiteEmbedder:
        if self._embedder is None:
            self._embedder = self._towers()
        return self._embedder

    def images(
        self, paths: dict[str, Path], *, batch_size: int = 32, progress: Progress | None = None
    ) -> dict[str, np.ndarray]:
        """Features of ``paths`` (content hash → file); undecodable images are left out."""
        from iconosearch.images import ImageRejectedError, open_image

        found = {h: f for h in paths if (f := self.cache.get(self.image_key, h)) is not None}
        todo = sorted(h for h in paths if h not in found)
        for start in range(0, len(todo), batch_size):
            chunk, images = [], []
            for h in todo[start : start + batch_size]:
                try:
                    images.append(
                        open_image(paths[h], max_pixels=DECODE_MAX_PIXELS, max_side=DECODE_MAX_SIDE)
                    )
                    chunk.append(h)
                except ImageRejectedError:
                    continue
            if images:
                for h, f in zip(chunk, self.embedder.image_feature_batch(images), strict=True):
                    self.cache.put(self.image_key, h, f)
                    found[h] = f
            if progress:
                progress(min(start + batch_size, len(todo)), len(todo))
        return found

    def texts(self, texts: Sequence[str], *, batch_size: int = 128) -> dict[str, np.ndarray]:
        found = self.cache.get_many(self.text_key, texts)
        # By length: a batch is padded to its longest caption, so similar lengths waste the least.
        todo = sorted({t for t in texts if t not in found}, key=lambda t: (len(t), t))
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            new = dict(zip(chunk, self.embedder.text_feature_batch(chunk), strict=True))
            self.cache.put_many(self.text_key, new)
            found.update(new)
        return found


def colour_count(path: Path, side: int = 128) -> int:
    from iconosearch.images import open_image

    image = open_image(path, max_pixels=DECODE_MAX_PIXELS, max_side=side)
    return len(set(image.getdata()))
