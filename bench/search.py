"""FAISS search speed and quality at 10k / 100k (/ 1M) synthetic vectors of 256 and 512 dims; prints JSON.

Per (n, dim), for the index ``faiss_index.choose_spec`` picks (exact ``flat`` up to 20k vectors, then
``ivf-sq8`` or, where its scan per query would be slow, ``ivf-pq`` re-ranked by SQ8; nprobe tuned to
recall@10 ≥ 0.95 as the builder does; ``--kind`` forces one) and for exact search:

- ``build_s`` (train + add + tune), ``bytes_per_vector`` (serialised index / n);
- ``single_ms`` p50/p99 (one query at a time, one thread) and ``batch_ms_per_query`` (all queries in
  one call, ``--threads`` threads);
- ``recall_at_10`` against exact search on held-out queries;
- ``filtered``: a selective filter (1 % and 0.1 % of the vectors, random ids) answered by each filter
  strategy of ``filtered.search`` — ``subset`` (exact scores of the allowed rows),
  ``selector`` (FAISS IDSelectorBatch + proportionally more probes), ``overfetch`` (unfiltered search
  for k/selectivity results, then filtering) — with latency, recall@10 against the exact filtered
  top-10, and the share of queries that still got k results.

Vectors: a noisy 64-dimensional subspace with a decaying spectrum (see ``synthetic``): hard enough that
IVF must probe many lists, like real embeddings. Queries: stored vectors moved off the data
by noise of norm ``--noise`` (default 0.5, so no query is an exact hit) and renormalised.

Run: ``nice python bench/search.py [--sizes 10000,100000] [--dims 256,512] [--full]`` (``--full`` adds 1M;
takes several minutes and ~6 GB of memory at 512 dims). The index choice at the default model's 768 dims:
``--sizes 200000,1000000 --dims 768 --kind ivf-sq8`` against the same with ``--kind ivf-pq``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from iconosearch.index import faiss_index, filtered  # noqa: E402


def synthetic(n: int, dim: int, *, rank: int = 64, seed: int = 0, chunk: int = 100_000) -> np.ndarray:
    """Unit vectors on a noisy ``rank``-dimensional subspace with a decaying spectrum.

    Real image embeddings have a low intrinsic dimension and are anisotropic (random pairs have cosine
    ≈ 0.2, not 0); vectors like these need IVF to probe ~6 % of the lists for recall@10 ≥ 0.95, where
    well-separated Gaussian clusters would make any index look perfect at 1 %.
    """
    out = np.empty((n, dim), dtype=np.float32)  # filled in place: no second copy of a 1M-row matrix
    parts = synthetic_chunks(n, dim, rank=rank, seed=seed, chunk=chunk)
    for start, x in zip(range(0, n, chunk), parts, strict=True):
        out[start : start + len(x)] = x
    return out


def synthetic_chunks(
    n: int, dim: int, *, rank: int = 64, seed: int = 0, chunk: int = 100_000
) -> Iterator[np.ndarray]:
    """:func:`synthetic`'s vectors, ``chunk`` rows at a time (for builds that must not hold them all)."""
    rng = np.random.default_rng(seed)
    basis = rng.standard_normal((rank, dim)).astype(np.float32)
    spectrum = (1.0 / np.sqrt(1.0 + np.arange(rank))).astype(np.float32)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        z = rng.standard_normal((m, rank), dtype=np.float32) * spectrum
        x = z @ basis + 0.05 * math.sqrt(rank) * rng.standard_normal((m, dim), dtype=np.float32)
        yield x / np.linalg.norm(x, axis=1, keepdims=True)


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return round(s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))], 4)


def timed_single(fn: Any, queries: np.ndarray) -> tuple[list[float], list[Any]]:
    """One query at a time on one OpenMP thread, as the engine serves them (SearchEngine sets one
    FAISS thread per request thread: parallel requests, not parallel loops inside one query)."""
    import faiss

    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    times: list[float] = []
    results: list[Any] = []
    try:
        for q in queries:
            t = time.perf_counter()
            results.append(fn(q.reshape(1, -1)))
            times.append((time.perf_counter() - t) * 1000)
    finally:
        faiss.omp_set_num_threads(threads)
    return times, results


def bench_filtered(
    index: Any,
    spec: faiss_index.FaissSpec,
    vectors: np.ndarray,
    ids: np.ndarray,
    queries: np.ndarray,
    fraction: float,
) -> dict[str, Any]:
    import faiss

    rng = np.random.default_rng(123)
    n = len(ids)
    rows = np.sort(rng.choice(n, max(10, int(n * fraction)), replace=False))
    allowed = ids[rows]
    # Exact filtered ground truth.
    sub = vectors[rows]
    _, exact_rows = faiss_index.exact_knn(sub, queries, 10)
    truth = allowed[exact_rows]
    t = time.perf_counter()
    selector = faiss.IDSelectorBatch(allowed)
    selector_build_ms = (time.perf_counter() - t) * 1000
    out: dict[str, Any] = {"allowed": len(allowed), "selector_build_ms": round(selector_build_ms, 3)}
    for strategy in ("subset", "selector", "overfetch"):

        def run(q: np.ndarray, strategy: str = strategy) -> np.ndarray:
            _, got, _ = filtered.search(
                index, spec, vectors, q, allowed, rows, 10, strategy=strategy, selector=selector
            )
            return got

        times, results = timed_single(run, queries)
        found = np.full((len(queries), 10), -1, dtype=np.int64)
        full = 0
        for i, got in enumerate(results):
            found[i, : min(10, len(got))] = got[:10]
            full += len(got) >= 10
        out[strategy] = {
            "p50_ms": pct(times, 50),
            "p99_ms": pct(times, 99),
            "recall_at_10": round(faiss_index.recall_at_k(found, truth, 10), 4),
            "share_with_k": round(full / len(queries), 4),
        }
    return out


def bench_one(n: int, dim: int, n_queries: int, noise: float, kind: str | None) -> dict[str, Any]:
    import faiss

    t = time.perf_counter()
    vectors = synthetic(n, dim, seed=n + dim)
    gen_s = time.perf_counter() - t
    ids = np.arange(n, dtype=np.int64) * 7919 + 12345  # sparse 64-bit ids, like record ids
    queries = faiss_index.sample_queries(vectors, n_queries, noise=noise, seed=7)
    t = time.perf_counter()
    _, exact_rows = faiss_index.exact_knn(vectors, queries, 10)
    exact_batch_s = time.perf_counter() - t
    truth = ids[exact_rows]
    result: dict[str, Any] = {"n": n, "dim": dim, "generate_s": round(gen_s, 2)}

    kinds = [kind] if kind else [faiss_index.choose_spec(n, dim).kind]
    if "flat" not in kinds:
        kinds.append("flat")
    for k in kinds:
        spec = faiss_index.choose_spec(n, dim, kind=k)
        t = time.perf_counter()
        index = faiss_index.build(vectors, ids, spec)
        spec, recall_tuned = faiss_index.tune(index, vectors, ids, spec)
        build_s = time.perf_counter() - t
        size = len(faiss.serialize_index(index))
        params = faiss_index.search_params(spec)

        def one(q: np.ndarray, index: Any = index, params: Any = params) -> np.ndarray:
            return faiss_index.search(index, q, 10, params=params)[1]

        reference = k != kinds[0]
        # The exact reference at 1M costs ~100 ms a query: fewer queries, and no filter runs.
        timed = queries[:50] if reference and n > 100_000 else queries
        times, results = timed_single(one, timed)
        approx = np.vstack(results)
        t = time.perf_counter()
        faiss_index.search(index, queries, 10, params=params)
        batch_ms = (time.perf_counter() - t) * 1000 / len(queries)
        entry: dict[str, Any] = {
            "params": spec.params,
            "build_s": round(build_s, 2),
            "bytes_per_vector": round(size / n, 1),
            "single_ms": {"p50": pct(times, 50), "p99": pct(times, 99)},
            "batch_ms_per_query": round(batch_ms, 4),
            "recall_at_10": round(faiss_index.recall_at_k(approx, truth[: len(timed)], 10), 4),
            "recall_at_10_tuning_queries": recall_tuned,
        }
        if not reference:
            entry["filtered"] = {
                f"{frac:.1%}": bench_filtered(
                    index, spec, vectors, ids, queries[: min(100, len(queries))], frac
                )
                for frac in (0.01, 0.001)
            }
        result[k] = entry
        del index
    result["exact_ground_truth_batch_s"] = round(exact_batch_s, 2)
    return result


COLLECTIONS = ("maps", "prints", "photos", "letters")


def synthetic_caption(i: int) -> str:
    """Record ``i``'s caption: one record in 100 mentions a harbour (a selective keyword)."""
    return f"item {i} {'harbour' if i % 100 == 0 else 'street'}"


def synthetic_record(i: int) -> Any:
    """Record ``i`` of the engine bench's catalogue (also ``bench/clip_retrieval.py``'s)."""
    from iconosearch.records import DateRange, ImageRecord, Provider, record_id

    m = f"https://example.org/{i}/manifest"
    return ImageRecord(
        id=record_id(m, m + "/c1", m + "/i1"),
        collection=COLLECTIONS[i % 4],
        manifest_id=m,
        canvas_id=m + "/c1",
        image_id=m + "/i1",
        manifest_label={"en": [f"Item {i}"]},
        rights="http://creativecommons.org/publicdomain/zero/1.0/" if i % 3 else None,
        providers=(Provider(label={"en": [f"Institution {i % 50}"]}),),
        date=DateRange(1400 + i % 600, 1400 + i % 600),
        caption={"en": [synthetic_caption(i)]},
    )


def bench_engine(n: int, dim: int, n_queries: int) -> dict[str, Any]:
    """The whole engine (SQLite filters, collapsing, paging) on a real index version of n records."""
    import tempfile

    from iconosearch.index.engine import SearchEngine
    from iconosearch.index.store import IndexStore
    from iconosearch.index.versions import BuildOptions, EmbeddedRecord, ModelInfo, write_version
    from iconosearch.query import Filters, Query, Term

    vectors = synthetic(n, dim, seed=3)
    items = [EmbeddedRecord(synthetic_record(i), None, vectors[i]) for i in range(n)]
    with tempfile.TemporaryDirectory() as tmp:
        store = IndexStore(Path(tmp) / "indexes", "default")
        t = time.perf_counter()
        version = write_version(
            store, items, ModelInfo("synthetic", "synthetic", dim), options=BuildOptions()
        )
        build_s = time.perf_counter() - t
        engine = SearchEngine.open(Path(tmp))
        rng = np.random.default_rng(5)
        picks = [items[int(j)].record.id for j in rng.integers(0, n, n_queries)]
        cases = {
            "unfiltered": {},
            "filter_1pct": {"filters": Filters(collections=("maps",), providers=("Institution 8",))},
            "filter_25pct": {"filters": Filters(collections=("maps",))},
            "hybrid_keywords": {"keywords": "harbour"},
            "page_at_depth_1000": {"page": 1000},
        }
        out: dict[str, Any] = {
            "n": n,
            "dim": dim,
            "faiss_type": version.manifest.faiss_type,
            "build_s": round(build_s, 1),
            "metadata_bytes_per_record": round(version.metadata_path.stat().st_size / n, 1),
        }
        for name, case in cases.items():
            times = []
            for rid in picks:
                q = Query(terms=(Term("item", rid),), k=24, filters=case.get("filters", Filters()))
                if "keywords" in case:
                    q = Query(terms=q.terms, k=24, keywords=case["keywords"])
                if "page" in case:
                    from iconosearch.index.ranking import Cursor, encode_cursor, query_key

                    q = Query(terms=q.terms, k=24)
                    cursor = encode_cursor(Cursor(version.version, case["page"], query_key(q)))
                    q = Query(terms=q.terms, k=24, cursor=cursor)
                t = time.perf_counter()
                page = engine.search(q)
                times.append((time.perf_counter() - t) * 1000)
                assert len(page.hits) == 24, (name, len(page.hits))
            out[name] = {"p50_ms": pct(times, 50), "p99_ms": pct(times, 99)}
        engine.close()
    return out


def _regions(args: argparse.Namespace) -> dict[str, Any]:
    """Region search's latency cost (``bench/_regions_latency.py``): N canvases × crops, built streamed."""
    import tempfile

    from _regions_latency import bench_regions

    def run(workdir: Path) -> dict[str, Any]:
        return bench_regions(
            args.regions,
            args.regions_per,
            args.regions_dim,
            min(args.queries, 200),
            workdir,
            build_only=args.regions_build_only,
            memory_gb=args.regions_memory_gb,
        )

    if args.regions_dir is not None:
        args.regions_dir.mkdir(parents=True, exist_ok=True)
        return run(args.regions_dir)
    with tempfile.TemporaryDirectory() as tmp:
        return run(Path(tmp))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--dims", default="256,512")
    parser.add_argument("--full", action="store_true", help="also 1,000,000 vectors")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--noise", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--kind", default=None, help="force one index kind (plus exact for reference)")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    parser.add_argument(
        "--engine", type=int, default=0, help="also time SearchEngine.search on a real index of N records"
    )
    parser.add_argument(
        "--regions",
        type=int,
        default=0,
        help="also time region search: N canvases with --regions-per crops each vs whole images only",
    )
    parser.add_argument("--regions-per", type=int, default=13, help="crops per canvas (grid layout: 13)")
    parser.add_argument("--regions-dim", type=int, default=256)
    parser.add_argument(
        "--regions-dir",
        type=Path,
        default=None,
        help="keep the region build here and reuse it (default: a temporary folder, built each run)",
    )
    parser.add_argument(
        "--regions-memory-gb",
        type=float,
        default=8.0,
        help="the build's memory budget (the crop index gets a quarter; default: the product's 8 GiB)",
    )
    parser.add_argument(
        "--regions-build-only", action="store_true", help="build the region versions, time nothing"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run in under 60 s with the same JSON keys (smaller sizes)",
    )
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.dims, args.queries, args.full = "10000", "256", 50, False
        args.engine = min(args.engine, 5000)  # the 1 % filter must still fill a page of 24
    import faiss

    faiss.omp_set_num_threads(args.threads)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    if args.full and 1_000_000 not in sizes:
        sizes.append(1_000_000)
    runs = []
    for n in sizes:
        for dim in (int(d) for d in args.dims.split(",") if d):
            runs.append(bench_one(n, dim, args.queries, args.noise, args.kind))
            print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    engine = bench_engine(args.engine, 512, min(args.queries, 100)) if args.engine else None
    regions = _regions(args) if args.regions else None
    report = {
        "bench": "search",
        "faiss": faiss.__version__,
        "threads": args.threads,
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "queries": args.queries,
        "query_noise": args.noise,
        "goal": "1M vectors, 2 cores: FAISS p50 <= 5 ms with recall@10 >= 0.95",
        "runs": runs,
        "engine": engine,
        "regions": regions,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
