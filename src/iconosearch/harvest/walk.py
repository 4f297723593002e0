"""Discovery by walking: nested and paged collections, a list of manifest URLs, a single manifest, a folder.

Each ``*_SOURCE`` here is the handler of one source kind, registered in :mod:`iconosearch.source_kinds`.
"""

from __future__ import annotations

import asyncio

from iconosearch.harvest.fetch import FetchError
from iconosearch.harvest.run import HarvestRun, ManifestRef
from iconosearch.harvest.sources import local_base_url
from iconosearch.iiif.collection import CollectionPage, parse_collection
from iconosearch.iiif.document import DocumentSkippedError, Skip
from iconosearch.source_kinds import SourceHandler, SourceSetup

MAX_PAGES = 10_000
"""Most collection/change pages one run follows (a guard against endless paging)."""
BARREN_PAGES = 50
"""Consecutive pages without a new member after which paging is taken to be going round in circles."""

_Queued = tuple[str, int, tuple[str, ...], object | None]
"""(url, depth, labels of the collections above it, the embedded document if the parent had it)."""


async def _page(run: HarvestRun, url: str, embedded: object | None) -> CollectionPage:
    """The collection page at ``url``: parsed already, embedded in its parent, or fetched now."""
    parsed = run.preparsed.pop(url, None)
    if isinstance(parsed, Skip):
        raise DocumentSkippedError(parsed)
    if isinstance(parsed, CollectionPage):
        page = parsed
    else:
        doc = embedded if embedded is not None else await run.fetch_json(url, conditional=False)
        page = parse_collection(doc, fallback_id=url)
    run.remember(url, "collection", page.id)
    return page


async def walk_collection(run: HarvestRun, root: str) -> list[ManifestRef]:
    """Breadth-first walk of nested and paged collections."""
    found: dict[str, ManifestRef] = {}
    visited: set[str] = set()
    queue: list[_Queued] = [(root, 0, (), None)]
    pages = 0
    barren = 0
    while queue and run.room(len(found)):
        url, depth, part_of, embedded = queue.pop(0)
        if url in visited:
            continue
        visited.add(url)
        pages += 1
        if pages > MAX_PAGES:
            run.walk_clean = False
            run.fail(root, "walk", "page-limit", f"stopped after {MAX_PAGES} collection pages")
            break
        try:
            page = await _page(run, url, embedded)
        except FetchError as exc:
            run.walk_clean = False
            run.fail(url, "collection", exc.reason, exc.detail)
            continue
        except DocumentSkippedError as exc:
            run.skip(url, exc.skip.reason, exc.skip.detail)
            continue
        run.docs_done += 1
        run.tick("documents", run.docs_done, None)
        visited.add(page.id)
        trail = (*part_of, page.name) if page.name else part_of
        before = len(found)
        for ref in page.manifests:
            if not run.room(len(found)):
                break
            found.setdefault(ref.id, ManifestRef(ref.id, trail))
        if run.max_depth is None or depth < run.max_depth:
            # Embedded members are used as they are: no request for a sub-collection whose manifests are
            # already listed here (thousands, in some real collections).
            subs = [c for c in page.collections if c.id not in visited]
            queue.extend((sub.id, depth + 1, trail, sub.doc) for sub in subs)
        new_members = len(found) > before or any(c.id not in visited for c in page.collections)
        barren = 0 if new_members else barren + 1
        for nxt in (page.first, page.next):
            if nxt and nxt not in visited:
                if barren >= BARREN_PAGES:
                    run.walk_clean = False
                    run.fail(url, "walk", "endless-paging", f"{barren} pages in a row added nothing")
                    break
                # Pages of one collection share its place in the hierarchy.
                queue.insert(0, (nxt, depth, part_of, None))
    if not run.room(len(found)):
        run.walk_clean = False  # stopped by the limit: not a full picture of the collection
    return list(found.values())


async def _walk_source(run: HarvestRun) -> list[ManifestRef]:
    return await walk_collection(run, run.source)


async def _one_manifest(run: HarvestRun) -> list[ManifestRef]:
    return [ManifestRef(run.source, ())]


async def _manifest_list(run: HarvestRun) -> list[ManifestRef]:
    cfg = run.cfg
    assert cfg is not None
    if cfg.path is not None:
        text = cfg.path.read_text(encoding="utf-8")
    else:
        assert cfg.url is not None
        limit = run.settings.limits.document_max_bytes
        res = await run.fetcher.get(cfg.url, expect="text", max_bytes=limit)
        text = res.content.decode("utf-8", errors="replace")
    lines = (line.strip() for line in text.splitlines())
    urls = [line for line in lines if line and not line.startswith("#")]
    return [ManifestRef(u, ()) for u in dict.fromkeys(urls)]


async def _list_file(setup: SourceSetup) -> None:
    assert setup.cfg is not None
    path = setup.cfg.path
    if path is not None:
        # The operator named this file: its folder may be read, nothing else on disk.
        setup.source = str(path)
        setup.file_roots.append(path.parent)


async def _build_local(setup: SourceSetup) -> None:
    """Turn the folder into static IIIF, served to this harvest from disk under its public URL."""
    from iconosearch.iiif.local import build_local_iiif

    cfg, name = setup.cfg, setup.name
    assert cfg is not None and cfg.path is not None
    base = local_base_url(setup.settings, name)
    out = setup.data.local_iiif / name
    built = await asyncio.to_thread(
        build_local_iiif,
        cfg.path,
        out,
        base_url=base,
        label=cfg.label or name,
        max_pixels=setup.settings.limits.image_max_pixels,
    )
    setup.mounts[base] = out
    setup.skipped_local = built.skipped
    setup.source = built.collection_url


COLLECTION_SOURCE = SourceHandler(discover=_walk_source)
LOCAL_SOURCE = SourceHandler(discover=_walk_source, prepare=_build_local)
MANIFEST_SOURCE = SourceHandler(discover=_one_manifest)
MANIFEST_LIST_SOURCE = SourceHandler(discover=_manifest_list, prepare=_list_file)
