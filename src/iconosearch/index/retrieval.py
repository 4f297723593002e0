"""Ranking of one loaded index version: visual and hybrid rankings, filters, pools, facets and hits.

:class:`Retrieval` holds the engine's settings (limits, filter strategy) and works on a
:class:`~iconosearch.index.loaded.LoadedVersion` it is handed; it knows nothing of versions or reloads.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from iconosearch.config import LimitsConfig
from iconosearch.index import faiss_index, verify
from iconosearch.index.loaded import LoadedVersion, cache_put
from iconosearch.index.ranking import (
    Collapsed,
    collapse_duplicates,
    count_facets,
    fts_match_expression,
    reciprocal_rank_fusion,
    sort_ranked,
)
from iconosearch.query import Filters, Hit, Query, Total, TotalRelation
from iconosearch.relevance import Thresholds

POOL_DEPTH = 1000
"""How deep results are counted and date-sorted: "1000+ matches" past it."""
POOL_FALLBACK = 100
"""Results date-sorted when none is even a possible match."""
HYBRID_VISUAL_DEPTH = 1000
"""How deep the visual ranking of a hybrid query goes: past ~1000, 1/(60 + rank) adds next to nothing."""

_thread_state = threading.local()


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
        subset_max: int = faiss_index.DEFAULT_SUBSET_MAX,
    ) -> None:
        self.limits = limits
        self.filter_strategy = filter_strategy
        self.subset_max = subset_max

    def facets(
        self, loaded: LoadedVersion, filters: Filters, keywords: str | None
    ) -> dict[str, dict[str, int]]:
        """Facet counts of the records matching ``filters`` (and ``keywords``), cached per version."""
        key = (filters, keywords)
        with loaded.lock:
            cached = loaded.facet_cache.get(key)
            if cached is not None:
                return cached
            ids = None
            if keywords is not None:
                ids = loaded.meta.keyword_ranking(
                    fts_match_expression(keywords), filters, self.limits.depth_max
                )
            result = count_facets(loaded.meta.facet_rows(filters, ids))
            cache_put(loaded.facet_cache, key, result)
        return result

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
        matches, keywords = keyword_clause
        groups = self.ranked(loaded, query, qvec, matches, POOL_DEPTH + 1)
        deeper = len(groups) > POOL_DEPTH
        groups = groups[:POOL_DEPTH]
        if keywords:
            matching = self.facets(loaded, query.filters, keywords)
            return groups, Total(sum(matching["collection"].values()), "eq", "keywords")
        if matches:
            depth = self.limits.depth_max
            with loaded.lock:
                found = {i for m in matches for i in loaded.meta.keyword_ranking(m, query.filters, depth)}
            return groups, Total(len(found), "gte" if len(found) >= depth else "eq", "keywords")
        if thresholds is not None:
            kept = [g for g in groups if g.score >= thresholds.possible]
            if deeper and len(kept) == len(groups):
                relation: TotalRelation = "gte"
            else:
                # Approximate indexes may miss a few: their count is an estimate.
                relation = "eq" if loaded.spec.kind == "flat" else "about"
            # Nothing relevant enough: date order still sorts the best few rather than nothing.
            return (kept or groups[:POOL_FALLBACK]), Total(len(kept), relation, "relevance")
        allowed = self.facets(loaded, query.filters, None)
        return groups, Total(sum(allowed["collection"].values()), "eq", "filters")

    def by_date(self, loaded: LoadedVersion, pool: list[Collapsed], *, descending: bool) -> list[Collapsed]:
        """``pool`` by date (start, then end year; relevance breaks ties), undated results last."""
        with loaded.lock:
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
            with loaded.lock:
                keyword_rankings = [
                    loaded.meta.keyword_ranking(m, query.filters, self.limits.depth_max) for m in matches
                ]
            visual_ids: list[int] = []
            if qvec is not None:
                visual, _ = self.visual(
                    loaded, qvec, allowed, min(HYBRID_VISUAL_DEPTH, self.limits.depth_max)
                )
                if query.min_score is not None:
                    visual = [p for p in visual if p[1] >= query.min_score]
                visual_ids = [i for i, _ in visual]
            fused = reciprocal_rank_fusion([r for r in (visual_ids, *keyword_rankings) if r])
            return self._collapse(loaded, fused, query.collapse_duplicates, need)
        assert qvec is not None
        depth = max(64, need * 2 if query.collapse_duplicates else need)
        while True:
            ranked, exhausted = self.visual(loaded, qvec, allowed, depth)
            if query.min_score is not None:
                cut = [p for p in ranked if p[1] >= query.min_score]
                exhausted = exhausted or len(cut) < len(ranked)
                ranked = cut
            groups = self._collapse(loaded, ranked, query.collapse_duplicates, need)
            if len(groups) >= need or exhausted or depth >= loaded.count:
                return groups
            depth = min(loaded.count, depth * 4)

    def _collapse(
        self, loaded: LoadedVersion, ranked: list[tuple[int, float]], collapse: bool, need: int
    ) -> list[Collapsed]:
        if not collapse:
            return [Collapsed(i, s, i) for i, s in ranked[:need]]
        return collapse_duplicates(ranked, loaded.groups, limit=need)

    def allowed(self, loaded: LoadedVersion, filters: Filters) -> tuple[np.ndarray, np.ndarray, Any] | None:
        if filters == Filters():
            return None
        with loaded.lock:
            cached = loaded.filter_cache.get(filters)
            if cached is None:
                found = loaded.meta.filtered(filters)
                assert found is not None
                ids = np.asarray(found[0], dtype=np.int64)
                rows = np.asarray(found[1], dtype=np.int64)
                selector = None
                if len(ids) > self.subset_max and self.filter_strategy in ("auto", "selector"):
                    import faiss

                    selector = faiss.IDSelectorBatch(ids)
                cached = (ids, rows, selector)
                cache_put(loaded.filter_cache, filters, cached)
        return cached

    def visual(
        self,
        loaded: LoadedVersion,
        qvec: np.ndarray,
        allowed: tuple[np.ndarray, np.ndarray, Any] | None,
        depth: int,
    ) -> tuple[list[tuple[int, float]], bool]:
        """Visual ranking to ``depth``: ``([(id, cosine)] best first, exhausted)``."""
        depth = max(1, min(depth, loaded.count))
        if allowed is None:
            scores, ids = faiss_index.search(loaded.index, qvec, depth)
            # FAISS pads slots it could not fill (IVF probing fewer vectors than asked) with id -1 and
            # score -FLT_MAX: only real hits are checked.
            keep = ids[0] >= 0
            if not verify.scores_are_sane(scores[0][keep]):
                raise verify.IndexDamagedError("the index returned scores outside [-1, 1]")
            pairs = sort_ranked(ids[0][keep].tolist(), scores[0][keep].tolist())
            return pairs, len(pairs) < depth or depth >= loaded.count
        a_ids, a_rows, selector = allowed
        s, i, exhausted = faiss_index.filtered_search(
            loaded.index,
            loaded.spec,
            loaded.vectors,
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
        return sort_ranked(i.tolist(), s.tolist()), exhausted

    def hits(self, loaded: LoadedVersion, page: list[Collapsed], collapse: bool) -> tuple[Hit, ...]:
        ids = [c.id for c in page]
        with loaded.lock:
            records = loaded.meta.records(ids)
            members = loaded.meta.group_members([c.group for c in page]) if collapse else {}
        hits = []
        for c in page:
            record = records[c.id]
            dups = tuple(m for m in members.get(c.group, []) if m != record.id)
            hits.append(Hit(record=record, score=float(c.score), duplicates=dups))
        return tuple(hits)
