"""Region search's latency cost at scale: N canvases × 13 crops through the product's builder, streamed.

``bench/search.py --regions N`` calls :func:`bench_regions`. It builds one index version of N synthetic
canvases with 13 crop vectors each (``write_version`` with a ``regions.CropStream``: the crop index is
planned under its share of the memory budget and built from batches, so 13M crops never sit in memory as
floats), and a second version of the same canvases without crops (the same files, hard-linked, minus the
region files). Built versions are kept in ``--regions-dir`` and reused by later runs, so the long build
(run it at ``nice -n 10``) and the timed part (under the bench lock) can be separate invocations.

Synthetic vectors: canvases on a noisy low-rank subspace (``search.synthetic``'s model), and each crop a
mix of its canvas's vector and a fresh draw from the same subspace (0.6 / 0.8 before normalising), so a
canvas's crops crowd around it as real crops do. Timed: ``SearchEngine.search`` (k=24, first page, one
thread) with the query vector given (an ``item`` term: one SQLite lookup and a row of ``vectors.npy``), and
with a text term encoded by the real default model (its text vector projected to the synthetic dimension
by a fixed random matrix). Recall: the region path's top 24 canvases against exact best-of-whole-and-crops
cosines over all stored vectors, on a sample of queries.
"""

from __future__ import annotations

import math
import os
import resource
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

RANK = 64
CANVAS_W, CANVAS_H = 2000, 3000
BATCH_CANVASES = 4096


class Subspace:
    """Unit vectors on a noisy ``RANK``-dimensional subspace with a decaying spectrum (see search.py)."""

    def __init__(self, dim: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.dim = dim
        self.basis = rng.standard_normal((RANK, dim)).astype(np.float32)
        self.spectrum = (1.0 / np.sqrt(1.0 + np.arange(RANK))).astype(np.float32)

    def draw(self, m: int, rng: np.random.Generator) -> np.ndarray:
        z = rng.standard_normal((m, RANK), dtype=np.float32) * self.spectrum
        x = z @ self.basis + 0.05 * math.sqrt(RANK) * rng.standard_normal((m, self.dim), dtype=np.float32)
        return _unit(x)


def _unit(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    return out


def crops_of(space: Subspace, canvases: np.ndarray, per: int, rng: np.random.Generator) -> np.ndarray:
    """``per`` crop vectors for each canvas vector: 0.6 × the canvas + 0.8 × a fresh draw, normalised."""
    return _unit(0.6 * np.repeat(canvases, per, axis=0) + 0.8 * space.draw(len(canvases) * per, rng))


def _canvas_vectors(space: Subspace, n: int) -> np.ndarray:
    rng = np.random.default_rng(3)
    return np.concatenate([space.draw(min(65536, n - s), rng) for s in range(0, n, 65536)])


def _items(vectors: np.ndarray) -> list[Any]:
    from iconosearch.index.versions import EmbeddedRecord
    from iconosearch.records import ImageRecord, record_id

    items = []
    for i in range(len(vectors)):
        m = f"https://example.org/{i}/manifest"
        rec = ImageRecord(
            id=record_id(m, m + "/c1", m + "/i1"),
            collection="pages",
            manifest_id=m,
            canvas_id=m + "/c1",
            image_id=m + "/i1",
            width=CANVAS_W,
            height=CANVAS_H,
        )
        items.append(EmbeddedRecord(rec, None, vectors[i]))
    return items


def build(workdir: Path, n: int, per: int, dim: int, memory_budget: int) -> dict[str, Any]:
    """Both versions under ``workdir`` (``with/`` and ``whole/`` data dirs); returns build facts."""
    from iconosearch.index import ivf_build, regions
    from iconosearch.index.regions import CropStream, RegionSet, grid_layout
    from iconosearch.index.store import IndexStore
    from iconosearch.index.versions import BuildOptions, ModelInfo, write_version
    from iconosearch.records import id_to_int64

    boxes = np.asarray(grid_layout(CANVAS_W, CANVAS_H), dtype=np.float32)
    if len(boxes) != per:
        raise SystemExit(f"the grid layout gives {len(boxes)} crops per canvas here, not {per}")
    space = Subspace(dim, seed=3)
    t = time.perf_counter()
    vectors = _canvas_vectors(space, n)
    items = _items(vectors)
    int_ids = np.array([id_to_int64(i.record.id) for i in items], dtype=np.int64)
    setup_s = time.perf_counter() - t
    options = BuildOptions(memory_budget=memory_budget)
    crop_spec = ivf_build.plan(n * per, dim, memory_budget=options.memory_budget // regions.BUDGET_SHARE)
    sample_rng = np.random.default_rng(17)
    picks = np.sort(sample_rng.choice(n, ivf_build.train_size(crop_spec) // per + 1, replace=False))
    sample = crops_of(space, vectors[picks], per, sample_rng)

    def batches() -> Iterator[RegionSet]:
        rng = np.random.default_rng(4)
        for start in range(0, n, BATCH_CANVASES):
            chunk = vectors[start : start + BATCH_CANVASES]
            yield RegionSet(
                crops_of(space, chunk, per, rng),
                np.repeat(int_ids[start : start + len(chunk)], per),
                np.tile(boxes, (len(chunk), 1)),
            )

    stream = CropStream(n * per, dim, sample, batches)
    store = IndexStore(workdir / "with" / "indexes", "default")
    t = time.perf_counter()
    version = write_version(
        store, items, ModelInfo("synthetic", "synthetic", dim), options=options, crops=stream
    )
    build_s = time.perf_counter() - t
    del items
    _whole_only(version, IndexStore(workdir / "whole" / "indexes", "default"))
    return {
        "setup_s": round(setup_s, 1),
        "build_s": round(build_s, 1),
        "build_peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 2),
        "load": os.getloadavg()[0],
    }


def _whole_only(version: Any, store: Any) -> None:
    """The same version without its region files (hard links: no copy of the whole-image files)."""
    from iconosearch.index import regions

    skip = {regions.FAISS_FILE, regions.VECTORS_FILE, regions.IDS_FILE, regions.BOXES_FILE, "manifest.json"}
    name, staging = store.begin()
    for f in version.path.iterdir():
        if f.is_file() and f.name not in skip:
            os.link(f, staging / f.name)
    store.commit(staging, replace(version.manifest, version=name, regions={}, checksums={}))


class _ProjectedText:
    """The real default model's text encoding, projected to the synthetic index's dimension."""

    def __init__(self, dim: int) -> None:
        from iconosearch.config import DEFAULT_MODEL
        from iconosearch.models.embedder import load_embedder

        self.inner = load_embedder(DEFAULT_MODEL)
        self.spec = self.fingerprint = "synthetic"
        self.dim = dim
        rng = np.random.default_rng(9)
        self.projection = rng.standard_normal((int(self.inner.dim), dim)).astype(np.float32)

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        return _unit(np.asarray(self.inner.embed_texts(texts), dtype=np.float32) @ self.projection)


def _timed(engines: dict[str, Any], queries: list[Any]) -> dict[str, dict[str, float]]:
    """Each query on every engine in turn (the order alternating), so changing load hits all alike."""
    times: dict[str, list[float]] = {name: [] for name in engines}
    for j, q in enumerate(queries):
        names = list(engines) if j % 2 == 0 else list(reversed(engines))
        for name in names:
            t = time.perf_counter()
            engines[name].search(q)
            times[name].append((time.perf_counter() - t) * 1000)
    return {name: {"p50_ms": _pct(t, 50), "p99_ms": _pct(t, 99)} for name, t in times.items()}


def _pct(values: list[float], p: float) -> float:
    return round(float(np.percentile(values, p)), 3)


def measure(workdir: Path, n_queries: int, recall_queries: int) -> dict[str, Any]:
    """Timings of both versions, item and text queries, alternating per query so load hits both alike."""
    from iconosearch.index.engine import SearchEngine
    from iconosearch.query import Query, Term

    manifest = _manifest(workdir / "with")
    dim = int(manifest.dim)
    text_model = _ProjectedText(dim)
    engines = {
        name: SearchEngine.open(workdir / name, embedder_loader=lambda _spec: text_model)
        for name in ("whole", "with")
    }
    t = time.perf_counter()
    for engine in engines.values():
        engine.search(Query(terms=(Term("text", "warm-up"),), k=24))
    load_s = time.perf_counter() - t
    ids = np.load(workdir / "with" / "indexes" / "default" / manifest.version / "ids.npy", mmap_mode="r")
    rng = np.random.default_rng(5)
    words = ("ship", "harbour", "saint", "dragon", "initial", "map", "plant", "engraving", "portrait")
    item_ids = [f"{int(ids[j]):016x}" for j in rng.integers(0, len(ids), n_queries)]
    texts = [f"a {words[i % len(words)]} number {i}" for i in range(n_queries)]
    out: dict[str, Any] = {"load_before": os.getloadavg()[0], "engines_load_s": round(load_s, 1)}
    for kind, terms in (
        ("item", [Term("item", i) for i in item_ids]),
        ("text", [Term("text", s) for s in texts]),
    ):
        queries = [Query(terms=(term,), k=24) for term in terms]
        _timed(engines, queries[:5])  # warm the caches both ways
        for name, stats in _timed(engines, queries).items():
            out[f"{kind}_{name}"] = stats
        out[f"{kind}_p50_ratio"] = round(out[f"{kind}_with"]["p50_ms"] / out[f"{kind}_whole"]["p50_ms"], 2)
    out["load_after"] = os.getloadavg()[0]
    out["recall"] = _recall(engines["with"], workdir, item_ids[:recall_queries])
    for engine in engines.values():
        engine.close()
    return out


def _manifest(data_dir: Path) -> Any:
    from iconosearch.index.store import IndexStore

    current = IndexStore(data_dir / "indexes", "default").current()
    if current is None:
        raise SystemExit(f"no index under {data_dir}: build it first")
    return current.manifest


def _recall(engine: Any, workdir: Path, item_ids: list[str]) -> dict[str, Any]:
    """Top-24 canvases of the engine against exact best-of-whole-and-crops over all stored vectors."""
    from iconosearch.index import regions
    from iconosearch.query import Query, Term

    folder = workdir / "with" / "indexes" / "default" / _manifest(workdir / "with").version
    ids = np.load(folder / "ids.npy")
    whole = np.load(folder / "vectors.npy", mmap_mode="r")
    crop_vectors = np.load(folder / regions.VECTORS_FILE, mmap_mode="r")
    per = len(crop_vectors) // len(ids)
    rows = {f"{int(i):016x}": r for r, i in enumerate(ids)}
    q = np.stack([np.asarray(whole[rows[i]], dtype=np.float32) for i in item_ids])
    best = np.asarray(whole, dtype=np.float32) @ q.T  # (n, queries)
    step = 65536 * per
    for start in range(0, len(crop_vectors), step):  # crops are stored canvas by canvas, ``per`` each
        chunk = np.asarray(crop_vectors[start : start + step], dtype=np.float32) @ q.T
        canvas = start // per
        part = chunk.reshape(-1, per, len(item_ids)).max(axis=1)
        best[canvas : canvas + len(part)] = np.maximum(best[canvas : canvas + len(part)], part)
    found = []
    for j, rid in enumerate(item_ids):
        exact = {f"{int(i):016x}" for i in ids[np.argsort(-best[:, j], kind="stable")[:24]]}
        page = engine.search(Query(terms=(Term("item", rid),), k=24))
        found.append(len(exact & {h.record.id for h in page.hits}) / 24)
    return {"queries": len(item_ids), "recall_at_24": round(float(np.mean(found)), 4)}


def bench_regions(
    n: int, per: int, dim: int, n_queries: int, workdir: Path, *, build_only: bool, memory_gb: float
) -> dict[str, Any]:
    out: dict[str, Any] = {"canvases": n, "regions_per_canvas": per, "dim": dim, "memory_gb": memory_gb}
    if not (workdir / "whole" / "indexes").exists():
        out["build"] = build(workdir, n, per, dim, int(memory_gb * 1024**3))
    manifest = _manifest(workdir / "with")
    if manifest.count != n or int(manifest.regions.get("count", 0)) != n * per or manifest.dim != dim:
        raise SystemExit(f"{workdir} holds another build ({manifest.count} canvases): use another folder")
    out["faiss_type"] = manifest.faiss_type
    out["faiss_params"] = manifest.faiss_params
    out["regions_index"] = {k: v for k, v in manifest.regions.items() if k != "count"}
    if not build_only:
        out |= measure(workdir, n_queries, min(50, n_queries))
    return out
