"""Ranking of one loaded index version: visual and hybrid rankings, filters, pools, facets and hits.

:class:`Retrieval` holds the engine's settings (limits, filter strategy) and works on a
:class:`~iconosearch.index.loaded.LoadedVersion` it is handed; it knows nothing of versions or reloads.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Any, NamedTuple

import numpy as np

from iconosearch.config import LimitsConfig
from iconosearch.index import faiss_index, verify
from iconosearch.index.faiss_index import FaissSpec
from iconosearch.index.loaded import LoadedVersion, cache_put
from iconosearch.index.ranking import (
    Collapsed,
    collapse_duplicates,
    count_facets,
    fts_match_expression,
    merge_best,
    reciprocal_rank_fusion,
    sort_ranked,
)
from iconosearch.index.regions import region_fields
from iconosearch.query import Filters, Hit, Query, Total, TotalRelation
from iconosearch.records import ImageRecord
from iconosearch.relevance import Thresholds

POOL_DEPTH = 1000
"""How deep results are counted and date-sorted: "1000+ matches" past it."""
POOL_FALLBACK = 100
"""Results date-sorted when none is even a possible match."""
HYBRID_VISUAL_DEPTH = 1000
"""How deep the visual ranking of a hybrid query goes: past ~1000, 1/(60 + rank) adds next to nothing."""

CROP_DEPTH_FACTOR = 4
"""Crops are searched this many times deeper than records: a record's crops tend to rank together."""

_thread_state = threading.local()


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

    def allowed(self, loaded: LoadedVersion, filters: Filters) -> Allowed | None:
        """The records (and crops) ``filters`` allow, cached per version; ``None``: no filters."""
        if filters == Filters():
            return None
        with loaded.lock:
            cached: Allowed | None = loaded.filter_cache.get(filters)
            if cached is None:
                found = loaded.meta.filtered(filters)
                assert found is not None
                ids = np.asarray(found[0], dtype=np.int64)
                rows = np.asarray(found[1], dtype=np.int64)
                crop_rows = loaded.crops.allowed_rows(ids) if loaded.crops is not None else None
                cached = Allowed(ids, rows, self._selector(ids), crop_rows, self._selector(crop_rows))
                cache_put(loaded.filter_cache, filters, cached)
        return cached

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
    ) -> tuple[list[tuple[int, float]], bool]:
        """Visual ranking to ``depth``: ``([(id, cosine)] best first, exhausted)``.

        With region embeddings a record scores the best of its whole image and its crops: the crops are
        searched ``CROP_DEPTH_FACTOR`` times deeper (one record's crops crowd together), and the merged
        ranking keeps only what both searches have fully seen (see ``ranking.merge_best``)."""
        depth = max(1, min(depth, loaded.count))
        whole = (loaded.index, loaded.spec, loaded.vectors)
        a = (allowed.ids, allowed.rows, allowed.selector) if allowed is not None else None
        pairs, exhausted = self._ranking(whole, qvec, a, depth, loaded.count)
        crops = loaded.crops
        if crops is None:
            return pairs, exhausted
        total = len(crops)
        crop_depth = total if depth >= loaded.count else min(total, depth * CROP_DEPTH_FACTOR)
        ca = None
        if allowed is not None:
            assert allowed.crop_rows is not None
            ca = (allowed.crop_rows, allowed.crop_rows, allowed.crop_selector)
        crop_pairs, crops_done = self._ranking(
            (crops.index, crops.spec, crops.set.vectors), qvec, ca, max(1, crop_depth), total
        )
        owners = crops.set.ids
        by_record = [(int(owners[r]), sc) for r, sc in crop_pairs]
        return merge_best(pairs, exhausted, by_record, crops_done)

    def _ranking(
        self,
        searched: tuple[Any, FaissSpec, np.ndarray],
        qvec: np.ndarray,
        allowed: tuple[np.ndarray, np.ndarray, Any] | None,
        depth: int,
        count: int,
    ) -> tuple[list[tuple[int, float]], bool]:
        """``([(FAISS id, cosine)] best first, exhausted)`` of one FAISS index (records or crops)."""
        index, spec, vectors = searched
        depth = max(1, min(depth, count))
        if allowed is None:
            scores, ids = faiss_index.search(index, qvec, depth)
            # FAISS pads slots it could not fill (IVF probing fewer vectors than asked) with id -1 and
            # score -FLT_MAX: only real hits are checked.
            keep = ids[0] >= 0
            if not verify.scores_are_sane(scores[0][keep]):
                raise verify.IndexDamagedError("the index returned scores outside [-1, 1]")
            pairs = sort_ranked(ids[0][keep].tolist(), scores[0][keep].tolist())
            return pairs, len(pairs) < depth or depth >= count
        a_ids, a_rows, selector = allowed
        s, i, exhausted = faiss_index.filtered_search(
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
        return sort_ranked(i.tolist(), s.tolist()), exhausted

    def hits(
        self, loaded: LoadedVersion, page: list[Collapsed], collapse: bool, qvec: np.ndarray | None
    ) -> tuple[Hit, ...]:
        """The page's records as hits; one whose best match is a crop carries that crop as its region."""
        ids = [c.id for c in page]
        with loaded.lock:
            records = loaded.meta.records(ids)
            members = loaded.meta.group_members([c.group for c in page]) if collapse else {}
            rows = loaded.meta.lookup(ids) if loaded.crops is not None and qvec is not None else {}
        hits = []
        for c in page:
            record = records[c.id]
            dups = tuple(m for m in members.get(c.group, []) if m != record.id)
            fields = self._best_crop(loaded, record, c.id, rows[c.id].row, qvec) if c.id in rows else None
            if fields is not None:
                region, image_region = fields
                record = replace(record, region=region, image_region=image_region)
            hits.append(
                Hit(record=record, score=float(c.score), duplicates=dups, matched_region=bool(fields))
            )
        return tuple(hits)

    def _best_crop(
        self,
        loaded: LoadedVersion,
        record: ImageRecord,
        record_int_id: int,
        row: int,
        qvec: np.ndarray | None,
    ) -> tuple[str, str] | None:
        """``(region, image_region)`` of the record's crop that matches ``qvec`` better than the whole
        image does (exact cosines, whatever the index kind), or ``None``."""
        crops = loaded.crops
        if crops is None or qvec is None:
            return None
        rows = crops.rows_of(record_int_id)
        if not len(rows):
            return None
        q = np.asarray(qvec, dtype=np.float32).reshape(-1)
        scores = np.asarray(crops.set.vectors[rows], dtype=np.float32) @ q
        best = int(np.argmax(scores))
        if float(scores[best]) <= float(np.asarray(loaded.vectors[row], dtype=np.float32) @ q):
            return None
        box = crops.set.boxes[rows[best]]
        return region_fields(record, (float(box[0]), float(box[1]), float(box[2]), float(box[3])))
