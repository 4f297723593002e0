"""One opened, immutable index version and the record-id helpers the engine uses on it."""

from __future__ import annotations

import mmap
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from iconosearch import lru
from iconosearch.index import faiss_index, regions, verify
from iconosearch.index.faiss_index import FaissSpec
from iconosearch.index.metadata import Metadata, Row
from iconosearch.index.ranking import DuplicateGroups
from iconosearch.index.regions import RegionSet
from iconosearch.index.store import IndexStoreError, IndexVersion
from iconosearch.query import Filters
from iconosearch.records import id_to_int64
from iconosearch.relevance import Calibration, load_calibration

K = TypeVar("K")
V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class IndexInfo:
    """What the served index version is."""

    name: str
    version: str
    count: int
    model_spec: str
    model_fingerprint: str
    dim: int
    created: str
    """ISO 8601 UTC time the version was built."""
    collections: tuple[str, ...]
    faiss_type: str
    """``flat``, ``ivf-flat``, ``ivf-pq``, ``hnsw``…"""
    recall_at_10: float | None
    """Measured recall@10 of the approximate index against exact search (``None`` for exact)."""


class LoadedVersion:
    """One opened, immutable index version. Dropped (not closed) on reload: in-flight searches keep
    their reference, and the files go when the last one does."""

    def __init__(self, version: IndexVersion, data_dir: Path | None = None) -> None:
        m = version.manifest
        verify.require_intact(version)
        self.version = version
        self.manifest = m
        self.data_dir = data_dir
        """The data directory the version belongs to (its image cache serves detail queries)."""
        self.spec = FaissSpec(m.faiss_type, dict(m.faiss_params))
        self.index = faiss_index.read(version.faiss_path, self.spec)
        self.vectors: np.ndarray = np.load(version.vectors_path, mmap_mode="r")
        prefetch(self.vectors)
        self.meta = Metadata(version.metadata_path)
        self.lock = threading.Lock()
        """Guards the caches below, briefly: a miss is computed outside it (SQLite reads run on each
        thread's own connection, FAISS searches concurrently), so two threads may compute one miss."""
        self.count = self.meta.count()
        self.groups = DuplicateGroups.of(self.meta.shared_groups())
        """Near-duplicate group of each record that has duplicates, kept in memory for collapsing."""
        self.collections = frozenset(self.meta.collections()) | frozenset(m.collections)
        self.calibration: Calibration | None = load_calibration(m.model_spec, m.model_fingerprint, data_dir)
        self.filter_cache: OrderedDict[Filters, Any] = OrderedDict()
        """What each recent filter allows (``retrieval.Allowed``)."""
        self.facet_cache: OrderedDict[tuple[Filters, str | None], dict[str, dict[str, int]]] = OrderedDict()
        self.word_counts: OrderedDict[tuple[str, Filters], int] = OrderedDict()
        """Records holding all the words of recent hybrid queries (``SearchEngine._words_clause``)."""
        if self.index.ntotal != self.count or self.vectors.shape != (self.count, m.dim):
            raise IndexStoreError(
                f"index version {m.version} is inconsistent: FAISS {self.index.ntotal}, "
                f"metadata {self.count}, vectors {self.vectors.shape}"
            )
        self.crops = LoadedCrops(version) if m.regions else None
        """Region embeddings of the version (:mod:`iconosearch.index.regions`), when it has them."""

    @property
    def name(self) -> str:
        return self.manifest.version

    def cached(self, cache: OrderedDict[K, V], key: K, compute: Callable[[], V]) -> V:
        """``cache[key]``, or ``compute()`` kept there (least recently used out past ``_CACHE_SIZE``).
        The lock is held only for the lookup and the insert, never while computing (SQLite, FAISS)."""
        with self.lock:
            found = cache.get(key)
        if found is None:
            found = compute()
            with self.lock:
                lru.keep(cache, {key: found}, _CACHE_SIZE)
        return found


class LoadedCrops:
    """The region embeddings of one version: their FAISS index and each crop's record and box."""

    def __init__(self, version: IndexVersion) -> None:
        info = version.manifest.regions
        crops = RegionSet.load(version.path, mmap=True)
        if crops is None:
            raise IndexStoreError(f"index version {version.version} lists regions but has no region files")
        self.set = crops
        self.spec = FaissSpec(str(info["faiss_type"]), dict(info.get("faiss_params", {})))
        self.index = faiss_index.read(version.path / regions.FAISS_FILE, self.spec)
        if not (self.index.ntotal == len(crops) == len(crops.boxes) == crops.vectors.shape[0]):
            raise IndexStoreError(
                f"index version {version.version} has inconsistent regions: FAISS {self.index.ntotal}, "
                f"ids {len(crops)}, boxes {len(crops.boxes)}, vectors {crops.vectors.shape}"
            )
        self.order = np.argsort(crops.ids, kind="stable")
        """Crop rows sorted by record id, so that one record's crops are a slice of it."""
        self.sorted_ids = crops.ids[self.order]

    def __len__(self) -> int:
        return len(self.set)

    def allowed_rows(self, allowed_ids: np.ndarray) -> np.ndarray:
        """The crop rows of the records in ``allowed_ids`` (sorted)."""
        return np.sort(self.order[np.isin(self.sorted_ids, allowed_ids)])


_CACHE_SIZE = 64


def prefetch(array: np.ndarray) -> None:
    """Ask the kernel to read a memory-mapped array's file into the page cache now, in the background.

    An item query reads one stored row; on a cold mapping that row is a page fault and a disk read (with
    read-ahead around it), which profiled as 15 % of an item query at 200k × 768 while a warm row costs
    ~10 µs. The pages stay the kernel's (shared between workers, evictable), not this process's memory."""
    mapped = getattr(array, "_mmap", None)
    if mapped is not None and hasattr(mmap, "MADV_WILLNEED"):
        mapped.madvise(mmap.MADV_WILLNEED)


def resolve_id(loaded: LoadedVersion, record_id: str) -> int | None:
    """FAISS id of a record id, following the alias of an id that 0.1 gave."""
    return resolve_row(loaded, record_id)[0]


def resolve_row(loaded: LoadedVersion, record_id: str) -> tuple[int | None, Row | None]:
    """:func:`resolve_id` and the record's stored row (``None``: no such record), in one lookup when the
    id is current."""
    iid = parse_id(record_id)
    row = loaded.meta.lookup([iid]).get(iid) if iid is not None else None
    if iid is None or row is not None:
        return iid, row
    new = loaded.meta.alias(record_id)
    if new is None or (alias := parse_id(new)) is None:
        return iid, None
    return alias, loaded.meta.lookup([alias]).get(alias)


def parse_id(record_id: str) -> int | None:
    # Record ids are 63-bit (see records.record_id), so anything larger is no record of ours.
    if not re.fullmatch(r"[0-7][0-9a-f]{15}", record_id):
        return None
    return id_to_int64(record_id)
