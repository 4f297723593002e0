"""FAISS index choice, building, tuning and searching (inner product on unit vectors = cosine).

Choice by size and memory budget (overridable with ``kind``):

- ``flat``: exact search (``IndexIDMap2(IndexFlatIP)``) up to ``exact_max`` (20k) vectors — 10k × 512
  takes ~1 ms a query on one thread, 100k × 512 ~16 ms, and exact is always right.
- ``ivf-sq8`` or ``ivf-pq`` beyond, over ``nlist ≈ √n`` lists (``nlist_for``; a power of two; the
  in-memory and the streamed builder share it), k-means trained on a sample of ``40·nlist`` vectors
  (streamed: 30·nlist); ``nprobe`` is then raised until recall@10 against exact search on sample
  queries reaches the target, and that measured recall goes into the manifest.
  **Which of the two is latency-aware** (``ivf_kind``): an ``ivf-sq8`` query scans
  nprobe·n/nlist codes of ``dim`` bytes, at ~1.7 GB/s on one core of this box, so it is chosen only
  while that scan, estimated with the nprobe tuning typically lands on (``EXPECTED_PROBES`` 48),
  stays under ``SQ8_SCAN_MAX_BYTES`` (8 MiB, ~5 ms), and while its codes fit the memory budget.
  Past either, PQ re-ranked by SQ8 (below) scans fewer bytes a vector instead: ``ivf-pq`` when the
  budget is the reason (dim/8 bytes), fast-scan ``ivf-pqfs`` when speed is (dim/4). Measured with
  bench/search.py's vectors, 200k × 768, 512 lists, one thread, load ~6 (``--kind`` rows in
  docs/performance.md): SQ8 nprobe 48, recall@10 0.979, p50 8.6 ms; PQ (96 bytes) + SQ8 re-ranking
  nprobe 48, recall@10 0.976, p50 1.5 ms (2.6 ms for the top 50). At 1M × 768 SQ8 scans ~62,500 codes
  (48 MB): 27–32 ms a query, which no serving target survives. PQ is chosen for speed only where it
  keeps the recall: with dim/8 sub-quantisers of 8 dims each, and at least ``MIN_PQ_SUBQUANTIZERS``
  (32) of them. Fewer stop short after re-ranking (768 dims with 48 sub-quantisers: recall@10 0.946
  with every list probed; 64 dims with 8: 0.70), so 64-dim crop indexes stay ``ivf-sq8`` at any size
  that fits. ``ivf-flat`` (4× SQ8's memory traffic) only on request. SQ8 scores are within ~1e-3.
- ``ivf-pq`` is re-ranked (``params["refine"] = "sq8"``): the PQ codes (``m`` bytes, ~dim/8) only pick a
  shortlist of ``k_factor`` × k candidates, which FAISS's ``IndexRefine`` re-scores with 8-bit scalar
  codes, so recall is that of SQ8 (PQ codes alone stopped at recall@10 0.87 at 1M × 256, however many
  lists were probed). The SQ8 codes are memory-mapped from the index file (``IO_FLAG_MMAP_IFC``), not
  loaded: only the candidates' rows are read, so the memory budget covers the PQ codes and two 8-byte
  ids a vector (the IVF's row id, and the ``IndexIDMap``'s record id), and the SQ8 codes (dim bytes a
  vector) live on disk and in the page cache. A refined index cannot remove vectors (the builder
  rebuilds it from the stored vectors instead, as for HNSW) and is not split into shards (a filter's
  record ids are translated to rows per index). Measured at 1M × 256: README "Scaling".
- ``ivf-pqfs``: ``ivf-pq`` (same re-ranking rules) with 4-bit codes of dim/2 sub-quantisers scanned by
  FAISS's SIMD fast-scan kernels: chosen instead of ``ivf-pq`` for speed where it fits (``ivf_kind``,
  ``fast_scan_params``: half the FAISS time at 1M × 768) and for crops (``regions.crop_kind``).
- ``hnsw``: HNSW graph (``IndexHNSWFlat``, M=32) on request; updates rebuild it (it cannot delete).

All indexes carry the stable 64-bit record ids (``records.id_to_int64``) as FAISS ids. Any kind can be
split into ``shards`` (``params["shards"]``), searched and merged exactly as one: see ``index.sharded``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from iconosearch.index import sharded

KINDS = ("flat", "ivf-flat", "ivf-sq8", "ivf-pq", "ivf-pqfs", "hnsw")
DEFAULT_EXACT_MAX = 20_000
DEFAULT_MEMORY_BUDGET = 8 * 1024**3
DEFAULT_RECALL_TARGET = 0.95
RECALL_MARGIN = 0.01
PLATEAU_GAIN = 0.005
"""Tuning settles below target where 4× the probes gained less recall than this: the codes limit it."""
REFINE_K_FACTOR = 32
"""Shortlist length per result re-ranked by an ``ivf-pq`` index's SQ8 codes. Chosen on clustered
vectors with ~5,000 neighbours per cluster (the density of 10M synthetic vectors): PQ at dim/8 bytes
reached recall@10 0.82 / 0.91 / 0.96 with 8 / 16 / 32 candidates per result (a one-off run of
bench/scale.py's generator, 200k vectors in 41 clusters, all lists probed); at 1M the bench measured
0.944 / 0.951 with 16 / 32 at nprobe 16."""
IVF_ID_BYTES = 8
"""An IVF vector's int64 record id in its inverted list."""
REFINED_ID_BYTES = 16
"""A re-ranked vector's two ids in RAM: the IVF list's row number and the ``IndexIDMap``'s record id."""


def _faiss() -> Any:
    import faiss

    return faiss


@dataclass(frozen=True, slots=True)
class FaissSpec:
    """How to build (and search) one FAISS index."""

    kind: str
    params: dict[str, Any] = field(default_factory=dict)


def choose_spec(
    n: int,
    dim: int,
    *,
    kind: str | None = None,
    exact_max: int = DEFAULT_EXACT_MAX,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    shards: int = 1,
) -> FaissSpec:
    """The index for ``n`` vectors of ``dim`` floats under ``memory_budget`` bytes, in ``shards``."""
    spec = _choose_kind(n, dim, kind=kind, exact_max=exact_max, memory_budget=memory_budget, shards=shards)
    if shards < 1:
        raise ValueError(f"shards must be ≥ 1, got {shards}")
    return with_shards(spec, shards)


def with_shards(spec: FaissSpec, shards: int) -> FaissSpec:
    """``spec`` split into ``shards`` (> 1), without re-ranking (see module doc)."""
    if shards == 1:
        return spec
    if spec.kind == "ivf-pqfs":  # its 4-bit codes alone stop far short (recall@10 0.47 on test data)
        raise ValueError("ivf-pqfs is re-ranked, and re-ranked indexes are not split into shards")
    params = {k: v for k, v in spec.params.items() if k not in REFINE_PARAMS}
    return FaissSpec(spec.kind, {**params, "shards": shards})


def shard_count(spec: FaissSpec) -> int:
    return int(spec.params.get("shards", 1))


def _choose_kind(
    n: int, dim: int, *, kind: str | None, exact_max: int, memory_budget: int, shards: int
) -> FaissSpec:
    if kind is not None and kind not in KINDS:
        raise ValueError(f"unknown FAISS index kind {kind!r}; choose one of {', '.join(KINDS)}")
    if kind is None:
        kind = "flat" if n <= exact_max else ivf_kind(n, dim, memory_budget=memory_budget, shards=shards)
    if kind == "flat":
        return FaissSpec("flat")
    if kind == "hnsw":
        return FaissSpec("hnsw", {"M": 32, "efConstruction": 80, "efSearch": 64})
    return ivf_spec(kind, n, dim, memory_budget=memory_budget)


TRAIN_PER_LIST = 30
"""k-means training points per list at the least: FAISS warns below 39 but its centroids are stable
from ~30 (the in-memory builder trains on more, ``build``; the streamed one on exactly this many)."""
EXPECTED_PROBES = 48
"""The nprobe tuning typically lands on with √n lists (bench/search.py's vectors: 48 of 512 at 200k,
64 of 1,024 at 1M), to estimate what an ``ivf-sq8`` query scans."""
SQ8_SCAN_MAX_BYTES = 8 * 1024**2
"""The most SQ8 code bytes one query may be expected to scan before ``ivf-pq`` with SQ8 re-ranking is
chosen instead (see module doc): 8 MiB take ~5 ms on one core of the 2-core box (48 MB took 27–32 ms)."""
MIN_PQ_SUBQUANTIZERS = 32
"""PQ is only chosen for speed where dim/8 sub-quantisers are at least this many: 32 (256 dims)
reached recall@10 0.95 after re-ranking at 1M, 8 (64 dims) stopped at 0.70 with every list probed."""


def nlist_for(n: int) -> int:
    """Inverted lists for ``n`` vectors: ≈ √n, a power of two, 16 to 65,536, ≥ ``TRAIN_PER_LIST``
    training points each. Training costs sample × nlist and adding n × nlist dot products, so √n
    lists (rather than 4·√n) make a 1M build's training 16× and its assignment 4× cheaper; nprobe
    tuning then probes proportionally fewer, longer lists for the same recall."""
    nlist = int(2 ** round(math.log2(max(math.sqrt(max(n, 1)), 16.0))))
    return max(16, min(nlist, 65536, max(16, n // TRAIN_PER_LIST)))


def sq8_scan_bytes(n: int, dim: int) -> int:
    """The SQ8 code bytes one query of an ``ivf-sq8`` index of ``n`` × ``dim`` is expected to scan."""
    return EXPECTED_PROBES * math.ceil(n / nlist_for(n)) * dim


def ivf_kind(n: int, dim: int, *, memory_budget: int, shards: int = 1) -> str:
    """``ivf-sq8``, ``ivf-pqfs`` or ``ivf-pq`` for ``n`` vectors of ``dim`` dims (see module doc): PQ when
    SQ8's codes, ids and centroids miss ``memory_budget`` (``ivf-pq``: the smallest codes), or when its
    expected scan per query exceeds ``SQ8_SCAN_MAX_BYTES`` and PQ has enough sub-quantisers to keep the
    recall: then fast-scan codes (dim/4 bytes, fitting wherever SQ8's dim bytes do), unless the index is
    split into shards."""
    if n * (dim + IVF_ID_BYTES) + nlist_for(n) * dim * 4 > memory_budget:
        return "ivf-pq"
    if sq8_scan_bytes(n, dim) > SQ8_SCAN_MAX_BYTES and dim // 8 >= MIN_PQ_SUBQUANTIZERS:
        return "ivf-pqfs" if shards == 1 else "ivf-pq"
    return "ivf-sq8"


def ivf_spec(kind: str, n: int, dim: int, *, memory_budget: int) -> FaissSpec:
    """The ``kind`` IVF spec for ``n`` × ``dim``: lists, starting nprobe and, for ``ivf-pq``, the PQ
    codes that fit ``memory_budget`` with the re-ranking parameters (``ValueError`` if none fit)."""
    nlist = nlist_for(n)
    params: dict[str, Any] = {"nlist": nlist, "nprobe": min(8, nlist)}
    if kind == "ivf-pqfs":
        return FaissSpec(kind, {**params, **fast_scan_params(dim)})
    if kind != "ivf-pq":
        return FaissSpec(kind, params)
    pq = pq_params((memory_budget - nlist * dim * 4) / max(n, 1) - REFINED_ID_BYTES, dim)
    if pq is None:
        need = (REFINED_ID_BYTES + 1) * n + nlist * dim * 4
        raise ValueError(
            f"{n} vectors of {dim} dims need at least {need / 1024**3:.2f} GiB as IVF-PQ; "
            f"the memory budget is {memory_budget / 1024**3:.2f} GiB"
        )
    return FaissSpec(kind, {**params, **pq, **REFINE_PARAMS})


REFINE_PARAMS: dict[str, Any] = {"refine": "sq8", "k_factor": REFINE_K_FACTOR}


FAST_SCAN_K_FACTOR = 256
"""``ivf-pqfs`` shortlist per result at k=10 (tuning's depth); recall follows the shortlist's length:
2.6M crops × 64 dims, 2,048 lists, noisy sample queries: recall@10 0.924 / 0.948 / 0.962 with 640 /
1,280 / 2,560 candidates (all lists probed); 0.961 at nprobe 256 with 2,560 (SQ8: 0.961 at 128)."""
PAGE_SHORTLIST = 1024
"""Candidates a whole-image ``ivf-pqfs`` search re-ranks at most (``shortlist_max``; never under twice
its depth). A first page searches 64 deep: 1M × 768, 100 text queries, one thread, nprobe 48: 2,048
candidates (32 a result) took 3.05 ms and 1,024 took 2.26 ms, with the same recall@24."""
FAST_SCAN_SHORTLIST = 2560
"""Candidates an ``ivf-pqfs`` search of any depth re-ranks (``shortlist_max``): tuning's shortlist."""


def fast_scan_params(dim: int) -> dict[str, Any]:
    """``ivf-pqfs`` for ``dim`` (even) dims: dim/2 4-bit sub-quantisers (16 for 64 dims: recall@10 0.74).
    Where ``ivf-pq`` would keep the recall (dim/8 ≥ ``MIN_PQ_SUBQUANTIZERS``) its shortlist serves, as
    these codes are twice as fine (2·dim bits against dim): at 1M × 768, nprobe 64 of 1,024, recall@24
    was 0.973 with 32, 64 or 128 candidates a result, in 2.5 / 3.0 / 4.3 ms (``ivf-pq``: 0.966, 5.2 ms),
    held to ``PAGE_SHORTLIST`` candidates in all.
    Fewer dims (the crops) re-rank the long shortlist of ``FAST_SCAN_K_FACTOR``."""
    if dim < 2 or dim % 2:
        raise ValueError(f"ivf-pqfs needs an even number of dimensions, got {dim}")
    if dim // 8 >= MIN_PQ_SUBQUANTIZERS:
        return {"m": dim // 2, **REFINE_PARAMS, "shortlist_max": PAGE_SHORTLIST}
    return {
        "m": dim // 2,
        "refine": "sq8",
        "k_factor": FAST_SCAN_K_FACTOR,
        "shortlist_max": FAST_SCAN_SHORTLIST,
    }


def pq_params(code_bytes: float, dim: int) -> dict[str, Any] | None:
    """PQ sub-quantisers (8 bits each) for shortlist codes of at most ``code_bytes`` a vector, at most
    dim/8 of them (finer codes cost scan time, and the SQ8 re-ranking decides the order anyway);
    ``None`` when not even one fits."""
    fitting = [m for m in range(1, max(1, dim // 8) + 1) if dim % m == 0 and m <= code_bytes]
    return {"m": max(fitting)} if fitting else None


def refined(spec: FaissSpec) -> bool:
    """Whether ``spec``'s index re-ranks a PQ shortlist (see module doc)."""
    return spec.params.get("refine") is not None


def removable(spec: FaissSpec) -> bool:
    """Whether vectors can be removed from a built ``spec`` index in place (else: rebuild)."""
    return spec.kind != "hnsw" and not refined(spec)


def _new_index(spec: FaissSpec, dim: int) -> Any:
    faiss = _faiss()
    ip = faiss.METRIC_INNER_PRODUCT
    if spec.kind == "flat":
        return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
    if spec.kind == "hnsw":
        hnsw = faiss.IndexHNSWFlat(dim, int(spec.params["M"]), ip)
        hnsw.hnsw.efConstruction = int(spec.params["efConstruction"])
        hnsw.hnsw.efSearch = int(spec.params["efSearch"])
        return faiss.IndexIDMap2(hnsw)
    nlist = int(spec.params["nlist"])
    quantizer = faiss.IndexFlatIP(dim)
    if spec.kind == "ivf-flat":
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, ip)
    elif spec.kind == "ivf-sq8":
        index = faiss.IndexIVFScalarQuantizer(quantizer, dim, nlist, faiss.ScalarQuantizer.QT_8bit, ip)
    elif spec.kind == "ivf-pq":
        index = faiss.IndexIVFPQ(quantizer, dim, nlist, int(spec.params["m"]), 8, ip)
    elif spec.kind == "ivf-pqfs":
        index = faiss.IndexIVFPQFastScan(quantizer, dim, nlist, int(spec.params["m"]), 4, ip)
    else:  # pragma: no cover - choose_spec validated the kind
        raise ValueError(spec.kind)
    index.own_fields = True
    quantizer.this.disown()
    if not refined(spec):
        return index
    # IndexRefine looks its candidates up by row, so the IVF stores rows and IndexIDMap the record ids.
    codes = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_8bit, ip)
    refine = faiss.IndexRefine(index, codes)
    refine.own_fields = True
    refine.k_factor = float(spec.params["k_factor"])
    for part in (index, codes):
        part.this.disown()
    mapped = faiss.IndexIDMap(refine)
    mapped.own_fields = True
    refine.this.disown()
    return mapped


def build(vectors: np.ndarray, ids: np.ndarray, spec: FaissSpec, *, seed: int = 0) -> Any:
    """A trained FAISS index holding ``vectors`` (unit rows, float32 or the stored float16) under ``ids``
    (int64); rows are converted to float32 a batch at a time, never all at once."""
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    dim = vectors.shape[1]
    nlist = int(spec.params.get("nlist", 1))
    n_train = min(len(vectors), max(40 * nlist, 10_000))
    rng = np.random.default_rng(seed)
    index = new_trained(spec, dim, vectors[np.sort(rng.choice(len(vectors), n_train, replace=False))])
    add(index, vectors, ids)
    set_search_params(index, spec)
    return index


def new_trained(spec: FaissSpec, dim: int, sample: np.ndarray) -> Any:
    """An empty index of ``spec`` (split into its shards), its quantiser trained on ``sample``."""
    index = _new_index(spec, dim)
    if not index.is_trained:
        # 10 k-means iterations instead of FAISS's 25, for the lists and a PQ's codebooks alike: the
        # centroids barely move after that, nprobe tuning meets the recall target anyway, and training
        # is the slowest step of a build (100k × 768, PQ of 96 bytes: 66 s with 25 iterations).
        ivf = _faiss().extract_index_ivf(index)
        ivf.cp.niter = 10
        if spec.kind in ("ivf-pq", "ivf-pqfs"):
            _faiss().downcast_index(ivf).pq.cp.niter = 10
        index.train(np.ascontiguousarray(sample, dtype=np.float32))
    return sharded.split(index, shard_count(spec)) if shard_count(spec) > 1 else index


def add(index: Any, vectors: np.ndarray, ids: np.ndarray, *, batch: int = 65536) -> None:
    for start in range(0, len(vectors), batch):
        index.add_with_ids(
            np.ascontiguousarray(vectors[start : start + batch], dtype=np.float32),
            np.ascontiguousarray(ids[start : start + batch], dtype=np.int64),
        )


def remove(index: Any, ids: np.ndarray) -> int:
    """Remove ids; returns how many went. HNSW cannot remove (the builder rebuilds it instead)."""
    faiss = _faiss()
    if len(ids) == 0:
        return 0
    if sharded.is_sharded(index):
        return sharded.remove(index, ids)
    return int(index.remove_ids(faiss.IDSelectorBatch(np.ascontiguousarray(ids, dtype=np.int64))))


def set_search_params(index: Any, spec: FaissSpec) -> None:
    faiss = _faiss()
    if sharded.is_sharded(index):
        for part in sharded.parts(index):
            set_search_params(part, spec)
    elif spec.kind.startswith("ivf"):
        faiss.extract_index_ivf(index).nprobe = int(spec.params["nprobe"])
        if refined(spec):
            faiss.downcast_index(index.index).k_factor = float(spec.params["k_factor"])
    elif spec.kind == "hnsw":
        faiss.downcast_index(index.index).hnsw.efSearch = int(spec.params["efSearch"])


def search_params(spec: FaissSpec, *, selector: Any = None, fraction: float = 1.0, depth: int = 10) -> Any:
    """FAISS search parameters for one search ``depth`` deep; with a selector keeping ``fraction`` of the
    vectors, IVF probes proportionally more lists (else selective filters would come back short of k)."""
    faiss = _faiss()
    if spec.kind.startswith("ivf"):
        nlist = int(spec.params["nlist"])
        nprobe = int(spec.params["nprobe"])
        if fraction < 1.0:
            nprobe = min(nlist, math.ceil(nprobe / max(fraction, 1e-9)))
        ivf = faiss.SearchParametersIVF(nprobe=nprobe, sel=selector)
        if not refined(spec):
            return ivf
        k_factor = float(spec.params["k_factor"])
        if "shortlist_max" in spec.params:  # at most that many candidates (see fast_scan_params)
            k_factor = min(k_factor, max(2.0, float(spec.params["shortlist_max"]) / depth))
        # kwargs, not attributes: FAISS's wrapper then keeps the sub-objects alive with the parameters.
        return faiss.IndexRefineSearchParameters(k_factor=k_factor, base_index_params=ivf)
    if spec.kind == "hnsw":
        ef = int(spec.params["efSearch"])
        if fraction < 1.0:
            ef = min(4096, math.ceil(ef / max(fraction, 1e-9)))
        return faiss.SearchParametersHNSW(efSearch=ef, sel=selector)
    return faiss.SearchParameters(sel=selector) if selector is not None else None


def search(index: Any, queries: np.ndarray, k: int, *, params: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """``(scores, ids)`` of shape (nq, k'); missing results (id -1) are dropped per row by callers."""
    queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, index.d)
    k = max(1, min(k, max(index.ntotal, 1)))
    if params is None:
        scores, ids = index.search(queries, k)
    else:
        scores, ids = index.search(queries, k, params=params)
    return _cosines(scores), ids


def exact_knn(
    vectors: np.ndarray, queries: np.ndarray, k: int, *, chunk: int = 65_536
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k by inner product: ``(scores, row indices)``. ``vectors`` are scanned ``chunk`` rows at a
    time (converted to float32 per chunk), so float16 stored vectors are never copied whole."""
    faiss = _faiss()
    q = np.ascontiguousarray(queries, dtype=np.float32)
    k = min(k, len(vectors))
    best_s: np.ndarray | None = None
    best_r: np.ndarray | None = None
    for start in range(0, len(vectors), chunk):
        part = np.ascontiguousarray(vectors[start : start + chunk], dtype=np.float32)
        s, r = faiss.knn(q, part, min(k, len(part)), metric=faiss.METRIC_INNER_PRODUCT)
        r = np.where(r >= 0, r + start, -1)
        if best_s is None or best_r is None:
            best_s, best_r = s, r
            continue
        # Merge with the best so far: stable sort on descending score keeps FAISS's order among ties.
        all_s, all_r = np.hstack([best_s, s]), np.hstack([best_r, r])
        order = np.argsort(-all_s, axis=1, kind="stable")[:, :k]
        best_s, best_r = np.take_along_axis(all_s, order, 1), np.take_along_axis(all_r, order, 1)
    if best_s is None or best_r is None:
        return np.empty((len(q), 0), np.float32), np.empty((len(q), 0), np.int64)
    return _cosines(best_s), best_r


def _cosines(scores: np.ndarray) -> np.ndarray:
    """Inner products of unit vectors are cosines, in [-1, 1]; float32 rounding can overshoot by an ulp
    or so (an image queried as itself scores 1.0000001), which would break every consumer's range check.

    Only that rounding is clipped: a score far outside (2.8e37, NaN) means a damaged index, and is left
    as it is for the engine's sanity check (``index.verify.scores_are_sane``) to catch."""
    from iconosearch.index.verify import SCORE_TOLERANCE

    rounding = np.abs(scores) <= 1.0 + SCORE_TOLERANCE
    return np.where(rounding, np.clip(scores, -1.0, 1.0), scores)


def sample_queries(vectors: np.ndarray, n: int = 200, *, noise: float = 0.5, seed: int = 1) -> np.ndarray:
    """Held-out-like queries: random stored vectors moved off the data by Gaussian noise and renormalised
    (``noise`` is the noise norm relative to the unit vector), so recall is not measured on exact hits."""
    rng = np.random.default_rng(seed)
    picks = vectors[rng.choice(len(vectors), min(n, len(vectors)), replace=False)].astype(np.float32)
    jitter = rng.standard_normal(picks.shape).astype(np.float32)
    jitter *= noise / np.linalg.norm(jitter, axis=1, keepdims=True)
    q = picks + jitter
    result: np.ndarray = q / np.linalg.norm(q, axis=1, keepdims=True)
    return result


def recall_at_k(approx_ids: np.ndarray, exact_ids: np.ndarray, k: int = 10) -> float:
    """Mean fraction of the exact top-k found in the approximate top-k."""
    hits = 0
    for a, e in zip(approx_ids[:, :k], exact_ids[:, :k], strict=True):
        hits += len(set(a.tolist()) & set(e.tolist()))
    return hits / float(exact_ids[:, :k].size)


def measure_recall(
    index: Any, vectors: np.ndarray, ids: np.ndarray, queries: np.ndarray, spec: FaissSpec, k: int = 10
) -> float:
    """Recall@k of ``index`` (as ``spec`` searches it) against exact search over ``vectors``."""
    _, rows = exact_knn(vectors, queries, k)
    exact_ids = ids[rows]
    _, approx = search(index, queries, k, params=search_params(spec))
    return recall_at_k(approx, exact_ids, k)


def tune(
    index: Any,
    vectors: np.ndarray,
    ids: np.ndarray,
    spec: FaissSpec,
    *,
    target: float = DEFAULT_RECALL_TARGET,
    n_queries: int = 200,
    text_queries: Callable[[], np.ndarray] | None = None,
) -> tuple[FaissSpec, float | None]:
    """Raise nprobe (IVF) or efSearch (HNSW) until measured recall@10 reaches ``target`` + a margin, or
    stops rising (``PLATEAU_GAIN``: past 1/16 of the lists, over a 4× range, since clustered data rises
    slowly between flat stretches: 1M × 768 in 2,000 clusters gained < 0.005 from 8 to 16 probes of 1,024).

    The queries are stored vectors moved off by noise and, when ``text_queries`` makes some (text
    vectors, asked only for an approximate index), those too: the recall is the lower of the two sets'.
    Text queries sit across the modality gap from every image, so their neighbours spread over more
    lists: 16.7k real heritage and clip-art images, the default model, 128 lists: tuned on images alone,
    8 probes gave held-out titles recall@10 0.811 (noisy images 0.974); with 200 titles, 64 gave 0.977.

    The margin (``RECALL_MARGIN``) covers sampling noise. Returns the spec and its recall (exact: None).
    """
    if spec.kind == "flat":
        return spec, None
    queries = sample_queries(vectors, n_queries)
    _, rows = exact_knn(vectors, queries, 10)
    also = []
    if text_queries is not None and len(texts := text_queries()):
        _, text_rows = exact_knn(vectors, texts, 10)
        also.append((texts, ids[text_rows]))
    return tune_against(index, spec, queries, ids[rows], target=target, also=also)


def tune_against(
    index: Any,
    spec: FaissSpec,
    queries: np.ndarray,
    exact_ids: np.ndarray,
    *,
    target: float,
    also: Sequence[tuple[np.ndarray, np.ndarray]] = (),
) -> tuple[FaissSpec, float]:
    """:func:`tune` against a known exact top 10 of ``queries`` (a streamed build merges it batch by
    batch, never holding all vectors), and of each further ``(queries, exact ids)`` set in ``also``:
    every set must reach the target."""
    key, limit = ("nprobe", int(spec.params["nlist"])) if spec.kind.startswith("ivf") else ("efSearch", 4096)
    value, seen = int(spec.params[key]), list[tuple[int, float]]()
    sets = [(queries, exact_ids), *also]
    while True:
        tuned = FaissSpec(spec.kind, {**spec.params, key: value})
        params = search_params(tuned)
        recall = min(recall_at_k(search(index, q, 10, params=params)[1], e, 10) for q, e in sets)
        low = next(((v, r) for v, r in reversed(seen) if 4 * v <= value), None)
        if recall < target and 16 * value >= limit and low is not None and recall - low[1] < PLATEAU_GAIN:
            tuned, recall = FaissSpec(spec.kind, {**spec.params, key: low[0]}), low[1]
        if recall >= min(1.0, target + RECALL_MARGIN) or value >= limit or tuned.params[key] != value:
            set_search_params(index, tuned)
            return tuned, round(recall, 4)
        seen.append((value, recall))
        # 8, 12, 16, 24, 32, 48, 64, 96, 128, 192…: fine enough not to overshoot the target by 2×.
        value = min(limit, max(value + 1, value * 3 // 2 if value & (value - 1) == 0 else value * 4 // 3))


def write(index: Any, path: Path) -> None:
    """Write ``index`` (a sharded one as one file per shard) through Python files, so that a full disk
    raises ``OSError(ENOSPC)`` naming the file (FAISS's own writer raises a ``RuntimeError`` about a
    failed C++ assertion instead)."""
    faiss = _faiss()
    if sharded.is_sharded(index):
        pairs = list(zip(sharded.parts(index), sharded.shard_paths(path, index.count()), strict=True))
    else:
        pairs = [(index, path)]
    for part, part_path in pairs:
        with part_path.open("wb") as fh:
            faiss.write_index(part, faiss.PyCallbackIOWriter(fh.write))


def read(path: Path, spec: FaissSpec) -> Any:
    n = shard_count(spec)
    faiss = _faiss()
    flags = faiss.IO_FLAG_MMAP_IFC if refined(spec) else 0  # re-ranking codes stay on disk
    index = sharded.read(path, n) if n > 1 else faiss.read_index(str(path), flags)
    set_search_params(index, spec)
    return index


def ids_of(index: Any) -> np.ndarray:
    """All FAISS ids stored in ``index`` (for the consistency check)."""
    faiss = _faiss()
    if sharded.is_sharded(index):
        found = [ids_of(part) for part in sharded.parts(index)]
        return np.concatenate(found) if found else np.empty(0, dtype=np.int64)
    if isinstance(index, faiss.IndexIDMap) or hasattr(index, "id_map"):
        return faiss.vector_to_array(index.id_map).astype(np.int64)
    found = [stored for stored in ivf_lists(index) if len(stored)]
    return np.concatenate(found) if found else np.empty(0, dtype=np.int64)


def ivf_lists(index: Any) -> list[np.ndarray]:
    """What each inverted list of an unsharded IVF ``index`` stores, in list order: record ids, or for a
    re-ranked index the rows its ``IndexIDMap`` maps to record ids."""
    faiss = _faiss()
    invlists = faiss.extract_index_ivf(index).invlists
    out: list[np.ndarray] = []
    for lst in range(invlists.nlist):
        size = invlists.list_size(lst)
        if not size:
            out.append(np.empty(0, dtype=np.int64))
            continue
        ptr = invlists.get_ids(lst)
        out.append(faiss.rev_swig_ptr(ptr, size).astype(np.int64).copy())
        invlists.release_ids(lst, ptr)
    return out
