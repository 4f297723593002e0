"""Tuning holds text queries to the recall target too: text sits across the modality gap from every
image, so its neighbours spread over more lists than a stored image's (real embeddings: 8 probes of 128
gave noisy images recall@10 0.974 and held-out titles 0.811). Here the gap is built in: each text query is the
mean of three clusters' centres pushed along one direction no image has."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from iconosearch.index import faiss_index, regions
from iconosearch.index.builder import TEXT_TUNE_QUERIES, _text_queries
from iconosearch.index.regions import RegionSet
from iconosearch.index.store import IndexStore
from iconosearch.index.versions import BuildOptions, EmbeddedRecord, update_version
from tests.helpers.index_data import MODEL, HashEmbedder, build, make_record

DIM, CLUSTERS, N = 32, 300, 12_000


def _space() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clustered unit "image" vectors, their ids, and 200 unit "text" queries across a gap."""
    rng = np.random.default_rng(3)
    centres = rng.standard_normal((CLUSTERS, DIM))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    images = centres[rng.integers(0, CLUSTERS, N)] + 0.25 * rng.standard_normal((N, DIM)) / np.sqrt(DIM)
    gap = rng.standard_normal(DIM)
    texts = centres[rng.integers(0, CLUSTERS, (200, 3))].mean(axis=1) + 0.8 * gap / np.linalg.norm(gap)
    unit = [(x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32) for x in (images, texts)]
    return unit[0], np.arange(N, dtype=np.int64) * 7 + 3, unit[1]


def _text_recall(
    index: object, spec: faiss_index.FaissSpec, vectors: np.ndarray, ids: np.ndarray, texts: np.ndarray
) -> float:
    _, rows = faiss_index.exact_knn(vectors, texts, 10)
    _, got = faiss_index.search(index, texts, 10, params=faiss_index.search_params(spec))
    return faiss_index.recall_at_k(got, ids[rows], 10)


def test_text_queries_raise_the_probes_until_they_too_reach_the_target() -> None:
    vectors, ids, texts = _space()
    spec = faiss_index.FaissSpec("ivf-sq8", {"nlist": 64, "nprobe": 1})
    index = faiss_index.build(vectors, ids, spec)
    images_only, _ = faiss_index.tune(index, vectors, ids, spec, target=0.95)
    # Tuned on images alone, the text queries fall far short (0.47 here) ...
    assert _text_recall(index, images_only, vectors, ids, texts) < 0.9
    both, recall = faiss_index.tune(index, vectors, ids, spec, target=0.95, text_queries=lambda: texts)
    # ... with them, more lists are probed, and the reported recall is the lower of the two sets'.
    assert both.params["nprobe"] > images_only.params["nprobe"]
    text_recall = _text_recall(index, both, vectors, ids, texts)
    assert text_recall >= 0.95
    assert recall <= round(text_recall, 4)


def test_a_built_version_is_tuned_for_text_and_an_exact_one_never_asks(tmp_path: Path) -> None:
    vectors, _, texts = _space()
    items = [EmbeddedRecord(make_record(i), f"h{i}", vectors[i]) for i in range(N)]
    asked: list[int] = []

    def text_queries() -> np.ndarray:
        asked.append(1)
        return texts

    def probes(folder: str, options: BuildOptions) -> tuple[int, float | None]:
        m = build(tmp_path / folder, items, options=options).manifest
        return int(m.faiss_params.get("nprobe", 0)), m.recall_at_10

    plain, _ = probes("plain", BuildOptions(kind="ivf-sq8"))
    tuned, recall = probes("text", BuildOptions(kind="ivf-sq8", text_queries=text_queries))
    assert asked == [1] and tuned > plain and recall is not None and recall >= 0.95
    probes("flat", BuildOptions(kind="flat", text_queries=text_queries))
    assert asked == [1]  # exact search has nothing to tune
    # An update re-tunes the approximate index it changes, with the text queries too.
    store = IndexStore(tmp_path / "plain" / "indexes", "default")
    base = store.current()
    assert base is not None
    extra = [EmbeddedRecord(make_record(N + i), f"x{i}", vectors[i]) for i in range(10)]
    options = BuildOptions(kind="ivf-sq8", text_queries=text_queries)
    updated = update_version(store, base, add=extra, model=MODEL, options=options).manifest
    assert updated.changes_since_compaction == 10  # updated in place, not rebuilt
    assert asked == [1, 1] and int(updated.faiss_params["nprobe"]) > plain


def test_text_queries_are_captions_spread_over_the_records() -> None:
    embedder = HashEmbedder()
    records = [make_record(i, caption=f"harbour view {i}") for i in range(1000)]
    made = _text_queries(embedder, records)()
    with_caption = [r for r in records if r.caption]  # make_record leaves every ninth without one
    assert len(with_caption) < len(records)
    assert made.shape == (TEXT_TUNE_QUERIES, DIM)
    assert np.allclose(np.linalg.norm(made, axis=1), 1.0, atol=1e-5)
    step = len(with_caption) // TEXT_TUNE_QUERIES
    picked = [with_caption[j].caption for j in range(0, step * TEXT_TUNE_QUERIES, step)]
    expected = embedder.embed_texts([next(iter(c.values()))[0] for c in picked])
    assert np.allclose(made, expected, atol=1e-6)
    calls = embedder.text_calls
    texts = _text_queries(embedder, records)
    assert texts() is texts() and embedder.text_calls == calls + 1  # made once, for every index
    none = _text_queries(embedder, [make_record(9, caption="")])()
    assert none.shape == (0, DIM)


def test_a_streamed_crop_index_is_tuned_for_text_too(tmp_path: Path) -> None:
    vectors, _, texts = _space()
    boxes = np.tile(np.array([[0.0, 0.0, 0.5, 0.5]], np.float32), (N, 1))
    ids = np.arange(N, dtype=np.int64) // 4  # four crops an image
    parts = [
        RegionSet(vectors[s : s + 3000], ids[s : s + 3000], boxes[s : s + 3000]) for s in range(0, N, 3000)
    ]

    def probes(folder: str, text_queries: Callable[[], np.ndarray] | None) -> int:
        (tmp_path / folder).mkdir()
        stream = regions.CropStream(N, DIM, vectors[::4], lambda: parts)
        info = regions.write_streamed(
            tmp_path / folder, stream, memory_budget=1 << 30, recall_target=0.95, text_queries=text_queries
        )
        assert info["faiss_type"].startswith("ivf")
        return int(info["faiss_params"]["nprobe"])

    assert probes("text", lambda: texts) > probes("plain", None)  # 128 and 8 here
