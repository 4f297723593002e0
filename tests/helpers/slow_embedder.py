"""An embedder for the Ray tests: the deterministic HashEmbedder, slowed down so a run can be interrupted."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
from PIL import Image

from tests.helpers.index_data import HashEmbedder


class SlowHashEmbedder(HashEmbedder):
    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        time.sleep(0.3)
        return super().embed_images(images)
