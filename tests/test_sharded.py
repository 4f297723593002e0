"""Sharded FAISS indexes (scatter-gather) against one unsharded index, and the streaming IVF build."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from iconosearch.index import faiss_index, ivf_build, sharded
from iconosearch.index.consistency import check_consistency
from iconosearch.index.engine import SearchEngine
from iconosearch.index.faiss_index import FaissSpec
from iconosearch.index.store import IndexStore
from iconosearch.index.versions import BuildOptions, update_version
from iconosearch.query import Query, Term
from tests.helpers.index_data import MODEL, build, clustered_vectors, make_items

N, DIM = 6000, 32


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    vectors = clustered_vectors(N, DIM, seed=3)
    ids = np.arange(N, dtype=np.int64) * 7919 + 11  # ids unrelated to row order, as record ids are
    queries = faiss_index.sample_queries(vectors, 60, seed=5)
    return vectors, ids, queries


def test_sharded_exact_search_equals_unsharded(data: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    vectors, ids, queries = data
    one = faiss_index.build(vectors, ids, FaissSpec("flat"))
    three = faiss_index.build(vectors, ids, faiss_index.choose_spec(N, DIM, kind="flat", shards=3))
    assert sharded.is_sharded(three) and [p.ntotal for p in sharded.parts(three)] == [2000, 2000, 2000]
    s1, i1 = faiss_index.search(one, queries, 10)
    s3, i3 = faiss_index.search(three, queries, 10)
    assert (i1 == i3).all()
    np.testing.assert_allclose(s1, s3, rtol=0, atol=1e-6)
    # Filtered (selector) searches are scattered and merged the same way.
    allowed = ids[::13]
    sel = faiss_index.search_params(FaissSpec("flat"), selector=_selector(allowed))
    _, f1 = faiss_index.search(one, queries, 10, params=sel)
    _, f3 = faiss_index.search(three, queries, 10, params=sel)
    assert (f1 == f3).all() and np.isin(f3, allowed).all()


def _selector(allowed: np.ndarray) -> object:
    import faiss

    return faiss.IDSelectorBatch(allowed)


def test_sharded_ivf_matches_unsharded_and_its_measured_recall(
    data: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    vectors, ids, queries = data
    spec = FaissSpec("ivf-flat", {"nlist": 64, "nprobe": 4})
    trained = faiss_index.new_trained(spec, DIM, vectors)
    one = trained
    four = sharded.split(trained, 4)  # the same trained quantiser in every shard
    faiss_index.add(one, vectors, ids)
    faiss_index.add(four, vectors, ids)
    tuned, recall = faiss_index.tune(one, vectors, ids, spec, target=0.9)
    assert recall is not None and recall >= 0.9
    faiss_index.set_search_params(four, tuned)
    params = faiss_index.search_params(tuned)
    _, i1 = faiss_index.search(one, queries, 10, params=params)
    _, i4 = faiss_index.search(four, queries, 10, params=params)
    # Same lists probed in every shard: the merged candidates are the unsharded index's.
    assert (i1 == i4).all()
    _, rows = faiss_index.exact_knn(vectors, queries, 10)
    measured = faiss_index.recall_at_k(i4, ids[rows], 10)
    assert measured >= recall - 0.1  # other queries than the tuning ones: sampling noise only


def test_sharded_write_read_remove(tmp_path: Path, data: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    vectors, ids, queries = data
    spec = FaissSpec("ivf-sq8", {"nlist": 32, "nprobe": 32, "shards": 2})
    index = faiss_index.build(vectors, ids, spec)
    path = tmp_path / "vectors.faiss"
    faiss_index.write(index, path)
    assert not path.exists()
    assert all(p.is_file() for p in sharded.shard_paths(path, 2))
    back = faiss_index.read(path, spec)
    assert sorted(faiss_index.ids_of(back).tolist()) == sorted(ids.tolist())
    assert (faiss_index.search(back, queries, 5)[1] == faiss_index.search(index, queries, 5)[1]).all()
    assert faiss_index.remove(back, ids[:10]) == 10
    assert back.ntotal == N - 10 and not np.isin(faiss_index.search(back, queries, 10)[1], ids[:10]).any()


def test_engine_over_a_sharded_version_answers_like_an_unsharded_one(tmp_path: Path) -> None:
    items = make_items(300, dim=32, seed=2)
    build(tmp_path / "a", items)
    split = build(tmp_path / "b", items, options=BuildOptions(shards=3))
    assert split.manifest.faiss_params["shards"] == 3 and check_consistency(split).ok
    engines = [SearchEngine.open(tmp_path / d) for d in ("a", "b")]
    probe = items[17].record.id
    pages = [e.search(Query(terms=(Term("item", probe),), k=20, collapse_duplicates=False)) for e in engines]
    assert [h.record.id for h in pages[0].hits] == [h.record.id for h in pages[1].hits]
    # Incremental updates keep the shards: removed from whichever shard holds them, added across them.
    store = IndexStore(tmp_path / "b" / "indexes", "default")
    v2 = update_version(store, split, add=make_items(5, start=1000, seed=9), remove=[probe], model=MODEL)
    assert v2.manifest.faiss_params["shards"] == 3 and v2.manifest.count == 304 and check_consistency(v2).ok
    assert engines[1].reload_if_changed() and engines[1].get(probe) is None
    for e in engines:
        e.close()


def test_streaming_plan_fits_the_budget_and_build_adds_every_batch() -> None:
    plan = ivf_build.plan(10_000_000, 256, memory_budget=2 * 1024**3)
    assert plan.kind == "ivf-pq" and plan.params["nlist"] == 4096
    assert ivf_build.bytes_per_vector(plan, 256) * 10_000_000 + 4096 * 256 * 4 <= 2 * 1024**3
    assert ivf_build.plan(10_000_000, 256, memory_budget=4 * 1024**3).kind == "ivf-pqfs"  # for speed
    assert ivf_build.plan(10_000_000, 256, memory_budget=4 * 1024**3, shards=2).kind == "ivf-pq"
    assert ivf_build.plan(10_000_000, 128, memory_budget=4 * 1024**3).kind == "ivf-sq8"  # PQ too coarse
    # The crop index of 1M canvases × 13 crops of 64 dims (a quarter of 8 GiB) stays IVF-SQ8.
    assert ivf_build.plan(13_000_000, 64, memory_budget=2 * 1024**3).kind == "ivf-sq8"
    with pytest.raises(ValueError, match="need at least"):
        ivf_build.plan(10_000_000, 256, memory_budget=50 * 1024**2)

    vectors = clustered_vectors(8000, DIM, seed=4)
    spec = ivf_build.plan(len(vectors), DIM, memory_budget=len(vectors) * 20, shards=2)
    assert spec.kind == "ivf-pq" and spec.params["shards"] == 2
    seen: list[int] = []
    batches = ((vectors[s : s + 1000], np.arange(s, s + 1000, dtype=np.int64)) for s in range(0, 8000, 1000))
    index = ivf_build.build_streaming(
        spec, vectors[:: 8000 // ivf_build.train_size(spec)], batches, progress=seen.append
    )
    assert seen[-1] == 8000 and index.ntotal == 8000
    assert sorted(faiss_index.ids_of(index).tolist()) == list(range(8000))


def test_graph_assignment_fills_nearest_lists_and_leaves_the_flat_quantiser() -> None:
    import faiss

    nlist, dim = ivf_build.GRAPH_ASSIGN_MIN_LISTS, 16
    vectors = clustered_vectors(34_000, dim, seed=8)
    spec = FaissSpec("ivf-sq8", {"nlist": nlist, "nprobe": 8})
    index = faiss_index.new_trained(spec, dim, vectors[: ivf_build.TRAIN_PER_LIST * nlist])
    ivf = faiss.extract_index_ivf(index)
    added = vectors[-4000:]
    with ivf_build.graph_assignment(index):
        assert isinstance(faiss.downcast_index(ivf.quantizer), faiss.IndexHNSWFlat)
        faiss_index.add(index, added, np.arange(4000, dtype=np.int64))
    assert isinstance(faiss.downcast_index(ivf.quantizer), faiss.IndexFlatIP)
    stored = np.full(4000, -1)
    invlists = ivf.invlists
    assert invlists is not None
    for lst in range(nlist):
        size = invlists.list_size(lst)
        if size:
            stored[faiss.rev_swig_ptr(invlists.get_ids(lst), size).copy()] = lst
    nearest = ivf.quantizer.assign(added, 1)[:, 0]
    # The graph search is approximate; a broken one would scatter vectors over all lists (~0.1 %).
    assert (stored == nearest).mean() > 0.9


def test_cli_compacts_into_shards_and_refuses_bad_counts(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from iconosearch.cli import app

    items = make_items(60, seed=6)
    build(tmp_path, items)
    config = tmp_path / "iconosearch.toml"
    config.write_text(f'data_dir = "{tmp_path}"\nmodel = "test-hash"\n')
    runner = CliRunner()
    result = runner.invoke(app, ["--config", str(config), "--json", "index", "--compact", "--shards", "2"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["faiss_params"]["shards"] == 2
    result = runner.invoke(app, ["--config", str(config), "--json", "index", "--check"])
    assert result.exit_code == 0 and json.loads(result.stdout)["ok"] is True, result.output
    rid = items[4].record.id
    result = runner.invoke(app, ["--config", str(config), "--json", "search", "--item", rid, "-k", "3"])
    assert result.exit_code == 0 and json.loads(result.stdout)["results"][0]["id"] == rid
    result = runner.invoke(app, ["--config", str(config), "index", "--shards", "0"])
    assert result.exit_code == 2 and "--shards" in result.output
