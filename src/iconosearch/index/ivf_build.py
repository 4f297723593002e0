"""Building IVF indexes larger than memory allows for their float vectors: train on a sample, stream the rest.

The in-memory version writer (``index.versions``) holds every float vector; at 10M × 256 dims that is 10 GB.
Here the coarse quantiser (and PQ codebooks) are trained on a sample, then vectors arrive in batches
and are encoded as they are added, so the process holds one batch plus the compressed index.

The index is the in-memory builder's choice (``faiss_index.ivf_kind`` and ``ivf_spec``: √n lists;
``ivf-sq8`` while its codes fit the RAM budget for the *built* index and its scan per query stays fast,
else ``ivf-pq`` re-ranked by SQ8 codes memory-mapped from disk); the RAM counted is the codes, the ids
and the coarse centroids. Measured numbers: ``bench/scale.py``, ``bench/search.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from iconosearch.index import faiss_index, sharded
from iconosearch.index.faiss_index import FaissSpec

TRAIN_PER_LIST = faiss_index.TRAIN_PER_LIST
GRAPH_ASSIGN_MIN_LISTS = 1024
"""From this many lists on, streamed adds find each vector's list through an HNSW graph over the
centroids instead of comparing it with all of them (see :func:`graph_assignment`)."""
GRAPH_ASSIGN_EF = 32
"""HNSW search breadth for assignment: at 4,096 lists × 256 dims it picks the nearest centroid for
98.7 % of vectors (the rest go to a near-nearest list, which the probes of a query near them visit
anyway) at half the CPU of the exhaustive comparison (``bench/scale.py`` probe, 20k vectors)."""


def plan(n: int, dim: int, *, memory_budget: int, shards: int = 1) -> FaissSpec:
    """The IVF index for ``n`` vectors of ``dim`` dims whose built size fits ``memory_budget`` bytes:
    the in-memory builder's choice (``faiss_index.ivf_kind``, ``faiss_index.ivf_spec``)."""
    if n < 1 or dim < 1:
        raise ValueError(f"need at least one vector and one dimension, got n={n}, dim={dim}")
    kind = faiss_index.ivf_kind(n, dim, memory_budget=memory_budget, shards=shards)
    return faiss_index.with_shards(faiss_index.ivf_spec(kind, n, dim, memory_budget=memory_budget), shards)


def bytes_per_vector(spec: FaissSpec, dim: int) -> int:
    """RAM of one stored vector in the built index (codes + ids), without the centroids; a re-ranked
    IVF-PQ's SQ8 codes (``dim`` bytes a vector) are memory-mapped from disk and not counted."""
    m = int(spec.params.get("m", 0))
    code = {"ivf-sq8": dim, "ivf-pq": m, "ivf-pqfs": (m + 1) // 2}.get(spec.kind, 4 * dim)  # 4-bit codes
    return code + (faiss_index.REFINED_ID_BYTES if faiss_index.refined(spec) else faiss_index.IVF_ID_BYTES)


def train_size(spec: FaissSpec) -> int:
    """How many sample vectors :func:`build_streaming` trains on."""
    return TRAIN_PER_LIST * int(spec.params["nlist"])


def build_streaming(
    spec: FaissSpec,
    sample: np.ndarray,
    batches: Iterable[tuple[np.ndarray, np.ndarray]],
    *,
    progress: Callable[[int], None] | None = None,
) -> Any:
    """A trained ``spec`` index with every ``(vectors, ids)`` batch added, never holding more than one.

    ``sample`` (unit rows, ideally a uniform sample of the collection, ``train_size(spec)`` of them) trains
    the quantiser; ``batches`` yields unit-row float32 vectors and their int64 ids. ``progress(added)``
    is called after each batch.
    """
    if not spec.kind.startswith("ivf"):
        raise ValueError(f"streaming builds are for IVF kinds, not {spec.kind!r}")
    sample = np.ascontiguousarray(sample, dtype=np.float32)
    index = faiss_index.new_trained(spec, sample.shape[1], sample)
    added = 0
    with graph_assignment(index):
        for vectors, ids in batches:
            if len(vectors) != len(ids):
                raise ValueError(f"a batch has {len(vectors)} vectors but {len(ids)} ids")
            faiss_index.add(index, vectors, ids)
            added += len(ids)
            if progress is not None:
                progress(added)
    faiss_index.set_search_params(index, spec)
    return index


@contextmanager
def graph_assignment(index: Any) -> Iterator[None]:
    """While inside, vectors added to ``index`` (one unsharded IVF index of at least
    ``GRAPH_ASSIGN_MIN_LISTS`` lists; others are left alone) find their list through an HNSW graph
    over its centroids. Assigning each vector to the nearest of nlist centroids is most of the CPU of a
    big build (10M × 4,096 × 256 multiply-adds at 10M); the graph visits a few hundred. The flat
    quantiser is put back on the way out, so the written index and every search are unchanged."""
    import faiss

    ivf = None if sharded.is_sharded(index) else faiss.try_extract_index_ivf(index)
    if ivf is None or ivf.nlist < GRAPH_ASSIGN_MIN_LISTS:
        yield
        return
    flat = ivf.quantizer
    graph = faiss.IndexHNSWFlat(ivf.d, 32, ivf.metric_type)
    graph.hnsw.efSearch = GRAPH_ASSIGN_EF
    graph.add(flat.reconstruct_n(0, flat.ntotal))
    ivf.quantizer = graph  # not owned by the IVF: ``graph`` (Python) frees it after the swap back
    try:
        yield
    finally:
        ivf.quantizer = flat
