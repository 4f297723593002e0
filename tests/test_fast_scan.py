"""``ivf-pqfs`` (4-bit fast-scan PQ re-ranked by SQ8 codes) and the crop index that uses it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from iconosearch.index import faiss_index, filtered, ivf_build, regions
from iconosearch.index.builder import BuildOptions, write_version
from iconosearch.index.faiss_index import FaissSpec
from iconosearch.index.regions import RegionSet
from iconosearch.index.store import IndexStore
from iconosearch.query import Filters, Query, Term
from tests.helpers.index_data import MODEL, clustered_vectors, make_items
from tests.test_engine import engine_for
from tests.test_regions import _streamed


def test_the_fast_scan_kind_builds_tunes_saves_loads_and_filters(tmp_path: Path) -> None:
    vectors = clustered_vectors(8000, seed=3)
    ids = np.arange(8000, dtype=np.int64) * 5 + 1
    spec = faiss_index.choose_spec(len(vectors), 32, kind="ivf-pqfs")
    assert faiss_index.refined(spec) and spec.params["m"] == 16 and not faiss_index.removable(spec)
    assert ivf_build.bytes_per_vector(spec, 32) == 8 + faiss_index.REFINED_ID_BYTES
    with pytest.raises(ValueError, match="not split into shards"):
        faiss_index.choose_spec(len(vectors), 32, kind="ivf-pqfs", shards=2)
    index = faiss_index.build(vectors, ids, spec)
    tuned, recall = faiss_index.tune(index, vectors, ids, spec, target=0.95)
    assert recall is not None and recall >= 0.96 and tuned.params["nprobe"] < tuned.params["nlist"]
    # Every search re-ranks the shortlist tuning measured, however deep (filtered ones included).
    for depth in (10, 256, 5000):
        shortlist = faiss_index.search_params(tuned, depth=depth).k_factor * depth
        assert shortlist == max(faiss_index.FAST_SCAN_SHORTLIST, 2 * depth)

    faiss_index.write(index, tmp_path / "fs.faiss")
    loaded = faiss_index.read(tmp_path / "fs.faiss", tuned)
    queries = faiss_index.sample_queries(vectors, 50, seed=4)
    assert faiss_index.measure_recall(loaded, vectors, ids, queries, tuned) >= 0.9
    scores, found = faiss_index.search(loaded, vectors[:1], 5, params=faiss_index.search_params(tuned))
    assert found[0][0] == ids[0] and np.all(np.diff(scores[0]) <= 1e-6)

    rows = np.arange(0, 8000, 4)  # a quarter may be returned: more than the exact subset takes
    query = vectors[2]
    got_scores, got, _ = filtered.search(
        loaded, tuned, vectors, query, ids[rows], rows, 10, strategy="selector"
    )
    assert len(got) == 10 and set(got.tolist()) <= set(ids[rows].tolist())
    exact = ids[rows][np.argsort(-(vectors[rows] @ query))[:10]]
    assert len(set(got.tolist()) & set(exact.tolist())) >= 9
    assert np.all(np.diff(got_scores) <= 1e-6)


def test_graph_assignment_fills_a_fast_scan_index_like_the_flat_quantiser() -> None:
    vectors = clustered_vectors(33_000, seed=6)
    ids = np.arange(len(vectors), dtype=np.int64)
    spec = FaissSpec("ivf-pqfs", {"nlist": 1024, "nprobe": 1024, **faiss_index.fast_scan_params(32)})
    sample = vectors[: ivf_build.train_size(spec)]
    index = ivf_build.build_streaming(spec, sample, [(vectors, ids)])
    assert index.ntotal == len(vectors)
    scores, found = faiss_index.search(index, vectors[:20], 1)
    assert (found[:, 0] == ids[:20]).all() and (scores[:, 0] > 0.99).all()


def test_crop_kind_is_fast_scan_only_for_approximate_unsharded_sq8_sized_crop_indexes() -> None:
    budget = 2 * 1024**3
    assert regions.crop_kind(2_600_000, 64, memory_budget=budget) == "ivf-pqfs"
    assert regions.crop_kind(13_000_000, 64, memory_budget=budget) == "ivf-pqfs"  # 1M canvases
    assert regions.crop_kind(15_000, 64, memory_budget=budget, exact_max=20_000) is None  # exact
    assert regions.crop_kind(2_600_000, 16, memory_budget=budget) is None  # too few dims
    assert regions.crop_kind(2_600_000, 64, memory_budget=budget, shards=2) is None
    assert regions.crop_kind(13_000_000, 512, memory_budget=budget) is None  # SQ8 misses: IVF-PQ


def test_a_region_version_with_a_fast_scan_crop_index_ranks_as_before(tmp_path: Path) -> None:
    items = [replace(i, record=replace(i.record, width=2000, height=1500)) for i in make_items(400)]
    target = items[399].vector
    stream = _streamed(items, target)
    for streamed in (True, False):
        data_dir = tmp_path / ("streamed" if streamed else "in-memory")
        crops = stream if streamed else RegionSet.concat(list(stream.batches()), stream.dim)
        store = IndexStore(data_dir / "indexes", "default")
        version = write_version(store, items, MODEL, options=BuildOptions(exact_max=1000), crops=crops)
        info = version.manifest.regions
        assert info["faiss_type"] == "ivf-pqfs" and info["recall_reached"], info
        stored = RegionSet.load(version.path, mmap=True)
        assert stored is not None and stored.vectors.dtype == np.float16
        engine = engine_for(data_dir)
        page = engine.search(Query(terms=(Term("item", items[399].record.id),), k=5))
        assert page.hits[0].record.id == items[399].record.id
        assert page.hits[1].record.id == items[7].record.id and page.hits[1].matched_region
        mine = items[7].record.collection
        kept = engine.search(
            Query(terms=(Term("item", items[399].record.id),), filters=Filters(collections=(mine,)), k=5)
        )
        assert items[7].record.id in {h.record.id for h in kept.hits}
        assert all(h.record.collection == mine for h in kept.hits)
