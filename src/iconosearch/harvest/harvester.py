"""The harvest job: source → documents → image records → cached images, all in the harvest state.

Stages, each resumable on its own:

1. *Discover* manifest URLs: walk a collection (nested, paged, with cycle/duplicate protection and the
   configured depth/limit), read a list of manifest URLs, or walk a change-discovery stream back to the
   last crawl.
2. *Records*: fetch each manifest (conditionally, with the ETag/Last-Modified seen last time), parse it
   (pure), and store its records in one transaction. Unchanged documents are not parsed again.
3. *Images*: for every record whose image is not cached yet (new, changed or failed before) choose the
   URL (info.json when the embedded service does not say enough), fetch, check (bomb-safe decode), store
   by content hash, mark the record. A failure is recorded against the record and retried next run.

Failures never stop the harvest; they are counted by reason in the :class:`HarvestSummary`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from iconosearch.config import CollectionConfig, Settings
from iconosearch.datadir import DataDir
from iconosearch.harvest.fetch import HOST_DOWN, Fetcher, FetchError, FetchResult
from iconosearch.harvest.image_urls import image_key, merge_service, needs_info
from iconosearch.harvest.sources import HarvestError, local_base_url, resolve_source
from iconosearch.harvest.state import HarvestState, PendingImage
from iconosearch.harvest.summary import HarvestSummary, outcome_of
from iconosearch.iiif.changes import ChangeWalker, parse_page, parse_stream, parse_time
from iconosearch.iiif.collection import parse_collection
from iconosearch.iiif.document import DocumentSkippedError, describe
from iconosearch.iiif.image_api import image_url, info_url, parse_service
from iconosearch.iiif.manifest import parse_manifest
from iconosearch.images import ImageRejectedError, open_image, probe_image
from iconosearch.locks import LockHeldError, exclusive
from iconosearch.records import ImageRecord, ImageService

log = logging.getLogger(__name__)

Stage = Literal["documents", "images"]
ProgressCallback = Callable[[Stage, int, int | None], None]
"""Called with (stage, done, total or None while unknown)."""

MAX_PAGES = 10_000
"""Most collection/change pages one run follows (a guard against endless paging)."""
BARREN_PAGES = 50
"""Consecutive pages without a new member after which paging is taken to be going round in circles."""
DOCUMENT_WORKERS = 8
IMAGE_WORKERS = 16
_FORMAT_EXT = {"JPEG": "jpg", "PNG": "png", "GIF": "gif", "WEBP": "webp", "TIFF": "tif", "JPEG2000": "jp2"}


@dataclass(frozen=True, slots=True)
class _ManifestRef:
    url: str
    part_of: tuple[str, ...]


class _Run:
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
        self.docs_done = 0
        self.seen_manifests: set[str] = set()
        self._pending_docs: dict[str, tuple[FetchResult, str]] = {}
        self._preloaded: dict[str, Any] = {}
        self._new_cursor: datetime | None = None
        self._url_locks: dict[str, asyncio.Lock] = {}

    # -- bookkeeping --------------------------------------------------------------------------------------

    def _fail(self, ref: str, stage: str, reason: str, detail: str) -> None:
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

    def _tick(self, stage: Stage, done: int, total: int | None) -> None:
        if self.progress is not None:
            self.progress(stage, done, total)

    async def _fetch_json(self, url: str, *, conditional: bool = True) -> Any | None:
        """Fetch and parse a JSON document.

        With ``conditional``, returns None when the document is unchanged since it was last remembered
        (a 304, or the same bytes); the caller then calls :meth:`_remember` once it has used the
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

    def _remember(self, url: str, kind: str, doc_id: str | None) -> None:
        pending = self._pending_docs.pop(url, None)
        if pending is None:
            return
        res, digest = pending
        self.state.save_document(
            url, kind, doc_id=doc_id, etag=res.etag, last_modified=res.last_modified, content_hash=digest
        )

    # -- discovery ---------------------------------------------------------------------------------------

    async def discover(self) -> list[_ManifestRef]:
        kind = self.cfg.kind if self.cfg else None
        if kind == "manifest":
            return [_ManifestRef(self.source, ())]
        if kind == "manifest-list":
            return await self._manifest_list()
        if kind == "changes":
            return await self._changes(self.source)
        if kind in ("collection", "local"):
            return await self._walk(self.source)
        # Ad-hoc URL: its own kind decides (remembered from an earlier run, so a manifest is not
        # fetched twice and a re-harvest can still be conditional).
        known = self.state.document(self.source)
        doc: Any | None = None
        if known is not None and known.kind in ("manifest", "collection", "change-stream"):
            kind_found = known.kind
        else:
            doc = await self._fetch_json(self.source, conditional=False)
            kind_found = describe(doc).kind
        self.summary.kind = "changes" if kind_found == "change-stream" else kind_found
        if kind_found == "manifest":
            if doc is not None:
                self._preloaded[self.source] = doc
            return [_ManifestRef(self.source, ())]
        if kind_found == "collection":
            return await self._walk(self.source, first_doc=doc)
        if kind_found == "change-stream":
            if doc is not None:
                self._remember(self.source, "change-stream", describe(doc).id)
            return await self._changes(self.source)
        raise HarvestError(f"{self.source} is a {kind_found} document, not a manifest, collection or stream")

    async def _manifest_list(self) -> list[_ManifestRef]:
        assert self.cfg is not None
        if self.cfg.path is not None:
            text = self.cfg.path.read_text(encoding="utf-8")
        else:
            assert self.cfg.url is not None
            limit = self.settings.limits.document_max_bytes
            res = await self.fetcher.get(self.cfg.url, expect="text", max_bytes=limit)
            text = res.content.decode("utf-8", errors="replace")
        lines = (line.strip() for line in text.splitlines())
        urls = [line for line in lines if line and not line.startswith("#")]
        return [_ManifestRef(u, ()) for u in dict.fromkeys(urls)]

    def _room(self, found: int) -> bool:
        return self.limit is None or found < self.limit

    async def _walk(self, root: str, first_doc: Any | None = None) -> list[_ManifestRef]:
        """Breadth-first walk of nested and paged collections."""
        found: dict[str, _ManifestRef] = {}
        visited: set[str] = set()
        queue: list[tuple[str, int, tuple[str, ...], Any | None]] = [(root, 0, (), first_doc)]
        pages = 0
        barren = 0
        while queue and self._room(len(found)):
            url, depth, part_of, preloaded = queue.pop(0)
            if url in visited:
                continue
            visited.add(url)
            pages += 1
            if pages > MAX_PAGES:
                self.walk_clean = False
                self._fail(root, "walk", "page-limit", f"stopped after {MAX_PAGES} collection pages")
                break
            try:
                if preloaded is not None:
                    doc = preloaded
                else:
                    doc = await self._fetch_json(url, conditional=False)
                page = parse_collection(doc, fallback_id=url)
                self._remember(url, "collection", page.id)
            except FetchError as exc:
                self.walk_clean = False
                self._fail(url, "collection", exc.reason, exc.detail)
                continue
            except DocumentSkippedError as exc:
                self.skip(url, exc.skip.reason, exc.skip.detail)
                continue
            self.docs_done += 1
            self._tick("documents", self.docs_done, None)
            visited.add(page.id)
            name = page.name
            trail = (*part_of, name) if name else part_of
            before = len(found)
            for ref in page.manifests:
                if not self._room(len(found)):
                    break
                if ref.id not in found:
                    found[ref.id] = _ManifestRef(ref.id, trail)
            if self.max_depth is None or depth < self.max_depth:
                for sub in page.collections:
                    if sub.id not in visited:
                        # Embedded members are used as they are: no request for a sub-collection whose
                        # manifests are already listed here (thousands, in some real collections).
                        queue.append((sub.id, depth + 1, trail, sub.doc))
            new_members = len(found) > before or any(c.id not in visited for c in page.collections)
            barren = 0 if new_members else barren + 1
            for nxt in (page.first, page.next):
                if nxt and nxt not in visited:
                    if barren >= BARREN_PAGES:
                        self.walk_clean = False
                        self._fail(url, "walk", "endless-paging", f"{barren} pages in a row added nothing")
                        break
                    # Pages of one collection share its place in the hierarchy.
                    queue.insert(0, (nxt, depth, part_of, None))
        if not self._room(len(found)):
            self.walk_clean = False  # stopped by the limit: not a full picture of the collection
        return list(found.values())

    async def _changes(self, stream_url: str) -> list[_ManifestRef]:
        since = self.since
        if since is None:
            cursor = self.state.get_cursor(self.name)
            since = parse_time(cursor) if cursor else None
        doc = await self._fetch_json(stream_url, conditional=False)
        stream = parse_stream(doc, fallback_id=stream_url)
        self._remember(stream_url, "change-stream", stream.id)
        walker = ChangeWalker(since=since)
        page_url = stream.last or stream.first
        visited: set[str] = set()
        while page_url and page_url not in visited and len(visited) < MAX_PAGES:
            visited.add(page_url)
            try:
                page_doc = await self._fetch_json(page_url, conditional=False)
                page = parse_page(page_doc, fallback_id=page_url)
                self._remember(page_url, "change-page", page.id)
            except FetchError as exc:
                self.walk_clean = False
                self._fail(page_url, "changes", exc.reason, exc.detail)
                break
            except DocumentSkippedError as exc:
                self.walk_clean = False
                self._fail(page_url, "changes", exc.skip.reason, exc.skip.detail)
                break
            self.docs_done += 1
            self._tick("documents", self.docs_done, None)
            if not walker.feed(page):
                break
            page_url = page.prev
        for manifest_id in walker.to_delete:
            self.summary.records_deleted += self.state.delete_manifest(self.name, manifest_id)
        refs: list[_ManifestRef] = []
        for obj_id in walker.to_harvest:
            if walker.object_types.get(obj_id) == "Collection":
                refs.extend(await self._walk(obj_id))
            else:
                refs.append(_ManifestRef(obj_id, ()))
            if not self._room(len(refs)):
                refs = refs[: self.limit]
                self.walk_clean = False
                break
        self._new_cursor = walker.newest
        return refs

    # -- records -----------------------------------------------------------------------------------------

    async def manifests(self, refs: list[_ManifestRef]) -> None:
        total = len(refs)
        done = 0
        sem = asyncio.Semaphore(DOCUMENT_WORKERS)

        async def one(ref: _ManifestRef) -> None:
            nonlocal done
            async with sem:
                await self._manifest(ref)
            done += 1
            self._tick("documents", done, total)

        await asyncio.gather(*(one(r) for r in refs))

    async def _manifest(self, ref: _ManifestRef) -> None:
        try:
            doc = self._preloaded.pop(ref.url, None)
            if doc is None:
                doc = await self._fetch_json(ref.url)
            if doc is None:
                known = self.state.document(ref.url)
                if known and known.doc_id and self.state.touch_manifest(self.name, known.doc_id, self.run):
                    self.summary.manifests += 1
                    self.seen_manifests.add(known.doc_id)
                    return
                # Unchanged, but its records are not here (another collection, or skipped): read it again.
                doc = await self._fetch_json(ref.url, conditional=False)
        except FetchError as exc:
            self.walk_clean = False
            self._fail(ref.url, "manifest", exc.reason, exc.detail)
            return
        self.state.clear_failure(self.name, ref.url, "manifest")
        try:
            parsed = parse_manifest(
                doc,
                collection=self.name,
                part_of=ref.part_of,
                caption_fields=self.caption_fields,
                fallback_id=ref.url,
            )
        except DocumentSkippedError as exc:
            self.skip(ref.url, exc.skip.reason, exc.skip.detail)
            self._remember(ref.url, describe(doc).kind, None)
            return
        if parsed.manifest_id in self.seen_manifests:
            self.skip(ref.url, "duplicate", f"manifest {parsed.manifest_id} already harvested in this run")
            return
        self.seen_manifests.add(parsed.manifest_id)
        for skip in parsed.skips:
            self.skip(skip.ref or parsed.manifest_id, skip.reason, skip.detail)
        target = self.settings.harvest.image_target_px
        rows = [(r, image_key(r, target)) for r in parsed.records]
        # Records are keyed by manifest id; the URL it came from may differ, so store under both.
        new, gone = self.state.save_manifest_records(self.name, parsed.manifest_id, rows, self.run)
        self._remember(ref.url, "manifest", parsed.manifest_id)
        self.summary.manifests += 1
        self.summary.records_new += new
        self.summary.records_deleted += gone

    # -- images ------------------------------------------------------------------------------------------

    async def images(self) -> None:
        requeued = self.state.requeue_missing_files(self.name)
        if requeued:
            log.warning(
                "%d cached images of %s were missing on disk; fetching them again", requeued, self.name
            )
        pending = self.state.pending_images(self.name)
        total = len(pending)
        done = 0
        sem = asyncio.Semaphore(IMAGE_WORKERS)
        info_cache: dict[str, asyncio.Task[ImageService | None]] = {}

        async def one(item: PendingImage) -> None:
            nonlocal done
            async with sem:
                await self._image(item, info_cache)
            done += 1
            self._tick("images", done, total)

        self._tick("images", 0, total)
        await asyncio.gather(*(one(p) for p in pending))

    async def _service_info(self, svc: ImageService) -> ImageService | None:
        url = info_url(svc)
        try:
            doc = await self._fetch_json(url, conditional=False)
        except FetchError as exc:
            log.info("info.json of %s unavailable: %s", svc.id, exc)
            return None
        self._remember(url, "image-service", svc.id)
        return parse_service(doc, default_version=svc.api_version, fallback_id=svc.id)

    async def _image(
        self, item: PendingImage, info_cache: dict[str, asyncio.Task[ImageService | None]]
    ) -> None:
        record = item.record
        target = self.settings.harvest.image_target_px
        urls: list[str] = []
        svc = record.service
        if svc is not None:
            if needs_info(svc):
                task = info_cache.get(svc.id)
                if task is None:
                    task = info_cache[svc.id] = asyncio.ensure_future(self._service_info(svc))
                info = await task
                if info is not None:
                    svc = merge_service(svc, info)
            urls.append(image_url(svc, target))
        if record.static_url and record.static_url not in urls:
            urls.append(record.static_url)
        last: tuple[str, str] = ("no-image-url", "record has neither an image service nor a URL")
        for url in urls:
            # Records sharing an image URL wait for the first one's fetch, then reuse its file.
            async with self._url_locks.setdefault(url, asyncio.Lock()):
                outcome = await self._fetch_image(record, url)
            if outcome is None:
                return
            last, retryable = outcome
            if retryable:
                break  # the server is struggling: do not hammer it with the fallback too
        if last[0] == HOST_DOWN:
            self.skip(record.id, last[0], last[1])  # stays pending: tried again next run
            return
        self.summary.images_failed += 1
        self.fails[last[0]] += 1
        self.state.fail_image(self.name, record.id, last[0], last[1], self.run)
        failure = {"ref": record.id, "stage": "image", "reason": last[0], "detail": last[1]}
        self.summary.failures.append(failure)

    async def _fetch_image(self, record: ImageRecord, url: str) -> tuple[tuple[str, str], bool] | None:
        """Fetch, check and store the image at ``url`` for ``record``.

        Returns None when the record has its image, else ((reason, detail), whether retryable).
        """
        cached = self.state.image_for_url(url)
        if cached is not None and cached[1].is_file():
            content_hash, path, etag, modified = cached
            self.state.save_image(
                self.name,
                record.id,
                url=url,
                content_hash=content_hash,
                path=path,
                width=None,
                height=None,
                fmt=None,
                size=path.stat().st_size,
                etag=etag,
                last_modified=modified,
            )
            self.summary.images_reused += 1
            return None
        try:
            res = await self.fetcher.get(url, expect="image", max_bytes=self.settings.limits.image_max_bytes)
            content_hash, path, dims = await asyncio.to_thread(self._store, res.content)
        except FetchError as exc:
            return (exc.reason, exc.detail), exc.retryable
        except ImageRejectedError as exc:
            return (f"image-{exc.reason}", f"{exc} ({url})"), False
        self.state.save_image(
            self.name,
            record.id,
            url=url,
            content_hash=content_hash,
            path=path,
            width=dims[0],
            height=dims[1],
            fmt=dims[2],
            size=len(res.content),
            etag=res.etag,
            last_modified=res.last_modified,
        )
        self.summary.images_fetched += 1
        return None

    def _store(self, data: bytes) -> tuple[str, Path, tuple[int, int, str]]:
        """Check the image (header, then a full small decode, which catches truncation) and cache it."""
        max_pixels = self.settings.limits.image_max_pixels
        meta = probe_image(data, max_pixels=max_pixels)
        open_image(data, max_pixels=max_pixels, max_side=64).close()
        digest = hashlib.sha256(data).hexdigest()
        ext = _FORMAT_EXT.get(meta.format.upper(), "img")
        folder = self.data.image_cache / digest[:2]
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{digest}.{ext}"
        if not path.is_file():
            fd, name = tempfile.mkstemp(dir=folder, prefix=f".{digest}.", suffix=".tmp")
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            # Atomic: a killed run leaves no half-written image under the final name.
            Path(name).replace(path)
        return digest, path, (meta.width, meta.height, meta.format)

    # -- end ---------------------------------------------------------------------------------------------

    def finish(self, complete: bool, started: float) -> HarvestSummary:
        s = self.summary
        if complete and self.walk_clean and self.summary.kind != "changes" and self.limit is None:
            s.records_deleted += self.state.delete_unseen(self.name, self.run)
        if complete and self._new_cursor is not None and self.walk_clean:
            self.state.set_cursor(self.name, self._new_cursor.isoformat())
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


def _remove_stale_partials(cache: Path, older_than_s: float = 600.0) -> None:
    """Temporary files left by a killed run (never a finished image: those are renamed into place)."""
    cutoff = time.time() - older_than_s
    for tmp in cache.glob("*/.*.tmp"):
        with contextlib.suppress(OSError):
            if tmp.stat().st_mtime < cutoff:
                tmp.unlink()


async def harvest(
    settings: Settings,
    collection_name_or_url: str,
    *,
    limit: int | None = None,
    since: datetime | None = None,
    progress: ProgressCallback | None = None,
) -> HarvestSummary:
    """Harvest one configured collection (by name) or an ad-hoc IIIF URL into the harvest state."""
    name, _ = resolve_source(settings, collection_name_or_url)
    data = DataDir(settings.data_dir).ensure()
    # One harvest per collection at a time.
    path = data.root / f".harvest-{hashlib.sha256(name.encode()).hexdigest()[:16]}.lock"
    try:
        with exclusive(path, f"collection {name!r} is being harvested"):
            return await _harvest(settings, collection_name_or_url, data, limit, since, progress)
    except LockHeldError as exc:
        raise HarvestError(str(exc)) from None


async def _harvest(
    settings: Settings,
    collection_name_or_url: str,
    data: DataDir,
    limit: int | None,
    since: datetime | None,
    progress: ProgressCallback | None,
) -> HarvestSummary:
    started = time.monotonic()
    name, cfg = resolve_source(settings, collection_name_or_url)
    _remove_stale_partials(data.image_cache)
    mounts: dict[str, Path] = {}
    skipped_local: dict[str, str] = {}
    file_roots: list[Path] = []
    source = collection_name_or_url if cfg is None else (cfg.url or "")
    if cfg is not None and cfg.kind == "local":
        from iconosearch.iiif.local import build_local_iiif

        assert cfg.path is not None
        base = local_base_url(settings, name)
        out = data.local_iiif / name
        built = await asyncio.to_thread(
            build_local_iiif,
            cfg.path,
            out,
            base_url=base,
            label=cfg.label or name,
            max_pixels=settings.limits.image_max_pixels,
        )
        mounts[base] = out
        skipped_local = built.skipped
        source = built.collection_url
    elif cfg is not None and cfg.kind == "manifest-list" and cfg.path is not None:
        source = str(cfg.path)
        file_roots.append(cfg.path.parent)
    if source[:7].lower() == "file://":
        # The operator named this file: its folder may be read, nothing else on disk.
        path = Path(unquote(urlsplit(source).path))
        file_roots.append(path if path.is_dir() else path.parent)
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    lim = settings.limits
    fetcher = Fetcher(
        user_agent=settings.harvest.user_agent,
        timeout_s=lim.request_timeout_s,
        concurrency=lim.harvest_concurrency,
        delay_s=lim.harvest_delay_s,
        retries=settings.harvest.retries,
        local_mounts=mounts,
        file_roots=file_roots,
    )
    with HarvestState(data.state_db) as state:
        async with fetcher:
            run = _Run(
                settings, state, fetcher, name, cfg, source, limit=limit, since=since, progress=progress
            )
            for rel, reason in skipped_local.items():
                run.skip(rel, "bad-image", f"local image not usable: {reason}")
            complete = False
            try:
                try:
                    refs = await run.discover()
                except FetchError as exc:
                    raise HarvestError(f"cannot read {source}: {exc}") from exc
                except DocumentSkippedError as exc:
                    raise HarvestError(f"cannot harvest {source}: {exc}") from exc
                await run.manifests(refs)
                await run.images()
                complete = True
            finally:
                summary = run.finish(complete, started)
    return summary


def run_harvest(settings: Settings, name_or_url: str, **kwargs: Any) -> HarvestSummary:
    """Synchronous wrapper for callers outside an event loop (CLI, demo)."""
    return asyncio.run(harvest(settings, name_or_url, **kwargs))
