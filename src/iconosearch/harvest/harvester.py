"""The harvest job: source → documents → image records → cached images, all in the harvest state.

Stages, each resumable on its own:

1. *Discover* manifest URLs, as the collection's source kind says (:mod:`~iconosearch.source_kinds`):
   walk a collection (:mod:`~iconosearch.harvest.walk`), read a list of manifest URLs, or walk a
   change-discovery stream back to the last crawl (:mod:`~iconosearch.harvest.change_stream`). An ad-hoc
   URL's kind is that of its document, read through :func:`iconosearch.iiif.parse.parse_document`.
2. *Records* (:mod:`~iconosearch.harvest.manifests`): fetch each manifest conditionally, parse it (pure),
   and store its records in one transaction.
3. *Images* (:mod:`~iconosearch.harvest.image_fetch`): fetch, check and store every image not cached yet.

Failures never stop the harvest; they are counted by reason in the :class:`HarvestSummary`.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final
from urllib.parse import unquote, urlsplit

from iconosearch.config import CollectionConfig, Settings
from iconosearch.datadir import DataDir
from iconosearch.harvest.fetch import Fetcher, FetchError
from iconosearch.harvest.image_fetch import harvest_images, remove_stale_partials
from iconosearch.harvest.manifests import harvest_manifests
from iconosearch.harvest.run import HarvestRun, ManifestRef, ProgressCallback
from iconosearch.harvest.sources import HarvestError, resolve_source
from iconosearch.harvest.state import HarvestState
from iconosearch.harvest.summary import HarvestSummary, exit_code
from iconosearch.iiif.document import DocumentSkippedError
from iconosearch.iiif.parse import parse_document
from iconosearch.locks import LockHeldError, exclusive
from iconosearch.source_kinds import SourceSetup, source_kind
from iconosearch.storage import writing

SOURCE_KIND_OF_DOCUMENT: Final = {
    "manifest": "manifest",
    "collection": "collection",
    "change-stream": "changes",
}
"""The source kind an ad-hoc URL is harvested as, by the kind of its document."""


async def _discover_url(run: HarvestRun) -> list[ManifestRef]:
    """Discovery for an ad-hoc URL: its own document's kind decides.

    The kind is remembered from an earlier run, so a manifest is not fetched twice and a re-harvest can
    still be conditional; otherwise the document is fetched and parsed once, here, and its stage uses it.
    """
    known = run.state.document(run.source)
    kind = SOURCE_KIND_OF_DOCUMENT.get(known.kind) if known is not None else None
    if kind is None:
        doc = await run.fetch_json(run.source, conditional=False)
        parsed = parse_document(doc, collection=run.name, url=run.source, caption_fields=run.caption_fields)
        kind = SOURCE_KIND_OF_DOCUMENT.get(parsed.info.kind)
        if kind is None:
            raise HarvestError(
                f"{run.source} is a {parsed.info.kind} document, not a manifest, collection or stream"
            )
        run.preparsed[run.source] = parsed.result
    run.summary.kind = kind
    return await source_kind(kind).handler().discover(run)


async def _setup(
    settings: Settings, name: str, cfg: CollectionConfig | None, target: str, data: DataDir
) -> SourceSetup:
    """Where discovery starts, and what the fetcher may read from disk."""
    setup = SourceSetup(settings, name, cfg, data, target if cfg is None else (cfg.url or ""))
    if cfg is not None:
        await source_kind(cfg.kind).handler().prepare(setup)
    if setup.source[:7].lower() == "file://":
        # The operator named this file: its folder may be read, nothing else on disk.
        path = Path(unquote(urlsplit(setup.source).path))
        setup.file_roots.append(path if path.is_dir() else path.parent)
    return setup


async def _discover(run: HarvestRun) -> list[ManifestRef]:
    if run.cfg is None:
        return await _discover_url(run)
    return await source_kind(run.cfg.kind).handler().discover(run)


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
    remove_stale_partials(data.image_cache)
    setup = await _setup(settings, name, cfg, collection_name_or_url, data)
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    lim = settings.limits
    fetcher = Fetcher(
        user_agent=settings.harvest.user_agent,
        timeout_s=lim.request_timeout_s,
        concurrency=lim.harvest_concurrency,
        delay_s=lim.harvest_delay_s,
        retries=settings.harvest.retries,
        local_mounts=setup.mounts,
        file_roots=setup.file_roots,
    )
    with HarvestState(data.state_db) as state:
        async with fetcher:
            run = HarvestRun(
                settings, state, fetcher, name, cfg, setup.source, limit=limit, since=since, progress=progress
            )
            for rel, reason in setup.skipped_local.items():
                run.skip(rel, "bad-image", f"local image not usable: {reason}")
            return await _run_stages(run, started)


async def _run_stages(run: HarvestRun, started: float) -> HarvestSummary:
    complete = False
    try:
        try:
            refs = await _discover(run)
        except FetchError as exc:
            raise HarvestError(f"cannot read {run.source}: {exc}") from exc
        except DocumentSkippedError as exc:
            raise HarvestError(f"cannot harvest {run.source}: {exc}") from exc
        await harvest_manifests(run, refs)
        await harvest_images(run)
        complete = True
    finally:
        summary = run.finish(complete, started)
    return summary


def run_harvest(settings: Settings, name_or_url: str, **kwargs: Any) -> HarvestSummary:
    """Synchronous wrapper for callers outside an event loop (CLI, demo)."""
    return asyncio.run(harvest(settings, name_or_url, **kwargs))


_AGO = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """An ISO date/datetime (UTC when no zone is given) or an age such as ``90m``, ``12h``, ``7d``."""
    value = text.strip()
    m = _AGO.match(value)
    if m:
        return (now or datetime.now(UTC)) - timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"--since {text!r}: expected an ISO date/time or an age like 12h or 7d") from exc
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


@dataclass
class HarvestBatch:
    """The harvests of several collections: a summary for each that ran, an error for each that could not."""

    summaries: list[HarvestSummary] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return exit_code(self.summaries, self.errors)


def harvest_collections(
    settings: Settings,
    targets: Sequence[str],
    *,
    limit: int | None = None,
    since: datetime | None = None,
    progress_for: Callable[[str], ProgressCallback | None] = lambda _name: None,
) -> HarvestBatch:
    """Harvest each target (collection name or IIIF URL) in turn; one that cannot start does not stop
    the others. ``progress_for(target)`` gives each harvest its progress callback."""
    batch = HarvestBatch()
    for target in targets:
        try:
            with writing(f"harvesting {target!r}", settings.data_dir):
                progress = progress_for(target)
                summary = run_harvest(settings, target, limit=limit, since=since, progress=progress)
            batch.summaries.append(summary)
        except HarvestError as exc:
            batch.errors.append(f"{target}: {exc}")
    return batch
