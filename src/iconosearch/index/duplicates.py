"""Near-duplicate grouping: images whose unit vectors are nearly identical share a group label.

Rescans of one page, the same painting in two manifests, or a thumbnail of a full image end up in one
group, so search can show one hit per group with the others listed under it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from iconosearch.index import faiss_index
from iconosearch.index.faiss_index import FaissSpec

DUPLICATE_THRESHOLD = 0.97
"""Cosine at or above which two images count as the same picture (rescans, other manifests)."""
DUPLICATE_NEIGHBOURS = 16
"""Neighbours asked of a k-NN search for each vector's near-duplicates (HNSW and sharded indexes)."""


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
    vectors: np.ndarray,
    ids: np.ndarray,
    *,
    threshold: float,
    rows: np.ndarray | None = None,
    existing: Mapping[int, int] | None = None,
    batch: int = 4096,
) -> dict[int, int]:
    """Group labels (smallest id of each group) for the ``rows`` of ``vectors`` (all by default; ``ids``
    are every row's id in ``index``, which holds all of ``vectors``) and everything linked to them.

    Each of those vectors is linked to its indexed neighbours at cosine ≥ ``threshold``; ``existing``
    labels (id → label) are kept linked, so incremental updates merge into existing groups.
    """
    uf = _UnionFind()
    for iid, label in (existing or {}).items():
        uf.union(iid, label)
    rows = np.arange(len(ids)) if rows is None else np.asarray(rows, dtype=np.int64)
    lists = _ivf_lists(index, spec, ids)
    if lists is not None:
        # Blocks of at most 1,024 query rows: a long list's product stays ~4 MB per 1,000 members.
        visits = _second_lists(index, lists, vectors, rows, threshold)
        links = _list_links(lists, visits, vectors, ids, rows, threshold, min(batch, 1024))
    else:
        search = _range_links if _has_range_search(spec) else _knn_links
        links = search(index, spec, vectors[rows], ids[rows], threshold, batch)
    for qid, other in links:
        uf.union(qid, other)
    members = set((existing or {}).keys()) | {int(i) for i in ids[rows]}
    # Labels are the smallest *member* id of each group, so they are stable and meaningful.
    smallest: dict[int, int] = {}
    for iid in members:
        root = uf.find(iid)
        smallest[root] = min(smallest.get(root, iid), iid)
    return {iid: smallest[uf.find(iid)] for iid in members}


def _ivf_lists(index: Any, spec: FaissSpec, ids: np.ndarray) -> list[np.ndarray] | None:
    """The rows of ``ids`` in each inverted list of an unsharded IVF ``index``, as its add assigned them
    (``None`` for other kinds). A re-ranked index's lists hold rows already, in the order added."""
    if not spec.kind.startswith("ivf") or faiss_index.shard_count(spec) > 1:
        return None
    lists = faiss_index.ivf_lists(index)
    if faiss_index.refined(spec):
        return lists
    order = np.argsort(ids, kind="stable")
    return [order[np.searchsorted(ids, stored, sorter=order)] for stored in lists]


def _second_lists(
    index: Any,
    lists: list[np.ndarray],
    vectors: np.ndarray,
    rows: np.ndarray,
    threshold: float,
    chunk: int = 16_384,
) -> list[np.ndarray]:
    """Per inverted list, the ``rows`` that must also be compared with its members: those whose
    next-nearest list it is and that lie close enough to the boundary with their own list (the add's)
    for a near copy to be on the other side.

    A copy v of u (cosine ≥ t, so ‖u − v‖ ≤ √(2 − 2t)) can only sit in list B rather than u's list A if
    ⟨u, c_A⟩ − ⟨u, c_B⟩ < ‖u − v‖ · ‖c_A − c_B‖; rows further from the boundary visit nothing. The
    scores against the centroids are one BLAS product per chunk (FAISS's flat search took 5× longer)."""
    import faiss

    own = np.empty(len(vectors), dtype=np.int64)
    for lst, members in enumerate(lists):
        own[members] = lst
    quantizer = faiss.extract_index_ivf(index).quantizer
    centroids = quantizer.reconstruct_n(0, quantizer.ntotal)
    reach = math.sqrt(max(0.0, 2.0 - 2.0 * threshold)) + 0.01  # + float16 rounding of the stored rows
    visitors: list[np.ndarray] = []
    second: list[np.ndarray] = []
    for start in range(0, len(rows), chunk):
        part = rows[start : start + chunk]
        scores = np.ascontiguousarray(vectors[part], dtype=np.float32) @ centroids.T
        at = np.arange(len(part))
        mine = own[part]
        best_own = scores[at, mine].copy()
        scores[at, mine] = -np.inf
        other = scores.argmax(axis=1)
        gap = np.linalg.norm(centroids[mine] - centroids[other], axis=1)
        near = best_own - scores[at, other] < reach * gap
        visitors.append(part[near])
        second.append(other[near])
    found, towards = np.concatenate(visitors), np.concatenate(second)
    order = np.argsort(towards, kind="stable")
    bounds = np.searchsorted(towards[order], np.arange(len(lists) + 1))
    return [found[order[bounds[lst] : bounds[lst + 1]]] for lst in range(len(lists))]


def _list_links(
    lists: list[np.ndarray],
    visits: list[np.ndarray],
    vectors: np.ndarray,
    ids: np.ndarray,
    rows: np.ndarray,
    threshold: float,
    batch: int,
) -> Iterator[tuple[int, int]]:
    """``(id, other id)`` at cosine ≥ ``threshold``: each list's members against the asked rows among
    them and the asked rows visiting it (``visits``), by matrix products of the stored vectors (BLAS)
    instead of a range search per vector.

    Near-identical vectors fall in the same list, the one the build's add already chose for each, or
    across a boundary into each other's next-nearest list; so every row is compared with two lists, as
    the range search with 2 probes did (bench/build.py's vectors, 100k × 768, spread 1.5: the own list
    alone found 1,876 of its 1,973 links)."""
    wanted = np.zeros(len(ids), dtype=bool)
    wanted[rows] = True
    full = bool(wanted.all())
    for members, visitors in zip(lists, visits, strict=True):
        own = members[wanted[members]]
        asked = np.concatenate([own, visitors])
        if len(members) == 0 or len(asked) == 0:
            continue
        block = np.ascontiguousarray(vectors[members], dtype=np.float32)
        for start in range(0, len(asked), batch):
            part = asked[start : start + batch]
            queries = np.ascontiguousarray(vectors[part], dtype=np.float32)
            q_at, m_at = np.nonzero(queries @ block.T >= threshold)
            a, b = part[q_at], members[m_at]
            # A pair of members of a full build's list shows up twice (i, j and j, i): one is enough
            # to union them. A visitor is never a member, so all its pairs are kept.
            by_member = start + q_at < len(own)
            keep = np.where(by_member, (a < b) if full else (a != b), True)
            for x, y in zip(ids[a[keep]], ids[b[keep]], strict=True):
                yield int(x), int(y)


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
