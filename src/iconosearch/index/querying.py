"""Query vectors: the served model, loaded lazily and checked against the index, turns query terms
(text, image bytes, an indexed item, an image URL) into one unit vector; filters are validated here too."""

from __future__ import annotations

import functools
import math
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from iconosearch import deadline
from iconosearch.config import EncoderConfig, LimitsConfig
from iconosearch.index.loaded import LoadedVersion, resolve_row
from iconosearch.index.ranking import combine_terms
from iconosearch.index.store import IndexManifest
from iconosearch.index.url_fetch import fetch_image_bytes
from iconosearch.models.batching import BatchStats
from iconosearch.query import (
    EmptyQueryError,
    Filters,
    InvalidFilterError,
    InvalidImageError,
    InvalidRegionError,
    LimitExceededError,
    Query,
    QueryError,
    Term,
    UnknownCollectionError,
    UnknownItemError,
    UrlNotAllowedError,
)

EmbedderLoader = Callable[[str], Any]
"""``load_embedder``-like: model spec → Embedder (see ``iconosearch.models.embedder``)."""
MAX_TEXT_CHARS = 1000
"""The longest text term encoded (after whitespace runs became single spaces)."""


def _query_text(term: Term) -> str:
    """A text term's text as it is encoded and cached: whitespace runs made single spaces."""
    value = term.value.decode() if isinstance(term.value, bytes) else term.value
    return " ".join(value.split())


class QueryEncoder:
    """The model of the served version (loaded on first use) and the query vectors it makes."""

    def __init__(
        self,
        limits: LimitsConfig,
        *,
        encoder: EncoderConfig | None = None,
        embedder_loader: EmbedderLoader | None = None,
        allow_url_queries: bool = False,
        allow_private_urls: bool = False,
    ) -> None:
        self.limits = limits
        self.encoder = encoder or EncoderConfig()
        self.allow_url_queries = allow_url_queries
        self._allow_private_urls = allow_private_urls
        self._loader = embedder_loader
        self._lock = threading.RLock()
        self._embedder: Any = None
        self._texts: Any = None  # TextEmbeddingCache of the current embedder
        self._batcher: Any = None  # TextBatcher under it: one worker encodes concurrent queries together

    def forget_unless(self, manifest: IndexManifest) -> None:
        """Drop the loaded model when ``manifest`` (a newly served version) was built with another."""
        with self._lock:
            if self._embedder is not None and (
                self._embedder.fingerprint != manifest.model_fingerprint
                or self._embedder.spec != manifest.model_spec
            ):
                self._embedder = None
                self._texts = None
                self._close_batcher()

    def close(self) -> None:
        """Stop the text-encoding worker (a later query starts a new one)."""
        with self._lock:
            self._embedder = None
            self._texts = None
            self._close_batcher()

    def _close_batcher(self) -> None:
        if self._batcher is not None:
            self._batcher.close()
            self._batcher = None

    def batch_stats(self) -> BatchStats | None:
        """Counters of the text-batching worker of the loaded model (``None`` before its first text)."""
        batcher = self._batcher
        return batcher.stats if batcher is not None else None

    def get_embedder(self, loaded: LoadedVersion) -> Any:
        with self._lock:
            if self._embedder is None:
                loader = self._loader
                if loader is None:
                    from iconosearch.models.embedder import load_embedder

                    enc = self.encoder
                    loader = functools.partial(
                        load_embedder, text_runtime=enc.runtime, text_threads=enc.threads
                    )
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
                from iconosearch.models.batching import TextBatcher
                from iconosearch.models.pipeline import TextEmbeddingCache

                enc = self.encoder
                self._batcher = TextBatcher(
                    embedder.embed_texts,
                    embedder.dim,
                    window_ms=enc.batch_window_ms,
                    max_batch=enc.batch_max,
                    threads=enc.threads,
                )
                self._embedder = embedder
                self._texts = TextEmbeddingCache(self._batcher, submit=self._batcher.submit)
            return self._embedder

    def prefetch(self, query: Query, loaded: LoadedVersion) -> None:
        """Start encoding ``query``'s texts without waiting, so the caller's other work overlaps the
        encoder's (:meth:`query_vector` then takes the vectors); texts it would refuse are left to it."""
        wanted = [t for t in query.terms if t.kind == "text" and t.weight != 0 and math.isfinite(t.weight)]
        texts = [text for text in map(_query_text, wanted) if 0 < len(text) <= MAX_TEXT_CHARS]
        if not texts:
            return
        with self._lock:
            self.get_embedder(loaded)
            cache = self._texts
        cache.prefetch(texts)

    def query_vector(self, query: Query, loaded: LoadedVersion) -> np.ndarray:
        vectors: list[np.ndarray] = []
        weights: list[float] = []
        for term in query.terms:
            if not math.isfinite(term.weight):
                raise QueryError(f"term weight {term.weight!r} is not a finite number")
            if term.weight == 0:
                continue
            vectors.append(self.term_vector(term, loaded))
            weights.append(term.weight)
        if not vectors:
            raise EmptyQueryError("every query term has weight 0")
        return combine_terms(vectors, weights).reshape(1, -1)

    def term_vector(self, term: Term, loaded: LoadedVersion) -> np.ndarray:
        if term.region is not None and term.kind != "item":
            raise InvalidRegionError(f"only an item term can have a region, not a {term.kind} term")
        if term.kind == "text":
            text = _query_text(term)
            if not text:
                raise EmptyQueryError("a text term is empty")
            if len(text) > MAX_TEXT_CHARS:
                raise QueryError(f"a text term is longer than {MAX_TEXT_CHARS} characters")
            with self._lock:  # a reload may swap the embedder: take it and its cache together
                self.get_embedder(loaded)
                texts = self._texts
            return np.asarray(texts.embed(text))
        if term.kind == "item":
            rid = term.value.decode() if isinstance(term.value, bytes) else term.value
            iid, row = resolve_row(loaded, rid.strip())
            if row is None:
                raise UnknownItemError(f"no indexed item has id {rid!r}")
            if term.region is not None:
                assert iid is not None
                return self.detail_vector(loaded, iid, row.content_hash, term.region)
            return np.asarray(loaded.vectors[row.row], dtype=np.float32)
        if term.kind == "image":
            if not isinstance(term.value, bytes):
                raise InvalidImageError("an image term needs the image's bytes")
            return self.image_vector(term.value, loaded)
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
            return self.image_vector(data, loaded)
        raise QueryError(f"unknown term kind {term.kind!r}")

    def detail_vector(self, loaded: LoadedVersion, iid: int, digest: str | None, region: str) -> np.ndarray:
        """The vector of a detail of an indexed item ("find more like this detail"): its cached image
        cropped to ``region`` (image pixels or ``pct:``), cut and decoded as index-time crops are."""
        from PIL import Image

        from iconosearch.datadir import DataDir
        from iconosearch.images import ImageRejectedError, open_image
        from iconosearch.index import regions

        record = loaded.meta.records([iid])[iid]
        # The region is checked first: a malformed one is the clearer message.
        box = _detail_box(region, (record.width, record.height)) if record.width and record.height else None
        files: list[Path] = []
        if loaded.data_dir is not None and digest:
            files = sorted((DataDir(loaded.data_dir).image_cache / digest[:2]).glob(f"{digest}.*"))
        if not files:
            raise InvalidRegionError(
                f"the image of item {record.id} is not cached here, so no detail of it can be searched"
            )
        deadline.check()
        try:
            if box is None:  # no size recorded: the cached file's own (a header read) is the image's
                with Image.open(files[0]) as header:
                    box = _detail_box(region, header.size)
            image = open_image(
                files[0],
                max_pixels=self.limits.image_max_pixels,
                max_side=regions.DECODE_MAX_SIDE,
                max_decode_bytes=self.limits.image_max_decode_bytes,
            )
        except (ImageRejectedError, OSError) as exc:
            raise InvalidRegionError(f"the image of item {record.id} cannot be read: {exc}") from exc
        detail = regions.crop(image, box)
        return np.asarray(self.get_embedder(loaded).embed_images([detail]), dtype=np.float32)[0]

    def image_vector(self, data: bytes, loaded: LoadedVersion) -> np.ndarray:
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
        return np.asarray(self.get_embedder(loaded).embed_images([image]), dtype=np.float32)[0]


class ModelMismatchError(RuntimeError):
    """The model loaded here is not the one the index was built with."""


RIGHTS_CLASSES = ("open", "restricted", "unknown")
_LANG = re.compile(r"[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8})*")


def validate_filters(filters: Filters, loaded: LoadedVersion) -> None:
    """Refuse filters this version cannot answer (unknown collections, bad years, rights or languages)."""
    unknown = [c for c in filters.collections if c not in loaded.collections]
    if unknown:
        known = ", ".join(sorted(loaded.collections)) or "none"
        raise UnknownCollectionError(f"unknown collection(s) {', '.join(unknown)} (indexed: {known})")
    if filters.year_from is not None and filters.year_to is not None and filters.year_from > filters.year_to:
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


def _detail_box(region: str, size: tuple[int, int]) -> tuple[float, float, float, float]:
    from iconosearch.index.regions import image_box

    try:
        return image_box(region, size)
    except ValueError as exc:
        raise InvalidRegionError(str(exc)) from exc
