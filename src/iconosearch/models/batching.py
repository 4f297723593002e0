"""Micro-batching of query-text encodes across concurrent requests.

Why: encoding is most of a text query's cost, and a batch of 8 short queries costs about as much as 2-3
single ones (the matrix products amortise; trimmed padding keeps the batch small). Encoding each request
alone in its own thread leaves that on the table and, worse, makes the threads fight over two cores.

One :class:`TextBatcher` per embedder owns one worker thread. Callers (API requests, ``iconosearch
search``) hand it texts and wait on futures; the worker encodes whatever is waiting as one batch and
resolves every future. The rules:

- **No added wait when alone.** A worker that was idle encodes the first arrival at once. Only when
  requests were already queued while it was busy (so others are evidently coming) does it hold the batch
  open for up to ``window_ms`` after the oldest arrival, or until ``max_batch`` texts wait.
- **Identical texts in flight are encoded once**: a text already queued or being encoded gets the same
  future.
- **A deliberate thread count.** The engine sets FAISS (OpenMP) to one thread per request thread, which
  also drops torch to one thread in that thread, because they share OpenMP. The worker is its own
  thread and sets torch's intra-op threads explicitly (``threads``; 0 = one per available core).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np


def available_cores() -> int:
    """CPU cores this process may run on (the affinity mask, which containers and taskset narrow)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


@dataclass
class BatchStats:
    """Counters for tests, metrics and benches (read without the lock: approximate while running)."""

    batches: int = 0
    texts: int = 0
    """Distinct texts encoded."""
    requests: int = 0
    """Texts asked for (including those that joined an identical text in flight)."""
    largest: int = 0
    sizes: list[int] = field(default_factory=list)
    """Size of every batch, oldest first (capped at the last 10 000)."""


class TextBatcher:
    """Encode concurrent callers' texts in shared batches on one worker thread. Thread-safe.

    ``encode`` maps a list of distinct texts to an ``(n, dim)`` float32 array (an embedder's
    ``embed_texts``). The batcher itself has ``dim`` and ``embed_texts``, so it stands in for the embedder
    wherever only texts are encoded (e.g. under :class:`~iconosearch.models.pipeline.TextEmbeddingCache`).
    """

    def __init__(
        self,
        encode: Callable[[list[str]], np.ndarray],
        dim: int,
        *,
        window_ms: float = 3.0,
        max_batch: int = 16,
        threads: int = 0,
    ) -> None:
        if window_ms < 0:
            raise ValueError("window_ms must be ≥ 0")
        if max_batch < 1:
            raise ValueError("max_batch must be ≥ 1")
        if threads < 0:
            raise ValueError("threads must be ≥ 0 (0 = one per available core)")
        self._encode = encode
        self.dim = dim
        self.window_s = window_ms / 1000.0
        self.max_batch = max_batch
        self.threads = threads or available_cores()
        self.stats = BatchStats()
        self._cond = threading.Condition()
        self._queue: list[str] = []
        """Texts waiting for the next batch, oldest first."""
        self._arrived: dict[str, float] = {}
        self._futures: dict[str, Future[np.ndarray]] = {}
        """Every text queued or being encoded → the future its callers wait on."""
        self._worker: threading.Thread | None = None
        self._closed = False

    # --- callers ---------------------------------------------------------------------------------
    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), dim)`` float32, row i for ``texts[i]``; blocks until the worker has them.

        After :meth:`close` (e.g. the engine switched models while a request still held this batcher)
        texts are encoded in the calling thread, so no request fails for it.
        """
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        futures = self.submit(texts)
        if futures is None:
            return np.asarray(self._encode(list(texts)), dtype=np.float32)
        return np.stack([f.result() for f in futures]).astype(np.float32, copy=False)

    def submit(self, texts: Sequence[str]) -> list[Future[np.ndarray]] | None:
        """Queue ``texts`` without waiting (each joins an identical text in flight): one future per text,
        of its ``(dim,)`` row; ``None`` once closed."""
        out = []
        with self._cond:
            if self._closed:
                return None
            self._start_worker()
            now = time.monotonic()
            for text in texts:
                self.stats.requests += 1
                future = self._futures.get(text)
                if future is None:
                    future = Future()
                    self._futures[text] = future
                    self._queue.append(text)
                    self._arrived[text] = now
                out.append(future)
            self._cond.notify()
        return out

    def close(self) -> None:
        """Stop the worker after the texts already queued are encoded."""
        with self._cond:
            self._closed = True
            self._cond.notify()
            worker = self._worker
        if worker is not None and worker is not threading.current_thread():
            worker.join()

    # --- the worker ------------------------------------------------------------------------------
    def _start_worker(self) -> None:
        if self._worker is None:
            self._worker = threading.Thread(target=self._run, name="text-encoder", daemon=True)
            self._worker.start()

    def _run(self) -> None:
        self._set_threads()
        busy_before = False  # whether texts were waiting when the last batch finished
        while True:
            batch = self._next_batch(wait_for_more=busy_before)
            if batch is None:
                return
            self._encode_batch(batch)
            with self._cond:
                busy_before = bool(self._queue)

    def _set_threads(self) -> None:
        try:
            import torch
        except ImportError:  # an encoder without torch (a test double, ONNX only)
            return
        torch.set_num_threads(self.threads)

    def _next_batch(self, *, wait_for_more: bool) -> list[str] | None:
        with self._cond:
            while not self._queue:
                if self._closed:
                    return None
                self._cond.wait()
            if wait_for_more and self.window_s > 0:
                # Under load: hold the batch open for stragglers, but no text waits longer than the
                # window after it arrived.
                deadline = self._arrived[self._queue[0]] + self.window_s
                while len(self._queue) < self.max_batch and not self._closed:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
            batch = self._queue[: self.max_batch]
            del self._queue[: self.max_batch]
            for text in batch:
                del self._arrived[text]
            return batch

    def _encode_batch(self, batch: list[str]) -> None:
        try:
            vectors = np.asarray(self._encode(batch), dtype=np.float32)
            if vectors.shape != (len(batch), self.dim):
                raise RuntimeError(f"the encoder returned shape {vectors.shape} for {len(batch)} texts")
        except BaseException as exc:  # every waiting caller must hear about it, whatever it is
            with self._cond:
                futures = [self._futures.pop(t) for t in batch]
            for future in futures:
                future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        vectors.setflags(write=False)
        with self._cond:
            futures = [self._futures.pop(t) for t in batch]
            self.stats.batches += 1
            self.stats.texts += len(batch)
            self.stats.largest = max(self.stats.largest, len(batch))
            self.stats.sizes.append(len(batch))
            del self.stats.sizes[:-10_000]
        for future, row in zip(futures, vectors, strict=True):
            future.set_result(row)
