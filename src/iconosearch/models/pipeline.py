"""The embedding pipeline: image files on disk → L2-normalised float32 vectors, fast and failure-tolerant.

- Decoding (``iconosearch.images.open_image``, size-capped) and, when the embedder offers it,
  preprocessing run in worker threads, a bounded number of batches ahead of the model, so the model
  never waits for the disk or the decoder (Pillow and torch release the GIL while they work).
- Vectors are cached on disk by (image content hash, ``embedder.fingerprint``): re-embedding an
  unchanged image costs one SQLite lookup, and vectors of different models never mix.
- A bad image becomes a per-item failure with a reason; it never fails its batch.

Query texts go through :class:`TextEmbeddingCache`, a small thread-safe LRU.
"""

from __future__ import annotations

import functools
import os
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
from PIL import Image

from iconosearch import lru
from iconosearch.images import ImageRejectedError, open_image
from iconosearch.models.precision import autocast

DEFAULT_BATCH_SIZE = 32
DEFAULT_MAX_PIXELS = 64_000_000
DECODE_MAX_SIDE = 448
"""Images are decoded at most this big (twice the usual 224 px model input: the model's own resize
still has real pixels to work with, while huge scans decode cheaply)."""

Precision = Literal["fp32", "bf16", "fp16"]
"""Model arithmetic: float32, or autocast to bfloat16/float16. Output vectors are float32 either way."""

Progress = Callable[[int, int], None]
"""``progress(done, total)`` after every batch (cached items count as done at once)."""


class ImageEmbedder(Protocol):
    """The part of ``iconosearch.models.embedder.Embedder`` the image pipeline needs."""

    @property
    def fingerprint(self) -> str: ...
    @property
    def dim(self) -> int: ...
    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray: ...


class TextEmbedder(Protocol):
    @property
    def fingerprint(self) -> str: ...
    @property
    def dim(self) -> int: ...
    def embed_texts(self, texts: Sequence[str]) -> np.ndarray: ...


@dataclass(frozen=True, slots=True)
class EmbeddingResult:
    """Vectors for the images that could be embedded, in input order, plus failures with reasons.

    Duplicate content hashes in the input are embedded once and appear once.
    """

    hashes: tuple[str, ...]
    vectors: np.ndarray
    """``(len(hashes), dim)`` float32, rows L2-normalised."""
    failures: dict[str, str] = field(default_factory=dict)
    """content hash → ``"<reason code>: <message>"``."""
    cached: int = 0
    """How many vectors came from the cache."""
    threads: int | None = None
    """torch intra-op threads the model ran with (``None``: left as the caller had it)."""

    def __len__(self) -> int:
        return len(self.hashes)


def default_threads() -> int:
    """CPU cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def default_workers(embedder: object) -> int:
    """Decode threads: on CPU the model needs the cores (decoding a 384 px image costs ~5 % of embedding
    it), so half of them, at most 4; with a GPU the CPU only decodes, so all of them, at most 8."""
    cores = default_threads()
    if str(getattr(embedder, "device", "cpu")).startswith("cuda"):
        return min(8, cores)
    return max(1, min(4, cores // 2))


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, as contiguous float32 (zero rows stay zero)."""
    out = np.ascontiguousarray(vectors, dtype=np.float32)
    if out.ndim != 2:
        raise ValueError(f"expected a 2-d array of vectors, got shape {out.shape}")
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.maximum(norms, 1e-12)


class EmbeddingCache:
    """Vectors on disk by content hash for one model fingerprint: ``<dir>/<fingerprint>/vectors.sqlite``.

    SQLite in WAL mode: one file however many images, safe for concurrent readers and an indexer.
    """

    def __init__(self, cache_dir: Path, fingerprint: str, dim: int) -> None:
        if not fingerprint or any(c in fingerprint for c in "/\\.") or len(fingerprint) > 128:
            raise ValueError(f"unusable model fingerprint for a cache directory: {fingerprint!r}")
        self.dim = dim
        self.path = cache_dir / fingerprint / "vectors.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS vectors (hash TEXT PRIMARY KEY, dim INTEGER NOT NULL, "
            "vector BLOB NOT NULL) WITHOUT ROWID"
        )

    def get_many(self, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        with self._lock:
            for start in range(0, len(hashes), 500):
                chunk = list(hashes[start : start + 500])
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    f"SELECT hash, dim, vector FROM vectors WHERE hash IN ({marks})",  # noqa: S608 - only '?'
                    chunk,
                ).fetchall()
                for digest, dim, blob in rows:
                    if dim == self.dim and len(blob) == 4 * dim:  # ignore anything damaged
                        found[digest] = np.frombuffer(blob, dtype=np.float32)
        return found

    def put_many(self, hashes: Sequence[str], vectors: np.ndarray) -> None:
        rows = [
            (h, self.dim, np.asarray(v, dtype=np.float32).tobytes())
            for h, v in zip(hashes, vectors, strict=True)
        ]
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?)", rows)
                self._db.execute("COMMIT")
            except BaseException:
                # SQLite may already have rolled back (e.g. on "database or disk is full"): a second
                # ROLLBACK would fail and hide the real error behind "no transaction is active".
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM vectors").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> EmbeddingCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True, slots=True)
class _Decoded:
    digest: str
    payload: Any = None
    """What the model takes: a PIL image, or a preprocessed tensor when the embedder has a tensor path."""
    error: str | None = None


def _tensor_path(embedder: ImageEmbedder) -> tuple[Callable[[Image.Image], Any], Callable[[Any], Any]] | None:
    """``(preprocess, embed_image_tensors)`` when the embedder exposes them, so workers can preprocess.

    Preprocessing (resize, normalise) then runs in the decode threads too, leaving the main thread to
    the model alone. Embedders without it get PIL images through ``embed_images``.
    """
    preprocess = getattr(embedder, "preprocess", None)
    forward = getattr(embedder, "embed_image_tensors", None)
    if callable(preprocess) and callable(forward):
        return numpy_tail(preprocess) or preprocess, forward
    return None


def numpy_tail(preprocess: Any) -> Callable[[Image.Image], Any] | None:
    """The same transform with its ``ToTensor`` + ``Normalize`` tail done in NumPy, or ``None``.

    torch runs those two tiny ops on its intra-op thread pool; called from decode threads while the
    model holds every core, that costs ~20× more than the single-threaded NumPy equivalent (measured:
    27 ms vs 1 ms per 224 px image on 2 busy cores). The arithmetic is the same (float32 /255, then
    (x - mean) / std), so the tensors are identical.
    """
    steps = list(getattr(preprocess, "transforms", None) or [])
    if len(steps) < 2:
        return None
    to_tensor, norm = steps[-2], steps[-1]
    if type(to_tensor).__name__ not in {"ToTensor", "MaybeToTensor"} or type(norm).__name__ != "Normalize":
        return None
    mean = np.asarray(norm.mean, dtype=np.float32).reshape(1, 1, -1)
    std = np.asarray(norm.std, dtype=np.float32).reshape(1, 1, -1)
    pil_steps = steps[:-2]
    scale = np.float32(255)

    def run(image: Image.Image) -> Any:
        import torch

        for step in pil_steps:
            image = step(image)
        if not isinstance(image, Image.Image) or image.mode != "RGB":
            return norm(to_tensor(image))
        arr = np.asarray(image, dtype=np.uint8).astype(np.float32) / scale
        arr = (arr - mean) / std
        return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))

    return run


def _decode(
    digest: str,
    path: Path,
    max_pixels: int,
    max_side: int,
    preprocess: Callable[[Image.Image], Any] | None,
) -> _Decoded:
    try:
        image = open_image(path, max_pixels=max_pixels, max_side=max_side)
        return _Decoded(digest, preprocess(image) if preprocess is not None else image)
    except ImageRejectedError as exc:
        return _Decoded(digest, error=str(exc))
    except Exception as exc:  # a decoder bug must cost one image, not the run
        return _Decoded(digest, error=f"decode-failed: {type(exc).__name__}: {exc}")


def _batches(items: Sequence[tuple[str, Path]], size: int) -> Iterator[Sequence[tuple[str, Path]]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def embed_images(
    embedder: ImageEmbedder,
    items: Sequence[tuple[str, Path]],
    *,
    cache_dir: Path | None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Progress | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_side: int = DECODE_MAX_SIDE,
    workers: int | None = None,
    prefetch_batches: int = 2,
    precision: Precision = "fp32",
    threads: int | Literal["auto"] | None = "auto",
) -> EmbeddingResult:
    """Embed the images of ``items`` (content hash, file path); cached vectors are reused.

    ``cache_dir`` is the embedding cache root (``DataDir.embedding_cache``), or ``None`` for no cache.
    ``workers`` decode threads (default: :func:`default_workers`) keep ``prefetch_batches`` batches
    ready ahead of the model. ``precision`` other than ``fp32`` autocasts the model (see bench/embed.py
    for its measured speed and agreement with fp32); its vectors are cached apart from fp32 ones.
    ``threads`` sets torch's intra-op threads for the call (restored afterwards): ``"auto"`` times the
    first batches with one thread and with every core and keeps the faster (on a busy machine one
    thread is often twice as fast); ``None`` leaves the setting alone.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    unique: dict[str, Path] = {}
    for digest, path in items:
        unique.setdefault(digest, Path(path))
    order = list(unique)
    total = len(order)
    dim = int(embedder.dim)
    vectors: dict[str, np.ndarray] = {}
    failures: dict[str, str] = {}

    # Reduced-precision vectors differ slightly from float32 ones: they get a cache of their own.
    cache_key = embedder.fingerprint if precision == "fp32" else f"{embedder.fingerprint}-{precision}"
    cache = EmbeddingCache(cache_dir, cache_key, dim) if cache_dir is not None else None
    tuner: _ThreadTuner | None = None
    try:
        if cache is not None:
            vectors.update(cache.get_many(order))
        cached = len(vectors)
        done = cached
        if progress is not None:
            progress(done, total)
        todo = [(digest, unique[digest]) for digest in order if digest not in vectors]
        tensor_path = _tensor_path(embedder)
        preprocess = tensor_path[0] if tensor_path is not None else None
        n_workers = workers if workers is not None else default_workers(embedder)
        tuner = _ThreadTuner(embedder, threads if todo else None)
        with ThreadPoolExecutor(max_workers=max(1, n_workers), thread_name_prefix="decode") as pool:
            pending: list[list[Future[_Decoded]]] = []
            batches = _batches(todo, batch_size)

            def submit_next() -> None:
                batch = next(batches, None)
                if batch is not None:
                    pending.append(
                        [pool.submit(_decode, d, p, max_pixels, max_side, preprocess) for d, p in batch]
                    )

            for _ in range(max(1, prefetch_batches)):
                submit_next()
            while pending:
                futures = pending.pop(0)
                submit_next()  # keep the decoders busy while the model runs
                decoded = [f.result() for f in futures]
                good = [d for d in decoded if d.error is None]
                for d in decoded:
                    if d.error is not None:
                        failures[d.digest] = d.error
                if good:
                    tuner.before_batch()
                    started = time.perf_counter()
                    with autocast(str(getattr(embedder, "device", "cpu")), precision):
                        new = _embed_batch(embedder, tensor_path, good, failures)
                    tuner.after_batch(len(good), time.perf_counter() - started)
                    vectors.update(new)
                    if cache is not None and new:
                        cache.put_many(list(new), np.stack(list(new.values())))
                done += len(decoded)
                if progress is not None:
                    progress(done, total)
    finally:
        if cache is not None:
            cache.close()
        if tuner is not None:
            tuner.restore()

    kept = tuple(d for d in order if d in vectors)
    matrix = np.stack([vectors[d] for d in kept]) if kept else np.zeros((0, dim), dtype=np.float32)
    chosen = tuner.chosen if tuner is not None else None
    return EmbeddingResult(kept, normalise(matrix), failures, cached, chosen)


class _ThreadTuner:
    """Chooses torch's intra-op thread count by timing real batches (no extra work is done).

    On two busy cores, measured: 15.5 images/s with one thread vs 8.4 with two (threads of a parallel
    region wait on each other when any of them is descheduled); on idle cores more threads win.
    Trials alternate (all cores, 1, all cores, 1) so the first batch's warm-up favours neither.
    """

    def __init__(self, embedder: object, threads: int | Literal["auto"] | None) -> None:
        import torch

        self._torch = torch
        self.original = torch.get_num_threads()
        self.trials: list[int] = []
        self.timings: dict[int, float] = {}
        self.chosen: int | None = None
        on_gpu = str(getattr(embedder, "device", "cpu")).startswith("cuda")
        if threads is None or on_gpu:
            return
        if threads == "auto":
            cores = default_threads()
            self.trials = [cores, 1, cores, 1] if cores > 1 else []
            self.chosen = 1 if cores == 1 else None
        else:
            self.chosen = max(1, int(threads))
        if self.chosen is not None:
            torch.set_num_threads(self.chosen)

    def before_batch(self) -> None:
        if self.trials:
            self._torch.set_num_threads(self.trials[0])

    def after_batch(self, n: int, seconds: float) -> None:
        if not self.trials or n == 0:
            return
        tried = self.trials.pop(0)
        per_image = seconds / n
        self.timings[tried] = min(per_image, self.timings.get(tried, per_image))
        best = min(self.timings, key=lambda t: self.timings[t])
        self.chosen = best
        if not self.trials:
            self._torch.set_num_threads(best)

    def restore(self) -> None:
        self._torch.set_num_threads(self.original)


def _embed_batch(
    embedder: ImageEmbedder,
    tensor_path: tuple[Callable[[Image.Image], Any], Callable[[Any], Any]] | None,
    decoded: Sequence[_Decoded],
    failures: dict[str, str],
) -> dict[str, np.ndarray]:
    """Embed one batch; if the model fails on it, retry one by one so only the culprit fails."""

    def run(chunk: Sequence[_Decoded]) -> np.ndarray:
        if tensor_path is not None:
            import torch

            batch = torch.stack([d.payload for d in chunk])
            if str(getattr(embedder, "device", "cpu")).startswith("cuda"):
                batch = batch.pin_memory()  # lets the copy to the GPU run asynchronously
            out = tensor_path[1](batch)
        else:
            out = embedder.embed_images([d.payload for d in chunk])
        arr = np.asarray(out, dtype=np.float32)
        if arr.shape != (len(chunk), embedder.dim) or not np.isfinite(arr).all():
            raise ValueError(f"model returned an unusable array of shape {arr.shape}")
        return normalise(arr)

    try:
        arr = run(decoded)
        return {d.digest: arr[i] for i, d in enumerate(decoded)}
    except Exception:
        if len(decoded) == 1:
            failures[decoded[0].digest] = "embed-failed: the model could not embed this image"
            return {}
    out: dict[str, np.ndarray] = {}
    for d in decoded:
        try:
            out[d.digest] = run([d])[0]
        except Exception as exc:
            failures[d.digest] = f"embed-failed: {type(exc).__name__}: {exc}"
    return out


class TextEmbeddingCache:
    """Embeddings of query texts, least recently used dropped first. Thread-safe.

    Returned vectors are read-only views shared between callers. With ``submit`` (a
    :class:`~iconosearch.models.batching.TextBatcher`'s), :meth:`prefetch` starts encodings without
    waiting for them.
    """

    def __init__(
        self,
        embedder: TextEmbedder,
        maxsize: int = 1024,
        *,
        submit: Callable[[Sequence[str]], list[Future[np.ndarray]] | None] | None = None,
    ) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.embedder = embedder
        self.maxsize = maxsize
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[str, np.ndarray] = OrderedDict()
        self._submit = submit
        self._pending: dict[str, Future[np.ndarray]] = {}
        """Prefetched texts still being encoded → their futures."""
        self._lock = threading.Lock()

    @staticmethod
    def key(text: str) -> str:
        # Whitespace differences never change what a query means; case may (names), so it stays.
        return " ".join(text.split())

    def embed(self, text: str) -> np.ndarray:
        """The ``(dim,)`` unit vector of one text."""
        return self.embed_many([text])[0]

    def prefetch(self, texts: Sequence[str]) -> None:
        """Start encoding those of ``texts`` not cached, without waiting: the caller does other work (a
        search's keyword count) while the encoder runs, and :meth:`embed_many` then takes the vectors.
        Does nothing without ``submit``."""
        if self._submit is None:
            return
        with self._lock:
            keys = dict.fromkeys(map(self.key, texts))
            new = [k for k in keys if k not in self._entries and k not in self._pending]
        futures = self._submit(new) if new else None
        if futures is None:
            return
        with self._lock:
            self._pending.update(zip(new, futures, strict=True))
        for key, future in zip(new, futures, strict=True):
            future.add_done_callback(functools.partial(self._settled, key))

    def _settled(self, key: str, future: Future[np.ndarray]) -> None:
        """A prefetched text's encoding ended: keep its vector (an error is its waiter's to raise)."""
        row = None if future.exception() is not None else _unit_row(future.result())
        with self._lock:
            if self._pending.get(key) is future:
                del self._pending[key]
            if row is not None:
                self.misses += 1
                lru.keep(self._entries, {key: row}, self.maxsize)

    def embed_many(self, texts: Sequence[str]) -> np.ndarray:
        keys = [self.key(t) for t in texts]
        with self._lock:
            found = {k: self._entries[k] for k in keys if k in self._entries}
            for k in found:
                self._entries.move_to_end(k)
            self.hits += sum(1 for k in keys if k in found)
            waiting = {k: self._pending[k] for k in keys if k not in found and k in self._pending}
        for k, future in waiting.items():  # prefetched: the vector may be a moment away
            found[k] = _unit_row(future.result())
        missing = list(dict.fromkeys(k for k in keys if k not in found))
        if missing:
            fresh = normalise(np.asarray(self.embedder.embed_texts(missing), dtype=np.float32))
            fresh.setflags(write=False)
            with self._lock:
                self.misses += len(missing)
                kept = dict(zip(missing, fresh, strict=True))
                found.update(kept)
                lru.keep(self._entries, kept, self.maxsize)
        if not keys:
            return np.zeros((0, int(self.embedder.dim)), dtype=np.float32)
        out = np.stack([found[k] for k in keys])
        out.setflags(write=False)
        return out

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def _unit_row(vector: np.ndarray) -> np.ndarray:
    """One encoder row as the cache keeps it: unit length, float32, read-only."""
    row = normalise(np.asarray(vector, dtype=np.float32).reshape(1, -1))[0]
    row.setflags(write=False)
    return row
