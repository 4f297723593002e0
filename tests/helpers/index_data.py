"""Synthetic records, vectors and a tiny deterministic embedder for the index and engine tests."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from iconosearch.index.store import IndexStore, IndexVersion
from iconosearch.index.versions import BuildOptions, EmbeddedRecord, ModelInfo, write_version
from iconosearch.records import DateRange, ImageRecord, Provider, record_id

COLLECTIONS = ("maps", "prints", "photos")
PROVIDERS = ("Rijksmuseum", "British Library", "Bodleian")
RIGHTS = (
    "http://creativecommons.org/publicdomain/zero/1.0/",
    "https://creativecommons.org/licenses/by-nc/4.0/",
    None,
)


def make_record(
    i: int, *, collection: str | None = None, manifest: str | None = None, caption: str | None = None
) -> ImageRecord:
    manifest_id = manifest or f"https://example.org/iiif/{i}/manifest"
    canvas = f"{manifest_id}/canvas/1"
    image = f"{manifest_id}/image/{i}"
    lang = "en" if i % 4 else "nl"
    text = caption if caption is not None else f"item {i} {'river' if i % 5 == 0 else 'street'}"
    return ImageRecord(
        id=record_id(manifest_id, canvas, image),
        collection=collection or COLLECTIONS[i % len(COLLECTIONS)],
        manifest_id=manifest_id,
        canvas_id=canvas,
        image_id=image,
        manifest_label={"en": [f"Item {i}"]},
        rights=RIGHTS[i % len(RIGHTS)],
        providers=(Provider(label={"en": [PROVIDERS[i % len(PROVIDERS)]]}),),
        date=DateRange(1500 + (i * 7) % 500, 1500 + (i * 7) % 500 + 5) if i % 6 else None,
        caption={lang: [text]} if i % 9 else {},
    )


def clustered_vectors(n: int, dim: int = 32, *, clusters: int = 40, seed: int = 0) -> np.ndarray:
    """Unit vectors around random centres: closer to real embeddings than uniform noise."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim))
    x = centres[rng.integers(0, clusters, n)] + 0.6 * rng.standard_normal((n, dim))
    out: np.ndarray = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    return out


MODEL = ModelInfo(spec="test-hash", fingerprint="hash-embedder-v1", dim=32)


def make_items(n: int, *, start: int = 0, dim: int = 32, seed: int = 0) -> list[EmbeddedRecord]:
    vectors = clustered_vectors(n, dim, seed=seed)
    return [EmbeddedRecord(make_record(start + j), f"hash{start + j}", vectors[j]) for j in range(n)]


def build(
    data_dir: Path,
    items: Sequence[EmbeddedRecord],
    *,
    name: str = "default",
    options: BuildOptions | None = None,
) -> IndexVersion:
    options = options or BuildOptions()
    store = IndexStore(data_dir / "indexes", name)
    return write_version(store, items, MODEL, options=options)


class HashEmbedder:
    """Deterministic stand-in for a CLIP model: words → seeded random directions; images → pixels.

    Texts sharing words get similar vectors; the same picture always gets the same vector.
    """

    spec = "test-hash"
    fingerprint = "hash-embedder-v1"
    dim = 32

    def __init__(self) -> None:
        self.text_calls = 0

    def _word(self, word: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.sha256(word.lower().encode()).digest()[:8], "little")
        return np.random.default_rng(seed).standard_normal(self.dim)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        self.text_calls += 1
        out = np.stack([sum((self._word(w) for w in t.split()), np.zeros(self.dim)) for t in texts])
        return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        rng = np.random.default_rng(7)
        projection = rng.standard_normal((8 * 8 * 3, self.dim))
        rows = [
            np.asarray(im.convert("RGB").resize((8, 8)), dtype=np.float64).reshape(-1) / 255.0 - 0.5
            for im in images
        ]
        out = np.stack(rows) @ projection
        return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)
