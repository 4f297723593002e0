"""Honest outcomes: exit codes 0 / partial / total, every failure class counted, permanent errors not
retried, a dead host marked down, and progress lines when there is no terminal."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from iconosearch.cli import app
from iconosearch.config import CollectionConfig, HarvestConfig, LimitsConfig, Settings
from iconosearch.harvest.fetch import HOST_DOWN_AFTER
from iconosearch.harvest.summary import EXIT_FAILED, EXIT_PARTIAL
from tests.helpers.http_server import FixtureServer, jpeg
from tests.test_harvest import run


def manifest(base: str, images: list[str]) -> dict[str, Any]:
    """A Presentation 3 manifest with one canvas per image URL (static images, no image service)."""
    canvases = []
    for i, url in enumerate(images):
        canvas = f"{base}/canvas/{i}"
        canvases.append(
            {
                "id": canvas,
                "type": "Canvas",
                "width": 64,
                "height": 48,
                "items": [
                    {
                        "id": f"{canvas}/page",
                        "type": "AnnotationPage",
                        "items": [
                            {
                                "id": f"{canvas}/anno",
                                "type": "Annotation",
                                "motivation": "painting",
                                "target": canvas,
                                "body": {"id": url, "type": "Image", "format": "image/jpeg"},
                            }
                        ],
                    }
                ],
            }
        )
    return {
        "@context": "http://iiif.io/api/presentation/3/context.json",
        "id": f"{base}/manifest.json",
        "type": "Manifest",
        "label": {"en": ["Test manifest"]},
        "items": canvases,
    }


def _settings(tmp_path: Path, url: str, concurrency: int = 4) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        collections={"m": CollectionConfig(kind="manifest", url=url)},
        limits=LimitsConfig(harvest_delay_s=0.0, request_timeout_s=5.0, harvest_concurrency=concurrency),
        harvest=HarvestConfig(retries=2),
    )


def _config(tmp_path: Path, url: str) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    config = tmp_path / "iconosearch.toml"
    config.write_text(
        f'data_dir = "{tmp_path / "data"}"\n[limits]\nharvest_delay_s = 0\n'
        f'[harvest]\nretries = 1\n[collections.m]\nkind = "manifest"\nurl = "{url}"\n',
        encoding="utf-8",
    )
    return config


def test_all_images_failing_is_a_total_failure(tmp_path: Path) -> None:
    with FixtureServer() as srv:
        images = [srv.url(f"/missing/{i}.jpg") for i in range(8)]
        url = srv.add_json("/m/manifest.json", manifest(srv.url("/m"), images))
        summary = run(_settings(tmp_path, url), "m")
        assert summary.outcome == "failed" and summary.failed == {"http-404": 8}
        assert len(summary.failures) == 8  # every one, not the first few
        result = CliRunner().invoke(app, ["-c", str(_config(tmp_path, url)), "harvest", "m"])
        assert result.exit_code == EXIT_FAILED, result.output
        assert "http-404: 8" in result.stdout and "FAILED" in result.stdout
        assert "… and 3 more (all of them in --json and in state.sqlite)" in result.output
        data = CliRunner().invoke(app, ["-c", str(_config(tmp_path, url)), "--json", "harvest", "m"])
        assert data.exit_code == EXIT_FAILED
        assert len(json.loads(data.stdout)["harvests"][0]["failures"]) == 8


def test_some_images_failing_is_a_partial_failure_and_all_good_is_0(tmp_path: Path) -> None:
    with FixtureServer() as srv:
        for i in range(3):
            srv.add(f"/img/{i}.jpg", jpeg((64, 48), str(i)), content_type="image/jpeg")
        good = [srv.url(f"/img/{i}.jpg") for i in range(3)]
        url = srv.add_json("/m/manifest.json", manifest(srv.url("/m"), [*good, srv.url("/gone.jpg")]))
        srv.fault("/gone.jpg", "status", status=410)
        summary = run(_settings(tmp_path, url), "m")
        assert summary.outcome == "partial" and summary.failed == {"http-410": 1}
        assert srv.hits("/gone.jpg") == 1  # 410 is permanent: not retried
        result = CliRunner().invoke(app, ["-c", str(_config(tmp_path, url)), "harvest", "m"])
        assert result.exit_code == EXIT_PARTIAL, result.output

        ok_url = srv.add_json("/ok/manifest.json", manifest(srv.url("/ok"), good))
        result = CliRunner().invoke(app, ["-c", str(_config(tmp_path / "ok", ok_url)), "harvest", "m"])
        assert result.exit_code == 0, result.output
        # Without a terminal, progress comes as plain lines, and the next command is spelled out.
        assert "m: images 3/3" in result.stderr
        assert f"next: iconosearch -c {tmp_path / 'ok' / 'iconosearch.toml'} index m" in result.stdout


def test_unresolvable_host_is_not_retried_and_marked_down(tmp_path: Path) -> None:
    with FixtureServer() as srv:
        images = [f"http://no-such-host.invalid/img/{i}.jpg" for i in range(10)]
        url = srv.add_json("/m/manifest.json", manifest(srv.url("/m"), images))
        summary = run(_settings(tmp_path, url, concurrency=1), "m")
        assert summary.failed == {"dns": HOST_DOWN_AFTER}
        assert summary.skipped == {"host-unreachable": 10 - HOST_DOWN_AFTER}
        assert summary.outcome == "failed"
        # One request per failed image (no retries), none for the ones after the host was marked down.
        assert summary.requests == 1 + HOST_DOWN_AFTER


def test_a_harvest_that_cannot_start_does_not_stop_the_others(tmp_path: Path) -> None:
    from iconosearch.harvest.harvester import harvest_collections

    settings = _settings(tmp_path, "http://127.0.0.1:9/manifest.json")
    batch = harvest_collections(settings, ["nope", "also-nope"])
    assert batch.summaries == []
    assert [e.split(":")[0] for e in batch.errors] == ["nope", "also-nope"]
    assert "unknown collection 'nope'" in batch.errors[0]
    assert batch.exit_code == 1
