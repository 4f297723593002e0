"""A relevance-sorted first page searches once: its total, counted lazily from the page's own ranking,
equals the old deep count (the ``POOL_DEPTH`` pool searched apart from the page) on an exact index."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from iconosearch.index.engine import SearchEngine
from iconosearch.index.retrieval import POOL_DEPTH, Retrieval
from iconosearch.index.versions import EmbeddedRecord
from iconosearch.query import Filters, Query, Term
from iconosearch.relevance import Calibration, Thresholds
from tests.helpers.index_data import HashEmbedder, build, make_items, make_record

N = 1500


@pytest.fixture(scope="module")
def flat(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SearchEngine, list[EmbeddedRecord]]]:
    """An exact index past ``POOL_DEPTH`` records, with near-duplicates so collapsing counts."""
    data_dir = tmp_path_factory.mktemp("lazy")
    items = make_items(N)
    twins = [
        EmbeddedRecord(make_record(90_000 + j, manifest=f"https://twin.org/{j}"), f"t{j}", items[j].vector)
        for j in range(0, 40, 2)
    ]
    version = build(data_dir, [*items, *twins])
    assert version.manifest.faiss_type == "flat"
    embedder = HashEmbedder()
    engine = SearchEngine.open(data_dir, embedder_loader=lambda spec: embedder)
    yield engine, items
    engine.close()


def calibrate(engine: SearchEngine, possible: float) -> None:
    """Give the served version image thresholds (a test of counting, not of their values)."""
    t = Thresholds(
        strong=min(1.0, possible + 0.05), possible=possible, strong_recall=0.5, possible_recall=0.9
    )
    loaded = engine._current
    assert loaded is not None
    loaded.calibration = Calibration("m", "f", "test", 1, 1, text=t, image=t)


def query_vector(engine: SearchEngine, query: Query) -> np.ndarray:
    loaded = engine._current
    assert loaded is not None
    return engine._encoder.query_vector(query, loaded)


def exact_scores(engine: SearchEngine, items: list[EmbeddedRecord], i: int) -> np.ndarray:
    """Every stored vector's cosine with item ``i``'s, best first (what the flat index computes)."""
    loaded = engine._current
    assert loaded is not None
    qvec = query_vector(engine, Query(terms=(Term("item", items[i].record.id),)))
    return np.sort(np.asarray(loaded.vectors, dtype=np.float32) @ qvec[0])[::-1]


class Depths:
    """The depths ``Retrieval.ranked`` is asked for while it is watched."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.asked: list[int] = []
        original = Retrieval.ranked

        def watched(self_: Retrieval, *args: object) -> object:
            self.asked.append(int(args[-1]))  # type: ignore[call-overload]
            return original(self_, *args)  # type: ignore[arg-type]

        monkeypatch.setattr(Retrieval, "ranked", watched)


@pytest.mark.parametrize("rank", [3, 30, 400, 900, 1200])
@pytest.mark.parametrize("collapse", [True, False])
def test_lazy_total_equals_the_deep_count(
    flat: tuple[SearchEngine, list[EmbeddedRecord]], rank: int, collapse: bool
) -> None:
    engine, items = flat
    for i in (7, 300, 1111):
        # A threshold between two neighbours' scores, so no score sits at the boundary.
        scores = exact_scores(engine, items, i)
        calibrate(engine, float(scores[rank] + scores[rank + 1]) / 2)
        query = Query(terms=(Term("item", items[i].record.id),), k=24, collapse_duplicates=collapse)
        page = engine.search(query)
        loaded = engine._current
        assert loaded is not None and loaded.calibration is not None
        retrieval: Retrieval = engine._retrieval
        qvec = query_vector(engine, query)
        _, deep = retrieval.pool(loaded, query, qvec, ([], None), loaded.calibration.image)
        assert page.total == deep
        assert page.total is not None and page.total.relation == ("gte" if rank >= POOL_DEPTH else "eq")
        # The page is the same as a page searched on its own.
        alone = retrieval.ranked(loaded, query, qvec, [], 25)
        assert [h.record.id for h in page.hits] == [
            h.record.id for h in retrieval.hits(loaded, alone[:24], collapse, qvec)
        ]


def test_a_first_page_searches_deep_only_when_its_tail_is_still_relevant(
    flat: tuple[SearchEngine, list[EmbeddedRecord]], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, items = flat
    depths = Depths(monkeypatch)
    query = Query(terms=(Term("item", items[9].record.id),), k=24)
    scores = exact_scores(engine, items, 9)

    calibrate(engine, float(scores[5] + scores[6]) / 2)
    engine.search(query)
    assert depths.asked == [25], "the page's tail is below the threshold: one shallow search"

    depths.asked.clear()
    calibrate(engine, float(scores[600] + scores[601]) / 2)
    page = engine.search(query)
    assert depths.asked == [25, POOL_DEPTH + 1], "relevant past the page: the pool, once"
    assert page.total is not None and page.total.count > 24

    depths.asked.clear()
    engine._current.calibration = None  # type: ignore[union-attr]
    page = engine.search(query)
    assert depths.asked == [25], "no thresholds: the filters count, nothing searched deep"
    assert page.total is not None and page.total.basis == "filters"
    page = engine.search(Query(terms=query.terms, k=24, filters=Filters(collections=("maps",))))
    assert page.total is not None and page.total.basis == "filters"
    assert page.total.count == engine.facets(Filters(collections=("maps",)))["collection"]["maps"]

    depths.asked.clear()
    engine.search(Query(terms=query.terms, k=24, sort="date-asc"))
    assert depths.asked == [POOL_DEPTH + 1], "date sorting keeps its pool, and searches nothing else"


def test_pages_after_a_deep_first_page_continue_it(flat: tuple[SearchEngine, list[EmbeddedRecord]]) -> None:
    engine, items = flat
    scores = exact_scores(engine, items, 42)
    calibrate(engine, float(scores[700] + scores[701]) / 2)  # the first page is served from the pool
    seen: list[str] = []
    cursor = None
    for _ in range(4):
        page = engine.search(Query(terms=(Term("item", items[42].record.id),), k=10, cursor=cursor))
        seen += [h.record.id for h in page.hits]
        cursor = page.next_cursor
    alone = engine.search(Query(terms=(Term("item", items[42].record.id),), k=40))
    assert seen == [h.record.id for h in alone.hits]
