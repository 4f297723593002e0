"""The query engine: one index name, served from its CURRENT version, reloaded without restart.

Public API (the CLI and the API both use it)::

    engine = SearchEngine.open(data_dir, "default")
    page = engine.search(Query(terms=(Term("text", "a map of Paris"),), k=24))
    page.next_cursor  # pass back as Query.cursor for the next page

Every method is thread-safe. ``search`` raises :class:`iconosearch.query.QueryError` subclasses for
bad input (the API maps them to 4xx). The work is split: :mod:`~iconosearch.index.loaded` (one opened
version), :mod:`~iconosearch.index.querying` (query vectors, validation) and
:mod:`~iconosearch.index.retrieval` (rankings); this module picks the version and pages.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from pathlib import Path

from iconosearch.config import EncoderConfig, LimitsConfig
from iconosearch.datadir import DataDir
from iconosearch.index import filtered, verify
from iconosearch.index.loaded import IndexInfo, LoadedVersion, parse_id, resolve_id, resolve_row
from iconosearch.index.querying import EmbedderLoader, ModelMismatchError, QueryEncoder, validate_filters
from iconosearch.index.ranking import (
    HYBRID_MAX_MATCHES,
    HYBRID_MAX_SHARE,
    Cursor,
    decode_cursor,
    encode_cursor,
    fts_any_expression,
    fts_match_expression,
    fts_words_expression,
    query_key,
)
from iconosearch.index.retrieval import Retrieval, one_faiss_thread
from iconosearch.index.store import IndexStore
from iconosearch.models.batching import BatchStats
from iconosearch.query import (
    EmptyQueryError,
    Filters,
    InvalidCursorError,
    LimitExceededError,
    Query,
    QueryError,
    SearchMode,
    SearchPage,
    Term,
)
from iconosearch.records import ImageRecord
from iconosearch.relevance import Calibration, query_kind
from iconosearch.subjects import expand_subjects
from iconosearch.subjects.suggested import SuggestedSubject

__all__ = ["IndexInfo", "IndexNotReadyError", "ModelMismatchError", "SearchEngine"]

log = logging.getLogger(__name__)


class IndexNotReadyError(RuntimeError):
    """No version of the index has been built yet (the API answers 503)."""


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
        subset_max: int = filtered.DEFAULT_SUBSET_MAX,
        allow_private_urls: bool = False,
        encoder: EncoderConfig | None = None,
        search_mode: SearchMode = "hybrid",
    ) -> None:
        self._store = store
        self.search_mode: SearchMode = search_mode
        """How text queries rank unless a query says (``Query.mode``; ``settings.search.mode``)."""
        self.limits = limits or LimitsConfig()
        self._encoder = QueryEncoder(
            self.limits,
            encoder=encoder,
            embedder_loader=embedder_loader,
            allow_url_queries=allow_url_queries,
            allow_private_urls=allow_private_urls,
        )
        self._retrieval = Retrieval(self.limits, filter_strategy=filter_strategy, subset_max=subset_max)
        self._lock = threading.RLock()
        self._current: LoadedVersion | None = None
        self._previous: LoadedVersion | None = None
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
        encoder: EncoderConfig | None = None,
        search_mode: SearchMode = "hybrid",
    ) -> SearchEngine:
        """Open the index ``name`` under ``data_dir``; never fails because the index is missing.

        ``embedder_loader`` defaults to ``iconosearch.models.embedder.load_embedder``; the model is loaded
        lazily on the first query that needs it, from the spec the index manifest records (and its
        fingerprint is checked against the manifest). ``limits`` gives k_max/depth_max/upload and
        timeout limits (default ``LimitsConfig()``); ``allow_url_queries`` enables ``Term("url", …)``
        (``settings.server.allow_url_queries``); ``encoder`` how query texts are encoded
        (``settings.encoder``: micro-batching window, batch size, threads, runtime); ``search_mode`` how
        text queries rank unless a query says (``settings.search.mode``, see :meth:`_search`).
        """
        store = IndexStore(DataDir(data_dir).indexes, name)
        return cls(
            store,
            embedder_loader=embedder_loader,
            limits=limits,
            allow_url_queries=allow_url_queries,
            encoder=encoder,
            search_mode=search_mode,
        )

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

    def _open(self, name: str) -> LoadedVersion | None:
        try:
            return LoadedVersion(self._store.open_version(name), self._store.root.parent.parent)
        except Exception as exc:  # damaged, truncated, unreadable: all mean "not this version"
            self._bad[name] = f"{type(exc).__name__}: {exc}"
            log.error("index %s version %s cannot be served: %s", self._store.name, name, exc)
            return None

    def _fallback(self, bad: str, current: LoadedVersion | None) -> LoadedVersion | None:
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

    def _switch_to(self, loaded: LoadedVersion) -> None:
        current = self._current
        self._encoder.forget_unless(loaded.manifest)
        self._previous, self._current = current, loaded
        log.debug("serving index %s version %s (%d records)", self._store.name, loaded.name, loaded.count)

    def _mark_bad(self, loaded: LoadedVersion, reason: str) -> None:
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
                    loaded.meta.close()
            self._current = self._previous = None
            self._encoder.close()
            self._retrieval.close()

    def _require(self) -> LoadedVersion:
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
        iid = resolve_id(loaded, record_id)
        return loaded.meta.records([iid]).get(iid) if iid is not None else None

    def suggested_subjects(self, record_id: str) -> list[SuggestedSubject]:
        """Machine-suggested ICONCLASS subjects of ``record_id``, best first (``subjects.suggested``)."""
        loaded = self._require()
        iid = resolve_id(loaded, record_id)
        return loaded.meta.suggestions(iid) if iid is not None else []

    def duplicates(self, record_id: str) -> tuple[str, ...]:
        """Ids of the near-identical images of ``record_id`` (not including itself)."""
        loaded = self._require()
        iid, row = resolve_row(loaded, record_id)
        if row is None:
            return ()
        members = loaded.meta.group_members([row.dup_group]).get(row.dup_group, [])
        return tuple(m for m in members if iid is None or parse_id(m) != iid)

    def facets(self, filters: Filters) -> dict[str, dict[str, int]]:
        """Counts of records matching ``filters`` by collection, institution, rights and century."""
        loaded = self._require()
        validate_filters(filters, loaded)
        return self._retrieval.facets(loaded, filters, None)

    def text_batch_stats(self) -> BatchStats | None:
        """How concurrent query texts were batched (:class:`~iconosearch.models.batching.TextBatcher`)
        since the served model was loaded; ``None`` before its first text query."""
        return self._encoder.batch_stats()

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

        In ``hybrid`` mode (the default) a query's text words also rank the records whose catalogue text
        holds them all, fused like a keyword clause, when they single out a few records (see
        :meth:`_words_clause`): names and titles an embedding cannot know are then found. The scores,
        total and missing relevance bands are then those of a keyword query.
        """
        query = expand_subjects(query)
        current = self._require()
        one_faiss_thread()
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
        validate_filters(query.filters, loaded)
        matches = [fts_match_expression(keywords)] if keywords else []
        any_match = fts_any_expression(query.keyword_any)
        matches += [any_match] if any_match else []
        # The texts encode on the encoder's thread while this one counts the hybrid words (FTS5).
        self._encoder.prefetch(query, loaded)
        words = self._words_clause(loaded, query)
        matches += [words] if words else []

        t0 = time.perf_counter()
        qvec = self._encoder.query_vector(query, loaded) if query.terms else None
        t1 = time.perf_counter()
        kind = query_kind(query) if words is None else None  # fused scores are not calibrated cosines
        thresholds = loaded.calibration.for_kind(kind) if loaded.calibration and kind else None
        total = None
        need = offset + query.k + 1  # one more than the page, to know whether a next page exists
        if query.sort != "relevance":
            pool, total = self._retrieval.pool(loaded, query, qvec, (matches, keywords), thresholds)
            groups = self._retrieval.by_date(loaded, pool, descending=query.sort == "date-desc")
        elif query.cursor is None:
            # One search: the total is counted from the page's ranking when it can be (see first_page).
            clause = (matches, keywords)
            groups, total = self._retrieval.first_page(loaded, query, qvec, clause, thresholds, need)
        else:
            groups = self._retrieval.ranked(loaded, query, qvec, matches, need)
        page = groups[offset : offset + query.k]
        hits = self._retrieval.hits(loaded, page, query.collapse_duplicates, qvec)
        t2 = time.perf_counter()
        more = len(groups) > offset + query.k and offset + query.k < depth_max
        next_cursor = encode_cursor(Cursor(loaded.name, offset + query.k, key)) if more else None
        facets = self._retrieval.facets(loaded, query.filters, keywords) if query.cursor is None else {}
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

    def _words_clause(self, loaded: LoadedVersion, query: Query) -> str | None:
        """The FTS5 expression hybrid search fuses for ``query``'s text words, or ``None``.

        ``None`` in ``vector`` mode, when the query brings its own keyword clause or subject keywords
        (they say which words matter), when no positive text term has a content word, and when the
        words match no record, or more than ``HYBRID_MAX_SHARE`` of those the filters allow, or more
        than ``HYBRID_MAX_MATCHES``: then the ranking is exactly the visual one."""
        if (query.mode or self.search_mode) != "hybrid" or query.keywords or query.keyword_any:
            return None
        texts = [
            t.value.decode() if isinstance(t.value, bytes) else t.value
            for t in query.terms
            if t.kind == "text" and t.weight > 0
        ]
        expression = fts_words_expression(texts)
        if expression is None:
            return None
        allowed = self._retrieval.allowed(loaded, query.filters)
        share = int(HYBRID_MAX_SHARE * (loaded.count if allowed is None else len(allowed.ids)))
        cap = min(share, HYBRID_MAX_MATCHES)
        # Counted once per version, words and filters: a repeated query or its next page (which asks
        # again) then costs a dict lookup, not an FTS5 count of up to 5,001 rows (~10 ms at 1M records).
        found = loaded.cached(
            loaded.word_counts,
            (expression, query.filters),
            lambda: loaded.meta.keyword_count(expression, query.filters, cap + 1),
        )
        return expression if 0 < found <= cap else None
