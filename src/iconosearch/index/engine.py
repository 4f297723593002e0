"""The query engine: one index name, served from its CURRENT version, reloaded without restart.

Public API (the CLI and the API both use it)::

    engine = SearchEngine.open(data_dir, "default")
    page = engine.search(Query(terms=(Term("text", "a map of Paris"),), k=24))
    page.next_cursor  # pass back as Query.cursor for the next page

Every method is thread-safe. ``search`` raises :class:`iconosearch.query.QueryError` subclasses for
bad input (the API maps them to 4xx).
"""

from __future__ import annotations

import logging
import math
import re
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from iconosearch import deadline
from iconosearch.config import LimitsConfig
from iconosearch.datadir import DataDir
from iconosearch.index import faiss_index, verify
from iconosearch.index.faiss_index import FaissSpec
from iconosearch.index.metadata import Metadata
from iconosearch.index.ranking import (
    Collapsed,
    Cursor,
    collapse_duplicates,
    combine_terms,
    count_facets,
    decode_cursor,
    encode_cursor,
    fts_any_expression,
    fts_match_expression,
    query_key,
    reciprocal_rank_fusion,
    sort_ranked,
)
from iconosearch.index.store import IndexStore, IndexStoreError, IndexVersion
from iconosearch.index.url_fetch import fetch_image_bytes
from iconosearch.query import (
    EmptyQueryError,
    Filters,
    Hit,
    InvalidCursorError,
    InvalidFilterError,
    InvalidImageError,
    LimitExceededError,
    Query,
    QueryError,
    SearchPage,
    Term,
    Total,
    TotalRelation,
    UnknownCollectionError,
    UnknownItemError,
    UrlNotAllowedError,
)
from iconosearch.records import ImageRecord, id_to_int64
from iconosearch.relevance import Calibration, Thresholds, load_calibration, query_kind
from iconosearch.subjects import expand_subjects

log = logging.getLogger(__name__)

EmbedderLoader = Callable[[str], Any]
"""``load_embedder``-like: model spec → Embedder (see ``iconosearch.models.embedder``)."""


class IndexNotReadyError(RuntimeError):
    """No version of the index has been built yet (the API answers 503)."""


@dataclass(frozen=True, slots=True)
class IndexInfo:
    """What the served index version is."""

    name: str
    version: str
    count: int
    model_spec: str
    model_fingerprint: str
    dim: int
    created: str
    """ISO 8601 UTC time the version was built."""
    collections: tuple[str, ...]
    faiss_type: str
    """``flat``, ``ivf-flat``, ``ivf-pq``, ``hnsw``…"""
    recall_at_10: float | None
    """Measured recall@10 of the approximate index against exact search (``None`` for exact)."""


class _Loaded:
    """One opened, immutable index version. Dropped (not closed) on reload: in-flight searches keep
    their reference, and the files go when the last one does."""

    def __init__(self, version: IndexVersion, data_dir: Path | None = None) -> None:
        m = version.manifest
        verify.require_intact(version)
        self.version = version
        self.manifest = m
        self.spec = FaissSpec(m.faiss_type, dict(m.faiss_params))
        self.index = faiss_index.read(version.faiss_path, self.spec)
        self.vectors: np.ndarray = np.load(version.vectors_path, mmap_mode="r")
        self.meta = Metadata(version.metadata_path)
        self.lock = threading.Lock()
        """Serialises use of the SQLite connection (FAISS searches run concurrently)."""
        self.count = self.meta.count()
        self.groups = self.meta.shared_groups()
        """Near-duplicate group of each record that has duplicates, kept in memory for collapsing."""
        self.collections = frozenset(self.meta.collections()) | frozenset(m.collections)
        self.calibration: Calibration | None = load_calibration(m.model_spec, m.model_fingerprint, data_dir)
        self.filter_cache: OrderedDict[Filters, tuple[np.ndarray, np.ndarray, Any]] = OrderedDict()
        self.facet_cache: OrderedDict[tuple[Filters, str | None], dict[str, dict[str, int]]] = OrderedDict()
        if self.index.ntotal != self.count or self.vectors.shape != (self.count, m.dim):
            raise IndexStoreError(
                f"index version {m.version} is inconsistent: FAISS {self.index.ntotal}, "
                f"metadata {self.count}, vectors {self.vectors.shape}"
            )

    @property
    def name(self) -> str:
        return self.manifest.version


_CACHE_SIZE = 64
POOL_DEPTH = 1000
"""How deep results are counted and date-sorted: "1000+ matches" past it."""
POOL_FALLBACK = 100
"""Results date-sorted when none is even a possible match."""
HYBRID_VISUAL_DEPTH = 1000
"""How deep the visual ranking of a hybrid query goes: past ~1000, 1/(60 + rank) adds next to nothing."""


def _cache_put(cache: OrderedDict[Any, Any], key: Any, value: Any) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > _CACHE_SIZE:
        cache.popitem(last=False)


class SearchEngine:
    """Searches one index name; picks up a new ``CURRENT`` version on :meth:`reload_if_changed`."""

    def __init__(
        self,
        store: IndexStore,
        *,
        embedder_loader: EmbedderLoader | None = None,
        limits: LimitsConfig | None = None,
        allow_url_queries: bool = False,
        filter_strategy: str = "auto",
        subset_max: int = faiss_index.DEFAULT_SUBSET_MAX,
        allow_private_urls: bool = False,
    ) -> None:
        self._store = store
        self._loader = embedder_loader
        self.limits = limits or LimitsConfig()
        self.allow_url_queries = allow_url_queries
        self.filter_strategy = filter_strategy
        self.subset_max = subset_max
        self._allow_private_urls = allow_private_urls
        self._lock = threading.RLock()
        self._current: _Loaded | None = None
        self._previous: _Loaded | None = None
        self._embedder: Any = None
        self._texts: Any = None  # TextEmbeddingCache of the current embedder
        self._bad: dict[str, str] = {}
        """Versions found damaged (name → why); never served again by this engine."""
        self.degraded: str | None = None
        """Why the served version is not ``CURRENT`` (a fallback), or ``None``."""
        self.reload_if_changed()

    @classmethod
    def open(
        cls,
        data_dir: Path,
        name: str = "default",
        *,
        embedder_loader: EmbedderLoader | None = None,
        limits: LimitsConfig | None = None,
        allow_url_queries: bool = False,
    ) -> SearchEngine:
        """Open the index ``name`` under ``data_dir``; never fails because the index is missing.

        ``embedder_loader`` defaults to ``iconosearch.models.embedder.load_embedder``; the model is loaded
        lazily on the first query that needs it, from the spec the index manifest records (and its
        fingerprint is checked against the manifest). ``limits`` gives k_max/depth_max/upload and
        timeout limits (default ``LimitsConfig()``); ``allow_url_queries`` enables ``Term("url", …)``
        (``settings.server.allow_url_queries``).
        """
        store = IndexStore(DataDir(data_dir).indexes, name)
        return cls(store, embedder_loader=embedder_loader, limits=limits, allow_url_queries=allow_url_queries)

    # --- versions ------------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        """``False`` while no version of the index exists yet (search then raises ``IndexNotReadyError``)."""
        return self._current is not None

    def reload_if_changed(self) -> bool:
        """Switch to a new ``CURRENT`` version if one appeared; ``True`` when it switched.

        The new version is fully opened and verified (:mod:`iconosearch.index.verify`) before it
        replaces the old one, so concurrent searches never see a half-loaded index. A version that
        fails is remembered as bad (logged once, not on every check); the engine then serves the
        newest intact version before it and reports itself :attr:`degraded`.
        """
        name = self._store.current_name()
        current = self._current
        if name is None or (current is not None and current.name == name) or name in self._bad:
            return False
        with self._lock:
            current = self._current
            if current is not None and current.name == name:
                return False
            loaded = self._open(name)
            if loaded is not None:
                self.degraded = None
            else:
                loaded = self._fallback(name, current)
                if loaded is None or (current is not None and loaded is current):
                    return False
            self._switch_to(loaded)
            return True

    def _open(self, name: str) -> _Loaded | None:
        try:
            return _Loaded(self._store.open_version(name), self._store.root.parent.parent)
        except Exception as exc:  # damaged, truncated, unreadable: all mean "not this version"
            self._bad[name] = f"{type(exc).__name__}: {exc}"
            log.error("index %s version %s cannot be served: %s", self._store.name, name, exc)
            return None

    def _fallback(self, bad: str, current: _Loaded | None) -> _Loaded | None:
        """The newest intact version older than ``bad`` (the one serving now if it is that)."""
        for name in reversed(self._store.versions()):
            if name >= bad or name in self._bad:
                continue
            loaded = current if current is not None and current.name == name else self._open(name)
            if loaded is not None:
                self.degraded = f"version {bad} is damaged ({self._bad[bad]}); serving {name}"
                log.warning("index %s: %s", self._store.name, self.degraded)
                return loaded
        self.degraded = f"version {bad} is damaged ({self._bad[bad]}); no intact version to serve"
        return None

    def _switch_to(self, loaded: _Loaded) -> None:
        current = self._current
        if self._embedder is not None and (
            self._embedder.fingerprint != loaded.manifest.model_fingerprint
            or self._embedder.spec != loaded.manifest.model_spec
        ):
            self._embedder = None
            self._texts = None
        self._previous, self._current = current, loaded
        log.debug("serving index %s version %s (%d records)", self._store.name, loaded.name, loaded.count)

    def _mark_bad(self, loaded: _Loaded, reason: str) -> None:
        """A served version turned out damaged at query time: fall back now, never serve it again."""
        with self._lock:
            if loaded.name in self._bad:
                return
            self._bad[loaded.name] = reason
            log.error("index %s version %s is damaged: %s", self._store.name, loaded.name, reason)
            if self._current is loaded:
                fallback = self._fallback(loaded.name, None)
                self._current = fallback
                if self._previous is loaded:
                    self._previous = None

    def warm_up(self) -> float:
        """Load the served version's model and answer one text and one image query, so that the first
        real query runs at normal speed (0.1 loaded the model lazily: 17–26 s). Returns seconds."""
        import io

        from PIL import Image

        start = time.perf_counter()
        buf = io.BytesIO()
        Image.new("RGB", (32, 32), (128, 128, 128)).save(buf, format="PNG")
        self.search(Query(terms=(Term("text", "a picture"),), k=1))
        self.search(Query(terms=(Term("image", buf.getvalue()),), k=1))
        return time.perf_counter() - start

    def close(self) -> None:
        """Release files and connections."""
        with self._lock:
            for loaded in (self._current, self._previous):
                if loaded is not None:
                    with loaded.lock:
                        loaded.meta.close()
            self._current = self._previous = None

    def _require(self) -> _Loaded:
        loaded = self._current
        if loaded is None:
            raise IndexNotReadyError(
                f"index {self._store.name!r} has not been built yet (run 'iconosearch index')"
            )
        return loaded

    def info(self) -> IndexInfo:
        """The served version; raises ``IndexNotReadyError`` while there is none."""
        loaded = self._require()
        m = loaded.manifest
        return IndexInfo(
            name=m.name,
            version=m.version,
            count=loaded.count,
            model_spec=m.model_spec,
            model_fingerprint=m.model_fingerprint,
            dim=m.dim,
            created=m.created,
            collections=tuple(sorted(loaded.collections)),
            faiss_type=m.faiss_type,
            recall_at_10=m.recall_at_10,
        )

    def calibration(self) -> Calibration | None:
        """The relevance bands of the served version's model, when it has been calibrated."""
        return self._require().calibration

    # --- records -------------------------------------------------------------------------------
    def get(self, record_id: str) -> ImageRecord | None:
        """The record with this id (or an old id of it, see ``HarvestState.aliases``), or ``None``."""
        loaded = self._require()
        with loaded.lock:
            iid = _resolve_id(loaded, record_id)
            return loaded.meta.records([iid]).get(iid) if iid is not None else None

    def duplicates(self, record_id: str) -> tuple[str, ...]:
        """Ids of the near-identical images of ``record_id`` (not including itself)."""
        loaded = self._require()
        with loaded.lock:
            iid = _resolve_id(loaded, record_id)
            row = loaded.meta.lookup([iid]).get(iid) if iid is not None else None
            if row is None:
                return ()
            members = loaded.meta.group_members([row.dup_group]).get(row.dup_group, [])
        return tuple(m for m in members if iid is None or _parse_id(m) != iid)

    def facets(self, filters: Filters) -> dict[str, dict[str, int]]:
        """Counts of records matching ``filters`` by collection, institution, rights and century."""
        loaded = self._require()
        self._validate_filters(filters, loaded)
        return self._facets(loaded, filters, None)

    def _facets(self, loaded: _Loaded, filters: Filters, keywords: str | None) -> dict[str, dict[str, int]]:
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
            _cache_put(loaded.facet_cache, key, result)
        return result

    # --- searching -----------------------------------------------------------------------------
    def search(self, query: Query) -> SearchPage:
        """Answer one page of ``query`` (see :meth:`_search`); a version found damaged while answering
        is dropped for the newest intact one and the query answered again there, once."""
        loaded = self._require()
        try:
            return self._search(query)
        except (verify.IndexDamagedError, sqlite3.DatabaseError) as exc:
            self._mark_bad(loaded, f"{type(exc).__name__}: {exc}")
            self._require()
            return self._search(query)

    def _search(self, query: Query) -> SearchPage:
        """Answer one page of ``query``; ``page.next_cursor`` continues it (``None`` at the end).

        Scores are cosine similarities of the query vector and the image (as the index computes them:
        exact for ``flat``, 8-bit quantised — within ~1e-3 — for ``ivf-sq8``), or, when ``query.keywords``
        is set, reciprocal-rank-fusion scores of the visual and keyword rankings (``min_score`` then
        applies to the visual cosine before fusion). Results are ordered by score, then id, so the
        same query on the same version always pages the same way; a cursor names the version it was
        made on (the previous version stays usable for cursors after one switch).

        ``page.facets`` (first page only, i.e. without a cursor) count the records the query ranks:
        those matching the filters and, with a keyword clause, the keywords (not ``min_score``).
        """
        query = expand_subjects(query)
        current = self._require()
        self._one_faiss_thread()
        k_max, depth_max = self.limits.k_max, self.limits.depth_max
        if query.k < 1:
            raise QueryError("k must be at least 1")
        if query.k > k_max:
            raise LimitExceededError(f"k={query.k} is more than the allowed {k_max} results per page")
        if query.min_score is not None and not (-1.0 <= query.min_score <= 1.0):
            raise QueryError("min_score must be between -1 and 1 (a cosine similarity)")
        keywords = query.keywords.strip() if query.keywords is not None else None
        if not query.terms and not keywords:
            raise EmptyQueryError("the query is empty: give a text, an image, an item or keywords")
        key = query_key(query)
        loaded, offset = current, 0
        if query.cursor is not None:
            cursor = decode_cursor(query.cursor, expected_key=key)
            previous = self._previous
            if cursor.version == current.name:
                loaded = current
            elif previous is not None and cursor.version == previous.name:
                loaded = previous
            else:
                raise InvalidCursorError(
                    "the index was rebuilt since this cursor was made; start the search again"
                )
            offset = cursor.offset
        if offset + query.k > depth_max:
            raise LimitExceededError(f"paging deeper than {depth_max} results is not allowed")
        self._validate_filters(query.filters, loaded)
        matches = [fts_match_expression(keywords)] if keywords else []
        any_match = fts_any_expression(query.keyword_any)
        matches += [any_match] if any_match else []

        t0 = time.perf_counter()
        qvec = self._query_vector(query, loaded) if query.terms else None
        t1 = time.perf_counter()
        kind = query_kind(query)
        thresholds = loaded.calibration.for_kind(kind) if loaded.calibration and kind else None
        total = None
        if query.sort != "relevance" or query.cursor is None:
            pool, total = self._pool(loaded, query, qvec, (matches, keywords), thresholds)
        if query.sort == "relevance":
            need = offset + query.k + 1  # one more than the page, to know whether a next page exists
            groups = self._ranked(loaded, query, qvec, matches, need)
        else:
            groups = self._by_date(loaded, pool, descending=query.sort == "date-desc")
        page = groups[offset : offset + query.k]
        hits = self._hits(loaded, page, query.collapse_duplicates)
        t2 = time.perf_counter()
        more = len(groups) > offset + query.k and offset + query.k < depth_max
        next_cursor = encode_cursor(Cursor(loaded.name, offset + query.k, key)) if more else None
        facets = self._facets(loaded, query.filters, keywords) if query.cursor is None else {}
        return SearchPage(
            hits=hits,
            next_cursor=next_cursor,
            facets=facets,
            index_version=loaded.name,
            embed_ms=(t1 - t0) * 1000.0,
            search_ms=(t2 - t1) * 1000.0,
            total=total if query.cursor is None else None,
            thresholds=thresholds,
        )

    def _pool(
        self,
        loaded: _Loaded,
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
        groups = self._ranked(loaded, query, qvec, matches, POOL_DEPTH + 1)
        deeper = len(groups) > POOL_DEPTH
        groups = groups[:POOL_DEPTH]
        if keywords:
            matching = self._facets(loaded, query.filters, keywords)
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
        allowed = self._facets(loaded, query.filters, None)
        return groups, Total(sum(allowed["collection"].values()), "eq", "filters")

    def _by_date(self, loaded: _Loaded, pool: list[Collapsed], *, descending: bool) -> list[Collapsed]:
        """``pool`` by date (start, then end year; relevance breaks ties), undated results last."""
        with loaded.lock:
            years = loaded.meta.years([g.id for g in pool])
        dated = [g for g in pool if g.id in years]
        undated = [g for g in pool if g.id not in years]
        sign = -1 if descending else 1
        dated.sort(key=lambda g: (sign * years[g.id][0], sign * years[g.id][1], -g.score, g.id))
        return dated + undated

    def _ranked(
        self, loaded: _Loaded, query: Query, qvec: np.ndarray | None, matches: list[str], need: int
    ) -> list[Collapsed]:
        """At least ``need`` collapsed results in final order (fewer when the results run out).

        ``matches``: FTS5 expressions (the keyword clause, a subject's keywords), each its own ranking."""
        allowed = self._allowed(loaded, query.filters)
        if matches:
            # Hybrid: all rankings to fixed depths, so every page fuses the same lists.
            with loaded.lock:
                keyword_rankings = [
                    loaded.meta.keyword_ranking(m, query.filters, self.limits.depth_max) for m in matches
                ]
            visual_ids: list[int] = []
            if qvec is not None:
                visual, _ = self._visual(
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
            ranked, exhausted = self._visual(loaded, qvec, allowed, depth)
            if query.min_score is not None:
                cut = [p for p in ranked if p[1] >= query.min_score]
                exhausted = exhausted or len(cut) < len(ranked)
                ranked = cut
            groups = self._collapse(loaded, ranked, query.collapse_duplicates, need)
            if len(groups) >= need or exhausted or depth >= loaded.count:
                return groups
            depth = min(loaded.count, depth * 4)

    def _collapse(
        self, loaded: _Loaded, ranked: list[tuple[int, float]], collapse: bool, need: int
    ) -> list[Collapsed]:
        if not collapse:
            return [Collapsed(i, s, i) for i, s in ranked[:need]]
        return collapse_duplicates(ranked, loaded.groups, limit=need)

    def _allowed(self, loaded: _Loaded, filters: Filters) -> tuple[np.ndarray, np.ndarray, Any] | None:
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
                _cache_put(loaded.filter_cache, filters, cached)
        return cached

    def _one_faiss_thread(self) -> None:
        # One OpenMP thread per request thread (the setting is per calling thread): concurrent
        # requests run in parallel, and on shared cores a parallel loop inside one small search
        # costs far more in synchronisation than it saves (bench/search.py measured 70 ms vs 0.2 ms).
        if not getattr(_thread_state, "faiss_single", False):
            import faiss

            faiss.omp_set_num_threads(1)
            _thread_state.faiss_single = True

    def _visual(
        self,
        loaded: _Loaded,
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

    def _hits(self, loaded: _Loaded, page: list[Collapsed], collapse: bool) -> tuple[Hit, ...]:
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

    # --- validation and query vectors ----------------------------------------------------------
    def _validate_filters(self, filters: Filters, loaded: _Loaded) -> None:
        unknown = [c for c in filters.collections if c not in loaded.collections]
        if unknown:
            known = ", ".join(sorted(loaded.collections)) or "none"
            raise UnknownCollectionError(f"unknown collection(s) {', '.join(unknown)} (indexed: {known})")
        if (
            filters.year_from is not None
            and filters.year_to is not None
            and filters.year_from > filters.year_to
        ):
            raise InvalidFilterError(f"year_from {filters.year_from} is after year_to {filters.year_to}")
        for year in (filters.year_from, filters.year_to):
            if year is not None and not (-10000 <= year <= 10000):
                raise InvalidFilterError(f"year {year} is out of range")
        bad = [r for r in filters.rights if r not in RIGHTS_CLASSES]
        if bad:
            raise InvalidFilterError(
                f"unknown rights class(es) {', '.join(map(str, bad))}; use {', '.join(RIGHTS_CLASSES)}"
            )
        for lang in filters.languages:
            if not _LANG.fullmatch(lang.strip()):
                raise InvalidFilterError(f"{lang!r} is not a language tag (e.g. 'en', 'nl', 'fr-CA')")
        for provider in filters.providers:
            if not provider.strip():
                raise InvalidFilterError("an empty institution/provider name cannot be filtered on")

    def _get_embedder(self, loaded: _Loaded) -> Any:
        with self._lock:
            if self._embedder is None:
                loader = self._loader
                if loader is None:
                    from iconosearch.models.embedder import load_embedder

                    loader = load_embedder
                embedder = loader(loaded.manifest.model_spec)
                if (
                    embedder.fingerprint != loaded.manifest.model_fingerprint
                    or embedder.dim != loaded.manifest.dim
                ):
                    m = loaded.manifest
                    raise ModelMismatchError(
                        f"model {m.model_spec!r} here has fingerprint {embedder.fingerprint[:12]} "
                        f"(dim {embedder.dim}) but the index was built with {m.model_fingerprint[:12]} "
                        f"(dim {m.dim}); rebuild the index"
                    )
                from iconosearch.models.pipeline import TextEmbeddingCache

                self._embedder = embedder
                self._texts = TextEmbeddingCache(embedder)
            return self._embedder

    def _query_vector(self, query: Query, loaded: _Loaded) -> np.ndarray:
        vectors: list[np.ndarray] = []
        weights: list[float] = []
        for term in query.terms:
            if not math.isfinite(term.weight):
                raise QueryError(f"term weight {term.weight!r} is not a finite number")
            if term.weight == 0:
                continue
            vectors.append(self._term_vector(term, loaded))
            weights.append(term.weight)
        if not vectors:
            raise EmptyQueryError("every query term has weight 0")
        return combine_terms(vectors, weights).reshape(1, -1)

    def _term_vector(self, term: Term, loaded: _Loaded) -> np.ndarray:
        if term.kind == "text":
            text = term.value.decode() if isinstance(term.value, bytes) else term.value
            text = " ".join(text.split())
            if not text:
                raise EmptyQueryError("a text term is empty")
            if len(text) > 1000:
                raise QueryError("a text term is longer than 1000 characters")
            with self._lock:  # a reload may swap the embedder: take it and its cache together
                self._get_embedder(loaded)
                texts = self._texts
            return np.asarray(texts.embed(text))
        if term.kind == "item":
            rid = term.value.decode() if isinstance(term.value, bytes) else term.value
            with loaded.lock:
                iid = _resolve_id(loaded, rid.strip())
                row = loaded.meta.lookup([iid]).get(iid) if iid is not None else None
            if row is None:
                raise UnknownItemError(f"no indexed item has id {rid!r}")
            return np.asarray(loaded.vectors[row.row], dtype=np.float32)
        if term.kind == "image":
            if not isinstance(term.value, bytes):
                raise InvalidImageError("an image term needs the image's bytes")
            return self._image_vector(term.value, loaded)
        if term.kind == "url":
            if not self.allow_url_queries:
                raise UrlNotAllowedError("queries by image URL are disabled on this server")
            url = term.value.decode() if isinstance(term.value, bytes) else term.value
            data = fetch_image_bytes(
                url.strip(),
                max_bytes=self.limits.upload_max_bytes,
                timeout_s=min(self.limits.request_timeout_s, 10.0),
                allow_private=self._allow_private_urls,
            )
            return self._image_vector(data, loaded)
        raise QueryError(f"unknown term kind {term.kind!r}")

    def _image_vector(self, data: bytes, loaded: _Loaded) -> np.ndarray:
        from iconosearch.images import ImageRejectedError, open_image
        from iconosearch.models.pipeline import DECODE_MAX_SIDE

        if not data:
            raise InvalidImageError("the query image is empty")
        if len(data) > self.limits.upload_max_bytes:
            raise LimitExceededError(f"the query image is larger than {self.limits.upload_max_bytes} bytes")
        deadline.check()
        try:
            # Decode exactly as the indexed images were, so an indexed image queried as itself scores ~1.
            image = open_image(
                data,
                max_pixels=self.limits.image_max_pixels,
                max_side=DECODE_MAX_SIDE,
                max_decode_bytes=self.limits.image_max_decode_bytes,
            )
        except ImageRejectedError as exc:
            raise InvalidImageError(f"the query image cannot be used: {exc}") from exc
        deadline.check()  # the decode may have outlived the request: do not embed for nobody
        return np.asarray(self._get_embedder(loaded).embed_images([image]), dtype=np.float32)[0]


_thread_state = threading.local()


class ModelMismatchError(RuntimeError):
    """The model loaded here is not the one the index was built with."""


RIGHTS_CLASSES = ("open", "restricted", "unknown")
_LANG = re.compile(r"[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8})*")


def _resolve_id(loaded: _Loaded, record_id: str) -> int | None:
    """FAISS id of a record id, following the alias of an id that 0.1 gave (caller holds the lock)."""
    iid = _parse_id(record_id)
    if iid is None or loaded.meta.lookup([iid]):
        return iid
    new = loaded.meta.alias(record_id)
    return _parse_id(new) if new is not None else iid


def _parse_id(record_id: str) -> int | None:
    # Record ids are 63-bit (see records.record_id), so anything larger is no record of ours.
    if not re.fullmatch(r"[0-7][0-9a-f]{15}", record_id):
        return None
    return id_to_int64(record_id)
