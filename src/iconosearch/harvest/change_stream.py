"""Discovery by IIIF Change Discovery: walk a stream back to the last crawl, delete what was removed.

``CHANGES_SOURCE`` is the handler of the ``changes`` source kind (registered in
:mod:`iconosearch.source_kinds`); what to harvest and delete is decided by the pure
:class:`~iconosearch.iiif.changes.ChangeWalker`.
"""

from __future__ import annotations

from iconosearch.harvest.fetch import FetchError
from iconosearch.harvest.run import HarvestRun, ManifestRef
from iconosearch.harvest.walk import MAX_PAGES, walk_collection
from iconosearch.iiif.changes import ChangeStream, ChangeWalker, parse_page, parse_stream, parse_time
from iconosearch.iiif.document import DocumentSkippedError
from iconosearch.source_kinds import SourceHandler


async def _stream(run: HarvestRun, url: str) -> ChangeStream:
    parsed = run.preparsed.pop(url, None)
    if isinstance(parsed, ChangeStream):
        stream = parsed
    else:
        stream = parse_stream(await run.fetch_json(url, conditional=False), fallback_id=url)
    run.remember(url, "change-stream", stream.id)
    return stream


async def _walk_pages(run: HarvestRun, stream: ChangeStream, walker: ChangeWalker) -> None:
    """Feed the stream's pages, newest first, to ``walker`` until it has seen the last crawl."""
    page_url = stream.last or stream.first
    visited: set[str] = set()
    while page_url and page_url not in visited and len(visited) < MAX_PAGES:
        visited.add(page_url)
        try:
            page = parse_page(await run.fetch_json(page_url, conditional=False), fallback_id=page_url)
            run.remember(page_url, "change-page", page.id)
        except FetchError as exc:
            run.walk_clean = False
            run.fail(page_url, "changes", exc.reason, exc.detail)
            return
        except DocumentSkippedError as exc:
            run.walk_clean = False
            run.fail(page_url, "changes", exc.skip.reason, exc.skip.detail)
            return
        run.docs_done += 1
        run.tick("documents", run.docs_done, None)
        if not walker.feed(page):
            return
        page_url = page.prev


async def follow_changes(run: HarvestRun) -> list[ManifestRef]:
    """Manifests created or updated since the last crawl (or ``--since``); deleted ones are removed."""
    since = run.since
    if since is None:
        cursor = run.state.get_cursor(run.name)
        since = parse_time(cursor) if cursor else None
    walker = ChangeWalker(since=since)
    await _walk_pages(run, await _stream(run, run.source), walker)
    for manifest_id in walker.to_delete:
        run.summary.records_deleted += run.state.delete_manifest(run.name, manifest_id)
    refs: list[ManifestRef] = []
    for obj_id in walker.to_harvest:
        if walker.object_types.get(obj_id) == "Collection":
            refs.extend(await walk_collection(run, obj_id))
        else:
            refs.append(ManifestRef(obj_id, ()))
        if not run.room(len(refs)):
            refs = refs[: run.limit]
            run.walk_clean = False
            break
    run.new_cursor = walker.newest
    return refs


CHANGES_SOURCE = SourceHandler(discover=follow_changes)
