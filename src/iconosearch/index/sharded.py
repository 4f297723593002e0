"""Sharded FAISS indexes: N sub-indexes that one engine searches and merges exactly (scatter-gather).

A version built with ``shards = N`` keeps its vectors in N FAISS files (``vectors.shard<i>.faiss``
beside the would-be ``vectors.faiss``), each holding about 1/N of the records under their own ids. They
are opened together as one ``faiss.IndexShards``: a search runs on every shard and
the per-shard top-k lists are merged by score, which is exact: the global top-k is always inside the
union of the shards' top-k. For approximate kinds every shard is cloned from one trained index (same
coarse quantiser and codebooks), so a query probes the same lists everywhere and scores are comparable.

When to shard rather than replicate (see README "Scaling"): replicas multiply *throughput* (each holds
the whole index); shards split one index that is too large to build or load as one piece — each shard
is built, written and read on its own, so the largest single allocation is 1/N of the index.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def _faiss() -> Any:
    import faiss

    return faiss


def is_sharded(index: Any) -> bool:
    return isinstance(index, _faiss().IndexShards)


def split(trained: Any, n: int) -> Any:
    """An empty ``IndexShards`` of ``n`` clones of ``trained`` (which must hold no vectors yet)."""
    if n < 1:
        raise ValueError(f"shards must be ≥ 1, got {n}")
    if trained.ntotal:
        raise ValueError("split() takes an empty trained index; add vectors after splitting")
    faiss = _faiss()
    return combine([faiss.clone_index(trained) for _ in range(n)], trained.d)


def combine(parts: list[Any], dim: int) -> Any:
    """One searchable ``IndexShards`` over ``parts``; it owns them from now on."""
    faiss = _faiss()
    # threaded=False: with threads, FAISS 1.15 returned ids outside an IDSelector's set (filtered searches
    # went wrong), and the engine runs FAISS on one thread per request anyway. successive_ids=False:
    # results keep the record ids each shard stores instead of being renumbered by shard offset.
    shards = faiss.IndexShards(dim, False, False)
    for part in parts:
        shards.add_shard(part)
        part.this.disown()
    shards.own_indices = True
    return shards


def parts(index: Any) -> list[Any]:
    """The sub-indexes of a sharded index (downcast to their concrete FAISS types)."""
    faiss = _faiss()
    return [faiss.downcast_index(index.at(i)) for i in range(index.count())]


def shard_paths(path: Path, n: int) -> list[Path]:
    """``vectors.faiss`` → ``vectors.shard0.faiss`` … ``vectors.shard<n-1>.faiss``."""
    return [path.with_name(f"{path.stem}.shard{i}{path.suffix}") for i in range(n)]


def read(path: Path, n: int) -> Any:
    faiss = _faiss()
    loaded = [faiss.read_index(str(p)) for p in shard_paths(path, n)]
    return combine(loaded, loaded[0].d)


def remove(index: Any, ids: np.ndarray) -> int:
    """Remove ``ids`` from whichever shards hold them (``IndexShards`` itself cannot remove)."""
    faiss = _faiss()
    selector = faiss.IDSelectorBatch(np.ascontiguousarray(ids, dtype=np.int64))
    removed = sum(int(part.remove_ids(selector)) for part in parts(index))
    index.syncWithSubIndexes()  # ntotal is cached in the IndexShards
    return removed
