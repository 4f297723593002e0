"""Scale: a streamed IVF-PQ index of millions of synthetic vectors, and Ray vs single-process embedding; JSON.

``index`` part: ``--n`` (default 10M, ``--quick`` 200k) unit vectors of ``--dim`` (256) dims, generated
in chunks (never more than one chunk of floats in memory) and added to the index that
``ivf_build.plan`` chooses under ``--memory-gb`` (2), after training it on a sample: at 10M, IVF-PQ whose
shortlist is re-ranked by SQ8 codes memory-mapped from disk (``faiss_index``), searched for several
nprobe and shortlist lengths (``k_factor``) as the product loads it. Reported:
build time (train / add), bytes per vector on disk and in RAM (RSS of a fresh process that loads the
index, minus that of one that does not), p50/p99 latency of single queries on one thread, and recall@10
against exact search (computed chunk by chunk during the same pass) — for several nprobe, on held-out
queries from the same distribution. nprobe is chosen on separate tuning queries, as the builder does.

Vectors: ``CLUSTERS`` Gaussian clusters in a ``RANK``-dimensional subspace with a decaying spectrum,
plus isotropic noise in all dims — clustered and of low intrinsic dimension like image embeddings.

``embed`` part: the demo collection's images (``--images`` of them) embedded by the single-process
pipeline (warmed up first) and by the Ray Data pipeline (``models.ray_embed``) on a local Ray cluster,
both without cache: ``ray.init`` time, start-up (to the first batch back: for Ray, a cold model actor)
and steady-state images/s (first batch back to last) apart, and the largest difference between vectors.

Run: the build (long, not timed against others) and the search measurement (timed) apart::

    nice -n 10 python bench/scale.py --part index --keep DIR      # build into DIR, ~15 CPU-min at 10M
    flock /work/tools/bench.lock nice -n -10 python bench/scale.py --part index --reuse DIR
    flock /work/tools/bench.lock nice -n -10 python bench/scale.py --part embed --images 128

Without ``--keep``/``--reuse`` both run in one go in a temporary folder (``--quick``: 200k vectors, 64
images). The build holds the SQ8 codes in memory until it writes them (10M × 256: ~3.5 GB peak), the
searching process only the PQ codes and ids.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from iconosearch.index import faiss_index, ivf_build  # noqa: E402
from iconosearch.index.faiss_index import FaissSpec  # noqa: E402

RANK = 64
CLUSTERS = 2048
CHUNK = 100_000
N_TUNE = 200
N_EVAL = 300


class Synthetic:
    """Deterministic clustered unit vectors, chunk by chunk (chunk ``i`` is the same on every call)."""

    def __init__(self, dim: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.dim = dim
        self.seed = seed
        self.basis = rng.standard_normal((RANK, dim)).astype(np.float32) / np.sqrt(RANK)
        spectrum = (1.0 / np.sqrt(1.0 + np.arange(RANK))).astype(np.float32)
        self.spectrum = spectrum
        self.centres = rng.standard_normal((CLUSTERS, RANK)).astype(np.float32) * spectrum

    def make(self, n: int, rng: np.random.Generator) -> np.ndarray:
        labels = rng.integers(0, CLUSTERS, n)
        z = self.centres[labels] + 0.6 * rng.standard_normal((n, RANK), dtype=np.float32) * self.spectrum
        x = z @ self.basis + 0.08 * rng.standard_normal((n, self.dim), dtype=np.float32)
        out: np.ndarray = x / np.linalg.norm(x, axis=1, keepdims=True)
        return out.astype(np.float32)

    def chunk(self, i: int, n: int) -> np.ndarray:
        return self.make(n, np.random.default_rng((self.seed, 1, i)))

    def queries(self, n: int) -> np.ndarray:
        return self.make(n, np.random.default_rng((self.seed, 2)))

    def chunks(self, total: int) -> Iterator[tuple[int, np.ndarray]]:
        for i, start in enumerate(range(0, total, CHUNK)):
            yield start, self.chunk(i, min(CHUNK, total - start))


def _log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def _merge_topk(
    best: tuple[np.ndarray, np.ndarray], new: tuple[np.ndarray, np.ndarray], k: int
) -> tuple[np.ndarray, np.ndarray]:
    scores = np.concatenate([best[0], new[0]], axis=1)
    ids = np.concatenate([best[1], new[1]], axis=1)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)


def _rss_of_loading(path: Path, spec: FaissSpec, queries: np.ndarray) -> dict[str, int]:
    """Resident bytes a fresh process grows by when it loads the index and answers ``queries``:
    ``anon`` (the index's own memory) and ``file`` (pages of memory-mapped re-ranking codes touched),
    each as loaded − not loaded. From /proc/self/status, not ``ru_maxrss``: Linux carries ``ru_maxrss``
    over from the parent across fork + exec."""
    qpath = path.with_suffix(".queries.npy")
    np.save(qpath, queries)
    code = (
        "import numpy as np, sys; sys.path.insert(0, {src!r}); from pathlib import Path;"
        "from iconosearch.index import faiss_index; from iconosearch.index.faiss_index import FaissSpec;"
        "spec = FaissSpec({kind!r}, {params!r});"
        "ix = faiss_index.read(Path({path!r}), spec) if {load} else None;"
        "[faiss_index.search(ix, q, 10) for q in np.load({qpath!r})] if {load} else None;"
        "st = {{x.split(':')[0]: int(x.split()[1]) * 1024"
        " for x in open('/proc/self/status') if x.startswith('Rss')}};"
        "print(st['RssAnon'], st['RssFile'])"
    )
    sizes = []
    for load in (False, True):
        filled = code.format(
            src=str(ROOT / "src"),
            load=load,
            path=str(path),
            kind=spec.kind,
            params=spec.params,
            qpath=str(qpath),
        )
        out = subprocess.run([sys.executable, "-c", filled], check=True, capture_output=True, text=True)
        sizes.append([int(x) for x in out.stdout.split()])
    return {"anon": sizes[1][0] - sizes[0][0], "file": sizes[1][1] - sizes[0][1]}


def _measure(
    index: Any,
    trial: FaissSpec,
    tune_q: np.ndarray,
    tune_exact: np.ndarray,
    eval_q: np.ndarray,
    eval_exact: np.ndarray,
) -> dict[str, Any]:
    """Recall on the tuning queries (batch), then latency and recall of single eval queries."""
    params = faiss_index.search_params(trial)
    _, approx = faiss_index.search(index, tune_q, 10, params=params)
    times, found = [], []
    for q in eval_q:
        t0 = time.perf_counter()
        _, i = faiss_index.search(index, q, 10, params=params)
        times.append((time.perf_counter() - t0) * 1000)
        found.append(i[0])
    return {
        "nprobe": trial.params["nprobe"],
        "k_factor": trial.params.get("k_factor"),
        "recall_at_10_tune": round(faiss_index.recall_at_k(approx, tune_exact, 10), 4),
        "recall_at_10": round(faiss_index.recall_at_k(np.array(found), eval_exact, 10), 4),
        "p50_ms": round(float(np.percentile(times, 50)), 3),
        "p99_ms": round(float(np.percentile(times, 99)), 3),
    }


def build_index(n: int, dim: int, memory_gb: float, workdir: Path, threads: int) -> dict[str, Any]:
    """Build the planned index over ``n`` synthetic vectors into ``workdir`` (``scale.faiss``), with the
    exact top-10 of every query (``exact_ids.npy``) and the build's numbers (``build.json``)."""
    import faiss

    faiss.omp_set_num_threads(threads)
    data = Synthetic(dim)
    spec = ivf_build.plan(n, dim, memory_budget=int(memory_gb * 1024**3))
    queries = data.queries(N_TUNE + N_EVAL)
    rng = np.random.default_rng(7)
    # The training sample: fresh draws from the collection's distribution (chunks are i.i.d., so this is
    # a uniform sample without a second pass over 10M generated vectors).
    want = ivf_build.train_size(spec)
    load_start = os.getloadavg()
    started = time.perf_counter()
    sample = data.make(want, rng)
    t_sample = time.perf_counter() - started
    exact = (np.full((len(queries), 10), -np.inf, np.float32), np.full((len(queries), 10), -1, np.int64))

    def batches() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        nonlocal exact
        for start, chunk in data.chunks(n):
            ids = np.arange(start, start + len(chunk), dtype=np.int64)
            s, rows = faiss_index.exact_knn(chunk, queries, 10)
            exact = _merge_topk(exact, (s, ids[rows]), 10)
            yield chunk, ids

    t_train_start = time.perf_counter()
    cpu_start = time.process_time()
    index = ivf_build.build_streaming(spec, sample, iter(()))
    t_train = time.perf_counter() - t_train_start
    cpu_train = time.process_time() - cpu_start
    _log(f"trained {spec} in {t_train:.0f} s ({cpu_train:.0f} CPU s), load {os.getloadavg()}")
    del sample
    t_add_start = time.perf_counter()
    cpu_start = time.process_time()
    with ivf_build.graph_assignment(index):
        for vectors, ids in batches():
            faiss_index.add(index, vectors, ids)
            _log(
                f"added {index.ntotal:,} of {n:,} in {time.perf_counter() - t_add_start:.0f} s, "
                f"load {os.getloadavg()[0]}"
            )
    t_add = time.perf_counter() - t_add_start
    cpu_add = time.process_time() - cpu_start
    path = workdir / "scale.faiss"
    faiss_index.write(index, path)
    np.save(workdir / "exact_ids.npy", exact[1])
    build = {
        "n": n,
        "dim": dim,
        "kind": spec.kind,
        "params": spec.params,
        "memory_budget_gb": memory_gb,
        "train_vectors": want,
        "threads": threads,
        "sample_s": round(t_sample, 1),
        "train_s": round(t_train, 1),
        "add_s": round(t_add, 1),
        "build_s": round(t_sample + t_train + t_add, 1),
        "cpu_s": {"train": round(cpu_train, 1), "add_and_exact_search": round(cpu_add, 1)},
        "load_average": {
            "start": [round(x, 1) for x in load_start],
            "end": [round(x, 1) for x in os.getloadavg()],
        },
        "note": "wall times on a 2-core machine shared with other jobs; cpu_s is this process's CPU time, "
        "which also covers generating the vectors and the exact search for the ground truth",
        "disk_bytes_per_vector": round(path.stat().st_size / n, 1),
        "build_peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 2),
    }
    (workdir / "build.json").write_text(json.dumps(build, indent=2))
    return build


def measure_index(workdir: Path) -> dict[str, Any]:
    """Latency and recall of the index that :func:`build_index` left in ``workdir``, loaded as the product
    loads it (re-ranking codes memory-mapped), for several nprobe and shortlist lengths."""
    import faiss

    build = json.loads((workdir / "build.json").read_text())
    spec = FaissSpec(build["kind"], build["params"])
    n = int(build["n"])
    path = workdir / "scale.faiss"
    queries = Synthetic(int(build["dim"])).queries(N_TUNE + N_EVAL)
    exact_ids = np.load(workdir / "exact_ids.npy")
    load_start = os.getloadavg()
    index = faiss_index.read(path, spec)
    faiss.omp_set_num_threads(1)
    tune_q, eval_q = queries[:N_TUNE], queries[N_TUNE:]
    tune_exact, eval_exact = exact_ids[:N_TUNE], exact_ids[N_TUNE:]
    sweep: list[dict[str, Any]] = []
    chosen = None

    def trial(nprobe: int, k_factor: int | None) -> dict[str, Any]:
        extra = {"nprobe": nprobe} | ({"k_factor": k_factor} if k_factor else {})
        row = _measure(
            index, FaissSpec(spec.kind, {**spec.params, **extra}), tune_q, tune_exact, eval_q, eval_exact
        )
        sweep.append(row)
        _log(f"{row}")
        return row

    planned = int(spec.params["k_factor"]) if faiss_index.refined(spec) else None
    # nprobe rises with the planned shortlist until recall is high or queries get slow; the halved and
    # doubled shortlists are then measured at the chosen nprobe only (the trade-off, in few queries).
    for nprobe in (8, 16, 24, 32, 48, 64, 96, 128, 192, 256):
        if nprobe > int(spec.params["nlist"]):
            break
        row = trial(nprobe, planned)
        if chosen is None and row["recall_at_10_tune"] >= 0.9 + faiss_index.RECALL_MARGIN:
            chosen = row
        if row["recall_at_10_tune"] >= 0.97 or row["p50_ms"] > 50:
            break
    if planned is not None:
        for k_factor in (planned // 2, planned * 2):
            trial(int((chosen or sweep[-1])["nprobe"]), k_factor)
    index = None  # freed before a fresh process measures the memory of loading it
    ram = _rss_of_loading(path, spec, eval_q)
    return {
        **build,
        "ram_bytes_per_vector": round(ram["anon"] / n, 1),
        "ram_index_gb": round(ram["anon"] / 1024**3, 3),
        "mapped_pages_touched_gb": round(ram["file"] / 1024**3, 3),
        "ram_note": "anon: resident index memory after loading and answering the eval queries; "
        "mapped: pages of the memory-mapped SQ8 re-ranking codes those queries touched (page cache)",
        "queries": {"tune": N_TUNE, "eval": N_EVAL, "threads": 1},
        "search_load_average": {
            "start": [round(x, 1) for x in load_start],
            "end": [round(x, 1) for x in os.getloadavg()],
        },
        "chosen": chosen,
        "sweep": sweep,
    }


class _Clock:
    """``progress`` callback recording when each batch came back, so steady-state throughput (first
    batch → last) is told apart from start-up (process pool, actor start, model load, first batch)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.marks: list[tuple[float, int]] = []

    def __call__(self, done: int, total: int) -> None:
        if done:
            self.marks.append((time.perf_counter() - self.start, done))

    def summary(self, images: int) -> dict[str, float]:
        (t_first, n_first), (t_last, n_last) = self.marks[0], self.marks[-1]
        steady = (n_last - n_first) / (t_last - t_first) if t_last > t_first else float("nan")
        return {
            "images_per_s": round(images / t_last, 2),
            "first_batch_s": round(t_first, 1),
            "steady_images_per_s": round(steady, 2),
        }


def embed_bench(n_images: int) -> dict[str, Any]:
    import hashlib

    import ray

    from iconosearch.models.embedder import load_embedder
    from iconosearch.models.pipeline import embed_images
    from iconosearch.models.ray_embed import RayEmbedOptions, ray_embed_images

    images = sorted((ROOT / "demo" / "collection").rglob("*.jpg"))[:n_images]
    items = [(hashlib.sha256(p.read_bytes()).hexdigest(), p) for p in images]
    embedder = load_embedder("iconosearch-lite")
    embed_images(embedder, items[:16], cache_dir=None)  # warm-up: first-call costs are not throughput
    load = [os.getloadavg()[0]]
    single_clock = _Clock()
    single = embed_images(embedder, items, cache_dir=None, progress=single_clock)
    load.append(os.getloadavg()[0])
    t0 = time.perf_counter()
    ray.init(num_cpus=os.cpu_count() or 2, include_dashboard=False, log_to_driver=False)
    t_init = time.perf_counter() - t0
    try:
        ray_clock = _Clock()
        distributed = ray_embed_images(
            partial(load_embedder, "iconosearch-lite"),
            items,
            fingerprint=embedder.fingerprint,
            dim=embedder.dim,
            cache_dir=None,
            options=RayEmbedOptions(),
            progress=ray_clock,
        )
    finally:
        ray.shutdown()
    load.append(os.getloadavg()[0])
    row = {h: i for i, h in enumerate(distributed.hashes)}
    diff = max(
        float(np.abs(single.vectors[i] - distributed.vectors[row[h]]).max())
        for i, h in enumerate(single.hashes)
    )
    single_stats, ray_stats = single_clock.summary(len(items)), ray_clock.summary(len(items))
    return {
        "images": len(items),
        "batch_size": 32,
        "single": single_stats,
        "ray": {"init_s": round(t_init, 1), **ray_stats},
        "ray_over_single_steady": round(
            ray_stats["steady_images_per_s"] / single_stats["steady_images_per_s"], 3
        ),
        "max_abs_vector_diff": diff,
        "load_average_1min": [round(x, 1) for x in load],
        "note": "images_per_s: all images over the whole call (Ray: without ray.init); first_batch_s: "
        "start-up (Ray: the model actor's start and model load) plus the first batch; steady: from the "
        "first batch back to the last, which for Ray means something only over many batches (the actor "
        "may finish several before the driver reads the first, and they come back in a burst). Single "
        "process warmed up on 16 images first; Ray's actor is cold.",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="200k vectors and 64 images: well under a minute")
    ap.add_argument("--part", choices=("index", "embed", "all"), default="all")
    ap.add_argument("--n", type=int, default=None, help="vectors (default 10M, --quick 200k)")
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--memory-gb", type=float, default=2.0)
    ap.add_argument("--images", type=int, default=None, help="demo images to embed (default 356, --quick 64)")
    ap.add_argument("--threads", type=int, default=1, help="FAISS threads while building (default 1)")
    ap.add_argument("--keep", type=Path, default=None, help="only build, into this folder (for --reuse)")
    ap.add_argument("--reuse", type=Path, default=None, help="only measure the index built by --keep DIR")
    args = ap.parse_args()
    out: dict[str, Any] = {
        "bench": "scale",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    if args.part in ("index", "all"):
        n = args.n or (200_000 if args.quick else 10_000_000)
        if args.reuse is not None:
            out["index"] = measure_index(args.reuse)
        elif args.keep is not None:
            args.keep.mkdir(parents=True, exist_ok=True)
            out["index"] = build_index(n, args.dim, args.memory_gb, args.keep, args.threads)
        else:
            with tempfile.TemporaryDirectory(prefix="iconosearch-scale-") as tmp:
                build_index(n, args.dim, args.memory_gb, Path(tmp), args.threads)
                out["index"] = measure_index(Path(tmp))
    if args.part in ("embed", "all"):
        out["embed"] = embed_bench(args.images or (64 if args.quick else 356))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
