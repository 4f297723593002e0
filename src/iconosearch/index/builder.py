"""Building an index from the harvest state: read harvested records, embed them, write a version.

A full build holds exactly the named collections; an incremental build starts from the served
version and re-embeds only what changed (see :mod:`iconosearch.index.versions` for how versions are
written, updated and compacted).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from iconosearch.index import regions
from iconosearch.index.metadata import Metadata, record_json
from iconosearch.index.regions import RegionSet
from iconosearch.index.store import IndexStore, IndexStoreError, IndexVersion
from iconosearch.index.versions import (
    BuildOptions,
    EmbeddedRecord,
    ModelInfo,
    Progress,
    no_progress,
    update_version,
    write_version,
)
from iconosearch.records import ImageRecord
from iconosearch.storage import writing

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Harvested:
    items: list[tuple[ImageRecord, str, Path]]
    harvest_state: dict[str, str | None]
    aliases: dict[str, str]


@dataclass(frozen=True, slots=True)
class _Build:
    """One build's inputs: where, what, with which model and how."""

    settings: Any
    store: IndexStore
    names: list[str]
    embedder: Any
    model: ModelInfo
    options: BuildOptions
    progress: Progress
    cache_dir: Path


def _read_harvest(state_db: Path, collections: Sequence[str]) -> _Harvested:
    from iconosearch.harvest.state import HarvestState

    state = HarvestState(state_db)
    try:
        items = [(h.record, h.content_hash, h.path) for c in collections for h in state.iter_images(c)]
        stamps = {c: state.last_harvest(c) for c in collections}
        aliases = state.aliases()
    finally:
        state.close()
    stamp_texts = {c: t.isoformat() if t is not None else None for c, t in stamps.items()}
    return _Harvested(items, stamp_texts, aliases)


def _embed(
    build: _Build, items: Sequence[tuple[ImageRecord, str, Path]]
) -> tuple[list[EmbeddedRecord], dict[str, str]]:
    """Embed (or take from the cache) the images of ``items``; failures by record id."""
    from iconosearch.models.pipeline import embed_images

    if not items:
        return [], {}
    settings, progress = build.settings, build.progress
    embed: Callable[..., Any] = embed_images
    if settings.ray.address is not None:  # the same stage as a Ray Data pipeline on a cluster
        from iconosearch.models.ray_embed import on_ray

        embed = on_ray(settings.ray)
    with writing("caching image embeddings", build.cache_dir):
        result = embed(
            build.embedder,
            [(h, p) for _, h, p in items],
            cache_dir=build.cache_dir,
            max_pixels=settings.limits.image_max_pixels,
            progress=lambda done, total: progress("embed", done, total),
        )
    row_of = {h: i for i, h in enumerate(result.hashes)}
    out: list[EmbeddedRecord] = []
    failures: dict[str, str] = {}
    for record, h, _ in items:
        if h in row_of:
            out.append(EmbeddedRecord(record, h, result.vectors[row_of[h]]))
        else:
            failures[record.id] = result.failures.get(h, "not embedded")
    return out, failures


def _crops(build: _Build, items: Sequence[tuple[ImageRecord, str, Path]]) -> RegionSet | None:
    """Region crops of the ``items`` whose collection asks for them (``regions = "grid"``)."""
    with writing("caching region embeddings", build.cache_dir):
        return regions.embed_configured(
            build.embedder, items, build.settings, build.cache_dir, build.progress
        )


def build_index(
    settings: Any,
    name: str,
    collections: Sequence[str],
    embedder: Any,
    *,
    incremental: bool = False,
    progress: Progress | None = None,
    options: BuildOptions | None = None,
) -> IndexVersion:
    """Build a new version of index ``name`` from the harvest state and switch to it.

    ``collections`` (default: every configured collection) are read with ``HarvestState.iter_images``
    and embedded through the embedding pipeline, whose cache (content hash × model fingerprint) makes
    re-indexing unchanged images free. A full build holds exactly these collections. ``incremental``
    starts from the served version instead: records of other collections stay as they are; records of
    these collections that are new, changed (image or metadata) or gone are added/replaced/removed.
    Raises :class:`IndexStoreError` when incremental meets an index of another model, or when
    nothing has been harvested, and :class:`IndexBusyError` when another process is building ``name``.
    """
    from iconosearch.datadir import DataDir

    data = DataDir(settings.data_dir)
    names = list(collections) or sorted(settings.collections)
    if not names:
        raise IndexStoreError("no collections to index: configure some or name them")
    build = _Build(
        settings=settings,
        store=IndexStore(data.indexes, name),
        names=names,
        embedder=embedder,
        model=ModelInfo(str(embedder.spec), str(embedder.fingerprint), int(embedder.dim)),
        options=_with_subject_labels(settings, options or BuildOptions(), embedder, data.embedding_cache),
        progress=progress or no_progress,
        cache_dir=data.embedding_cache,
    )
    with build.store.building():
        build.progress("harvest", 0, len(names))
        with writing("opening the harvest state", data.state_db):  # WAL needs room even to read
            harvested = _read_harvest(data.state_db, names)
        texts = _text_queries(embedder, [r for r, _, _ in harvested.items])
        build = dataclasses.replace(build, options=dataclasses.replace(build.options, text_queries=texts))
        build.progress("harvest", len(names), len(names))
        base = build.store.current() if incremental else None
        if base is None:
            return _full_build(build, harvested)
        return _incremental_build(build, harvested, base)


def _with_subject_labels(
    settings: Any, options: BuildOptions, embedder: Any, cache_dir: Path
) -> BuildOptions:
    """``options`` with the ICONCLASS label vectors when ``[subjects] suggest`` is on."""
    if not settings.subjects.suggest:
        return options
    from iconosearch.subjects.suggested import load_labels

    return dataclasses.replace(options, subject_labels=load_labels(embedder, cache_dir))


TEXT_TUNE_QUERIES = 200
"""Captions that tuning asks as text queries (as many as its noisy stored vectors)."""


def _text_queries(embedder: Any, records: Sequence[ImageRecord]) -> Callable[[], np.ndarray]:
    """Makes the text vectors of the first caption of up to ``TEXT_TUNE_QUERIES`` records, spread evenly
    over them (so a rebuild of the same records tunes alike). Text is what researchers search with, and
    it sits across the modality gap from the images (``faiss_index.tune``). Made once, on first use:
    the image index and the crop index of a version both tune with them."""

    @functools.cache
    def make() -> np.ndarray:
        captions = [next((v for vs in r.caption.values() for v in vs if v.strip()), "") for r in records]
        texts = [c for c in captions if c]
        picked = texts[:: max(1, len(texts) // TEXT_TUNE_QUERIES)][:TEXT_TUNE_QUERIES]
        if not picked:
            return np.empty((0, int(embedder.dim)), dtype=np.float32)
        vectors = np.asarray(embedder.embed_texts(picked), dtype=np.float32)
        normalised: np.ndarray = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        return normalised

    return make


def _full_build(build: _Build, harvested: _Harvested) -> IndexVersion:
    if not harvested.items:
        raise IndexStoreError(
            f"no harvested images in {', '.join(build.names)}: run 'iconosearch harvest' first"
        )
    embedded, failures = _embed(build, harvested.items)
    if not embedded:
        raise IndexStoreError(f"none of the {len(harvested.items)} harvested images could be embedded")
    return write_version(
        build.store,
        embedded,
        build.model,
        options=build.options,
        collections=build.names,
        harvest_state=harvested.harvest_state,
        failures=failures,
        aliases=harvested.aliases,
        progress=build.progress,
        crops=_crops(build, harvested.items),
    )


def _incremental_build(build: _Build, harvested: _Harvested, base: IndexVersion) -> IndexVersion:
    m, model = base.manifest, build.model
    if (m.model_spec, m.model_fingerprint) != (model.spec, model.fingerprint):
        raise IndexStoreError(
            f"index {build.store.name!r} was built with model {m.model_spec!r} ({m.model_fingerprint[:12]}), "
            f"not {model.spec!r} ({model.fingerprint[:12]}); vectors of different models never mix — run a "
            "full build (without --incremental)"
        )
    meta = Metadata(base.metadata_path)
    try:
        indexed = {rid: (h, coll, data) for rid, h, coll, data in meta.stored()}
    finally:
        meta.close()
    wanted = set(build.names)
    harvested_ids = {r.id for r, _, _ in harvested.items}
    remove = [rid for rid, (_, coll, _) in indexed.items() if coll in wanted and rid not in harvested_ids]
    todo = []
    for record, h, path in harvested.items:
        old = indexed.get(record.id)
        if old is not None and old[0] == h and old[2] == orjson.loads(record_json(record)):
            continue
        todo.append((record, h, path))
    embedded, failures = _embed(build, todo)
    # A changed record whose new image failed is removed rather than left stale.
    remove += [rid for rid in failures if rid in indexed]
    if not embedded and not remove and wanted <= set(m.collections):
        log.info("index %s: nothing changed since version %s", build.store.name, m.version)
        return base
    all_failures = {k: v for k, v in m.failures.items() if k not in harvested_ids} | failures
    return update_version(
        build.store,
        base,
        add=embedded,
        remove=remove,
        model=model,
        options=build.options,
        collections=sorted(set(m.collections) | wanted),
        harvest_state={**m.harvest_state, **harvested.harvest_state},
        failures=all_failures,
        aliases=harvested.aliases,
        progress=build.progress,
        add_crops=_crops(build, todo),
    )
