"""Harvest boundaries: a fetched document cannot make the harvester read local files or plant
``javascript:`` links (0.1 read ``file://`` manifest ids listed by a remote collection, and stored
any link scheme)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from iconosearch.harvest.harvester import harvest
from iconosearch.harvest.state import HarvestState
from iconosearch.iiif.manifest import parse_manifest
from tests.helpers.http_server import FixtureServer, jpeg
from tests.test_harvest import _manifest_with_image, settings_for


def _collection(url: str, manifest_ids: list[str]) -> dict[str, Any]:
    return {
        "@context": "http://iiif.io/api/presentation/3/context.json",
        "id": url,
        "type": "Collection",
        "label": {"en": ["remote"]},
        "items": [{"id": m, "type": "Manifest", "label": {"en": ["m"]}} for m in manifest_ids],
    }


def _secret_manifest(folder: Path) -> Path:
    """A local file that looks like a manifest, standing for any file an attacker wants read."""
    secret = folder / "secret" / "manifest.json"
    secret.parent.mkdir(parents=True)
    doc = {
        "@context": "http://iiif.io/api/presentation/3/context.json",
        "id": secret.as_uri(),
        "type": "Manifest",
        "label": {"en": ["TOP-SECRET-CONTENTS"]},
        "items": [],
    }
    secret.write_text(json.dumps(doc), encoding="utf-8")
    return secret


def test_remote_collection_cannot_make_the_harvester_read_local_files(tmp_path: Path) -> None:
    secret = _secret_manifest(tmp_path)
    with FixtureServer() as srv:
        srv.add("/p.jpg", jpeg((64, 48), "p"), content_type="image/jpeg")
        good = _manifest_with_image(srv, "/good.json", "/p.jpg")
        top = srv.add_json("/top.json", _collection(srv.url("/top.json"), [good, secret.as_uri()]))
        settings = settings_for(tmp_path)
        summary = asyncio.run(harvest(settings, top))
    with HarvestState(settings.data_dir / "state.sqlite") as state:
        records = list(state.iter_records(summary.collection))
        failures = state.failures(summary.collection)
    assert len(records) == 1 and records[0].manifest_id == good
    assert "TOP-SECRET" not in repr(records)
    assert any(f.ref == secret.as_uri() and f.reason == "file-not-allowed" for f in failures)


def test_operator_configured_file_collection_still_harvests(tmp_path: Path) -> None:
    """``file://`` stays usable for what the operator points at: the source and its folder."""
    with FixtureServer() as srv:
        srv.add("/p.jpg", jpeg((64, 48), "p"), content_type="image/jpeg")
        good = _manifest_with_image(srv, "/good.json", "/p.jpg")
        folder = tmp_path / "local"
        folder.mkdir()
        manifest = folder / "m.json"
        manifest.write_bytes(srv.docs["/good.json"].body)
        top = folder / "top.json"
        top.write_text(json.dumps(_collection(top.as_uri(), [manifest.as_uri()])), encoding="utf-8")
        settings = settings_for(tmp_path)
        summary = asyncio.run(harvest(settings, top.as_uri()))
    assert summary.records_new == 1 and summary.images_fetched == 1, summary
    assert good


def test_link_schemes_other_than_http_are_dropped_by_the_parser() -> None:
    evil = "javascript:alert(document.domain)"
    doc = {
        "@context": "http://iiif.io/api/presentation/3/context.json",
        "id": "https://example.org/m",
        "type": "Manifest",
        "label": {"en": ["m"]},
        "homepage": [{"id": evil, "type": "Text"}, {"id": "https://example.org/page", "type": "Text"}],
        "thumbnail": [{"id": "data:text/html,<script>alert(1)</script>", "type": "Image"}],
        "rights": "javascript:alert(2)",
        "provider": [
            {
                "id": "https://example.org/p",
                "type": "Agent",
                "label": {"en": ["P"]},
                "homepage": [{"id": "JavaScript:alert(3)", "type": "Text"}],
                "logo": [{"id": "vbscript:x", "type": "Image"}],
            }
        ],
        "items": [
            {
                "id": "https://example.org/m/c1",
                "type": "Canvas",
                "width": 10,
                "height": 10,
                "items": [
                    {
                        "id": "https://example.org/m/c1/p",
                        "type": "AnnotationPage",
                        "items": [
                            {
                                "id": "https://example.org/m/c1/a",
                                "type": "Annotation",
                                "motivation": "painting",
                                "target": "https://example.org/m/c1",
                                "body": {
                                    "id": "https://example.org/i.jpg",
                                    "type": "Image",
                                    "format": "image/jpeg",
                                },
                            }
                        ],
                    }
                ],
            }
        ],
    }
    records = parse_manifest(doc, collection="c").records
    assert records
    text = repr(records)
    for scheme in ("javascript:", "JavaScript:", "data:", "vbscript:"):
        assert scheme not in text
    rec = records[0]
    assert [h.id for h in rec.homepage] == ["https://example.org/page"]
    assert rec.rights is None and rec.providers[0].homepage is None and rec.providers[0].logo is None
