"""IVF-PQ re-ranked by SQ8 codes (``faiss_index`` "refine"): recall, filters, updates, memory-mapped codes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from iconosearch.index import faiss_index, filtered, ivf_build
from iconosearch.index.consistency import check_consistency
from iconosearch.index.faiss_index import FaissSpec
from iconosearch.index.store import IndexStore
from iconosearch.index.versions import BuildOptions, update_version, write_version
from iconosearch.records import id_to_int64
from tests.helpers.index_data import MODEL, clustered_vectors, make_items

# 20 bytes a vector (and the 64 centroids of 32 floats): the two ids leave 4 bytes of PQ codes, far too
# coarse to rank on their own.
OPTIONS = BuildOptions(kind="ivf-pq", memory_budget=3000 * 20 + 64 * 32 * 4)


def test_pq_codes_rank_a_shortlist_that_sq8_codes_reorder() -> None:
    vectors = clustered_vectors(6000, seed=2)
    ids = np.arange(6000, dtype=np.int64) * 7 + 3
    queries = faiss_index.sample_queries(vectors, 200)
    budget = len(vectors) * 20 + 64 * 32 * 4
    spec = faiss_index.choose_spec(len(vectors), 32, memory_budget=budget, kind="ivf-pq")
    assert faiss_index.refined(spec) and spec.params["m"] == 4
    plain = FaissSpec("ivf-pq", {k: v for k, v in spec.params.items() if k not in faiss_index.REFINE_PARAMS})
    recalls = []
    for s in (plain, spec):
        index = faiss_index.build(vectors, ids, s)
        probe_all = FaissSpec(s.kind, {**s.params, "nprobe": s.params["nlist"]})
        faiss_index.set_search_params(index, probe_all)
        recalls.append(faiss_index.measure_recall(index, vectors, ids, queries, probe_all))
    # Measured 0.49 → 0.98: the PQ codes alone cannot order neighbours; the re-ranked shortlist can.
    assert recalls[0] < 0.7 and recalls[1] > 0.9


@pytest.mark.parametrize("options", [OPTIONS, BuildOptions(kind="ivf-pqfs")], ids=["ivf-pq", "ivf-pqfs"])
def test_a_reranked_version_filters_updates_and_maps_its_codes(tmp_path: Path, options: BuildOptions) -> None:
    store = IndexStore(tmp_path / "indexes", "default")
    items = make_items(3000, seed=5)
    base = write_version(store, items, MODEL, options=options)
    spec = FaissSpec(base.manifest.faiss_type, dict(base.manifest.faiss_params))
    assert spec.kind == options.kind and faiss_index.refined(spec)
    assert base.manifest.recall_at_10 is not None and base.manifest.recall_at_10 >= 0.9

    index = faiss_index.read(base.faiss_path, spec)
    vectors = np.stack([i.vector for i in items]).astype(np.float32)
    ids = np.array([id_to_int64(i.record.id) for i in items], dtype=np.int64)
    rows = np.arange(0, 3000, 3)  # a third of the records may be returned
    query = vectors[1]
    scores, found, _ = filtered.search(index, spec, vectors, query, ids[rows], rows, 10, strategy="selector")
    assert set(found.tolist()) <= set(ids[rows].tolist()) and len(found) == 10
    exact = ids[rows][np.argsort(-(vectors[rows] @ query))[:10]]
    assert len(set(found.tolist()) & set(exact.tolist())) >= 9
    assert np.all(np.diff(scores) <= 1e-6)

    # Refined indexes cannot remove in place: the update rebuilds from the stored vectors.
    gone = [i.record.id for i in items[:25]]
    v2 = update_version(
        store, base, remove=gone, add=make_items(30, start=9000, seed=8), model=MODEL, options=options
    )
    assert v2.manifest.faiss_type == options.kind and v2.manifest.count == 3005 and check_consistency(v2).ok
    kept = set(faiss_index.ids_of(faiss_index.read(v2.faiss_path, spec)).tolist())
    assert not kept & {id_to_int64(r) for r in gone}


def test_the_streaming_plan_reranks_and_keeps_its_ram_part_in_budget() -> None:
    plan = ivf_build.plan(10_000_000, 256, memory_budget=2 * 1024**3)
    assert plan.kind == "ivf-pq" and faiss_index.refined(plan) and plan.params["m"] == 32
    assert ivf_build.bytes_per_vector(plan, 256) == 32 + 16
    sharded = ivf_build.plan(10_000_000, 256, memory_budget=2 * 1024**3, shards=2)
    assert not faiss_index.refined(sharded) and sharded.params["shards"] == 2


def test_tuning_settles_where_recall_stops_rising_instead_of_probing_every_list() -> None:
    # PQ codes alone (4 bytes, no re-ranking) cannot reach 0.95: more probes soon add nothing.
    vectors = clustered_vectors(6000, seed=2)
    ids = np.arange(6000, dtype=np.int64)
    spec = FaissSpec("ivf-pq", {"nlist": 64, "nprobe": 1, "m": 4})
    index = faiss_index.build(vectors, ids, spec)
    queries = faiss_index.sample_queries(vectors, 200)
    _, rows = faiss_index.exact_knn(vectors, queries, 10)
    everything = FaissSpec("ivf-pq", {**spec.params, "nprobe": 64})
    _, found = faiss_index.search(index, queries, 10, params=faiss_index.search_params(everything))
    ceiling = faiss_index.recall_at_k(found, ids[rows], 10)
    assert ceiling < 0.9  # the premise: the codes, not the probes, limit recall
    tuned, recall = faiss_index.tune_against(index, spec, queries, ids[rows], target=0.95)
    assert int(tuned.params["nprobe"]) < 64
    assert recall > ceiling - 4 * faiss_index.PLATEAU_GAIN  # within a few plateau steps of the ceiling
    # A reachable target is still tuned to (plus the margin), as before.
    refined = faiss_index.choose_spec(len(vectors), 32, kind="ivf-pq")
    full = faiss_index.build(vectors, ids, refined)
    tuned, recall = faiss_index.tune_against(full, refined, queries, ids[rows], target=0.95)
    assert recall >= 0.95 + faiss_index.RECALL_MARGIN
