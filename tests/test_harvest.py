"""Harvest end to end over real HTTP (127.0.0.1): nested collections, re-harvest, faults, CLI."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from typer.testing import CliRunner

from iconosearch.cli import app
from iconosearch.config import CollectionConfig, HarvestConfig, LimitsConfig, Settings
from iconosearch.harvest.harvester import harvest
from iconosearch.harvest.state import HarvestState
from iconosearch.harvest.summary import HarvestSummary
from tests.helpers.http_server import FixtureServer, Reply, image_server, jpeg, png_bomb, rewrite_urls


def load(fixtures: Path, rel: str) -> Any:
    return json.loads((fixtures / rel).read_text(encoding="utf-8"))


def villanova_site(srv: FixtureServer, fixtures: Path) -> str:
    """The real three-level Villanova collection (9 manifests × 2 canvases) on ``srv``; returns its URL."""
    base = srv.base_url
    mapping = {
        "http://localhost:3001/": f"{base}/villanova/",
        "http://digital.library.villanova.edu/": f"{base}/villanova-dl/",
    }
    top = srv.add_json(
        "/villanova-dl/Collection/vudl:3/IIIF",
        load(fixtures, "collection-v2/villanova-nested-top.json"),
        rewrite=mapping,
    )
    for level in ("middle", "bottom"):
        doc = load(fixtures, f"collection-v2/villanova-nested-{level}.json")
        srv.add_json(f"/villanova/nested-{level}.json", doc, rewrite=mapping)
    template = load(fixtures, "manifest-v2/villanova-letter-thackara.json")
    image_server(srv)

    def manifest(path: str, query: str) -> Reply:
        return Reply(200, json.dumps(villanova_manifest(srv, template, path)).encode(), "application/json")

    srv.handle("/villanova/", manifest)
    srv.handle("/villanova-dl/Item/", manifest)
    return top


def villanova_manifest(srv: FixtureServer, template: dict[str, Any], path: str) -> Any:
    """The real Villanova manifest re-identified as ``path`` on ``srv``, its images on ``/img/``."""
    url = srv.url(path)
    slug = hashlib.sha256(path.encode()).hexdigest()[:8]
    return rewrite_urls(
        template,
        {
            "https://digital.library.villanova.edu/Item/vudl:30471/Manifest": url,
            "https://digital.library.villanova.edu/Item/vudl:30471/": f"{url}/",
            "https://iiif.library.villanova.edu/image/": f"{srv.base_url}/img/{slug}-",
            "https://digital.library.villanova.edu/files/": f"{srv.base_url}/files/{slug}-",
        },
    )


def settings_for(tmp_path: Path, **collections: CollectionConfig) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        collections=collections,
        limits=LimitsConfig(harvest_delay_s=0.0, request_timeout_s=5.0, image_max_bytes=2 * 1024 * 1024),
        harvest=HarvestConfig(retries=2),
    )


def run(settings: Settings, target: str, **kwargs: Any) -> HarvestSummary:
    return asyncio.run(harvest(settings, target, **kwargs))


@pytest.fixture
def site(iiif_fixtures: Path) -> Iterator[tuple[FixtureServer, str]]:
    with FixtureServer() as srv:
        yield srv, villanova_site(srv, iiif_fixtures)


def image_hits(srv: FixtureServer) -> int:
    return sum(n for path, n in srv.counter.items() if path.startswith("/img/"))


def test_nested_collection_end_to_end_and_unchanged_reharvest(
    site: tuple[FixtureServer, str], tmp_path: Path
) -> None:
    srv, top = site
    settings = settings_for(tmp_path, vill=CollectionConfig(kind="collection", url=top))
    events: list[tuple[str, int, int | None]] = []
    first = run(settings, "vill", progress=lambda *e: events.append(e))
    assert first.failures == []
    assert (first.manifests, first.records, first.records_new) == (9, 18, 18)
    assert (first.images_fetched, first.images_failed, first.images_cached) == (18, 0, 18)
    assert first.complete
    assert ("images", 18, 18) in events
    with HarvestState(settings.data_dir / "state.sqlite") as state:
        images = list(state.iter_images("vill"))
        assert len(images) == 18
        for h in images:
            assert h.path.is_file()
            assert hashlib.sha256(h.path.read_bytes()).hexdigest() == h.content_hash
            assert max(Image.open(h.path).size) <= 384
            # The walk's trail of collection labels, then the manifest's own (unlabelled) 'within'.
            assert h.record.part_of == (
                "Villanova Digital Library",
                "Dime Novel and Popular Literature",
                "Covers and Illustrations",
                "https://digital.library.villanova.edu/Collection/vudl:25033/IIIF",
            )
            assert h.record.caption
            assert h.record.service is not None and h.record.service.level == 1
        (stats,) = state.collections()
        assert (stats.name, stats.records, stats.images) == ("vill", 18, 18)
        assert stats.last_harvest is not None
    # Long side 384 of the 6530×8514 canvases, in Image API 2 syntax.
    assert any(p.endswith("/full/295,/0/default.jpg") for p in srv.counter)
    ua = {h.get("user-agent") for _, h in srv.request_headers}
    assert ua == {settings.harvest.user_agent}

    before = image_hits(srv)
    second = run(settings, "vill")
    assert image_hits(srv) == before  # an unchanged collection does no image work at all
    assert (second.images_fetched, second.records_new, second.records_deleted) == (0, 0, 0)
    assert second.documents_unchanged == 9  # conditional requests answered 304
    assert second.records == 18 and second.complete
    conditional = [h for p, h in srv.request_headers[-12:] if "if-none-match" in h]
    assert conditional


def test_limit_and_removed_canvas(
    site: tuple[FixtureServer, str], tmp_path: Path, iiif_fixtures: Path
) -> None:
    srv, top = site
    settings = settings_for(tmp_path, vill=CollectionConfig(kind="collection", url=top))
    limited = run(settings, "vill", limit=3)
    assert limited.manifests == 3 and limited.records == 6 and not limited.complete
    full = run(settings, "vill")
    assert full.records == 18 and full.records_new == 12 and full.images_fetched == 12
    # One manifest loses a canvas: its record is deleted, the others stay.
    one = load(iiif_fixtures, "manifest-v2/villanova-letter-thackara.json")
    one["sequences"][0]["canvases"] = one["sequences"][0]["canvases"][:1]
    srv.add_json("/villanova/wunder.json", villanova_manifest(srv, one, "/villanova/wunder.json"))
    after = run(settings, "vill")
    assert after.records == 17 and after.records_deleted == 1
    with HarvestState(settings.data_dir / "state.sqlite") as state:
        assert len(state.deleted_ids("vill")) == 1
        assert len(list(state.iter_records("vill"))) == 17


def _manifest_with_image(srv: FixtureServer, path: str, image_path: str, *, static: bool = True) -> str:
    url = srv.url(path)
    body: dict[str, Any] = {"id": srv.url(image_path), "type": "Image", "format": "image/jpeg"}
    doc = {
        "@context": "http://iiif.io/api/presentation/3/context.json",
        "id": url,
        "type": "Manifest",
        "label": {"en": [f"manifest {path}"]},
        "items": [
            {
                "id": f"{url}/c1",
                "type": "Canvas",
                "width": 100,
                "height": 80,
                "items": [
                    {
                        "id": f"{url}/c1/p",
                        "type": "AnnotationPage",
                        "items": [
                            {
                                "id": f"{url}/c1/a",
                                "type": "Annotation",
                                "motivation": "painting",
                                "target": f"{url}/c1",
                                "body": body,
                            }
                        ],
                    }
                ],
            }
        ],
    }
    return srv.add_json(path, doc)


def test_faults_are_recorded_and_never_stop_the_harvest(tmp_path: Path) -> None:
    with FixtureServer() as srv:
        srv.add("/ok.jpg", jpeg((300, 200), "ok"), content_type="image/jpeg")
        good = _manifest_with_image(srv, "/good.json", "/ok.jpg")
        busy = _manifest_with_image(srv, "/busy.json", "/ok.jpg")
        srv.fault("/busy.json", "status-then-ok", status=429, times=1, retry_after="1")
        flaky = _manifest_with_image(srv, "/flaky.json", "/ok.jpg")
        srv.fault("/flaky.json", "status-then-ok", status=500, times=2)
        slow = _manifest_with_image(srv, "/slow.json", "/ok.jpg")
        srv.fault("/slow.json", "slow", delay=3.0)
        broken = srv.add(
            "/broken.json", '{"@context": "http://iiif.io/api/presentation/3/context.json", "id": "x"'
        )
        cut = _manifest_with_image(srv, "/cut.json", "/ok.jpg")
        srv.fault("/cut.json", "truncate", keep=40)
        html = srv.url("/html.json")
        srv.fault("/html.json", "html")
        loop = srv.url("/loop.json")
        srv.fault("/loop.json", "redirect-loop")
        missing = _manifest_with_image(srv, "/missing.json", "/gone.jpg")
        srv.add("/bomb.png", png_bomb(), content_type="image/png")
        bomb = _manifest_with_image(srv, "/bomb.json", "/bomb.png")
        huge = _manifest_with_image(srv, "/huge.json", "/huge.jpg")
        srv.fault("/huge.jpg", "huge", size=200 * 1024 * 1024)
        chunked = _manifest_with_image(srv, "/chunked.json", "/chunked.jpg")
        srv.fault("/chunked.jpg", "huge", size=8 * 1024 * 1024, declare=False)
        srv.add("/truncated.jpg", jpeg((300, 200), "t")[:600], content_type="image/jpeg")
        trunc_img = _manifest_with_image(srv, "/trunc-img.json", "/truncated.jpg")
        srv.add("/page.html", "<html>no</html>", content_type="text/html")
        html_img = _manifest_with_image(srv, "/html-img.json", "/page.html")
        urls = [
            good,
            busy,
            flaky,
            slow,
            broken,
            cut,
            html,
            loop,
            missing,
            bomb,
            huge,
            chunked,
            trunc_img,
            html_img,
        ]
        listing = tmp_path / "manifests.txt"
        listing.write_text("# fault zoo\n" + "\n".join(urls) + "\n", encoding="utf-8")
        settings = settings_for(tmp_path, zoo=CollectionConfig(kind="manifest-list", path=listing))
        settings = settings.model_copy(
            update={"limits": settings.limits.model_copy(update={"request_timeout_s": 0.5})}
        )
        summary = run(settings, "zoo")

        assert srv.hits("/busy.json") == 2 and srv.hits("/flaky.json") == 3  # retried, then fine
        assert summary.failed == {
            "timeout": 1,
            "invalid-json": 1,
            "truncated": 1,
            "html-instead-of-json": 1,
            "redirect-loop": 1,
            "http-404": 1,
            "image-too-many-pixels": 1,
            "too-large": 2,
            "image-truncated": 1,
            "not-an-image": 1,
        }, summary.failures
        assert srv.hits("/slow.json") == 3  # first try + 2 retries
        assert summary.manifests == 9  # good, busy, flaky, missing, bomb, huge, chunked, trunc-img, html-img
        # /ok.jpg is painted in three working manifests: fetched once, then reused.
        assert summary.images_fetched == 1 and summary.images_reused == 2 and summary.images_failed == 6
        assert srv.hits("/ok.jpg") == 1
        assert not summary.complete

        with HarvestState(settings.data_dir / "state.sqlite") as state:
            reasons = {f.ref: f.reason for f in state.failures("zoo")}
        assert reasons[slow] == "timeout" and reasons[loop] == "redirect-loop"

        # The next run retries what failed: the missing image has appeared meanwhile.
        srv.add("/gone.jpg", jpeg((120, 90), "gone"), content_type="image/jpeg")
        again = run(settings, "zoo")
        assert again.images_fetched == 1
        assert again.failed.get("http-404") is None


def test_paging_cycles_and_endless_pages(tmp_path: Path) -> None:
    with FixtureServer() as srv:
        srv.add("/ok.jpg", jpeg((64, 64), "ok"), content_type="image/jpeg")
        m1 = _manifest_with_image(srv, "/m1.json", "/ok.jpg")
        m2 = _manifest_with_image(srv, "/m2.json", "/ok.jpg")

        def page(n: int, nxt: str, manifests: list[str]) -> dict[str, Any]:
            return {
                "@context": "http://iiif.io/api/presentation/2/context.json",
                "@id": srv.url(f"/paged/{n}"),
                "@type": "sc:Collection",
                "label": "Paged",
                "next": nxt,
                "manifests": [{"@id": m, "@type": "sc:Manifest", "label": m} for m in manifests],
            }

        top = srv.add_json(
            "/paged",
            {
                "@context": "http://iiif.io/api/presentation/2/context.json",
                "@id": srv.url("/paged"),
                "@type": "sc:Collection",
                "label": "Paged",
                "total": 2,
                "first": srv.url("/paged/1"),
            },
        )
        srv.add_json("/paged/1", page(1, srv.url("/paged/2"), [m1]))
        srv.add_json("/paged/2", page(2, srv.url("/paged/1"), [m2, m1]))  # cycles back to page 1
        settings = settings_for(tmp_path)
        cyc = run(settings, top)
        assert cyc.manifests == 2 and cyc.records == 2 and cyc.complete
        assert srv.hits("/paged/1") == 1 and srv.hits("/paged/2") == 1

        # A server generating ever new, empty pages: stopped, reported, harvest goes on.
        def endless(path: str, query: str) -> Reply:
            n = int(path.rsplit("/", 1)[1])
            doc = page(n, srv.url(f"/endless/{n + 1}"), [m1] if n == 0 else [])
            return Reply(200, json.dumps(doc).encode(), "application/json")

        srv.handle("/endless/", endless)
        end = run(settings, srv.url("/endless/0"))
        assert end.failed == {"endless-paging": 1}
        assert end.manifests == 1 and not end.complete
        assert sum(n for p, n in srv.counter.items() if p.startswith("/endless/")) < 60


def test_cli_harvest_json_and_errors(site: tuple[FixtureServer, str], tmp_path: Path) -> None:
    _, top = site
    config = tmp_path / "iconosearch.toml"
    config.write_text(
        f'data_dir = "{tmp_path / "data"}"\n[limits]\nharvest_delay_s = 0\n'
        f'[collections.vill]\nkind = "collection"\nurl = "{top}"\n',
        encoding="utf-8",
    )
    runner = CliRunner()
    result = runner.invoke(app, ["-c", str(config), "--json", "harvest", "vill", "--limit", "2"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    (h,) = data["harvests"]
    assert (h["collection"], h["manifests"], h["records"], h["images_fetched"]) == ("vill", 2, 4, 4)
    text = runner.invoke(app, ["-c", str(config), "harvest"])
    assert text.exit_code == 0, text.output
    assert "harvest of vill" in text.stdout and "18 live" in text.stdout
    bad = runner.invoke(app, ["-c", str(config), "harvest", "nope"])
    assert bad.exit_code == 1 and "unknown collection" in bad.output
    since = runner.invoke(app, ["-c", str(config), "harvest", "vill", "--since", "yesterday"])
    assert since.exit_code == 2


def test_state_has_no_duplicates(site: tuple[FixtureServer, str], tmp_path: Path) -> None:
    _, top = site
    settings = settings_for(tmp_path)
    run(settings, top)
    run(settings, top)
    db = sqlite3.connect(settings.data_dir / "state.sqlite")
    assert db.execute("SELECT COUNT(*), COUNT(DISTINCT id) FROM records").fetchone() == (18, 18)
    (images,) = db.execute("SELECT COUNT(*) FROM images").fetchone()
    files = [p for p in (settings.data_dir / "cache" / "images").rglob("*") if p.is_file()]
    assert images == len(files) == 18


def test_depth_limit_and_remote_manifest_list(site: tuple[FixtureServer, str], tmp_path: Path) -> None:
    srv, top = site
    settings = settings_for(
        tmp_path,
        shallow=CollectionConfig(kind="collection", url=top, max_depth=1),
        listed=CollectionConfig(kind="manifest-list", url=srv.url("/list.txt")),
    )
    shallow = run(settings, "shallow")
    # top (depth 0) → middle (depth 1); the bottom collection holding the manifests is deeper.
    assert shallow.manifests == 0 and srv.hits("/villanova/nested-bottom.json") == 0
    srv.add(
        "/list.txt",
        f"# two manifests\n{srv.url('/villanova/wunder.json')}\n\n{srv.url('/villanova/other.json')}\n",
        content_type="text/plain; charset=utf-8",
    )
    listed = run(settings, "listed")
    assert (listed.manifests, listed.records, listed.images_fetched) == (2, 4, 4)
    assert listed.complete
