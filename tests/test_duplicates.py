"""Near-duplicate grouping by FAISS range search agrees with the k-NN path, and finds groups larger
than the k-NN path's neighbour count."""

from __future__ import annotations

import numpy as np
import pytest

from iconosearch.index import faiss_index
from iconosearch.index.duplicates import DUPLICATE_NEIGHBOURS, _knn_links, _range_links, duplicate_groups
from iconosearch.index.faiss_index import FaissSpec


def _data(n_groups: int, size: int, dim: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_groups, dim)).astype(np.float32)
    vectors = np.repeat(centres, size, axis=0) + 0.003 * rng.standard_normal((n_groups * size, dim)).astype(
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
