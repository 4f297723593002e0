"""One harvest run of one collection: its bookkeeping, shared by the stages that discover, read and fetch.

The stages (:mod:`~iconosearch.harvest.walk`, :mod:`~iconosearch.harvest.change_stream`,
:mod:`~iconosearch.harvest.manifests`, :mod:`~iconosearch.harvest.images`) are functions of a
:class:`HarvestRun`; it holds what they share: the state, the fetcher, the counts and the summary.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from iconosearch.config import CollectionConfig, Settings
from iconosearch.datadir import DataDir
from iconosearch.harvest.fetch import HOST_DOWN, Fetcher, FetchResult
from iconosearch.harvest.state import HarvestState
from iconosearch.harvest.summary import HarvestSummary, outcome_of
from iconosearch.iiif.parse import Parsed

log = logging.getLogger(__name__)

Stage = Literal["documents", "images"]
ProgressCallback = Callable[[Stage, int, int | None], None]
"""Called with (stage, done, total or None while unknown)."""


@dataclass(frozen=True, slots=True)
class ManifestRef:
    """A manifest to read, with the labels of the collections it was found in."""

    url: str
    part_of: tuple[str, ...]


class HarvestRun:
    """One harvest run of one collection."""

    def __init__(
        self,
        settings: Settings,
        state: HarvestState,
        fetcher: Fetcher,
        name: str,
        cfg: CollectionConfig | None,
        source: str,
        *,
        limit: int | None,
        since: datetime | None,
        progress: ProgressCallback | None,
    ) -> None:
        self.settings = settings
        self.state = state
        self.fetcher = fetcher
        self.name = name
        self.cfg = cfg
        self.source = source
        self.limit = limit if limit is not None else (cfg.limit if cfg else None)
        self.max_depth = cfg.max_depth if cfg else None
        self.caption_fields = tuple(cfg.caption_fields) if cfg else ("title", "description", "subject")
        self.since = since
        self.progress = progress
        self.data = DataDir(settings.data_dir)
        self.summary = HarvestSummary(collection=name, source=source, kind=cfg.kind if cfg else "auto")
        self.skips: Counter[str] = Counter()
        self.fails: Counter[str] = Counter()
        self.run = state.start_run(name, source)
        self.walk_clean = True
        """False once anything kept the run from seeing the whole source (then nothing is deleted)."""
        self.docs_done = 0
        self.seen_manifests: set[str] = set()
        self.preparsed: dict[str, Parsed] = {}
        """Documents parsed before their stage reached them (the first document of an ad-hoc URL)."""
        self.new_cursor: datetime | None = None
        self.url_locks: dict[str, asyncio.Lock] = {}
        self._pending_docs: dict[str, tuple[FetchResult, str]] = {}

    def fail(self, ref: str, stage: str, reason: str, detail: str) -> None:
        if reason == HOST_DOWN:
            # Not tried at all: its host already failed for good in this run (those failures are counted).
            self.skip(ref, reason, detail)
            return
        self.fails[reason] += 1
        self.state.record_failure(self.name, ref, stage, reason, detail, self.run)
        self.summary.failures.append({"ref": ref, "stage": stage, "reason": reason, "detail": detail})
        log.warning("%s %s failed: %s: %s", stage, ref, reason, detail)

    def skip(self, ref: str, reason: str, detail: str) -> None:
        self.skips[reason] += 1
        self.state.record_skip(self.name, ref, reason, detail, self.run)

    def tick(self, stage: Stage, done: int, total: int | None) -> None:
        if self.progress is not None:
            self.progress(stage, done, total)

    def room(self, found: int) -> bool:
        """Whether ``found`` manifests leave room under the run's limit."""
        return self.limit is None or found < self.limit

    async def fetch_json(self, url: str, *, conditional: bool = True) -> Any | None:
        """Fetch and parse a JSON document.

        With ``conditional``, returns None when the document is unchanged since it was last remembered
        (a 304, or the same bytes); the caller then calls :meth:`remember` once it has used the
        document, so that a run killed in between fetches it again.
        """
        known = self.state.document(url) if conditional else None
        res = await self.fetcher.get(
            url,
            expect="json",
            max_bytes=self.settings.limits.document_max_bytes,
            etag=known.etag if known else None,
            last_modified=known.last_modified if known else None,
        )
        if res.not_modified:
            self.summary.documents_unchanged += 1
            return None
        digest = hashlib.sha256(res.content).hexdigest()
        if known is not None and known.content_hash == digest:
            # Same bytes under a new validator: keep the new one for the next conditional request.
            self.state.save_document(
                url,
                known.kind,
                doc_id=known.doc_id,
                etag=res.etag,
                last_modified=res.last_modified,
                content_hash=digest,
            )
            self.summary.documents_unchanged += 1
            return None
        self.summary.documents_fetched += 1
        doc = res.json()
        self._pending_docs[url] = (res, digest)
        return doc

    def remember(self, url: str, kind: str, doc_id: str | None) -> None:
        pending = self._pending_docs.pop(url, None)
        if pending is None:
            return
        res, digest = pending
        self.state.save_document(
            url, kind, doc_id=doc_id, etag=res.etag, last_modified=res.last_modified, content_hash=digest
        )

    def finish(self, complete: bool, started: float) -> HarvestSummary:
        s = self.summary
        if complete and self.walk_clean and self.summary.kind != "changes" and self.limit is None:
            s.records_deleted += self.state.delete_unseen(self.name, self.run)
        if complete and self.new_cursor is not None and self.walk_clean:
            self.state.set_cursor(self.name, self.new_cursor.isoformat())
        counts = self.state.status_counts(self.name)
        s.records = sum(n for st, n in counts.items() if st != "deleted")
        s.images_cached = counts.get("fetched", 0)
        s.skipped = dict(self.skips)
        s.failed = dict(self.fails)
        s.complete = complete and self.walk_clean
        s.outcome = outcome_of(s)
        s.requests = self.fetcher.requests
        s.duration_s = round(time.monotonic() - started, 3)
        self.state.finish_run(self.run, complete=s.complete, summary=s.as_dict())
        return s
