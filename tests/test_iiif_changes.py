"""IIIF Change Discovery: the consumer walk (pure) and incremental harvests over HTTP."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from iconosearch.config import CollectionConfig
from iconosearch.harvest.harvester import harvest
from iconosearch.harvest.state import HarvestState
from iconosearch.iiif.changes import ChangePage, ChangeWalker, parse_page, parse_stream, parse_time
from tests.helpers.http_server import FixtureServer, jpeg
from tests.test_harvest import _manifest_with_image, settings_for


def act(kind: str, obj: str, when: str, target: str | None = None) -> dict[str, Any]:
    a: dict[str, Any] = {"type": kind, "object": {"id": obj, "type": "Manifest"}, "endTime": when}
    if target:
        a["target"] = {"id": target, "type": "Manifest"}
    return a


def page(pid: str, items: list[dict[str, Any]], prev: str | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "@context": "http://iiif.io/api/discovery/1/context.json",
        "id": pid,
        "type": "OrderedCollectionPage",
        "orderedItems": items,
    }
    if prev:
        doc["prev"] = {"id": prev, "type": "OrderedCollectionPage"}
    return doc


def test_fixture_stream_and_page(iiif_fixtures: Path) -> None:
    stream = parse_stream(
        json.loads((iiif_fixtures / "change-discovery/dri-spec-ordered-collection.json").read_text())
    )
    assert stream.last == "https://example.org/activity/page-214" and stream.total == 21456
    p = parse_page(
        json.loads((iiif_fixtures / "change-discovery/dri-spec-ordered-collection-page.json").read_text())
    )
    assert p.prev == "https://example.org/activity/page-0"
    (a,) = p.activities
    assert (a.type, a.object_id, a.end_time) == (
        "Update",
        "https://example.org/iiif/1/manifest",
        datetime(2018, 3, 10, 10, tzinfo=UTC),
    )


def test_walker_newest_activity_wins_and_stops_at_last_crawl() -> None:
    older = parse_page(
        page("p0", [act("Create", "a", "2024-01-01T00:00:00Z"), act("Create", "b", "2024-01-02T00:00:00Z")])
    )
    newer = parse_page(
        page(
            "p1",
            [
                act("Update", "a", "2024-02-01T00:00:00Z"),
                act("Delete", "a", "2024-02-02T00:00:00Z"),
                act("Move", "c", "2024-02-03T00:00:00Z", target="d"),
            ],
            prev="p0",
        )
    )
    walker = ChangeWalker(since=parse_time("2024-01-15T00:00:00Z"))
    assert walker.feed(newer) is True
    assert walker.feed(older) is False  # Create b is older than the last crawl: stop
    assert walker.actions == {"c": "delete", "d": "harvest", "a": "delete"}
    assert walker.newest == datetime(2024, 2, 3, tzinfo=UTC)
    first = ChangeWalker(since=None)
    first.feed(newer)
    first.feed(older)
    assert first.to_harvest == ["d", "b"] and first.to_delete == ["c", "a"]


def test_walker_refresh_ends_the_walk() -> None:
    p = ChangePage(
        "p",
        "older",
        None,
        parse_page(
            page(
                "p",
                [
                    act("Create", "x", "2024-01-01T00:00:00Z"),
                    {"type": "Refresh", "endTime": "2024-01-02T00:00:00Z"},
                    act("Create", "y", "2024-01-03T00:00:00Z"),
                ],
            )
        ).activities,
    )
    walker = ChangeWalker(since=None)
    assert walker.feed(p) is False
    assert walker.actions == {"y": "harvest"}


def test_incremental_harvest_from_a_change_stream(tmp_path: Path) -> None:
    with FixtureServer() as srv:
        srv.add("/i.jpg", jpeg((200, 150), "i"), content_type="image/jpeg")
        srv.add("/j.jpg", jpeg((150, 200), "j"), content_type="image/jpeg")
        m = {n: _manifest_with_image(srv, f"/m{n}.json", "/i.jpg") for n in (1, 2, 3, 4)}
        srv.add_json(
            "/changes/page0",
            page(
                srv.url("/changes/page0"),
                [
                    act("Create", m[1], "2024-01-01T00:00:00Z"),
                    act("Create", m[2], "2024-01-02T00:00:00Z"),
                ],
            ),
        )
        srv.add_json(
            "/changes/page1",
            page(
                srv.url("/changes/page1"),
                [act("Create", m[3], "2024-01-03T00:00:00Z"), act("Update", m[1], "2024-01-04T00:00:00Z")],
                prev=srv.url("/changes/page0"),
            ),
        )

        def stream(last: str) -> dict[str, Any]:
            return {
                "@context": "http://iiif.io/api/discovery/1/context.json",
                "id": srv.url("/changes"),
                "type": "OrderedCollection",
                "first": {"id": srv.url("/changes/page0"), "type": "OrderedCollectionPage"},
                "last": {"id": srv.url(last), "type": "OrderedCollectionPage"},
            }

        srv.add_json("/changes", stream("/changes/page1"))
        settings = settings_for(tmp_path, feed=CollectionConfig(kind="changes", url=srv.url("/changes")))
        first = asyncio.run(harvest(settings, "feed"))
        assert (first.manifests, first.records, first.images_fetched, first.images_reused) == (3, 3, 1, 2)
        assert srv.hits("/changes/page0") == 1

        # The publisher changes things: m1 updated (new image), m2 deleted, m3 moved to m4.
        _manifest_with_image(srv, "/m1.json", "/j.jpg")
        srv.add_json(
            "/changes/page2",
            page(
                srv.url("/changes/page2"),
                [
                    act("Delete", m[2], "2024-02-01T00:00:00Z"),
                    act("Move", m[3], "2024-02-02T00:00:00Z", target=m[4]),
                    act("Update", m[1], "2024-02-03T00:00:00Z"),
                ],
                prev=srv.url("/changes/page1"),
            ),
        )
        srv.add_json("/changes", stream("/changes/page2"))
        second = asyncio.run(harvest(settings, "feed"))
        assert srv.hits("/changes/page0") == 1  # older than the last crawl: never read again
        # Deleted: m2, m3 (moved), and m1's old image record (its painted image has a new id).
        assert second.manifests == 2 and second.records == 2 and second.records_deleted == 3
        assert second.images_fetched == 1  # m1's new image; m4 reuses the cached /i.jpg
        with HarvestState(settings.data_dir / "state.sqlite") as state:
            live = {r.manifest_id for r in state.iter_records("feed")}
            assert live == {m[1], m[4]}
            assert state.get_cursor("feed") == "2024-02-03T00:00:00+00:00"

        # Nothing new. The activity at exactly the last crawl time is not "before" it, so m1 is asked
        # for again, conditionally: a 304, no parsing, no image work.
        third = asyncio.run(harvest(settings, "feed"))
        assert third.records == 2 and third.images_fetched == 0 and third.records_new == 0
        assert third.documents_unchanged == 1
        assert srv.hits("/changes/page1") == 2
