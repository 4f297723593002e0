"""Near-duplicate grouping by FAISS range search agrees with the k-NN path, and finds groups larger
than the k-NN path's neighbour count; grouping an IVF index's lists by matrix products finds the exact
reference's groups, in full builds and for the rows an update adds."""

from __future__ import annotations

import numpy as np
import pytest

from iconosearch.index import faiss_index
from iconosearch.index.duplicates import (
    DUPLICATE_NEIGHBOURS,
    _ivf_lists,
    _knn_links,
    _list_links,
    _range_links,
    _second_lists,
    duplicate_groups,
)
from iconosearch.index.faiss_index import FaissSpec


def _data(
    n_groups: int, size: int, dim: int = 32, seed: int = 0, noise: float = 0.003
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_groups, dim)).astype(np.float32)
    vectors = np.repeat(centres, size, axis=0) + noise * rng.standard_normal((n_groups * size, dim)).astype(
        np.float32
    )
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors.astype(np.float32), np.arange(1000, 1000 + len(vectors), dtype=np.int64)


@pytest.mark.parametrize("kind", ["flat", "ivf-sq8"])
def test_range_search_links_the_same_pairs_as_knn_for_small_groups(kind: str) -> None:
    vectors, ids = _data(150, 4)
    spec = FaissSpec(kind, {"nlist": 16, "nprobe": 16} if kind != "flat" else {})
    index = faiss_index.build(vectors, ids, spec)
    by_range = set(_range_links(index, spec, vectors, ids, 0.97, 64))
    by_knn = set(_knn_links(index, spec, vectors, ids, 0.97, 64))
    assert by_range == by_knn and len(by_range) == 150 * 4 * 3


def test_a_group_larger_than_the_neighbour_count_stays_one_group() -> None:
    vectors, ids = _data(3, DUPLICATE_NEIGHBOURS * 3)
    spec = FaissSpec("flat")
    groups = duplicate_groups(faiss_index.build(vectors, ids, spec), spec, vectors, ids, threshold=0.97)
    assert len(set(groups.values())) == 3
    assert sorted(set(groups.values())) == [int(ids[0]), int(ids[48]), int(ids[96])]


def _exact_groups(vectors: np.ndarray, ids: np.ndarray, threshold: float) -> set[frozenset[int]]:
    """Connected components of the all-pairs cosine ≥ ``threshold`` graph, by brute force."""
    linked = (vectors @ vectors.T) >= threshold
    label = list(range(len(ids)))
    changed = True
    while changed:  # min-label propagation until stable: slow, obviously right
        changed = False
        for i, j in zip(*np.nonzero(linked), strict=True):
            if label[i] != label[j]:
                label[i] = label[j] = min(label[i], label[j])
                changed = True
    groups: dict[int, set[int]] = {}
    for row, lab in enumerate(label):
        groups.setdefault(lab, set()).add(int(ids[row]))
    return {frozenset(g) for g in groups.values()}


def _as_sets(groups: dict[int, int]) -> set[frozenset[int]]:
    by_label: dict[int, set[int]] = {}
    for iid, label in groups.items():
        by_label.setdefault(label, set()).add(iid)
    return {frozenset(g) for g in by_label.values()}


@pytest.mark.parametrize("kind", ["ivf-sq8", "ivf-pq", "ivf-pqfs"])
def test_grouping_by_ivf_lists_finds_the_exact_groups(kind: str) -> None:
    rng = np.random.default_rng(3)
    vectors, ids = _data(60, 3, seed=5)  # 60 groups of 3 near-copies
    singles = rng.standard_normal((600, 32)).astype(np.float32)
    vectors = np.vstack([vectors, singles / np.linalg.norm(singles, axis=1, keepdims=True)])
    ids = np.concatenate([ids, np.arange(5000, 5600, dtype=np.int64)])
    shuffle = rng.permutation(len(ids))  # ids not in row order, as record ids are not
    vectors, ids = vectors[shuffle], ids[shuffle]
    params = {"nlist": 16, "nprobe": 4}
    if kind == "ivf-pq":
        params |= {"m": 4, **faiss_index.REFINE_PARAMS}
    if kind == "ivf-pqfs":  # the whole-image fast-scan index of big collections
        params |= faiss_index.fast_scan_params(32)
    spec = FaissSpec(kind, params)
    index = faiss_index.build(vectors, ids, spec)
    exact = _exact_groups(vectors, ids, 0.97)
    assert sum(len(g) == 3 for g in exact) == 60 and len(exact) == 660
    assert _as_sets(duplicate_groups(index, spec, vectors, ids, threshold=0.97)) == exact

    # An update asks only about its new rows, against everything indexed, and keeps the old labels.
    first = duplicate_groups(index, spec, vectors, ids, threshold=0.97, rows=np.arange(0, 400))
    merged = duplicate_groups(
        index, spec, vectors, ids, threshold=0.97, rows=np.arange(400, len(ids)), existing=first
    )
    assert _as_sets(merged) == exact


def test_near_copies_on_either_side_of_a_list_boundary_are_linked_as_two_probes_link_them() -> None:
    # Looser copies (cosine ~0.98) over many small lists: some pairs are split between two lists.
    vectors, ids = _data(1500, 2, noise=0.12, seed=11)
    spec = FaissSpec("ivf-flat", {"nlist": 256, "nprobe": 2})  # exact scores on both paths
    index = faiss_index.build(vectors, ids, spec)
    list_of = {int(i): lst for lst, stored in enumerate(faiss_index.ivf_lists(index)) for i in stored}
    two_probes = {tuple(sorted(p)) for p in _range_links(index, spec, vectors, ids, 0.97, 512)}
    assert sum(list_of[a] != list_of[b] for a, b in two_probes) >= 10  # the case under test occurs
    lists = _ivf_lists(index, spec, ids)
    assert lists is not None
    visits = _second_lists(index, lists, vectors, np.arange(len(ids)), 0.97)
    by_list = _list_links(lists, visits, vectors, ids, np.arange(len(ids)), 0.97, 256)
    assert {tuple(sorted(p)) for p in by_list} == two_probes
