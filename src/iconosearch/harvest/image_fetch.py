"""The images stage: for every record whose image is not cached yet, choose a URL, fetch, check, store.

The URL comes from the record's image service (its info.json is read first when the embedded description
does not say enough), else its static URL. Images are checked (bomb-safe decode) and stored by content
hash; a failure is recorded against the record and retried next run.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import tempfile
import time
from pathlib import Path

from iconosearch.harvest.fetch import HOST_DOWN, FetchError
from iconosearch.harvest.image_urls import merge_service, needs_info
from iconosearch.harvest.run import HarvestRun
from iconosearch.harvest.state import PendingImage
from iconosearch.iiif.image_api import image_url, info_url, parse_service
from iconosearch.images import ImageRejectedError, open_image, probe_image
from iconosearch.records import ImageRecord, ImageService

log = logging.getLogger(__name__)

IMAGE_WORKERS = 16
_FORMAT_EXT = {"JPEG": "jpg", "PNG": "png", "GIF": "gif", "WEBP": "webp", "TIFF": "tif", "JPEG2000": "jp2"}

_InfoCache = dict[str, asyncio.Task[ImageService | None]]
_Failure = tuple[tuple[str, str], bool]
"""((reason, detail), whether retrying may help)."""


async def harvest_images(run: HarvestRun) -> None:
    """Fetch every pending image of the run's collection, :data:`IMAGE_WORKERS` at a time."""
    requeued = run.state.requeue_missing_files(run.name)
    if requeued:
        log.warning("%d cached images of %s were missing on disk; fetching them again", requeued, run.name)
    pending = run.state.pending_images(run.name)
    total = len(pending)
    done = 0
    sem = asyncio.Semaphore(IMAGE_WORKERS)
    info_cache: _InfoCache = {}

    async def one(item: PendingImage) -> None:
        nonlocal done
        async with sem:
            await _image(run, item, info_cache)
        done += 1
        run.tick("images", done, total)

    run.tick("images", 0, total)
    await asyncio.gather(*(one(p) for p in pending))


async def _service_info(run: HarvestRun, svc: ImageService) -> ImageService | None:
    url = info_url(svc)
    try:
        doc = await run.fetch_json(url, conditional=False)
    except FetchError as exc:
        log.info("info.json of %s unavailable: %s", svc.id, exc)
        return None
    run.remember(url, "image-service", svc.id)
    return parse_service(doc, default_version=svc.api_version, fallback_id=svc.id)


async def _candidate_urls(run: HarvestRun, record: ImageRecord, info_cache: _InfoCache) -> list[str]:
    """The URLs to try for ``record``'s image, best first."""
    urls: list[str] = []
    svc = record.service
    if svc is not None:
        if needs_info(svc):
            task = info_cache.get(svc.id)
            if task is None:
                task = info_cache[svc.id] = asyncio.ensure_future(_service_info(run, svc))
            info = await task
            if info is not None:
                svc = merge_service(svc, info)
        urls.append(image_url(svc, run.settings.harvest.image_target_px))
    if record.static_url and record.static_url not in urls:
        urls.append(record.static_url)
    return urls


async def _image(run: HarvestRun, item: PendingImage, info_cache: _InfoCache) -> None:
    record = item.record
    last: tuple[str, str] = ("no-image-url", "record has neither an image service nor a URL")
    for url in await _candidate_urls(run, record, info_cache):
        # Records sharing an image URL wait for the first one's fetch, then reuse its file.
        async with run.url_locks.setdefault(url, asyncio.Lock()):
            outcome = await _fetch_image(run, record, url)
        if outcome is None:
            return
        last, retryable = outcome
        if retryable:
            break  # the server is struggling: do not hammer it with the fallback too
    if last[0] == HOST_DOWN:
        run.skip(record.id, last[0], last[1])  # stays pending: tried again next run
        return
    run.summary.images_failed += 1
    run.fails[last[0]] += 1
    run.state.fail_image(run.name, record.id, last[0], last[1], run.run)
    run.summary.failures.append({"ref": record.id, "stage": "image", "reason": last[0], "detail": last[1]})


def _reuse(run: HarvestRun, record: ImageRecord, url: str) -> bool:
    """Point ``record`` at the image already cached under ``url``, if there is one."""
    cached = run.state.image_for_url(url)
    if cached is None or not cached[1].is_file():
        return False
    content_hash, path, etag, modified = cached
    run.state.save_image(
        run.name,
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
    run.summary.images_reused += 1
    return True


async def _fetch_image(run: HarvestRun, record: ImageRecord, url: str) -> _Failure | None:
    """Fetch, check and store the image at ``url`` for ``record``; None when the record has its image."""
    if _reuse(run, record, url):
        return None
    limits = run.settings.limits
    try:
        res = await run.fetcher.get(url, expect="image", max_bytes=limits.image_max_bytes)
        content_hash, path, dims = await asyncio.to_thread(
            store_image, run.data.image_cache, res.content, limits.image_max_pixels
        )
    except FetchError as exc:
        return (exc.reason, exc.detail), exc.retryable
    except ImageRejectedError as exc:
        return (f"image-{exc.reason}", f"{exc} ({url})"), False
    run.state.save_image(
        run.name,
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
    run.summary.images_fetched += 1
    return None


def store_image(cache: Path, data: bytes, max_pixels: int) -> tuple[str, Path, tuple[int, int, str]]:
    """Check the image (header, then a full small decode, which catches truncation) and cache it."""
    meta = probe_image(data, max_pixels=max_pixels)
    open_image(data, max_pixels=max_pixels, max_side=64).close()
    digest = hashlib.sha256(data).hexdigest()
    ext = _FORMAT_EXT.get(meta.format.upper(), "img")
    folder = cache / digest[:2]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{digest}.{ext}"
    if not path.is_file():
        fd, name = tempfile.mkstemp(dir=folder, prefix=f".{digest}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            # Atomic: a killed run leaves no half-written image under the final name.
            Path(name).replace(path)
        except OSError:
            Path(name).unlink(missing_ok=True)  # a full disk: give back what was written
            raise
    return digest, path, (meta.width, meta.height, meta.format)


def remove_stale_partials(cache: Path, older_than_s: float = 600.0) -> None:
    """Temporary files left by a killed run (never a finished image: those are renamed into place)."""
    cutoff = time.time() - older_than_s
    for tmp in cache.glob("*/.*.tmp"):
        with contextlib.suppress(OSError):
            if tmp.stat().st_mtime < cutoff:
                tmp.unlink()
