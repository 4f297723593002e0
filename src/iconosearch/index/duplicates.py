"""Near-duplicate grouping: images whose unit vectors are nearly identical share a group label.

Rescans of one page, the same painting in two manifests, or a thumbnail of a full image end up in one
group, so search can show one hit per group with the others listed under it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from iconosearch.index import faiss_index
from iconosearch.index.faiss_index import FaissSpec

DUPLICATE_THRESHOLD = 0.97
"""Cosine at or above which two images count as the same picture (rescans, other manifests)."""
DUPLICATE_NEIGHBOURS = 16
DUPLICATE_PROBES = 2
"""IVF lists searched for each vector's near-duplicates (the search itself probes far more)."""


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
        # Near-identical vectors fall in the same (or the next nearest) list, and a pair is linked when
        # either side finds the other: two probes find them, which keeps this all-pairs pass cheap at
        # millions of vectors (every probe scans n / nlist codes for each of the n vectors). bench/build.py's
        # vectors, 100k × 768: 1 probe found 1,532 links, 2 found 1,543, in 42 / 58 s under load.
        spec = FaissSpec(
            spec.kind, {**spec.params, "nprobe": min(int(spec.params["nprobe"]), DUPLICATE_PROBES)}
        )
    links = _range_links if _has_range_search(spec) else _knn_links
    for qid, other in links(index, spec, queries, query_ids, threshold, batch):
        uf.union(qid, other)
    members = set((existing or {}).keys()) | {int(i) for i in query_ids}
    # Labels are the smallest *member* id of each group, so they are stable and meaningful.
    smallest: dict[int, int] = {}
    for iid in members:
        root = uf.find(iid)
        smallest[root] = min(smallest.get(root, iid), iid)
    return {iid: smallest[uf.find(iid)] for iid in members}


def _has_range_search(spec: FaissSpec) -> bool:
    """FAISS answers range searches on flat and IVF indexes; HNSW, sharded and re-ranked (IndexRefine)
    ones take the k-NN path."""
    plain = faiss_index.shard_count(spec) == 1 and not faiss_index.refined(spec)
    return plain and (spec.kind == "flat" or spec.kind.startswith("ivf"))


def _range_links(
    index: Any, spec: FaissSpec, queries: np.ndarray, query_ids: np.ndarray, threshold: float, batch: int
) -> Iterator[tuple[int, int]]:
    """``(query id, other id)`` at cosine ≥ ``threshold``: every one of them, not the first k."""
    params = faiss_index.search_params(spec)
    # FAISS keeps inner products strictly above the radius: start a hair below the threshold.
    radius = float(np.nextafter(np.float32(threshold), np.float32(-np.inf)))
    for start in range(0, len(queries), batch):
        chunk = np.ascontiguousarray(queries[start : start + batch], dtype=np.float32)
        if params is None:
            lims, scores, ids = index.range_search(chunk, radius)
        else:
            lims, scores, ids = index.range_search(chunk, radius, params=params)
        for i, qid in enumerate(query_ids[start : start + batch]):
            for s, other in zip(scores[lims[i] : lims[i + 1]], ids[lims[i] : lims[i + 1]], strict=True):
                if other >= 0 and s >= threshold and other != qid:
                    yield int(qid), int(other)


def _knn_links(
    index: Any, spec: FaissSpec, queries: np.ndarray, query_ids: np.ndarray, threshold: float, batch: int
) -> Iterator[tuple[int, int]]:
    params = faiss_index.search_params(spec)
    for start in range(0, len(queries), batch):
        scores, ids = faiss_index.search(
            index, queries[start : start + batch], DUPLICATE_NEIGHBOURS, params=params
        )
        for qid, row_scores, row_ids in zip(query_ids[start : start + batch], scores, ids, strict=True):
            for s, other in zip(row_scores, row_ids, strict=True):
                if other >= 0 and s >= threshold and other != qid:
                    yield int(qid), int(other)
