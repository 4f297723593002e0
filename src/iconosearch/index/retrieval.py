"""Ranking of one loaded index version: visual and hybrid rankings, filters, pools, facets and hits.

:class:`Retrieval` holds the engine's settings (limits, filter strategy) and works on a
:class:`~iconosearch.index.loaded.LoadedVersion` it is handed; it knows nothing of versions or reloads.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, NamedTuple

import numpy as np

from iconosearch.config import LimitsConfig
from iconosearch.index import faiss_index, filtered, verify
from iconosearch.index.faiss_index import FaissSpec
from iconosearch.index.loaded import LoadedVersion
from iconosearch.index.ranking import (
    Collapsed,
    collapse_duplicates,
    count_facets,
    fts_match_expression,
    merge_best,
    reciprocal_rank_fusion,
)
from iconosearch.index.regions import best_per_record, region_fields
from iconosearch.query import Filters, Hit, Query, Total, TotalRelation
from iconosearch.relevance import Thresholds

POOL_DEPTH = 1000
"""How deep results are counted and date-sorted: "1000+ matches" past it."""
POOL_FALLBACK = 100
"""Results date-sorted when none is even a possible match."""
HYBRID_VISUAL_DEPTH = 1000
"""How deep the visual ranking of a hybrid query goes: past ~1000, 1/(60 + rank) adds next to nothing."""

CROP_WORKERS = 4
"""Threads that search crop indexes beside the requests' whole-image searches (each request uses one)."""
CROP_DEPTH_FACTOR = 4
"""Crops are searched this many times deeper than records: a record's crops tend to rank together."""

SHORTLIST_MAX = 8192
"""Most candidates a re-ranked (IVF-PQ + SQ8) crop index re-scores in one search. Its ``k_factor`` (32
per result) suits a page; the pool's crop search goes ~8000 deep, and 32 × 8000 SQ8 rows read from disk
per query would cost far more than the order of its deep tail is worth."""

_thread_state = threading.local()


def _shortlist_params(spec: FaissSpec, depth: int) -> Any:
    """Search parameters of a re-ranked index searched ``depth`` deep, its shortlist held to the spec's
    ``shortlist_max`` or ``SHORTLIST_MAX`` (never under twice the depth); ``None`` (the index's own)
    for other kinds."""
    if not faiss_index.refined(spec):
        return None
    return faiss_index.search_params(
        FaissSpec(spec.kind, {"shortlist_max": SHORTLIST_MAX, **spec.params}), depth=depth
    )


class Allowed(NamedTuple):
    """What a filter allows: record ids and their vector rows, crop rows, FAISS selectors for both."""

    ids: np.ndarray
    rows: np.ndarray
    selector: Any
    crop_rows: np.ndarray | None
    crop_selector: Any


def one_faiss_thread() -> None:
    """One OpenMP thread per request thread (the setting is per calling thread).

    Concurrent requests run in parallel, and on shared cores a parallel loop inside one small search
    costs far more in synchronisation than it saves (bench/search.py measured 70 ms vs 0.2 ms)."""
    if not getattr(_thread_state, "faiss_single", False):
        import faiss

        faiss.omp_set_num_threads(1)
        _thread_state.faiss_single = True


class Retrieval:
    """Rankings on a loaded version, under the engine's limits and filter strategy."""

    def __init__(
        self,
        limits: LimitsConfig,
        *,
        filter_strategy: str = "auto",
        subset_max: int = filtered.DEFAULT_SUBSET_MAX,
    ) -> None:
        self.limits = limits
        self.filter_strategy = filter_strategy
        self.subset_max = subset_max
        self._crop_workers: ThreadPoolExecutor | None = None
        self._workers_lock = threading.Lock()

    def close(self) -> None:
        """Stop the crop-search threads (a later region search starts new ones)."""
        with self._workers_lock:
            workers, self._crop_workers = self._crop_workers, None
        if workers is not None:
            workers.shutdown(wait=False)

    def _workers(self) -> ThreadPoolExecutor:
        with self._workers_lock:
            if self._crop_workers is None:
                self._crop_workers = ThreadPoolExecutor(CROP_WORKERS, thread_name_prefix="crop-search")
            return self._crop_workers

    def facets(
        self, loaded: LoadedVersion, filters: Filters, keywords: str | None
    ) -> dict[str, dict[str, int]]:
        """Facet counts of the records matching ``filters`` (and ``keywords``), cached per version."""

        def count() -> dict[str, dict[str, int]]:
            ids = None
            if keywords is not None:
                ids = loaded.meta.keyword_ranking(
                    fts_match_expression(keywords), filters, self.limits.depth_max
                )
            return count_facets(loaded.meta.facet_rows(filters, ids))

        return loaded.cached(loaded.facet_cache, (filters, keywords), count)

    def first_page(
        self,
        loaded: LoadedVersion,
        query: Query,
        qvec: np.ndarray | None,
        keyword_clause: tuple[list[str], str | None],
        thresholds: Thresholds | None,
        need: int,
    ) -> tuple[list[Collapsed], Total]:
        """A relevance-sorted first page's ranking (at least ``need``, as :meth:`ranked`) and its total,
        from one search: the total of the pool (:meth:`pool`) without searching it when it can.

        Keyword and filter totals are counts that need no ranking. A relevance total (calibrated
        thresholds) counts the pool's results above ``thresholds.possible``: when the page's own ranking
        already ends below it (or ends), every such result is in it and the count is the pool's; only
        otherwise is the pool searched, and the page is then served from it."""
        total = self._counted_total(loaded, query, keyword_clause, thresholds)
        if total is not None:
            return self.ranked(loaded, query, qvec, keyword_clause[0], need), total
        assert thresholds is not None
        if need <= POOL_DEPTH:
            groups = self.ranked(loaded, query, qvec, keyword_clause[0], need)
            if len(groups) < need or groups[-1].score < thresholds.possible:
                return groups, self._relevance_total(loaded, groups, False, thresholds)[1]
        deep = self.ranked(loaded, query, qvec, keyword_clause[0], max(need, POOL_DEPTH + 1))
        return deep, self._relevance_total(loaded, deep[:POOL_DEPTH], len(deep) > POOL_DEPTH, thresholds)[1]

    def pool(
        self,
        loaded: LoadedVersion,
        query: Query,
        qvec: np.ndarray | None,
        keyword_clause: tuple[list[str], str | None],
        thresholds: Thresholds | None,
    ) -> tuple[list[Collapsed], Total]:
        """The results worth counting and sorting by date (relevance order, at most ``POOL_DEPTH``).

        ``keyword_clause``: the FTS match expressions and the user's keywords (``None`` when the
        expressions come only from a subject's keywords).
        """
        groups = self.ranked(loaded, query, qvec, keyword_clause[0], POOL_DEPTH + 1)
        deeper = len(groups) > POOL_DEPTH
        groups = groups[:POOL_DEPTH]
        total = self._counted_total(loaded, query, keyword_clause, thresholds)
        if total is not None:
            return groups, total
        assert thresholds is not None
        return self._relevance_total(loaded, groups, deeper, thresholds)

    def _counted_total(
        self,
        loaded: LoadedVersion,
        query: Query,
        keyword_clause: tuple[list[str], str | None],
        thresholds: Thresholds | None,
    ) -> Total | None:
        """The total when it is a count (keywords, or the filters without thresholds); ``None`` when it
        counts relevant results (see :meth:`_relevance_total`)."""
        matches, keywords = keyword_clause
        if keywords:
            matching = self.facets(loaded, query.filters, keywords)
            return Total(sum(matching["collection"].values()), "eq", "keywords")
        if matches:
            depth = self.limits.depth_max
            found = {i for m in matches for i in loaded.meta.keyword_ranking(m, query.filters, depth)}
            return Total(len(found), "gte" if len(found) >= depth else "eq", "keywords")
        if thresholds is not None:
            return None
        allowed = self.facets(loaded, query.filters, None)
        return Total(sum(allowed["collection"].values()), "eq", "filters")

    @staticmethod
    def _relevance_total(
        loaded: LoadedVersion, groups: list[Collapsed], deeper: bool, thresholds: Thresholds
    ) -> tuple[list[Collapsed], Total]:
        """``groups`` (a pool's prefix: all its results above ``thresholds.possible``) → the pool to date
        sort and the count of possible matches; ``deeper``: the ranking goes on past ``groups``."""
        kept = [g for g in groups if g.score >= thresholds.possible]
        if deeper and len(kept) == len(groups):
            relation: TotalRelation = "gte"
        else:
            # Approximate indexes may miss a few: their count is an estimate.
            relation = "eq" if loaded.spec.kind == "flat" else "about"
        # Nothing relevant enough: date order still sorts the best few rather than nothing.
        return (kept or groups[:POOL_FALLBACK]), Total(len(kept), relation, "relevance")

    def by_date(self, loaded: LoadedVersion, pool: list[Collapsed], *, descending: bool) -> list[Collapsed]:
        """``pool`` by date (start, then end year; relevance breaks ties), undated results last."""
        years = loaded.meta.years([g.id for g in pool])
        dated = [g for g in pool if g.id in years]
        undated = [g for g in pool if g.id not in years]
        sign = -1 if descending else 1
        dated.sort(key=lambda g: (sign * years[g.id][0], sign * years[g.id][1], -g.score, g.id))
        return dated + undated

    def ranked(
        self, loaded: LoadedVersion, query: Query, qvec: np.ndarray | None, matches: list[str], need: int
    ) -> list[Collapsed]:
        """At least ``need`` collapsed results in final order (fewer when the results run out).

        ``matches``: FTS5 expressions (the keyword clause, a subject's keywords), each its own ranking."""
        allowed = self.allowed(loaded, query.filters)
        if matches:
            # Hybrid: all rankings to fixed depths, so every page fuses the same lists.
            keyword_rankings = [
                loaded.meta.keyword_ranking(m, query.filters, self.limits.depth_max) for m in matches
            ]
            visual_ids: list[int] = []
            if qvec is not None:
                ids, scores, _ = self.visual(
                    loaded, qvec, allowed, min(HYBRID_VISUAL_DEPTH, self.limits.depth_max)
                )
                if query.min_score is not None:
                    ids = ids[scores >= query.min_score]
                visual_ids = ids.tolist()
            fused = reciprocal_rank_fusion([r for r in (visual_ids, *keyword_rankings) if r])
            f_ids = np.fromiter((i for i, _ in fused), dtype=np.int64, count=len(fused))
            f_scores = np.fromiter((s for _, s in fused), dtype=np.float64, count=len(fused))
            return self._collapse(loaded, f_ids, f_scores, query.collapse_duplicates, need)
        assert qvec is not None
        depth = max(64, need * 2 if query.collapse_duplicates else need)
        while True:
            ids, scores, exhausted = self.visual(loaded, qvec, allowed, depth)
            if query.min_score is not None:
                above = scores >= query.min_score
                exhausted = exhausted or not bool(above.all())
                ids, scores = ids[above], scores[above]
            groups = self._collapse(loaded, ids, scores, query.collapse_duplicates, need)
            if len(groups) >= need or exhausted or depth >= loaded.count:
                return groups
            depth = min(loaded.count, depth * 4)

    @staticmethod
    def _collapse(
        loaded: LoadedVersion, ids: np.ndarray, scores: np.ndarray, collapse: bool, need: int
    ) -> list[Collapsed]:
        if not collapse:
            return [
                Collapsed(i, s, i) for i, s in zip(ids[:need].tolist(), scores[:need].tolist(), strict=True)
            ]
        return collapse_duplicates(ids, scores, loaded.groups, limit=need)

    def allowed(self, loaded: LoadedVersion, filters: Filters) -> Allowed | None:
        """The records (and crops) ``filters`` allow, cached per version; ``None``: no filters."""
        if filters == Filters():
            return None

        def find() -> Allowed:
            found = loaded.meta.filtered(filters)
            assert found is not None
            ids = np.asarray(found[0], dtype=np.int64)
            rows = np.asarray(found[1], dtype=np.int64)
            crop_rows = loaded.crops.allowed_rows(ids) if loaded.crops is not None else None
            return Allowed(ids, rows, self._selector(ids), crop_rows, self._selector(crop_rows))

        allowed: Allowed = loaded.cached(loaded.filter_cache, filters, find)
        return allowed

    def _selector(self, ids: np.ndarray | None) -> Any:
        if ids is None or len(ids) <= self.subset_max or self.filter_strategy not in ("auto", "selector"):
            return None
        import faiss

        return faiss.IDSelectorBatch(ids)

    def visual(
        self,
        loaded: LoadedVersion,
        qvec: np.ndarray,
        allowed: Allowed | None,
        depth: int,
    ) -> tuple[np.ndarray, np.ndarray, bool]:
        """Visual ranking to ``depth``: ``(ids, cosines, exhausted)`` best first (ties by id).

        With region embeddings a record scores the best of its whole image and its crops: the crops are
        searched ``CROP_DEPTH_FACTOR`` times deeper (one record's crops crowd together), grouped by
        record in numpy, and the merged ranking keeps only what both searches have fully seen (see
        ``ranking.merge_best``)."""
        depth = max(1, min(depth, loaded.count))
        whole = (loaded.index, loaded.spec, loaded.vectors)
        a = (allowed.ids, allowed.rows, allowed.selector) if allowed is not None else None
        crops = loaded.crops
        # A fast-scan index's shortlist stays within its ``shortlist_max`` however deep the search.
        spec = loaded.spec
        params = faiss_index.search_params(spec, depth=depth) if "shortlist_max" in spec.params else None
        if crops is None:
            return self._ranking(whole, qvec, a, depth, loaded.count, params=params)
        total = len(crops)
        crop_depth = max(1, total if depth >= loaded.count else min(total, depth * CROP_DEPTH_FACTOR))
        ca = None
        if allowed is not None:
            assert allowed.crop_rows is not None
            ca = (allowed.crop_rows, allowed.crop_rows, allowed.crop_selector)
        searched = (crops.index, crops.spec, crops.set.vectors)
        # The crop search runs beside the whole-image one (FAISS releases the GIL): on two cores the
        # region path then costs the longer of the two searches, not their sum.
        crop_search = self._workers().submit(self._crop_ranking, searched, qvec, ca, crop_depth, total)
        ids, scores, exhausted = self._ranking(whole, qvec, a, depth, loaded.count, params=params)
        rows, crop_scores, crops_done = crop_search.result()
        owners, best, _ = best_per_record(crops.set.ids[rows], rows, crop_scores)
        return merge_best((ids, scores), exhausted, (owners, best), crops_done)

    def _crop_ranking(
        self,
        searched: tuple[Any, FaissSpec, np.ndarray],
        qvec: np.ndarray,
        allowed: tuple[np.ndarray, np.ndarray, Any] | None,
        depth: int,
        count: int,
    ) -> tuple[np.ndarray, np.ndarray, bool]:
        one_faiss_thread()
        params = _shortlist_params(searched[1], depth)
        return self._ranking(searched, qvec, allowed, depth, count, params=params)

    def _ranking(
        self,
        searched: tuple[Any, FaissSpec, np.ndarray],
        qvec: np.ndarray,
        allowed: tuple[np.ndarray, np.ndarray, Any] | None,
        depth: int,
        count: int,
        *,
        params: Any = None,
    ) -> tuple[np.ndarray, np.ndarray, bool]:
        """``(FAISS ids, cosines, exhausted)`` best first (ties by id) of one FAISS index (records or
        crops); ``params`` for an unfiltered search (a filtered one picks its own)."""
        index, spec, vectors = searched
        depth = max(1, min(depth, count))
        if allowed is None:
            scores, ids = faiss_index.search(index, qvec, depth, params=params)
            # FAISS pads slots it could not fill (IVF probing fewer vectors than asked) with id -1 and
            # score -FLT_MAX: only real hits are checked.
            keep = ids[0] >= 0
            found_ids, found = ids[0][keep], scores[0][keep]
            if not verify.scores_are_sane(found):
                raise verify.IndexDamagedError("the index returned scores outside [-1, 1]")
            order = np.lexsort((found_ids, -found))
            return found_ids[order], found[order], len(found) < depth or depth >= count
        a_ids, a_rows, selector = allowed
        s, i, exhausted = filtered.search(
            index,
            spec,
            vectors,
            qvec,
            a_ids,
            a_rows,
            depth,
            strategy=self.filter_strategy,
            subset_max=self.subset_max,
            selector=selector,
        )
        if not verify.scores_are_sane(s):
            raise verify.IndexDamagedError("the index returned scores outside [-1, 1]")
        order = np.lexsort((i, -s))
        return i[order], s[order], exhausted

    def hits(
        self, loaded: LoadedVersion, page: list[Collapsed], collapse: bool, qvec: np.ndarray | None
    ) -> tuple[Hit, ...]:
        """The page's records as hits; one whose best match is a crop carries that crop as its region."""
        ids = [c.id for c in page]
        records = loaded.meta.records(ids)
        # Most pages hold no record with duplicates: then there is nothing to ask SQLite for.
        shared = loaded.groups.shared(c.group for c in page) if collapse else []
        members = loaded.meta.group_members(shared) if shared else {}
        rows = loaded.meta.lookup(ids) if loaded.crops is not None and qvec is not None else {}
        best = self._best_crops(loaded, {i: rows[i].row for i in ids if i in rows}, qvec)
        hits = []
        for c in page:
            record = records[c.id]
            dups = tuple(m for m in members.get(c.group, []) if m != record.id)
            fields = region_fields(record, best[c.id]) if c.id in best else None
            if fields is not None:
                region, image_region = fields
                record = replace(record, region=region, image_region=image_region)
            hits.append(
                Hit(record=record, score=float(c.score), duplicates=dups, matched_region=bool(fields))
            )
        return tuple(hits)

    def _best_crops(
        self, loaded: LoadedVersion, rows: dict[int, int], qvec: np.ndarray | None
    ) -> dict[int, tuple[float, float, float, float]]:
        """The box of each record's crop that matches ``qvec`` better than its whole image does (exact
        cosines of the stored vectors, whatever the index kind), for records whose vector row is in
        ``rows``; one read of all their crops (a page's worth: ~13 × k rows)."""
        crops = loaded.crops
        if crops is None or qvec is None or not rows:
            return {}
        records = np.fromiter(rows.keys(), dtype=np.int64, count=len(rows))
        lo = np.searchsorted(crops.sorted_ids, records)
        hi = np.searchsorted(crops.sorted_ids, records + 1)
        if not (hi > lo).any():
            return {}
        crop_rows = np.concatenate([crops.order[a:b] for a, b in zip(lo, hi, strict=True)])
        owner = np.repeat(records, hi - lo)
        q = np.asarray(qvec, dtype=np.float32).reshape(-1)
        # Sorted reads: the stored vectors are memory-mapped, and rows of one record lie together.
        order = np.argsort(crop_rows)
        scores = np.empty(len(crop_rows), dtype=np.float32)
        scores[order] = np.asarray(crops.set.vectors[crop_rows[order]], dtype=np.float32) @ q
        whole_rows = np.fromiter(rows.values(), dtype=np.int64, count=len(rows))
        whole_scores = np.asarray(loaded.vectors[whole_rows], dtype=np.float32) @ q
        whole = dict(zip(records.tolist(), whole_scores.tolist(), strict=True))
        out: dict[int, tuple[float, float, float, float]] = {}
        by_score = np.argsort(-scores, kind="stable")
        owners, best, best_rows = best_per_record(owner[by_score], crop_rows[by_score], scores[by_score])
        for rid, score, row in zip(owners.tolist(), best.tolist(), best_rows.tolist(), strict=True):
            if score > whole[rid]:
                box = crops.set.boxes[row]
                out[rid] = (float(box[0]), float(box[1]), float(box[2]), float(box[3]))
        return out
