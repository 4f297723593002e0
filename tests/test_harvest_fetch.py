"""The polite fetcher against a real local server: retries, Retry-After, limits, politeness, 304s."""

from __future__ import annotations

import asyncio
import email.utils
import time
from pathlib import Path

import pytest

from iconosearch.config import CollectionConfig
from iconosearch.harvest.fetch import Fetcher, FetchError, retry_after_seconds
from iconosearch.harvest.harvester import harvest
from iconosearch.harvest.state import HarvestState
from tests.helpers.http_server import FixtureServer, jpeg
from tests.test_harvest import _manifest_with_image, settings_for


def fetcher(**kw: float | int) -> Fetcher:
    opts: dict[str, float | int] = {"timeout_s": 2.0, "delay_s": 0.0, "retries": 2, "backoff_s": 0.05}
    opts.update(kw)
    return Fetcher(user_agent="iconosearch-test/1", **opts)  # type: ignore[arg-type]


def test_retry_after_parsing() -> None:
    assert retry_after_seconds("7") == 7.0
    now = time.time()
    when = email.utils.formatdate(now + 30, usegmt=True)
    wait = retry_after_seconds(when, now=now)
    assert wait is not None and 29 <= wait <= 31
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


def test_retry_after_too_long_fails_fast_and_politeness() -> None:
    async def go(srv: FixtureServer) -> None:
        async with fetcher(max_retry_after_s=5) as f:
            t0 = time.monotonic()
            with pytest.raises(FetchError) as err:
                await f.get(srv.url("/later.json"), expect="json", max_bytes=10_000)
            assert err.value.reason == "http-429" and err.value.retryable
            assert "3600" in str(err.value) and time.monotonic() - t0 < 2
        async with fetcher(delay_s=0.2, concurrency=4) as f:
            t0 = time.monotonic()
            await asyncio.gather(
                *(f.get(srv.url("/a.json"), expect="json", max_bytes=1000) for _ in range(4))
            )
            # Four request starts to one host, at least 0.2 s apart.
            assert time.monotonic() - t0 >= 0.6

    with FixtureServer() as srv:
        srv.add("/a.json", "{}")
        srv.add("/later.json", "{}")
        srv.fault("/later.json", "status-then-ok", status=429, times=5, retry_after="3600")
        asyncio.run(go(srv))
        assert srv.hits("/later.json") == 1


def test_conditional_requests_and_content_types(tmp_path: Path) -> None:
    async def go(srv: FixtureServer) -> None:
        async with fetcher() as f:
            first = await f.get(srv.url("/doc.json"), expect="json", max_bytes=1000)
            assert first.status == 200 and first.etag and first.json() == {"a": 1}
            again = await f.get(srv.url("/doc.json"), expect="json", max_bytes=1000, etag=first.etag)
            assert again.not_modified and again.content == b""
            with pytest.raises(FetchError) as err:
                await f.get(srv.url("/doc.json"), expect="image", max_bytes=1000)
            assert err.value.reason == "not-an-image"
            with pytest.raises(FetchError) as err:
                await f.get(srv.url("/doc.json"), expect="json", max_bytes=3)
            assert err.value.reason == "too-large"
            with pytest.raises(FetchError) as err:
                await f.get("ftp://example.org/x", expect="json", max_bytes=3)
            assert err.value.reason == "bad-url"
        local = tmp_path / "x.json"
        local.write_text('{"b": 2}')
        async with Fetcher(user_agent="t", file_roots=[tmp_path]) as f:
            assert (await f.get(local.as_uri(), expect="json", max_bytes=100)).json() == {"b": 2}
        async with fetcher() as f:  # no configured root: file:// is refused
            with pytest.raises(FetchError) as err:
                await f.get(local.as_uri(), expect="json", max_bytes=100)
            assert err.value.reason == "file-not-allowed"

    with FixtureServer() as srv:
        srv.add("/doc.json", '{"a": 1}')
        asyncio.run(go(srv))


def test_ad_hoc_manifest_url_and_cache_repair(tmp_path: Path) -> None:
    with FixtureServer() as srv:
        srv.add("/p.jpg", jpeg((320, 240), "p"), content_type="image/jpeg")
        url = _manifest_with_image(srv, "/one.json", "/p.jpg")
        settings = settings_for(tmp_path)
        first = asyncio.run(harvest(settings, url))
        assert first.kind == "manifest" and first.images_fetched == 1
        assert srv.hits("/one.json") == 1  # the kind probe doubles as the manifest fetch
        second = asyncio.run(harvest(settings, url))
        assert second.documents_unchanged == 1 and second.images_fetched == 0
        assert srv.hits("/one.json") == 2 and srv.hits("/p.jpg") == 1
        # Someone clears the image cache: the next harvest notices and fetches again.
        with HarvestState(settings.data_dir / "state.sqlite") as state:
            (h,) = state.iter_images(first.collection)
        h.path.unlink()
        third = asyncio.run(harvest(settings, url))
        assert third.images_fetched == 1 and h.path.is_file()


def test_unknown_collection_and_unusable_source(tmp_path: Path) -> None:
    from iconosearch.harvest.sources import HarvestError

    with FixtureServer() as srv:
        srv.add(
            "/info.json", '{"@context": "http://iiif.io/api/image/2/context.json", "@id": "x", "width": 1}'
        )
        settings = settings_for(tmp_path, a=CollectionConfig(kind="collection", url=srv.url("/missing.json")))
        with pytest.raises(HarvestError, match="unknown collection"):
            asyncio.run(harvest(settings, "b"))
        with pytest.raises(HarvestError, match="not a manifest, collection or stream"):
            asyncio.run(harvest(settings, srv.url("/info.json")))
        failed = asyncio.run(harvest(settings, "a"))  # a configured collection that 404s: recorded
        assert failed.failed == {"http-404": 1} and not failed.complete


def test_since_parsing() -> None:
    from datetime import UTC, datetime

    from iconosearch.harvest.harvester import parse_since

    now = datetime(2026, 1, 10, 12, tzinfo=UTC)
    assert parse_since("7d", now) == datetime(2026, 1, 3, 12, tzinfo=UTC)
    assert parse_since("90m", now) == datetime(2026, 1, 10, 10, 30, tzinfo=UTC)
    assert parse_since("2025-12-01") == datetime(2025, 12, 1, tzinfo=UTC)
    assert parse_since("2025-12-01T10:00:00Z") == datetime(2025, 12, 1, 10, tzinfo=UTC)
    with pytest.raises(ValueError, match="ISO"):
        parse_since("last tuesday")
