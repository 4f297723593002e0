"""Micro-batching of query texts across concurrent callers (issue 16 item 2), with real threads.

The encoder here is a deterministic stand-in (a vector per text from its hash) that records each call
and can be held at a gate, so concurrency is arranged on purpose rather than hoped for: a test that
needs "N callers waiting while the worker is busy" waits until the batcher has counted them.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

from iconosearch.config import ConfigError, EncoderConfig, load_settings
from iconosearch.index.engine import SearchEngine
from iconosearch.models.batching import TextBatcher
from iconosearch.models.pipeline import TextEmbeddingCache
from iconosearch.query import Query, Term
from tests.helpers.index_data import HashEmbedder, build, make_items

DIM = 8


def vector(text: str) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


class GatedEncoder:
    """Records every call; while ``gate`` is clear, a call waits for it (the worker is "busy")."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        self.entered.set()
        assert self.gate.wait(30), "test gate never opened"
        return np.stack([vector(t) for t in texts])


def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.001)


@pytest.fixture
def encoder() -> GatedEncoder:
    return GatedEncoder()


def test_concurrent_distinct_texts_share_batches_and_equal_unbatched(encoder: GatedEncoder) -> None:
    batcher = TextBatcher(encoder, DIM, window_ms=5.0, max_batch=64)
    try:
        encoder.gate.clear()
        texts = [f"query number {i}" for i in range(12)]
        results: dict[int, np.ndarray] = {}

        def call(i: int) -> None:
            results[i] = batcher.embed_texts([texts[i]])[0]

        threads = [threading.Thread(target=call, args=(i,)) for i in range(len(texts))]
        threads[0].start()
        assert encoder.entered.wait(30)  # the worker is busy with the first text…
        for t in threads[1:]:
            t.start()
        wait_until(lambda: batcher.stats.requests == len(texts))  # …while the 11 others queue up
        encoder.gate.set()
        for t in threads:
            t.join(30)
        assert len(encoder.calls) == 2 < len(texts)
        assert sorted(len(c) for c in encoder.calls) == [1, 11]
        for i, text in enumerate(texts):
            np.testing.assert_array_equal(results[i], vector(text))
    finally:
        batcher.close()


def test_identical_texts_in_flight_are_encoded_once(encoder: GatedEncoder) -> None:
    batcher = TextBatcher(encoder, DIM, window_ms=0.0)
    try:
        encoder.gate.clear()
        results: list[np.ndarray] = []
        lock = threading.Lock()

        def call() -> None:
            row = batcher.embed_texts(["a sailing ship"])[0]
            with lock:
                results.append(row)

        threads = [threading.Thread(target=call) for _ in range(8)]
        threads[0].start()
        assert encoder.entered.wait(30)  # being encoded: later callers must join it, not queue again
        for t in threads[1:]:
            t.start()
        wait_until(lambda: batcher.stats.requests == 8)
        encoder.gate.set()
        for t in threads:
            t.join(30)
        assert encoder.calls == [["a sailing ship"]]
        assert len(results) == 8
        for row in results:
            np.testing.assert_array_equal(row, vector("a sailing ship"))
    finally:
        batcher.close()


def test_duplicates_within_one_call_are_encoded_once_and_rows_keep_order(encoder: GatedEncoder) -> None:
    batcher = TextBatcher(encoder, DIM)
    try:
        out = batcher.embed_texts(["b", "a", "b", "c", "a"])
        assert sorted(encoder.calls[0]) == ["a", "b", "c"] and len(encoder.calls) == 1
        np.testing.assert_array_equal(out, np.stack([vector(t) for t in ["b", "a", "b", "c", "a"]]))
        assert batcher.embed_texts([]).shape == (0, DIM)
    finally:
        batcher.close()


def test_a_lone_request_does_not_wait_for_the_window(encoder: GatedEncoder) -> None:
    # A 2-second window would be obvious if a lone request paid it; an immediate encode takes ~1 ms.
    batcher = TextBatcher(encoder, DIM, window_ms=2000.0, max_batch=16)
    try:
        for i in range(3):
            started = time.monotonic()
            batcher.embed_texts([f"alone {i}"])
            assert time.monotonic() - started < 1.0
        assert [len(c) for c in encoder.calls] == [1, 1, 1]
    finally:
        batcher.close()


def test_under_load_the_window_collects_stragglers_up_to_max_batch(encoder: GatedEncoder) -> None:
    batcher = TextBatcher(encoder, DIM, window_ms=2000.0, max_batch=4)
    try:
        encoder.gate.clear()
        texts = [f"t{i}" for i in range(9)]
        done = threading.Barrier(len(texts) + 1)

        def call(text: str) -> None:
            batcher.embed_texts([text])
            done.wait(30)

        first = threading.Thread(target=call, args=(texts[0],))
        first.start()
        assert encoder.entered.wait(30)
        rest = [threading.Thread(target=call, args=(t,)) for t in texts[1:]]
        for t in rest:
            t.start()
        wait_until(lambda: batcher.stats.requests == len(texts))
        encoder.gate.set()
        done.wait(30)
        # 1 alone, then 8 queued under load: two full batches, never more than max_batch.
        assert [len(c) for c in encoder.calls] == [1, 4, 4]
    finally:
        batcher.close()


def test_an_encoder_error_reaches_every_waiting_caller() -> None:
    def broken(texts: list[str]) -> np.ndarray:
        raise RuntimeError("tower exploded")

    batcher = TextBatcher(broken, DIM)
    try:
        with pytest.raises(RuntimeError, match="tower exploded"):
            batcher.embed_texts(["x", "y"])
        with pytest.raises(RuntimeError, match="tower exploded"):  # the worker survives the error
            batcher.embed_texts(["x"])
    finally:
        batcher.close()


def test_a_wrong_shape_from_the_encoder_is_an_error() -> None:
    batcher = TextBatcher(lambda texts: np.zeros((len(texts), DIM + 1), np.float32), DIM)
    try:
        with pytest.raises(RuntimeError, match="shape"):
            batcher.embed_texts(["x"])
    finally:
        batcher.close()


def test_after_close_texts_are_encoded_in_the_caller(encoder: GatedEncoder) -> None:
    batcher = TextBatcher(encoder, DIM)
    batcher.embed_texts(["before"])
    batcher.close()
    np.testing.assert_array_equal(batcher.embed_texts(["after"])[0], vector("after"))
    assert encoder.calls == [["before"], ["after"]]


def test_a_prefetch_encodes_while_the_caller_works_and_embed_takes_its_vector(encoder: GatedEncoder) -> None:
    batcher = TextBatcher(encoder, DIM)
    cache = TextEmbeddingCache(batcher, submit=batcher.submit)
    try:
        encoder.gate.clear()  # the encoder is busy: a prefetch must not wait for it
        cache.prefetch(["a  ship in a harbour", "a castle"])
        assert encoder.entered.wait(30)
        assert len(cache) == 0  # still encoding
        encoder.gate.set()
        rows = cache.embed_many(["a ship in a harbour", "a castle", "a map"])
        np.testing.assert_allclose(rows[0], vector("a ship in a harbour"), atol=1e-6)
        np.testing.assert_allclose(rows[2], vector("a map"), atol=1e-6)
        # Each text encoded once: the prefetched ones were not asked again.
        encoded = sorted(t for call in encoder.calls for t in call)
        assert encoded == ["a castle", "a map", "a ship in a harbour"]
        cache.prefetch(["a castle"])  # cached: nothing to encode
        wait_until(lambda: len(cache) == 3)
        assert sum(len(call) for call in encoder.calls) == 3 and cache.misses == 3
    finally:
        batcher.close()


def test_a_failed_prefetch_is_raised_to_its_waiter_and_not_kept() -> None:
    failing = [True]

    def flaky(texts: list[str]) -> np.ndarray:
        if failing[0]:
            raise RuntimeError("tower exploded")
        return np.stack([vector(t) for t in texts])

    batcher = TextBatcher(flaky, DIM)
    cache = TextEmbeddingCache(batcher, submit=batcher.submit)
    try:
        cache.prefetch(["x"])
        with pytest.raises(RuntimeError, match="tower exploded"):
            cache.embed("x")
        failing[0] = False
        np.testing.assert_allclose(cache.embed("x"), vector("x"), atol=1e-6)  # asked again, now it works
    finally:
        batcher.close()


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        TextBatcher(lambda t: np.zeros((len(t), DIM)), DIM, max_batch=0)
    with pytest.raises(ValueError, match="window_ms"):
        TextBatcher(lambda t: np.zeros((len(t), DIM)), DIM, window_ms=-1)


# --- through the engine (the API and `iconosearch search` share it) ---------------------------------


class SlowHashEmbedder(HashEmbedder):
    """HashEmbedder whose text encodes take a while and record their batch and torch's thread count."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []
        self.torch_threads: list[int] = []

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        self.batches.append(len(texts))
        self.torch_threads.append(torch.get_num_threads())
        time.sleep(0.05)
        return super().embed_texts(texts)


@pytest.fixture(scope="module")
def small_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("batching")
    build(data_dir, make_items(200))
    return data_dir


def test_engine_batches_concurrent_searches_with_unbatched_results(small_index: Path) -> None:
    import torch

    texts = [f"harbour ship number {i} at night" for i in range(16)]
    embedder = SlowHashEmbedder()
    threads_before = torch.get_num_threads()
    engine = SearchEngine.open(
        small_index,
        embedder_loader=lambda spec: embedder,
        encoder=EncoderConfig(batch_window_ms=20.0, batch_max=16, threads=1),
    )
    pages: dict[int, list[tuple[str, float]]] = {}
    start = threading.Barrier(len(texts))

    def search(i: int) -> None:
        start.wait(30)
        page = engine.search(Query(terms=(Term("text", texts[i]),), k=5))
        pages[i] = [(h.record.id, h.score) for h in page.hits]

    threads = [threading.Thread(target=search, args=(i,)) for i in range(len(texts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    engine.close()
    torch.set_num_threads(threads_before)  # the worker set it process-wide, as a server wants
    assert len(pages) == len(texts)
    assert len(embedder.batches) < len(texts) and sum(embedder.batches) == len(texts)
    # The worker's thread count is the configured one, whatever FAISS set in the request threads.
    assert set(embedder.torch_threads) == {1}

    alone = SearchEngine.open(small_index, embedder_loader=lambda spec: HashEmbedder())
    for i, text in enumerate(texts):
        page = alone.search(Query(terms=(Term("text", text),), k=5))
        expected = [(h.record.id, h.score) for h in page.hits]
        assert [r for r, _ in pages[i]] == [r for r, _ in expected]
        np.testing.assert_allclose([s for _, s in pages[i]], [s for _, s in expected], atol=1e-6)
    alone.close()


def test_encoder_settings_come_from_the_file_and_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "iconosearch.toml"
    config.write_text("[encoder]\nbatch_window_ms = 7.5\nbatch_max = 4\nruntime = 'torch'\n")
    monkeypatch.setenv("ICONOSEARCH_ENCODER__BATCH_MAX", "32")
    settings = load_settings(config)
    assert settings.encoder == EncoderConfig(batch_window_ms=7.5, batch_max=32, runtime="torch")
    config.write_text("[encoder]\nruntime = 'tpu'\n")
    with pytest.raises(ConfigError, match=r"encoder\.runtime"):
        load_settings(config)
