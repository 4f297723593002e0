"""Writing index versions: full writes, incremental updates and compaction.

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

import logging
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from iconosearch.index import faiss_index, regions
from iconosearch.index.duplicates import DUPLICATE_THRESHOLD, duplicate_groups
from iconosearch.index.faiss_index import FaissSpec
from iconosearch.index.metadata import DICTIONARY_SAMPLES, Metadata
from iconosearch.index.regions import CropStream, RegionSet
from iconosearch.index.store import IndexManifest, IndexStore, IndexStoreError, IndexVersion, utc_now_iso
from iconosearch.records import ImageRecord, id_to_int64
from iconosearch.storage import writing

if TYPE_CHECKING:
    from iconosearch.subjects.suggested import SubjectLabels

log = logging.getLogger(__name__)

COMPACT_FRACTION = 0.2
METADATA_BYTES_PER_RECORD = 1536
"""About what one record takes in ``metadata.sqlite`` (JSON, filter columns, FTS); for space estimates."""
VECTOR_DTYPE = np.float16
"""How ``vectors.npy`` stores the unit vectors (versions before 0.2 stored float32, still read as they
are). Half precision halves the file (1.5 KB a vector at 768 dims, not 3 KB) and moves a cosine by at
most ~1e-4 (tests/test_index_vectors.py), far below the 8-bit codes the IVF index searches with. Every
index is built from these stored values, so a compaction rebuilds the very same vectors; leaving the file
out and reconstructing vectors from an ``ivf-sq8`` index instead was measured and rejected: 21–27 µs a
row at 768 dims (a 10k-row filtered subset would take 0.25 s, not < 5 ms) and cosines down to 0.994."""

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
    subject_labels: SubjectLabels | None = None
    """When given (``[subjects] suggest``), every new vector gets its machine-suggested subjects."""
    text_queries: Callable[[], np.ndarray] | None = None
    """Makes text vectors (captions of some records) that tuning holds to the recall target too, beside
    noisy stored vectors (``faiss_index.tune``); called only for an approximate index."""


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


def no_progress(stage: str, done: int, total: int) -> None:
    return None


def version_bytes(count: int, dim: int) -> int:
    """A generous estimate of a version's size on disk: stored vectors, the FAISS index (up to float32
    for exact ones), ids and metadata."""
    return count * ((np.dtype(VECTOR_DTYPE).itemsize + 4) * dim + 16 + METADATA_BYTES_PER_RECORD)


def _stack(items: Sequence[EmbeddedRecord], dim: int, *, chunk: int = 65536) -> np.ndarray:
    """The unit vectors of ``items`` as stored (``VECTOR_DTYPE``), normalised in float32 chunk by chunk
    (one n × dim array is held, not the three float32 copies a stack-then-normalise makes)."""
    out = np.empty((len(items), dim), dtype=VECTOR_DTYPE)
    part = np.empty((min(chunk, len(items)), dim), dtype=np.float32)
    for start in range(0, len(items), chunk):
        m = min(chunk, len(items) - start)
        for j in range(m):
            vector = np.asarray(items[start + j].vector, dtype=np.float32).reshape(-1)
            if vector.shape[0] != dim:
                raise ValueError(f"vectors have dimension {vector.shape[0]}, the model {dim}")
            part[j] = vector
        norms = np.linalg.norm(part[:m], axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        out[start : start + m] = part[:m] / norms
    return out


def _dedupe_items(items: Sequence[EmbeddedRecord]) -> tuple[Sequence[EmbeddedRecord], np.ndarray]:
    """One entry per record id (the last wins), so a record listed twice is indexed once, and their
    FAISS ids; ``items`` itself when no id repeats (a 1M-record build then holds no second list)."""
    ids = np.fromiter((id_to_int64(i.record.id) for i in items), dtype=np.int64, count=len(items))
    if len(np.unique(ids)) == len(ids):
        return items, ids
    by_id: dict[str, EmbeddedRecord] = {}
    for item in items:
        by_id[item.record.id] = item
    kept = list(by_id.values())
    return kept, np.array([id_to_int64(i.record.id) for i in kept], dtype=np.int64)


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
    progress: Progress = no_progress,
    crops: RegionSet | CropStream | None = None,
) -> IndexVersion:
    """Build a complete new version from ``items`` (and the region ``crops`` of some of them, see
    :mod:`iconosearch.index.regions`) and (by default) switch ``CURRENT`` to it."""
    items, ids = _dedupe_items(items)
    vectors = _stack(items, model.dim)
    if isinstance(crops, RegionSet):  # a stream's crops are the caller's to match (it holds none)
        crops = crops.without(np.setdiff1d(crops.ids, ids))
    version, staging = store.begin()
    try:
        with writing(
            f"writing version {version} of index {store.name!r}",
            staging,
            needed=version_bytes(len(items) + len(crops or ()), model.dim),
        ):
            index, spec, recall = _write_faiss(staging, vectors, ids, options, progress)
            region_info = _write_regions(staging, crops, options, progress)
            groups = _groups_for(index, spec, vectors, ids, options, progress)
            np.save(staging / "vectors.npy", vectors)
            np.save(staging / "ids.npy", ids)
            progress("metadata", 0, len(items))
            meta = Metadata.create(staging / "metadata.sqlite", _samples(items))
            try:
                # In id order: SQLite then appends to its B-trees (keyed by id) and fills every page,
                # where random ids leave them a third empty.
                meta.insert(
                    (
                        items[row].record,
                        row,
                        groups.get(int(ids[row]), int(ids[row])),
                        items[row].content_hash,
                    )
                    for row in (int(r) for r in np.argsort(ids, kind="stable"))
                )
                meta.set_aliases(aliases or {})
                _suggest(meta, options, model.fingerprint, ids, vectors)
                meta.finish()
                held = meta.collections()
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
                collections=tuple(sorted(set(collections) | set(held))),
                harvest_state=dict(harvest_state or {}),
                failures=dict(failures or {}),
                regions=region_info,
            )
            return store.commit(staging, manifest, switch=switch)
    except BaseException:
        store.abort(staging)
        raise


def _samples(items: Sequence[EmbeddedRecord]) -> list[ImageRecord]:
    """A spread of the records to train the metadata's compression dictionary on."""
    step = max(1, len(items) // DICTIONARY_SAMPLES)
    return [items[i].record for i in range(0, len(items), step)]


def _suggest(
    meta: Metadata, options: BuildOptions, fingerprint: str, ids: np.ndarray, vectors: np.ndarray
) -> None:
    labels = options.subject_labels
    if labels is None or len(ids) == 0:
        return
    if labels.fingerprint != fingerprint:
        raise ValueError("subject labels were embedded by another model than the index's")
    meta.set_suggestions([int(i) for i in ids], labels.suggest(vectors))


def _write_faiss(
    staging: Path,
    vectors: np.ndarray,
    ids: np.ndarray,
    options: BuildOptions,
    progress: Progress,
    *,
    file: str = "vectors.faiss",
) -> tuple[Any, FaissSpec, float | None]:
    """Build, tune and write the FAISS index; it is returned in memory for duplicate grouping."""
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
    spec, recall = faiss_index.tune(
        index, vectors, ids, spec, target=options.recall_target, text_queries=options.text_queries
    )
    faiss_index.write(index, staging / file)
    progress("faiss", n, n)
    return index, spec, recall


def _write_regions(
    staging: Path, crops: RegionSet | CropStream | None, options: BuildOptions, progress: Progress
) -> dict[str, Any]:
    """The version's region files and their manifest entry (nothing when there are no crops); the crop
    index gets its share of the memory budget (``regions.BUDGET_SHARE``)."""
    if crops is None or not len(crops):
        return {}
    budget = options.memory_budget // regions.BUDGET_SHARE
    if isinstance(crops, CropStream):
        progress("regions index", 0, len(crops))
        info = regions.write_streamed(
            staging,
            crops,
            memory_budget=budget,
            recall_target=options.recall_target,
            text_queries=options.text_queries,
        )
        progress("regions index", len(crops), len(crops))
        return info
    rows = np.arange(len(crops), dtype=np.int64)
    kind = options.kind or regions.crop_kind(
        len(crops),
        crops.vectors.shape[1],
        memory_budget=budget,
        exact_max=options.exact_max,
        shards=options.shards,
    )
    crop_options = replace(options, memory_budget=budget, kind=kind)
    index, spec, recall = _write_faiss(
        staging, crops.vectors, rows, crop_options, progress, file=regions.FAISS_FILE
    )
    spec, guard = regions.capped(
        index,
        spec,
        recall,
        target=options.recall_target,
        tuning=lambda: regions.tuning_sample(crops.vectors, rows),
    )
    crops.save(staging, half=spec.kind != regions.HALF_ABOVE)
    return {"count": len(crops), "faiss_type": spec.kind, "faiss_params": dict(spec.params), **guard}


def _groups_for(
    index: Any,
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
    groups = duplicate_groups(
        index, spec, vectors, ids, threshold=options.duplicate_threshold, rows=only_rows, existing=existing
    )
    progress("duplicates", len(ids), len(ids))
    return groups


@dataclass(frozen=True, slots=True)
class _Update:
    """What an incremental update writes: the base, what it drops and adds, and its settings."""

    store: IndexStore
    base: IndexVersion
    add: Sequence[EmbeddedRecord]
    add_ids: np.ndarray
    drop: set[int]
    old_groups: dict[int, int]
    changes: int
    options: BuildOptions
    collections: Sequence[str]
    harvest_state: Mapping[str, str | None]
    failures: Mapping[str, str]
    aliases: Mapping[str, str]
    crops: RegionSet
    """The crops of the new version: the base's of records kept, plus those of ``add``."""


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
    progress: Progress = no_progress,
    add_crops: RegionSet | None = None,
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
    add, add_ids = _dedupe_items(add)
    old_meta = Metadata(base.metadata_path)
    try:
        known = {iid for iid, _, _, _ in old_meta.rows_by_id()}
        old_groups = dict(old_meta.conn.execute("SELECT int_id, dup_group FROM records"))
    finally:
        old_meta.close()
    drop = {id_to_int64(r) for r in remove if id_to_int64(r) in known} | {
        int(i) for i in add_ids if int(i) in known
    }
    update = _Update(
        store=store,
        base=base,
        add=add,
        add_ids=add_ids,
        drop=drop,
        old_groups=old_groups,
        changes=m.changes_since_compaction + len(drop) + len(add),
        options=options,
        collections=collections if collections is not None else m.collections,
        harvest_state=harvest_state if harvest_state is not None else m.harvest_state,
        failures=failures if failures is not None else m.failures,
        aliases=aliases or {},
        crops=_carried_crops(base, drop, add_crops),
    )
    if _should_compact(update, new_count=len(known) - len(drop) + len(add)):
        kept = _load_items(base, exclude=drop)
        return write_version(
            store,
            [*kept, *add],
            model,
            options=options,
            collections=update.collections,
            harvest_state=update.harvest_state,
            failures=update.failures,
            aliases=update.aliases,
            switch=switch,
            progress=progress,
            crops=update.crops,
        )
    return _write_update(update, switch=switch, progress=progress)


def _carried_crops(base: IndexVersion, drop: set[int], add_crops: RegionSet | None) -> RegionSet:
    dim = base.manifest.dim
    kept = RegionSet.load(base.path) or RegionSet.empty(dim)
    drop_ids = np.fromiter(drop, dtype=np.int64, count=len(drop))
    return RegionSet.concat([kept.without(drop_ids), add_crops or RegionSet.empty(dim)], dim)


def _should_compact(update: _Update, *, new_count: int) -> bool:
    m, options = update.base.manifest, update.options
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
    if update.changes > COMPACT_FRACTION * max(new_count, 1) or wanted.kind != m.faiss_type:
        log.info(
            "compacting index %s: %d changes, %s → %s",
            update.store.name,
            update.changes,
            m.faiss_type,
            wanted.kind,
        )
        return True
    return False


def _write_update(update: _Update, *, switch: bool, progress: Progress) -> IndexVersion:
    base, m, add, add_ids, drop = update.base, update.base.manifest, update.add, update.add_ids, update.drop
    old_vectors = np.load(base.vectors_path, mmap_mode="r")
    old_ids = np.load(base.ids_path)
    drop_ids = np.fromiter(drop, dtype=np.int64, count=len(drop))
    keep_mask = ~np.isin(old_ids, drop_ids)
    # A version written as float32 (before 0.2) is carried on as VECTOR_DTYPE.
    new_vectors = np.concatenate([old_vectors[keep_mask], _stack(add, m.dim)], dtype=VECTOR_DTYPE)
    new_ids = np.concatenate([old_ids[keep_mask], add_ids])
    first_new = len(new_ids) - len(add)
    version, staging = update.store.begin()
    try:
        with writing(
            f"writing version {version} of index {update.store.name!r}",
            staging,
            needed=version_bytes(len(new_ids) + len(update.crops), m.dim),
        ):
            spec = FaissSpec(m.faiss_type, dict(m.faiss_params))
            progress("faiss", 0, len(new_ids))
            if not faiss_index.removable(spec):
                index = faiss_index.build(new_vectors, new_ids, spec)
            else:
                index = faiss_index.read(base.faiss_path, spec)
                faiss_index.remove(index, drop_ids)
                faiss_index.add(index, new_vectors[first_new:], add_ids)
            recall = m.recall_at_10
            if spec.kind != "flat":
                o = update.options
                spec, recall = faiss_index.tune(
                    index, new_vectors, new_ids, spec, target=o.recall_target, text_queries=o.text_queries
                )
            faiss_index.write(index, staging / "vectors.faiss")
            progress("faiss", len(new_ids), len(new_ids))
            np.save(staging / "vectors.npy", new_vectors)
            np.save(staging / "ids.npy", new_ids)
            existing = {iid: g for iid, g in update.old_groups.items() if iid not in drop}
            groups = _groups_for(
                index,
                spec,
                new_vectors,
                new_ids,
                update.options,
                progress,
                only_rows=np.arange(first_new, len(new_ids)),
                existing=existing,
            )
            shutil.copyfile(base.metadata_path, staging / "metadata.sqlite")
            meta = Metadata(staging / "metadata.sqlite", readonly=False)
            try:
                meta.delete(sorted(drop))
                meta.set_rows((int(iid), row) for row, iid in enumerate(new_ids[:first_new]))
                group_of = [groups.get(int(i), int(i)) for i in add_ids]
                meta.insert(
                    (it.record, first_new + j, group_of[j], it.content_hash) for j, it in enumerate(add)
                )
                meta.set_groups((iid, g) for iid, g in groups.items() if existing.get(iid, g) != g)
                meta.set_aliases(update.aliases)
                _suggest(meta, update.options, m.model_fingerprint, add_ids, new_vectors[first_new:])
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
                collections=tuple(sorted(set(update.collections) | {i.record.collection for i in add})),
                harvest_state=dict(update.harvest_state),
                failures=dict(update.failures),
                parent=m.version,
                changes_since_compaction=update.changes,
                regions=_write_regions(staging, update.crops, update.options, progress),
            )
            return update.store.commit(staging, manifest, switch=switch)
    except BaseException:
        update.store.abort(staging)
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
            crops=RegionSet.load(base.path),
        )
