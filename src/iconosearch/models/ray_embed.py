"""The embedding stage as a Ray Data pipeline, for clusters (an optional extra: ``iconosearch[ray]``).

Same inputs, outputs and cache as :func:`iconosearch.models.pipeline.embed_images`, so runs can be
mixed, resumed and re-indexed cheaply:

1. the driver looks every content hash up in the embedding cache (hash × model fingerprint) and only
   sends the rest to the cluster;
2. **reading and decoding** run as Ray CPU tasks: each reads an image file (from the image cache, which
   must be on storage the workers share, e.g. NFS) and decodes it exactly as the single-process
   pipeline does (``images.open_image``, same size caps); undecodable images become failures with a
   reason, as there;
3. **the model** runs in a pool of Ray actors that each load it once: one per GPU, or one per
   ``cpus_per_actor`` CPUs where there is no GPU; each gets batches of ``batch_size`` images and runs
   the pipeline's own batch function (same preprocessing, same normalisation), so vectors equal the
   single-process ones up to floating-point batch effects;
4. the driver streams the results back, writes them to the cache as they arrive (one writer: the
   cache is SQLite) and returns them in input order, one per unique hash.

Fault tolerance is Ray's: a killed decode task is re-run, and a killed model actor is restarted and its
unfinished batches re-submitted (``max_restarts`` / ``max_task_retries``). The driver keys results by
content hash, so a batch computed twice is still counted and cached once: nothing is lost or duplicated.
Every actor checks that the model it loaded has the fingerprint the driver expects, so a worker with
other weights can never write vectors into this model's cache.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from iconosearch.config import RayConfig
from iconosearch.models.pipeline import (
    DECODE_MAX_SIDE,
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_PIXELS,
    EmbeddingCache,
    EmbeddingResult,
    ImageEmbedder,
    Progress,
    _Decoded,
    _embed_batch,
    _tensor_path,
    normalise,
)

EmbedderFactory = Callable[[], ImageEmbedder]
"""Builds the embedder inside an actor (it must be picklable, e.g. ``functools.partial(load_embedder,
spec)``): models are loaded where they run, never shipped."""


class RayUnavailableError(RuntimeError):
    """Ray is not installed or no cluster can be reached; the message says what to do."""


@dataclass(frozen=True, slots=True)
class RayEmbedOptions:
    address: str | None = None
    """Cluster to join (``"auto"``, ``"ray://host:10001"``); ``None`` or ``"local"``: the current one, or
    a new one-machine cluster."""
    batch_size: int = DEFAULT_BATCH_SIZE
    actors: int | None = None
    """Model actors; default: one per GPU, else one per ``cpus_per_actor`` CPUs keeping one for decoding."""
    cpus_per_actor: int = 2
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_side: int = DECODE_MAX_SIDE


def on_ray(config: RayConfig) -> Callable[..., EmbeddingResult]:
    """A drop-in for ``pipeline.embed_images(embedder, items, cache_dir=…, max_pixels=…, progress=…)``
    that runs on the cluster ``config`` names; workers load the model from the embedder's spec."""

    def embed(
        embedder: Any,
        items: Sequence[tuple[str, Path]],
        *,
        cache_dir: Path | None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        progress: Progress | None = None,
    ) -> EmbeddingResult:
        from iconosearch.models.embedder import load_embedder

        options = RayEmbedOptions(
            address=config.address,
            batch_size=config.batch_size,
            actors=config.actors,
            cpus_per_actor=config.cpus_per_actor,
            max_pixels=max_pixels,
        )
        return ray_embed_images(
            partial(load_embedder, str(embedder.spec)),
            items,
            fingerprint=str(embedder.fingerprint),
            dim=int(embedder.dim),
            cache_dir=cache_dir,
            options=options,
            progress=progress,
        )

    return embed


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise RayUnavailableError("the Ray embedding path needs Ray: pip install 'iconosearch[ray]'") from exc
    return ray


def ensure_ray(address: str | None) -> None:
    """Join ``address`` (or start a local cluster) unless this process is already connected."""
    ray = _ray()
    if ray.is_initialized():
        return
    try:
        ray.init(
            address=None if address in (None, "local") else address,
            include_dashboard=False,
            log_to_driver=False,
        )
    except (ConnectionError, RuntimeError) as exc:
        raise RayUnavailableError(f"cannot reach the Ray cluster at {address!r}: {exc}") from exc


def _decode_batch(batch: dict[str, np.ndarray], max_pixels: int, max_side: int) -> dict[str, Any]:
    """Ray CPU task: read + decode files into raw RGB pixels (or a failure reason) per content hash."""
    from iconosearch.images import ImageRejectedError, open_image

    pixels: list[bytes] = []
    shapes: list[tuple[int, int]] = []
    errors: list[str] = []
    for path in batch["path"]:
        try:
            image = open_image(Path(str(path)), max_pixels=max_pixels, max_side=max_side).convert("RGB")
            pixels.append(image.tobytes())
            shapes.append((image.height, image.width))
            errors.append("")
        except ImageRejectedError as exc:
            pixels.append(b"")
            shapes.append((0, 0))
            errors.append(str(exc))
        except Exception as exc:  # a decoder bug must cost one image, not the run
            pixels.append(b"")
            shapes.append((0, 0))
            errors.append(f"decode-failed: {type(exc).__name__}: {exc}")
    return {
        "hash": batch["hash"],
        "pixels": np.array(pixels, dtype=object),
        "height": np.array([h for h, _ in shapes], dtype=np.int32),
        "width": np.array([w for _, w in shapes], dtype=np.int32),
        "error": np.array(errors, dtype=object),
    }


class _EmbedActor:
    """Ray actor: holds the model once and embeds decoded batches with the pipeline's batch function."""

    def __init__(self, factory: EmbedderFactory, fingerprint: str) -> None:
        self.embedder = factory()
        if str(self.embedder.fingerprint) != fingerprint:
            raise RuntimeError(
                f"this worker's model has fingerprint {self.embedder.fingerprint!r}, "
                f"the driver's {fingerprint!r}: refusing to mix vectors of different weights"
            )
        self.tensor_path = _tensor_path(self.embedder)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        from PIL import Image

        preprocess = self.tensor_path[0] if self.tensor_path is not None else None
        failures: dict[str, str] = {}
        good: list[_Decoded] = []
        for digest, raw, h, w, error in zip(
            batch["hash"], batch["pixels"], batch["height"], batch["width"], batch["error"], strict=True
        ):
            if error:
                failures[str(digest)] = str(error)
                continue
            image = Image.frombytes("RGB", (int(w), int(h)), bytes(raw))
            good.append(_Decoded(str(digest), preprocess(image) if preprocess is not None else image))
        vectors = _embed_batch(self.embedder, self.tensor_path, good, failures) if good else {}
        dim = int(self.embedder.dim)
        hashes = [str(d) for d in batch["hash"]]
        return {
            "hash": np.array(hashes, dtype=object),
            "vector": np.stack([vectors.get(d, np.zeros(dim, np.float32)) for d in hashes]),
            "error": np.array(
                [failures.get(d, "" if d in vectors else "not embedded") for d in hashes], object
            ),
        }


def _pool_size(options: RayEmbedOptions, resources: dict[str, float]) -> tuple[int, dict[str, float]]:
    """Model actors and the resources each asks for."""
    gpus = int(resources.get("GPU", 0))
    if gpus:
        return options.actors or gpus, {"num_gpus": 1.0, "num_cpus": 1.0}
    cpus = int(resources.get("CPU", 1))
    per = max(1, min(options.cpus_per_actor, cpus - 1)) if cpus > 1 else 1
    # Keep a CPU for the decode tasks, or the actors would starve them.
    default = max(1, (cpus - 1) // per)
    return options.actors or default, {"num_cpus": float(per)}


def ray_embed_images(
    factory: EmbedderFactory,
    items: Sequence[tuple[str, Path]],
    *,
    fingerprint: str,
    dim: int,
    cache_dir: Path | None,
    options: RayEmbedOptions = RayEmbedOptions(),
    progress: Progress | None = None,
) -> EmbeddingResult:
    """Embed ``items`` (content hash, file path) on a Ray cluster; see the module doc.

    ``fingerprint`` and ``dim`` are the model's (the driver knows them from its own copy of the model);
    ``cache_dir`` is the embedding cache root, as for ``pipeline.embed_images``.
    """
    if options.batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    unique: dict[str, Path] = {}
    for digest, path in items:
        unique.setdefault(digest, Path(path))
    order = list(unique)
    vectors: dict[str, np.ndarray] = {}
    failures: dict[str, str] = {}
    cache = EmbeddingCache(cache_dir, fingerprint, dim) if cache_dir is not None else None
    try:
        if cache is not None:
            vectors.update(cache.get_many(order))
        cached = len(vectors)
        todo = [d for d in order if d not in vectors]
        if progress is not None:
            progress(cached, len(order))
        if todo:
            _run(factory, fingerprint, unique, todo, options, vectors, failures, cache, progress, len(order))
    finally:
        if cache is not None:
            cache.close()
    kept = tuple(d for d in order if d in vectors)
    matrix = np.stack([vectors[d] for d in kept]) if kept else np.zeros((0, dim), dtype=np.float32)
    return EmbeddingResult(kept, normalise(matrix), failures, cached, None)


def _run(
    factory: EmbedderFactory,
    fingerprint: str,
    unique: dict[str, Path],
    todo: list[str],
    options: RayEmbedOptions,
    vectors: dict[str, np.ndarray],
    failures: dict[str, str],
    cache: EmbeddingCache | None,
    progress: Progress | None,
    total: int,
) -> None:
    ray = _ray()
    ensure_ray(options.address)
    actors, actor_resources = _pool_size(options, ray.cluster_resources())
    rows = [{"hash": d, "path": str(unique[d])} for d in todo]
    # Blocks of a few batches each, so the decode tasks spread over the cluster and stream.
    blocks = max(1, min(len(rows), math.ceil(len(rows) / options.batch_size)))
    ds = ray.data.from_items(rows, override_num_blocks=blocks)
    ds = ds.map_batches(
        _decode_batch,
        fn_kwargs={"max_pixels": options.max_pixels, "max_side": options.max_side},
        batch_size=options.batch_size,
        num_cpus=1,
        max_retries=-1,
    )
    ds = ds.map_batches(
        _EmbedActor,
        fn_constructor_args=(factory, fingerprint),
        batch_size=options.batch_size,
        concurrency=actors,
        max_restarts=-1,
        max_task_retries=-1,
        **actor_resources,
    )
    done = total - len(todo)
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        new: dict[str, np.ndarray] = {}
        for digest, vector, error in zip(batch["hash"], batch["vector"], batch["error"], strict=True):
            key = str(digest)
            if key in vectors or key in new:
                continue  # a batch computed twice (retried after a failure) counts once
            if error:
                failures[key] = str(error)
            else:
                failures.pop(key, None)
                new[key] = np.asarray(vector, dtype=np.float32)
        vectors.update(new)
        if cache is not None and new:
            cache.put_many(list(new), np.stack(list(new.values())))
        done += len(batch["hash"])
        if progress is not None:
            progress(min(done, total), total)
