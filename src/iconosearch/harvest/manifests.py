"""The records stage: fetch each manifest (conditionally), parse it, store its records in one transaction.

Unchanged manifests are not parsed again: their records are only marked as seen in this run.
"""

from __future__ import annotations

import asyncio
from typing import Any

from iconosearch.harvest.fetch import FetchError
from iconosearch.harvest.image_urls import image_key
from iconosearch.harvest.run import HarvestRun, ManifestRef
from iconosearch.iiif.document import DocumentSkippedError, Skip, describe
from iconosearch.iiif.manifest import ManifestParse, parse_manifest

DOCUMENT_WORKERS = 8


async def harvest_manifests(run: HarvestRun, refs: list[ManifestRef]) -> None:
    """Read every manifest in ``refs`` into the harvest state, :data:`DOCUMENT_WORKERS` at a time."""
    total = len(refs)
    done = 0
    sem = asyncio.Semaphore(DOCUMENT_WORKERS)

    async def one(ref: ManifestRef) -> None:
        nonlocal done
        async with sem:
            await _manifest(run, ref)
        done += 1
        run.tick("documents", done, total)

    await asyncio.gather(*(one(r) for r in refs))


async def _document(run: HarvestRun, ref: ManifestRef) -> Any | None:
    """The manifest's JSON, or None when it is unchanged and its records are already here."""
    doc = await run.fetch_json(ref.url)
    if doc is not None:
        return doc
    known = run.state.document(ref.url)
    if known and known.doc_id and run.state.touch_manifest(run.name, known.doc_id, run.run):
        run.summary.manifests += 1
        run.seen_manifests.add(known.doc_id)
        return None
    # Unchanged, but its records are not here (another collection, or skipped): read it again.
    return await run.fetch_json(ref.url, conditional=False)


async def _parse(run: HarvestRun, ref: ManifestRef) -> ManifestParse | None:
    """The parsed manifest; None when it needs no work or could not be had (recorded)."""
    parsed = run.preparsed.pop(ref.url, None)
    doc: Any = None
    try:
        if parsed is None:
            doc = await _document(run, ref)
            if doc is None:
                return None
    except FetchError as exc:
        run.walk_clean = False
        run.fail(ref.url, "manifest", exc.reason, exc.detail)
        return None
    run.state.clear_failure(run.name, ref.url, "manifest")
    try:
        if isinstance(parsed, Skip):
            raise DocumentSkippedError(parsed)
        if isinstance(parsed, ManifestParse):
            return parsed
        return parse_manifest(
            doc,
            collection=run.name,
            part_of=ref.part_of,
            caption_fields=run.caption_fields,
            fallback_id=ref.url,
        )
    except DocumentSkippedError as exc:
        run.skip(ref.url, exc.skip.reason, exc.skip.detail)
        run.remember(ref.url, "manifest" if parsed is not None else describe(doc).kind, None)
        return None


async def _manifest(run: HarvestRun, ref: ManifestRef) -> None:
    parsed = await _parse(run, ref)
    if parsed is None:
        return
    if parsed.manifest_id in run.seen_manifests:
        run.skip(ref.url, "duplicate", f"manifest {parsed.manifest_id} already harvested in this run")
        return
    run.seen_manifests.add(parsed.manifest_id)
    for skip in parsed.skips:
        run.skip(skip.ref or parsed.manifest_id, skip.reason, skip.detail)
    target = run.settings.harvest.image_target_px
    rows = [(r, image_key(r, target)) for r in parsed.records]
    # Records are keyed by manifest id; the URL it came from may differ, so store under both.
    new, gone = run.state.save_manifest_records(run.name, parsed.manifest_id, rows, run.run)
    run.remember(ref.url, "manifest", parsed.manifest_id)
    run.summary.manifests += 1
    run.summary.records_new += new
    run.summary.records_deleted += gone
