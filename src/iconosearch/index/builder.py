"""Building index versions: full builds, incremental updates, compaction and the consistency check.

A version is always written into a fresh staging directory and committed with an atomic switch (see
:mod:`iconosearch.index.store`). Incremental updates start from the served version: its vectors are
kept as they are (no re-embedding), deleted and changed records are removed, new ones added; the
FAISS index is updated in place (IVF keeps its trained centroids) except for HNSW, which cannot
delete and is rebuilt from the stored vectors. Once incremental changes exceed
``COMPACT_FRACTION`` of the index, or the size calls for another index type, the update becomes a
compaction: a full rebuild (retraining IVF) from the stored vectors.

Vectors of different models never mix: the manifest records the model spec and fingerprint, and an
incremental update with another model is refused.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from iconosearch.index import faiss_index
from iconosearch.index.faiss_index import FaissSpec
from iconosearch.index.metadata import Metadata
from iconosearch.index.store import IndexManifest, IndexStore, IndexStoreError, IndexVersion, utc_now_iso
from iconosearch.records import ImageRecord, id_to_int64, record_to_dict

log = logging.getLogger(__name__)

DUPLICATE_THRESHOLD = 0.97
"""Cosine at or above which two images count as the same picture (rescans, other manifests)."""
DUPLICATE_NEIGHBOURS = 16
COMPACT_FRACTION = 0.2

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``."""


@dataclass(frozen=True, slots=True)
class BuildOptions:
    """How the FAISS index is chosen and tuned (see :func:`faiss_index.choose_spec`)."""

    kind: str | None = None
    exact_max: int = faiss_index.DEFAULT_EXACT_MAX
    memory_budget: int = faiss_index.DEFAULT_MEMORY_BUDGET
    recall_target: float = faiss_index.DEFAULT_RECALL_TARGET
    duplicate_threshold: float = DUPLICATE_THRESHOLD
    shards: int = 1
    """Split the FAISS index into this many shards, searched and merged exactly (``index.sharded``)."""


@dataclass(frozen=True, slots=True)
class EmbeddedRecord:
    """A record with its image's content hash and unit vector: what goes into an index."""

    record: ImageRecord
    content_hash: str | None
    vector: np.ndarray


@dataclass(frozen=True, slots=True)
class ModelInfo:
    spec: str
    fingerprint: str
    dim: int


@dataclass(frozen=True, slots=True)
class ConsistencyReport:
    version: str
    count: int
    faiss_only: tuple[str, ...] = ()
    """Ids FAISS has that the metadata lacks."""
    metadata_only: tuple[str, ...] = ()
    vector_rows_ok: bool = True
    """``ids.npy`` matches the metadata rows and the vectors have the manifest's shape."""
    problems: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return not self.faiss_only and not self.metadata_only and self.vector_rows_ok and not self.problems


def _noop(stage: str, done: int, total: int) -> None:
    return None


# --- near-duplicates -------------------------------------------------------------------------------


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, x: int) -> int:
        root = x
        while self.parent.get(root, root) != root:
            root = self.parent[root]
        while self.parent.get(x, x) != root:
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def duplicate_groups(
    index: Any,
    spec: FaissSpec,
    queries: np.ndarray,
    query_ids: np.ndarray,
    *,
    threshold: float,
    existing: Mapping[int, int] | None = None,
    batch: int = 4096,
) -> dict[int, int]:
    """Group labels (smallest id of each group) for ``query_ids`` and everything linked to them.

    Each query vector is linked to its indexed neighbours at cosine ≥ ``threshold``; ``existing``
    labels (id → label) are kept linked, so incremental updates merge into existing groups.
    """
    uf = _UnionFind()
    for iid, label in (existing or {}).items():
        uf.union(iid, label)
    if spec.kind.startswith("ivf"):
        # Near-identical vectors fall in the same (or a neighbouring) list: a few probes find them,
        # which keeps this all-pairs pass cheap at millions of vectors.
        spec = FaissSpec(spec.kind, {**spec.params, "nprobe": min(int(spec.params["nprobe"]), 8)})
    params = faiss_index.search_params(spec)
    for start in range(0, len(queries), batch):
        scores, ids = faiss_index.search(
            index, queries[start : start + batch], DUPLICATE_NEIGHBOURS, params=params
        )
        for qid, row_scores, row_ids in zip(query_ids[start : start + batch], scores, ids, strict=True):
            for s, other in zip(row_scores, row_ids, strict=True):
                if other >= 0 and s >= threshold and other != qid:
                    uf.union(int(qid), int(other))
    members = set((existing or {}).keys()) | {int(i) for i in query_ids}
    # Labels are the smallest *member* id of each group, so they are stable and meaningful.
    smallest: dict[int, int] = {}
    for iid in members:
        root = uf.find(iid)
        smallest[root] = min(smallest.get(root, iid), iid)
    return {iid: smallest[uf.find(iid)] for iid in members}


# --- writing versions ------------------------------------------------------------------------------


def _stack(items: Sequence[EmbeddedRecord], dim: int) -> np.ndarray:
    if not items:
        return np.zeros((0, dim), dtype=np.float32)
    vectors = np.stack([np.asarray(i.vector, dtype=np.float32).reshape(-1) for i in items])
    if vectors.shape[1] != dim:
        raise ValueError(f"vectors have dimension {vectors.shape[1]}, the model {dim}")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    result: np.ndarray = (vectors / norms).astype(np.float32)
    return result


def _dedupe_items(items: Sequence[EmbeddedRecord]) -> list[EmbeddedRecord]:
    """One entry per record id (the last wins), so a record listed twice is indexed once."""
    by_id: dict[str, EmbeddedRecord] = {}
    for item in items:
        by_id[item.record.id] = item
    return list(by_id.values())


def write_version(
    store: IndexStore,
    items: Sequence[EmbeddedRecord],
    model: ModelInfo,
    *,
    options: BuildOptions = BuildOptions(),
    collections: Sequence[str] = (),
    harvest_state: Mapping[str, str | None] | None = None,
    failures: Mapping[str, str] | None = None,
    aliases: Mapping[str, str] | None = None,
    switch: bool = True,
    progress: Progress = _noop,
) -> IndexVersion:
    """Build a complete new version from ``items`` and (by default) switch ``CURRENT`` to it."""
    items = _dedupe_items(items)
    vectors = _stack(items, model.dim)
    ids = np.array([id_to_int64(i.record.id) for i in items], dtype=np.int64)
    version, staging = store.begin()
    try:
        spec, recall = _write_faiss(staging, vectors, ids, options, progress)
        groups = _groups_for(staging, spec, vectors, ids, options, progress)
        np.save(staging / "vectors.npy", vectors)
        np.save(staging / "ids.npy", ids)
        meta = Metadata.create(staging / "metadata.sqlite")
        try:
            progress("metadata", 0, len(items))
            meta.insert(
                (item.record, row, groups.get(int(ids[row]), int(ids[row])), item.content_hash)
                for row, item in enumerate(items)
            )
            meta.set_aliases(aliases or {})
            meta.finish()
            progress("metadata", len(items), len(items))
        finally:
            meta.close()
        manifest = IndexManifest(
            name=store.name,
            version=version,
            model_spec=model.spec,
            model_fingerprint=model.fingerprint,
            dim=model.dim,
            count=len(items),
            faiss_type=spec.kind,
            faiss_params=dict(spec.params),
            created=utc_now_iso(),
            recall_at_10=recall,
            collections=tuple(sorted(set(collections) | {i.record.collection for i in items})),
            harvest_state=dict(harvest_state or {}),
            failures=dict(failures or {}),
        )
        return store.commit(staging, manifest, switch=switch)
    except BaseException:
        store.abort(staging)
        raise


def _write_faiss(
    staging: Path, vectors: np.ndarray, ids: np.ndarray, options: BuildOptions, progress: Progress
) -> tuple[FaissSpec, float | None]:
    n, dim = vectors.shape
    spec = faiss_index.choose_spec(
        n,
        dim,
        kind=options.kind,
        exact_max=options.exact_max,
        memory_budget=options.memory_budget,
        shards=options.shards,
    )
    if spec.kind != "flat" and n < 1000:
        # too few vectors to train an approximate index on
        spec = faiss_index.choose_spec(n, dim, kind="flat", shards=options.shards)
    progress("faiss", 0, n)
    index = faiss_index.build(vectors, ids, spec)
    spec, recall = faiss_index.tune(index, vectors, ids, spec, target=options.recall_target)
    faiss_index.write(index, staging / "vectors.faiss")
    progress("faiss", n, n)
    return spec, recall


def _groups_for(
    staging: Path,
    spec: FaissSpec,
    vectors: np.ndarray,
    ids: np.ndarray,
    options: BuildOptions,
    progress: Progress,
    *,
    only_rows: np.ndarray | None = None,
    existing: Mapping[int, int] | None = None,
) -> dict[int, int]:
    if len(ids) == 0:
        return dict(existing or {})
    progress("duplicates", 0, len(ids))
    index = faiss_index.read(staging / "vectors.faiss", spec)
    rows = only_rows if only_rows is not None else np.arange(len(ids))
    groups = duplicate_groups(
        index, spec, vectors[rows], ids[rows], threshold=options.duplicate_threshold, existing=existing
    )
    progress("duplicates", len(ids), len(ids))
    return groups


def update_version(
    store: IndexStore,
    base: IndexVersion,
    *,
    add: Sequence[EmbeddedRecord] = (),
    remove: Iterable[str] = (),
    model: ModelInfo,
    options: BuildOptions = BuildOptions(),
    collections: Sequence[str] | None = None,
    harvest_state: Mapping[str, str | None] | None = None,
    failures: Mapping[str, str] | None = None,
    aliases: Mapping[str, str] | None = None,
    switch: bool = True,
    progress: Progress = _noop,
) -> IndexVersion:
    """A new version = ``base`` − ``remove`` − changed records + ``add``, without re-embedding ``base``.

    Records in ``add`` whose id is already indexed replace the old entry. Compacts (full rebuild from
    vectors) when the accumulated changes exceed ``COMPACT_FRACTION`` or the index kind should change.
    """
    m = base.manifest
    if (m.model_spec, m.model_fingerprint, m.dim) != (model.spec, model.fingerprint, model.dim):
        raise IndexStoreError(
            f"index {store.name!r} version {m.version} was built with model {m.model_spec!r} "
            f"(fingerprint {m.model_fingerprint[:12]}); refusing to add vectors of {model.spec!r} "
            f"({model.fingerprint[:12]}). Build it in full instead."
        )
    add = _dedupe_items(add)
    add_ids = np.array([id_to_int64(i.record.id) for i in add], dtype=np.int64)
    old_meta = Metadata(base.metadata_path)
    try:
        known = {iid: (row, rid) for iid, row, rid, _ in old_meta.rows_by_id()}
        old_groups = dict(old_meta.conn.execute("SELECT int_id, dup_group FROM records"))
    finally:
        old_meta.close()
    drop = {id_to_int64(r) for r in remove if id_to_int64(r) in known} | {
        int(i) for i in add_ids if int(i) in known
    }
    changes = m.changes_since_compaction + len(drop) + len(add)
    new_count = len(known) - len(drop) + len(add)
    wanted = faiss_index.choose_spec(
        new_count,
        m.dim,
        kind=options.kind,
        exact_max=options.exact_max,
        memory_budget=options.memory_budget,
        shards=options.shards,
    )
    if new_count < 1000:
        wanted = FaissSpec("flat")
    if changes > COMPACT_FRACTION * max(new_count, 1) or wanted.kind != m.faiss_type:
        log.info("compacting index %s: %d changes, %s → %s", store.name, changes, m.faiss_type, wanted.kind)
        kept = _load_items(base, exclude=drop)
        return write_version(
            store,
            [*kept, *add],
            model,
            options=options,
            collections=collections if collections is not None else m.collections,
            harvest_state=harvest_state if harvest_state is not None else m.harvest_state,
            failures=failures if failures is not None else m.failures,
            switch=switch,
            progress=progress,
        )

    old_vectors = np.load(base.vectors_path, mmap_mode="r")
    old_ids = np.load(base.ids_path)
    keep_mask = ~np.isin(old_ids, np.fromiter(drop, dtype=np.int64, count=len(drop)))
    new_vectors = np.concatenate([np.asarray(old_vectors[keep_mask]), _stack(add, m.dim)])
    new_ids = np.concatenate([old_ids[keep_mask], add_ids])
    version, staging = store.begin()
    try:
        spec = FaissSpec(m.faiss_type, dict(m.faiss_params))
        progress("faiss", 0, len(new_ids))
        if spec.kind == "hnsw":
            index = faiss_index.build(new_vectors, new_ids, spec)
        else:
            index = faiss_index.read(base.faiss_path, spec)
            faiss_index.remove(index, np.fromiter(drop, dtype=np.int64, count=len(drop)))
            faiss_index.add(index, new_vectors[len(new_ids) - len(add) :], add_ids)
        recall = m.recall_at_10
        if spec.kind != "flat":
            spec, recall = faiss_index.tune(index, new_vectors, new_ids, spec, target=options.recall_target)
        faiss_index.write(index, staging / "vectors.faiss")
        progress("faiss", len(new_ids), len(new_ids))
        np.save(staging / "vectors.npy", new_vectors)
        np.save(staging / "ids.npy", new_ids)
        existing = {iid: g for iid, g in old_groups.items() if iid not in drop}
        groups = _groups_for(
            staging,
            spec,
            new_vectors,
            new_ids,
            options,
            progress,
            only_rows=np.arange(len(new_ids) - len(add), len(new_ids)),
            existing=existing,
        )
        shutil.copyfile(base.metadata_path, staging / "metadata.sqlite")
        meta = Metadata(staging / "metadata.sqlite", readonly=False)
        try:
            meta.delete(sorted(drop))
            meta.set_rows((int(iid), row) for row, iid in enumerate(new_ids[: len(new_ids) - len(add)]))
            first_new = len(new_ids) - len(add)
            meta.insert(
                (item.record, first_new + j, groups.get(int(add_ids[j]), int(add_ids[j])), item.content_hash)
                for j, item in enumerate(add)
            )
            meta.set_groups((iid, g) for iid, g in groups.items() if existing.get(iid, g) != g)
            meta.set_aliases(aliases or {})
            meta.finish()
        finally:
            meta.close()
        manifest = replace(
            m,
            version=version,
            count=len(new_ids),
            faiss_params=dict(spec.params),
            created=utc_now_iso(),
            recall_at_10=recall,
            collections=tuple(
                sorted(
                    set(collections if collections is not None else m.collections)
                    | {i.record.collection for i in add}
                )
            ),
            harvest_state=dict(harvest_state if harvest_state is not None else m.harvest_state),
            failures=dict(failures if failures is not None else m.failures),
            parent=m.version,
            changes_since_compaction=changes,
        )
        return store.commit(staging, manifest, switch=switch)
    except BaseException:
        store.abort(staging)
        raise


def _load_items(
    version: IndexVersion, *, exclude: set[int] | frozenset[int] = frozenset()
) -> list[EmbeddedRecord]:
    """The records and stored vectors of a version (for compaction; no re-embedding)."""
    vectors = np.load(version.vectors_path, mmap_mode="r")
    meta = Metadata(version.metadata_path)
    try:
        rows = [(iid, row, h) for iid, row, _, h in meta.rows_by_id() if iid not in exclude]
        records = meta.records([iid for iid, _, _ in rows])
    finally:
        meta.close()
    rows.sort(key=lambda r: r[1])
    return [EmbeddedRecord(records[iid], h, np.asarray(vectors[row])) for iid, row, h in rows]


def compact(
    store: IndexStore,
    base: IndexVersion | None = None,
    *,
    options: BuildOptions = BuildOptions(),
    switch: bool = True,
) -> IndexVersion:
    """Rebuild ``base`` (default: the current version) in full from its stored vectors."""
    with store.building():
        base = base or store.current()
        if base is None:
            raise IndexStoreError(f"index {store.name!r} has no version to compact")
        m = base.manifest
        meta = Metadata(base.metadata_path)
        try:
            aliases = meta.aliases()
        finally:
            meta.close()
        return write_version(
            store,
            _load_items(base),
            ModelInfo(m.model_spec, m.model_fingerprint, m.dim),
            options=options,
            collections=m.collections,
            harvest_state=m.harvest_state,
            failures=m.failures,
            aliases=aliases,
            switch=switch,
        )


def check_consistency(version: IndexVersion) -> ConsistencyReport:
    """FAISS ids == metadata ids == ``ids.npy``, and the vectors match the manifest."""
    m = version.manifest
    problems: list[str] = []
    spec = FaissSpec(m.faiss_type, dict(m.faiss_params))
    index = faiss_index.read(version.faiss_path, spec)
    faiss_ids = {int(i) for i in faiss_index.ids_of(index)}
    if index.ntotal != len(faiss_ids):
        problems.append(f"FAISS holds {index.ntotal} vectors but {len(faiss_ids)} distinct ids")
    meta = Metadata(version.metadata_path)
    try:
        rows = {iid: row for iid, row, _, _ in meta.rows_by_id()}
    finally:
        meta.close()
    ids = np.load(version.ids_path)
    vectors = np.load(version.vectors_path, mmap_mode="r")
    rows_ok = (
        vectors.shape == (len(ids), m.dim)
        and len(rows) == len(ids)
        and all(int(ids[row]) == iid for iid, row in rows.items() if 0 <= row < len(ids))
        and all(0 <= row < len(ids) for row in rows.values())
    )
    if m.count != len(rows):
        problems.append(f"manifest count {m.count} ≠ {len(rows)} metadata records")
    fmt = "{:016x}".format
    return ConsistencyReport(
        version=m.version,
        count=len(rows),
        faiss_only=tuple(sorted(fmt(i) for i in faiss_ids - rows.keys())),
        metadata_only=tuple(sorted(fmt(i) for i in rows.keys() - faiss_ids)),
        vector_rows_ok=bool(rows_ok),
        problems=tuple(problems),
    )


# --- from the harvest state ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Harvested:
    items: list[tuple[ImageRecord, str, Path]]
    harvest_state: dict[str, str | None]
    aliases: dict[str, str]


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
    embedder: Any,
    items: Sequence[tuple[ImageRecord, str, Path]],
    cache_dir: Path,
    settings: Any,
    progress: Progress,
) -> tuple[list[EmbeddedRecord], dict[str, str]]:
    """Embed (or take from the cache) the images of ``items``; failures by record id."""
    from iconosearch.models.pipeline import embed_images

    if not items:
        return [], {}
    embed: Callable[..., Any] = embed_images
    if settings.ray.address is not None:  # the same stage as a Ray Data pipeline on a cluster
        from iconosearch.models.ray_embed import on_ray

        embed = on_ray(settings.ray)
    result = embed(
        embedder,
        [(h, p) for _, h, p in items],
        cache_dir=cache_dir,
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

    with IndexStore(DataDir(settings.data_dir).indexes, name).building():
        return _build_index(
            settings,
            name,
            collections,
            embedder,
            incremental=incremental,
            progress=progress,
            options=options,
        )


def _build_index(
    settings: Any,
    name: str,
    collections: Sequence[str],
    embedder: Any,
    *,
    incremental: bool = False,
    progress: Progress | None = None,
    options: BuildOptions | None = None,
) -> IndexVersion:
    """:func:`build_index`, with the index's build lock held."""
    from iconosearch.datadir import DataDir

    progress = progress or _noop
    options = options or BuildOptions()
    data = DataDir(settings.data_dir)
    names = list(collections) or sorted(settings.collections)
    if not names:
        raise IndexStoreError("no collections to index: configure some or name them")
    store = IndexStore(data.indexes, name)
    model = ModelInfo(str(embedder.spec), str(embedder.fingerprint), int(embedder.dim))
    progress("harvest", 0, len(names))
    harvested = _read_harvest(data.state_db, names)
    progress("harvest", len(names), len(names))
    base = store.current() if incremental else None
    if base is None:
        if not harvested.items:
            raise IndexStoreError(
                f"no harvested images in {', '.join(names)}: run 'iconosearch harvest' first"
            )
        embedded, failures = _embed(embedder, harvested.items, data.embedding_cache, settings, progress)
        if not embedded:
            raise IndexStoreError(f"none of the {len(harvested.items)} harvested images could be embedded")
        return write_version(
            store,
            embedded,
            model,
            options=options,
            collections=names,
            harvest_state=harvested.harvest_state,
            failures=failures,
            aliases=harvested.aliases,
            progress=progress,
        )

    m = base.manifest
    if (m.model_spec, m.model_fingerprint) != (model.spec, model.fingerprint):
        raise IndexStoreError(
            f"index {name!r} was built with model {m.model_spec!r} ({m.model_fingerprint[:12]}), not "
            f"{model.spec!r} ({model.fingerprint[:12]}); vectors of different models never mix — run a "
            "full build (without --incremental)"
        )
    meta = Metadata(base.metadata_path)
    try:
        indexed = {
            rid: (h, coll, data_json)
            for rid, h, coll, data_json in meta.conn.execute(
                "SELECT id, content_hash, collection, data FROM records"
            )
        }
    finally:
        meta.close()
    wanted = set(names)
    harvested_ids = {r.id for r, _, _ in harvested.items}
    remove = [rid for rid, (_, coll, _) in indexed.items() if coll in wanted and rid not in harvested_ids]
    todo = []
    for record, h, path in harvested.items:
        old = indexed.get(record.id)
        if old is not None and old[0] == h:
            same = json.loads(old[2]) == json.loads(json.dumps(record_to_dict(record), ensure_ascii=False))
            if same:
                continue
        todo.append((record, h, path))
    embedded, failures = _embed(embedder, todo, data.embedding_cache, settings, progress)
    # A changed record whose new image failed is removed rather than left stale.
    remove += [rid for rid in failures if rid in indexed]
    if not embedded and not remove and wanted <= set(m.collections):
        log.info("index %s: nothing changed since version %s", name, m.version)
        return base
    all_failures = {k: v for k, v in m.failures.items() if k not in harvested_ids} | failures
    return update_version(
        store,
        base,
        add=embedded,
        remove=remove,
        model=model,
        options=options,
        collections=sorted(set(m.collections) | wanted),
        harvest_state={**m.harvest_state, **harvested.harvest_state},
        failures=all_failures,
        aliases=harvested.aliases,
        progress=progress,
    )
