"""The embedding pipeline on real image files with a real (tiny, randomly initialised) open_clip model."""

from __future__ import annotations

import hashlib
import io
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from iconosearch.images import open_image
from iconosearch.models.pipeline import (
    DECODE_MAX_SIDE,
    EmbeddingCache,
    TextEmbeddingCache,
    embed_images,
)


class TinyEmbedder:
    """A real open_clip CLIP, tiny and seeded, implementing the Embedder protocol."""

    spec = "tiny-test"

    def __init__(self, seed: int = 0, *, poison_width: int | None = None) -> None:
        torch.manual_seed(seed)
        self.model = open_clip.CLIP(
            embed_dim=32,
            vision_cfg={"image_size": 64, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
            text_cfg={"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
        ).eval()
        self.transform = open_clip.image_transform(64, is_train=False)
        self.tokenizer = open_clip.get_tokenizer("ViT-B-32")
        self.dim = 32
        digest = hashlib.sha256()
        for tensor in self.model.state_dict().values():
            digest.update(tensor.numpy().tobytes())
        self.fingerprint = digest.hexdigest()[:32]
        self.image_calls = 0
        self.images_seen = 0
        self.text_calls = 0
        self.poison_width = poison_width
        self.lock = threading.Lock()

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        with self.lock:
            self.image_calls += 1
            self.images_seen += len(images)
        if self.poison_width is not None and any(im.width == self.poison_width for im in images):
            raise RuntimeError("simulated model failure")
        batch = torch.stack([self.transform(im) for im in images])
        with torch.inference_mode():
            out = self.model.encode_image(batch, normalize=True)
        return out.float().numpy()

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        self.text_calls += 1
        with torch.inference_mode():
            out = self.model.encode_text(self.tokenizer(list(texts), context_length=32), normalize=True)
        return out.float().numpy()


class TensorEmbedder(TinyEmbedder):
    """Offers the optional tensor path: preprocessing then runs in the decode threads."""

    def __init__(self) -> None:
        super().__init__()
        self.tensor_calls = 0

    def preprocess(self, image: Image.Image) -> Any:
        return self.transform(image)

    def embed_image_tensors(self, batch: torch.Tensor) -> np.ndarray:
        self.tensor_calls += 1
        with torch.inference_mode():
            return self.model.encode_image(batch, normalize=True).float().numpy()


def _save(path: Path, im: Image.Image, fmt: str) -> tuple[str, Path]:
    buf = io.BytesIO()
    im.save(buf, format=fmt)
    path.write_bytes(buf.getvalue())
    return hashlib.sha256(buf.getvalue()).hexdigest(), path


def _good_images(folder: Path, n: int) -> list[tuple[str, Path]]:
    rng = np.random.default_rng(7)
    items = []
    for i in range(n):
        arr = rng.integers(0, 255, size=(40 + i, 50 + 2 * i, 3), dtype=np.uint8)
        fmt = "PNG" if i % 2 else "JPEG"
        items.append(_save(folder / f"good{i}.{fmt.lower()}", Image.fromarray(arr), fmt))
    return items


@pytest.fixture(scope="module")
def tiny() -> TinyEmbedder:
    torch.set_num_threads(1)
    return TinyEmbedder()


def test_good_and_bad_images_in_one_batch(tmp_path: Path, tiny: TinyEmbedder) -> None:
    good = _good_images(tmp_path, 6)
    (tmp_path / "html.jpg").write_bytes(b"<html>404</html>")
    truncated = (tmp_path / "good0.jpeg").read_bytes()[:300]
    (tmp_path / "cut.jpg").write_bytes(truncated)
    bad = [
        ("h-html", tmp_path / "html.jpg"),
        ("h-cut", tmp_path / "cut.jpg"),
        ("h-missing", tmp_path / "nope.png"),
    ]
    items = [good[0], bad[0], good[1], good[2], bad[1], good[3], bad[2], good[4], good[5]]
    result = embed_images(tiny, items, cache_dir=None, batch_size=4, workers=2)

    assert result.hashes == tuple(h for h, _ in good)
    assert set(result.failures) == {"h-html", "h-cut", "h-missing"}
    assert result.failures["h-html"].startswith("not-an-image")
    assert result.failures["h-cut"].startswith("truncated")
    assert result.failures["h-missing"].startswith("unreadable")
    assert result.vectors.dtype == np.float32 and result.vectors.shape == (6, 32)
    assert np.allclose(np.linalg.norm(result.vectors, axis=1), 1.0, atol=1e-5)
    # Same vectors as decoding and embedding each image directly.
    direct = tiny.embed_images([open_image(p, max_pixels=10**8, max_side=DECODE_MAX_SIDE) for _, p in good])
    assert np.allclose(result.vectors, direct, atol=1e-5)
    assert not np.allclose(result.vectors[0], result.vectors[1], atol=1e-3)


def test_cache_makes_reembedding_free(tmp_path: Path) -> None:
    embedder = TinyEmbedder()
    items = _good_images(tmp_path, 5)
    cache_dir = tmp_path / "cache"
    first = embed_images(embedder, items, cache_dir=cache_dir, batch_size=2)
    assert first.cached == 0 and embedder.images_seen == 5
    assert len(EmbeddingCache(cache_dir, embedder.fingerprint, 32)) == 5

    seen = embedder.images_seen
    second = embed_images(embedder, list(reversed(items)), cache_dir=cache_dir, batch_size=2)
    assert embedder.images_seen == seen  # the model never ran
    assert second.cached == 5
    assert second.hashes == tuple(h for h, _ in reversed(items))
    assert np.array_equal(second.vectors, first.vectors[::-1])

    # A new image costs one embedding; the old ones still come from the cache.
    extra = _save(tmp_path / "extra.png", Image.new("RGB", (30, 30), (9, 99, 199)), "PNG")
    third = embed_images(embedder, [*items, extra], cache_dir=cache_dir)
    assert embedder.images_seen == seen + 1 and third.cached == 5 and len(third) == 6


def test_cache_is_per_model_fingerprint(tmp_path: Path) -> None:
    items = _good_images(tmp_path, 3)
    a, b = TinyEmbedder(seed=0), TinyEmbedder(seed=1)
    assert a.fingerprint != b.fingerprint
    va = embed_images(a, items, cache_dir=tmp_path / "c").vectors
    vb = embed_images(b, items, cache_dir=tmp_path / "c")
    assert vb.cached == 0 and b.images_seen == 3
    assert not np.allclose(va, vb.vectors, atol=1e-3)


def test_damaged_cache_rows_are_ignored(tmp_path: Path, tiny: TinyEmbedder) -> None:
    items = _good_images(tmp_path, 2)
    cache = EmbeddingCache(tmp_path / "c", tiny.fingerprint, 32)
    cache.put_many([items[0][0]], np.ones((1, 16), dtype=np.float32))  # wrong length for dim 32
    cache.close()
    result = embed_images(tiny, items, cache_dir=tmp_path / "c")
    assert result.cached == 0 and result.vectors.shape == (2, 32)


def test_duplicates_embedded_once_and_progress_reported(tmp_path: Path) -> None:
    embedder = TinyEmbedder()
    items = _good_images(tmp_path, 3)
    calls: list[tuple[int, int]] = []
    result = embed_images(
        embedder, [items[0], items[1], items[0], items[2], items[1]], cache_dir=None, batch_size=2,
        progress=lambda done, total: calls.append((done, total)),
    )  # fmt: skip
    assert result.hashes == tuple(h for h, _ in items)
    assert embedder.images_seen == 3
    assert calls[-1] == (3, 3)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_model_failure_costs_only_the_culprit(tmp_path: Path) -> None:
    items = _good_images(tmp_path, 4)  # widths 50, 52, 54, 56
    embedder = TinyEmbedder(poison_width=52)
    result = embed_images(embedder, items, cache_dir=None, batch_size=4)
    assert set(result.failures) == {items[1][0]}
    assert result.failures[items[1][0]].startswith("embed-failed")
    assert result.hashes == (items[0][0], items[2][0], items[3][0])


def test_reduced_precision_close_and_cached_apart(tmp_path: Path) -> None:
    embedder = TinyEmbedder()
    items = _good_images(tmp_path, 4)
    low = embed_images(embedder, items, cache_dir=tmp_path / "c", precision="bf16")
    full = embed_images(embedder, items, cache_dir=tmp_path / "c")
    assert full.cached == 0  # bf16 vectors never stand in for fp32 ones
    assert low.vectors.dtype == np.float32
    assert (low.vectors * full.vectors).sum(axis=1).min() > 0.98
    assert embed_images(embedder, items, cache_dir=tmp_path / "c", precision="bf16").cached == 4


def test_thread_count_set_for_the_call_and_restored(tmp_path: Path, tiny: TinyEmbedder) -> None:
    items = _good_images(tmp_path, 6)
    before = torch.get_num_threads()
    fixed = embed_images(tiny, items, cache_dir=None, batch_size=2, threads=1)
    assert fixed.threads == 1 and torch.get_num_threads() == before
    auto = embed_images(tiny, items, cache_dir=None, batch_size=1, threads="auto")
    assert auto.threads in {1, max(1, len(os.sched_getaffinity(0)))}
    assert torch.get_num_threads() == before
    assert np.allclose(auto.vectors, fixed.vectors, atol=1e-5)
    assert embed_images(tiny, items, cache_dir=None, threads=None).threads is None


def test_empty_input(tiny: TinyEmbedder) -> None:
    result = embed_images(tiny, [], cache_dir=None)
    assert result.vectors.shape == (0, 32) and result.hashes == () and result.failures == {}


def test_tensor_path_used_and_equivalent(tmp_path: Path, tiny: TinyEmbedder) -> None:
    items = _good_images(tmp_path, 5)
    tensor = TensorEmbedder()
    via_tensors = embed_images(tensor, items, cache_dir=None, batch_size=2)
    assert tensor.tensor_calls == 3 and tensor.image_calls == 0
    via_images = embed_images(tiny, items, cache_dir=None, batch_size=2)
    assert np.allclose(via_tensors.vectors, via_images.vectors, atol=1e-5)


def test_text_cache_lru(tiny: TinyEmbedder) -> None:
    cache = TextEmbeddingCache(tiny, maxsize=2)
    before = tiny.text_calls
    a = cache.embed("a map of the world")
    assert a.shape == (32,) and abs(float(np.linalg.norm(a)) - 1) < 1e-5
    assert np.allclose(a, tiny.embed_texts(["a map of the world"])[0], atol=1e-5)
    assert np.array_equal(cache.embed("  a map   of the world "), a)  # whitespace is not meaning
    assert cache.hits == 1 and cache.misses == 1
    with pytest.raises(ValueError):
        a[0] = 0.0  # shared vectors are read-only
    cache.embed("a ship")
    cache.embed("a map of the world")  # refreshes it
    cache.embed("a castle")  # evicts "a ship", the least recently used
    assert len(cache) == 2
    calls = tiny.text_calls
    cache.embed("a map of the world")
    assert tiny.text_calls == calls
    cache.embed("a ship")
    assert tiny.text_calls == calls + 1
    both = cache.embed_many(["a castle", "a ship", "a castle"])
    assert both.shape == (3, 32) and np.array_equal(both[0], both[2])
    assert tiny.text_calls - before == 6  # map, the direct call, ship, castle, ship, castle again


DEMO = Path(__file__).resolve().parents[1] / "demo" / "collection"


@pytest.fixture(scope="module")
def lite() -> Any:
    from iconosearch.models.embedder import load_embedder
    from iconosearch.models.specs import ModelUnavailableError

    try:
        return load_embedder("iconosearch-lite", device="cpu")
    except ModelUnavailableError as exc:  # only while the built-in heads have not been built yet
        pytest.skip(f"iconosearch-lite heads unavailable: {exc}")


@pytest.mark.slow
def test_lite_pipeline_from_demo_files(tmp_path: Path, lite: Any) -> None:
    files = sorted(DEMO.rglob("*.jpg"))[:12]
    items = [(hashlib.sha256(p.read_bytes()).hexdigest(), p) for p in files]
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    items.insert(5, ("bad", tmp_path / "bad.jpg"))
    result = embed_images(lite, items, cache_dir=tmp_path / "cache", batch_size=5)
    assert result.failures.keys() == {"bad"}
    assert result.vectors.shape == (12, lite.dim) and result.vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(result.vectors, axis=1), 1.0, atol=1e-5)
    direct = lite.embed_images([open_image(p, max_pixels=10**8, max_side=DECODE_MAX_SIDE) for p in files])
    assert np.allclose(result.vectors, direct, atol=1e-4)
    again = embed_images(lite, items, cache_dir=tmp_path / "cache", batch_size=5)
    assert again.cached == 12 and np.array_equal(again.vectors, result.vectors)
    low = embed_images(lite, items, cache_dir=None, batch_size=5, precision="bf16")
    assert (low.vectors * result.vectors).sum(axis=1).min() > 0.98


@pytest.mark.slow
def test_lite_text_cache(lite: Any) -> None:
    cache = TextEmbeddingCache(lite, maxsize=8)
    vec = cache.embed("a map of the world")
    assert vec.shape == (lite.dim,)
    assert np.allclose(vec, lite.embed_texts(["a map of the world"])[0], atol=1e-5)
    assert cache.embed("a map of the world") is not None and cache.hits == 1


@pytest.mark.parametrize("resize_mode", ["longest", "shortest", "squash"])
def test_numpy_tail_gives_identical_tensors(tmp_path: Path, resize_mode: str) -> None:
    from iconosearch.models.pipeline import numpy_tail

    transform = open_clip.image_transform(
        64, is_train=False, mean=(0.5, 0.4, 0.3), std=(0.2, 0.3, 0.4), resize_mode=resize_mode, fill_color=255
    )
    fast = numpy_tail(transform)
    assert fast is not None
    for _, path in _good_images(tmp_path, 3):
        im = open_image(path, max_pixels=10**8)
        expected, got = transform(im), fast(im)
        assert got.dtype == expected.dtype and got.shape == expected.shape
        assert torch.allclose(got, expected, atol=1e-6)
    grey = Image.new("L", (30, 20), 90)  # not RGB after the PIL steps: falls back to torch
    assert torch.allclose(fast(grey.convert("RGB")), transform(grey.convert("RGB")), atol=1e-6)
    assert numpy_tail(lambda im: im) is None
