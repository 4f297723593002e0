"""The HTTP API against a real index (real images, real model embeddings, real FAISS + SQLite)."""

from __future__ import annotations

import base64
import gc
import io
import json
import re
import shutil
import struct
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import iiif_prezi3
import pytest
from fastapi.testclient import TestClient
from openapi_spec_validator import validate
from PIL import Image

from iconosearch import __version__
from iconosearch.api.app import create_app
from iconosearch.api.content_state import decode_content_state
from iconosearch.config import LimitsConfig, ServerConfig, Settings
from tests.helpers import presentation3
from tests.helpers.demo_index import DemoIndex, shared_demo_index

API_KEY = "s3cret-test-key"
PROBLEM = "application/problem+json"


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoIndex:
    return shared_demo_index(tmp_path_factory)


def _settings(data_dir: Path, **server: object) -> Settings:
    return Settings(
        data_dir=data_dir,
        server=ServerConfig(api_keys=[API_KEY], public_url=None, **server),  # type: ignore[arg-type]
        limits=LimitsConfig(upload_max_bytes=2 * 1024 * 1024, k_max=50),
    )


@pytest.fixture(scope="module")
def client(demo: DemoIndex) -> Iterator[TestClient]:
    app = create_app(
        _settings(demo.data_dir, cors_origins=["https://catalogue.example.org"]), reload_interval_s=0
    )
    with TestClient(app, base_url=demo.base_url, raise_server_exceptions=False) as c:
        wait_ready(c)
        yield c


def wait_ready(c: TestClient, timeout_s: float = 120) -> None:
    """``/readyz`` turns 200 once the model has answered its warm-up query."""
    deadline = time.monotonic() + timeout_s
    while c.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, c.get("/readyz").text
        time.sleep(0.1)


def _jpeg(path: Path) -> bytes:
    return path.read_bytes()


def _assert_problem(response: httpx.Response, status: int | None = None) -> dict:
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    if status is not None:
        assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == response.status_code
    assert body["type"].startswith("urn:iconosearch:problem:")
    assert body["title"] and body["detail"] and body["code"]
    return body


# --------------------------------------------------------------------------- contract


def test_openapi_is_valid_and_every_operation_has_examples(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    validate(schema)
    expected = {
        ("get", "/api/search"),
        ("post", "/api/search"),
        ("post", "/api/search/image"),
        ("get", "/api/search.iiif"),
        ("get", "/api/items/{item_id}"),
        ("get", "/api/items/{item_id}/similar"),
        ("get", "/api/collections"),
        ("get", "/api/facets"),
        ("post", "/api/admin/reindex"),
        ("post", "/api/admin/reload"),
        ("get", "/healthz"),
        ("get", "/readyz"),
        ("get", "/metrics"),
    }
    found = {(m, p) for p, ops in schema["paths"].items() for m in ops}
    assert expected <= found
    for method, path in expected:
        op = schema["paths"][path][method]
        ok = op["responses"].get("200") or op["responses"].get("202")
        assert ok is not None, (method, path)
        assert any("example" in c or "examples" in c for c in ok.get("content", {}).values()), (method, path)


# --------------------------------------------------------------------------- search


def test_text_search_returns_complete_results(client: TestClient, demo: DemoIndex) -> None:
    r = client.get("/api/search", params={"q": "a red circle", "k": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    assert 1 <= len(body["results"]) <= 5
    assert body["index_version"]
    scores = [x["score"] for x in body["results"]]
    assert scores == sorted(scores, reverse=True)
    known = {rec.id: rec for rec in demo.records}
    for res in body["results"]:
        rec = known[res["id"]]
        assert res["manifest"] == rec.manifest_id and "canvas" not in res
        assert res["caption"] == rec.caption
        assert res["thumbnail"]["url"].startswith(f"{demo.base_url}/iiif/local/")
        assert res["thumbnail"]["width"] and res["thumbnail"]["height"]
        assert (
            res["aspect_ratio"] == pytest.approx((rec.width or 0) / (rec.height or 1), rel=0.02) or rec.region
        )
        assert res["rights"] == rec.rights
        assert res["attribution"]["value"] == rec.required_statement.value  # type: ignore[union-attr]
        assert res["providers"][0]["label"] == rec.providers[0].label
        assert res["date"]["start_year"] == rec.date.start_year  # type: ignore[union-attr]
        assert res["duplicates"]["size"] >= 1
        assert not {"content_state", "viewers", "links", "image_service"} & res.keys()  # compact by default
    templates = body["templates"]
    assert templates["viewer"] == f"{demo.base_url}/viewer/?iiif-content={{content_state}}"
    assert "{content_state}" in templates["mirador"] and "{content_state}" in templates["universal_viewer"]
    assert templates["permalink"] == f"{demo.base_url}/?item={{id}}"
    with_state = client.get(
        "/api/search", params={"q": "a map of a harbour", "k": 5, "fields": "content_state"}
    )
    for res in with_state.json()["results"]:
        rec = known[res["id"]]
        state = decode_content_state(res["content_state"])
        assert state["target"]["partOf"][0]["id"] == rec.manifest_id
        assert state["target"]["id"].split("#")[0] == rec.canvas_id
        assert "viewers" not in res


def test_fields_choose_the_payload_and_the_default_is_compact(client: TestClient) -> None:
    params = {"q": "a sailing ship", "k": 24}
    compact = client.get("/api/search", params=params)
    full = client.get("/api/search", params={**params, "fields": "full"})
    assert compact.status_code == full.status_code == 200
    assert compact.headers["content-type"] == "application/json"
    # Catalogue pages of 24 hits stay small; the full payload (0.1's) repeats the Content State in
    # each viewer URL and carries the IIIF details (bench/api.py reports both sizes).
    assert len(compact.content) * 3 < len(full.content)
    first_full = full.json()["results"][0]
    first = compact.json()["results"][0]
    assert {k: v for k, v in first_full.items() if k in first and k != "providers"} == {
        k: v for k, v in first.items() if k != "providers"
    }
    # The compact default names the provider; its id, homepage and logo come with the links.
    assert first["providers"] == [{"label": p["label"]} for p in first_full["providers"]]
    assert any("homepage" in p for p in first_full["providers"])
    links = client.get("/api/search", params={**params, "fields": "links"}).json()["results"][0]
    assert links["providers"] == first_full["providers"]
    # The page's templates give every URL of a full result from its id and Content State.
    templates = compact.json()["templates"]
    state = first_full["content_state"]
    assert first_full["viewers"]["content_state"] == state
    for name in ("viewer", "mirador", "universal_viewer"):
        opened = templates[name].replace("{content_state}", state)
        assert opened.replace("{manifest}", quote(first["manifest"], safe="")) == first_full["viewers"][name]
    for name in ("item", "similar", "permalink"):
        assert templates[name].replace("{id}", first["id"]) == first_full["links"][name]
    viewers = client.get("/api/search", params={**params, "fields": "viewers"}).json()["results"][0]
    assert viewers["content_state"] == state and "links" not in viewers and "image_service" not in viewers
    iiif = client.post(
        "/api/search", json={"terms": [{"kind": "text", "value": "a sailing ship"}], "fields": ["iiif"]}
    )
    assert "image_service" in iiif.json()["results"][0] and "viewers" not in iiif.json()["results"][0]
    assert client.get("/api/search", params={**params, "fields": "everything"}).status_code == 422


def test_thumbnail_urls_are_served(client: TestClient) -> None:
    res = client.get("/api/search", params={"q": "stripes", "k": 3, "fields": "iiif"}).json()["results"]
    for item in res:
        path = item["thumbnail"]["url"].split("://", 1)[1].split("/", 1)[1]
        got = client.get("/" + path)
        assert got.status_code == 200, path
        with Image.open(io.BytesIO(got.content)) as im:
            assert im.size == (item["thumbnail"]["width"], item["thumbnail"]["height"])
        info = client.get(f"/{item['image_service']['info_url'].split('/', 3)[3]}")
        assert info.status_code == 200 and info.headers["access-control-allow-origin"] == "*"


def test_image_upload_finds_the_same_image_first(client: TestClient, demo: DemoIndex) -> None:
    target = demo.records[3]
    data = _jpeg(demo.image_files[target.id])
    r = client.post("/api/search/image", files={"file": ("query.jpg", data, "image/jpeg")}, params={"k": 5})
    assert r.status_code == 200, r.text
    top = r.json()["results"][0]
    assert target.id in {top["id"], *top["duplicates"]["ids"]}
    assert top["score"] > 0.95


def test_post_search_combines_weighted_terms(client: TestClient, demo: DemoIndex) -> None:
    target = demo.records[5]
    b64 = base64.b64encode(_jpeg(demo.image_files[target.id])).decode()
    plain = client.post("/api/search", json={"terms": [{"kind": "image", "value": b64}], "k": 10}).json()
    top = plain["results"][0]
    assert target.id in {top["id"], *top["duplicates"]["ids"]}
    # Pushing away from the very same image must demote it.
    less = client.post(
        "/api/search",
        json={
            "terms": [
                {"kind": "text", "value": "a picture", "weight": 1.0},
                {"kind": "item", "value": target.id, "weight": -1.0},
            ],
            "k": 10,
        },
    )
    assert less.status_code == 200, less.text
    ids = [x["id"] for x in less.json()["results"]]
    assert ids[:1] != [target.id]
    with_image_and_text = client.post(
        "/api/search",
        json={
            "terms": [
                {"kind": "text", "value": "a purple triangle"},
                {"kind": "image", "value": f"data:image/jpeg;base64,{b64}"},
            ],
            "filters": {"rights": ["open", "restricted", "unknown"]},
            "keywords": "triangle",
            "facets": True,
        },
    )
    assert with_image_and_text.status_code == 200, with_image_and_text.text
    assert with_image_and_text.json()["facets"]


def test_cursor_paging_gives_new_results(client: TestClient) -> None:
    first = client.get("/api/search", params={"q": "a landscape", "k": 4}).json()
    assert first["next_cursor"]
    second = client.get(
        "/api/search", params={"q": "a landscape", "k": 4, "cursor": first["next_cursor"]}
    ).json()
    ids1 = {x["id"] for x in first["results"]}
    ids2 = {x["id"] for x in second["results"]}
    assert ids2 and not ids1 & ids2


def test_filters_narrow_results(client: TestClient, demo: DemoIndex) -> None:
    r = client.get("/api/search", params={"q": "a picture", "collection": "apitest-prints", "k": 50}).json()
    assert r["results"] and all(x["collection"] == "apitest-prints" for x in r["results"])
    years = client.get(
        "/api/search", params={"q": "a picture", "year_from": 1500, "year_to": 1620, "k": 50}
    ).json()
    assert years["results"]
    for x in years["results"]:
        assert x["date"]["start_year"] <= 1620 and x["date"]["end_year"] >= 1500
    open_only = client.get("/api/search", params={"q": "a picture", "rights": "open", "k": 50}).json()
    assert open_only["results"]
    assert all(
        x["rights"] and "creativecommons.org/publicdomain" in x["rights"] for x in open_only["results"]
    )
    inst = client.get(
        "/api/search", params={"q": "a picture", "institution": "Example Library", "k": 50}
    ).json()
    assert inst["results"] and all(
        x["providers"][0]["label"]["en"] == ["Example Library"] for x in inst["results"]
    )


def test_duplicates_are_collapsed_into_one_result(client: TestClient, demo: DemoIndex) -> None:
    first, copy = demo.duplicate_pair
    data = _jpeg(demo.image_files[first])
    r = client.post(
        "/api/search/image", files={"file": ("q.jpg", data, "image/jpeg")}, params={"k": 50}
    ).json()
    ids = [x["id"] for x in r["results"]]
    assert (first in ids) != (copy in ids), "one result per duplicate group"
    top = r["results"][0]
    assert top["duplicates"]["size"] >= 2
    assert {first, copy} <= set(top["duplicates"]["ids"]) | {top["id"]}
    expanded = client.post(
        "/api/search/image",
        files={"file": ("q.jpg", data, "image/jpeg")},
        params={"k": 50, "collapse": "false"},
    ).json()
    assert {first, copy} <= {x["id"] for x in expanded["results"]}


def test_region_results_point_at_the_region(client: TestClient, demo: DemoIndex) -> None:
    item = client.get(f"/api/items/{demo.region_id}").json()
    rec = next(r for r in demo.records if r.id == demo.region_id)
    # The canvas is twice the image's size: the viewer gets canvas coordinates, the Image API pixels.
    assert (item["region"], item["image_region"]) == (rec.region, rec.image_region)
    assert item["region"] != item["image_region"]
    assert item["image_service"]["level"] == 0  # a static tree cannot crop: the thumbnail is whole
    assert "/full/" in item["thumbnail"]["url"]
    state = decode_content_state(item["viewers"]["content_state"])
    assert state["target"]["id"].endswith(f"#xywh={item['region']}")


def test_item_and_similar(client: TestClient, demo: DemoIndex) -> None:
    rec = demo.records[2]
    item = client.get(f"/api/items/{rec.id}")
    assert item.status_code == 200
    body = item.json()
    assert body["id"] == rec.id
    assert body["metadata"][0]["value"] == {"none": [rec.metadata[0].value["none"][0]]}
    assert body["summary"] == rec.summary
    assert body["homepage"][0]["id"] == rec.homepage[0].id
    similar = client.get(f"/api/items/{rec.id}/similar", params={"k": 5})
    assert similar.status_code == 200
    ids = [x["id"] for x in similar.json()["results"]]
    assert ids and rec.id not in ids
    _assert_problem(client.get("/api/items/0000000000000000"), 404)
    _assert_problem(client.get("/api/items/not-an-id"), 404)
    _assert_problem(client.get("/api/items/0000000000000000/similar"), 404)


def test_collections_and_facets(client: TestClient, demo: DemoIndex) -> None:
    cols = client.get("/api/collections").json()
    assert cols["count"] == len(demo.records)
    assert cols["model"] == "iconosearch-lite" and cols["index_version"] and cols["dim"]
    by_name = {c["name"]: c for c in cols["collections"]}
    assert by_name["apitest"]["count"] + by_name["apitest-prints"]["count"] == len(demo.records)
    assert "Example Museum" in by_name["apitest"]["institutions"] + by_name["apitest-prints"]["institutions"]
    facets = client.get("/api/facets").json()["facets"]
    assert sum(facets["collection"].values()) == len(demo.records)
    narrowed = client.get("/api/facets", params={"collection": "apitest"}).json()["facets"]
    assert set(narrowed["collection"]) == {"apitest"} or narrowed["collection"].get("apitest-prints", 0) == 0


# --------------------------------------------------------------------------- IIIF


def test_search_iiif_is_presentation_3_and_content_state_round_trips(
    client: TestClient, demo: DemoIndex
) -> None:
    r = client.get("/api/search.iiif", params={"q": "a blue sea", "k": 6})
    assert r.status_code == 200, r.text
    assert "presentation/3" in r.headers["content-type"]
    assert r.headers["access-control-allow-origin"] == "*"
    doc = r.json()
    manifest = iiif_prezi3.Manifest(**doc)  # validates against the Presentation 3 model
    assert doc["@context"] == "http://iiif.io/api/presentation/3/context.json"
    assert doc["type"] == "Manifest"
    assert len(manifest.items) == 6
    search = client.get("/api/search", params={"q": "a blue sea", "k": 6, "fields": "full"}).json()["results"]
    for canvas, result in zip(doc["items"], search, strict=True):
        assert canvas["partOf"][0]["id"] == result["manifest"]
        body = canvas["items"][0]["items"][0]["body"]
        assert body["service"][0]["id"] == result["image_service"]["id"]
        # The real size of the image served (not a made-up 1000-px canvas), on canvas and image alike.
        real = (result["image_service"]["width"], result["image_service"]["height"])
        assert (canvas["width"], canvas["height"]) == (body["width"], body["height"]) == real
        state = decode_content_state(result["content_state"])
        assert state["target"]["id"].split("#")[0] == result["canvas"]
        assert state["motivation"] == ["contentState"]
    # The next page is linked from the summary when there is one.
    assert "cursor=" in doc["summary"]["en"][0]
    assert presentation3.problems(doc) == []


# --------------------------------------------------------------------------- bad input → 4xx problem+json


def _png_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


BAD_GETS = [
    ({"q": "x", "k": 1_000_000}, "limit-exceeded"),
    ({"q": "x", "k": 0}, "invalid-request"),
    ({"q": "x", "cursor": "garbage!!"}, "invalid-cursor"),
    ({"q": "x", "cursor": base64.urlsafe_b64encode(b'{"o": -5}').decode()}, "invalid-cursor"),
    ({"q": "x", "colour": "red"}, "unknown-parameter"),
    ({"q": "x", "rights": "free"}, "invalid-request"),
    ({"q": "x", "collection": "no-such-collection"}, "unknown-collection"),
    ({"q": "x", "year_from": "soon"}, "invalid-request"),
    ({"like": "zzz"}, "invalid-request"),  # the id pattern is in the schema
    ({}, "empty-query"),
    ({"q": "x", "not": [f"w{i}" for i in range(20)]}, "limit-exceeded"),
]


@pytest.mark.parametrize(("params", "code"), BAD_GETS)
def test_bad_search_parameters_are_problems(client: TestClient, params: dict, code: str) -> None:
    body = _assert_problem(client.get("/api/search", params=params))
    assert body["code"] == code


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/image.jpg",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.7/secret.png",
        "http://localhost/x.jpg",
        "file:///etc/passwd",
        # Forms 0.1 let through (multicast, site-local, and routes to 169.254.169.254 / 127.0.0.1).
        "http://224.0.0.1/x.png",
        "http://[fec0::1]/x.png",
        "http://[::127.0.0.1]/x.png",
        "http://[64:ff9b::a9fe:a9fe]/latest/meta-data/",
        "http://[2002:a9fe:a9fe::1]/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/latest/meta-data/",
    ],
)
def test_url_terms_to_private_addresses_are_refused(client: TestClient, demo: DemoIndex, url: str) -> None:
    r = client.post("/api/search", json={"terms": [{"kind": "url", "value": url}]})
    assert _assert_problem(r)["code"] == "url-not-allowed"
    # Even where URL queries are enabled, private addresses stay refused.
    app = create_app(_settings(demo.data_dir, allow_url_queries=True), reload_interval_s=0)
    with TestClient(app, raise_server_exceptions=False) as c:
        r2 = c.post("/api/search", json={"terms": [{"kind": "url", "value": url}]})
        assert _assert_problem(r2)["code"] == "url-not-allowed"


def test_bad_bodies_and_uploads_are_problems(client: TestClient) -> None:
    r = client.post("/api/search", content=b'{"terms": [', headers={"content-type": "application/json"})
    assert _assert_problem(r, 400)["code"] == "malformed-json"
    r = client.post(
        "/api/search", json={"terms": [{"kind": "text", "value": "x"}], "filters": {"colour": "red"}}
    )
    assert _assert_problem(r, 422)["code"] == "invalid-request"
    r = client.post("/api/search", json={"terms": [{"kind": "image", "value": "@@not-base64@@"}]})
    assert _assert_problem(r)["code"] == "invalid-image"
    r = client.post(
        "/api/search", json={"terms": [{"kind": "image", "value": base64.b64encode(b"hello").decode()}]}
    )
    assert _assert_problem(r, 415)["code"] == "invalid-image"
    r = client.post("/api/search", json={"terms": [{"kind": "text", "value": "x"}], "k": 10**6})
    assert _assert_problem(r, 400)["code"] == "limit-exceeded"
    r = client.post("/api/search", json={"terms": [{"kind": "sound", "value": "x"}]})
    _assert_problem(r, 422)
    r = client.post("/api/search", json=[1, 2, 3])
    _assert_problem(r, 422)
    # Non-image upload, by declared type and by content.
    r = client.post("/api/search/image", files={"file": ("a.txt", b"just text", "text/plain")})
    assert _assert_problem(r, 415)["code"] == "unsupported-media-type"
    r = client.post("/api/search/image", files={"file": ("a.jpg", b"just text, not a jpeg", "image/jpeg")})
    assert _assert_problem(r, 415)["code"] == "invalid-image"
    # Decompression bomb: a tiny PNG that claims 60000 × 60000 pixels.
    r = client.post(
        "/api/search/image", files={"file": ("bomb.png", _png_header(60_000, 60_000), "image/png")}
    )
    body = _assert_problem(r, 413)
    assert body["reason"] == "too-many-pixels"
    # Truncated image.
    buf = io.BytesIO()
    Image.new("RGB", (300, 300), (10, 20, 30)).save(buf, "PNG")
    r = client.post("/api/search/image", files={"file": ("t.png", buf.getvalue()[:120], "image/png")})
    _assert_problem(r)
    # Missing file field.
    _assert_problem(client.post("/api/search/image", data={"text": "x"}), 422)


def test_huge_upload_is_refused_before_reading(client: TestClient) -> None:
    big = b"\xff\xd8\xff" + b"0" * (4 * 1024 * 1024)
    r = client.post("/api/search/image", files={"file": ("big.jpg", big, "image/jpeg")})
    assert _assert_problem(r, 413)["code"] == "upload-too-large"
    huge_json = json.dumps({"terms": [{"kind": "image", "value": "A" * (5 * 1024 * 1024)}]})
    r = client.post("/api/search", content=huge_json, headers={"content-type": "application/json"})
    assert _assert_problem(r, 413)["code"] == "upload-too-large"


def test_unknown_routes_and_methods_are_problems(client: TestClient) -> None:
    _assert_problem(client.get("/api/nothing-here"), 404)
    _assert_problem(client.delete("/api/search"), 405)


# --------------------------------------------------------------------------- admin, health, metrics


def test_admin_endpoints_need_a_key(client: TestClient, demo: DemoIndex) -> None:
    _assert_problem(client.post("/api/admin/reload"), 401)
    _assert_problem(client.post("/api/admin/reload", headers={"X-API-Key": "wrong"}), 401)
    r = client.post("/api/admin/reload", headers={"X-API-Key": API_KEY})
    assert r.status_code == 200 and r.json()["status"] == "unchanged"
    r = client.post("/api/admin/reload", headers={"Authorization": f"Bearer {API_KEY}"})
    assert r.status_code == 200
    no_keys = Settings(data_dir=demo.data_dir)
    with TestClient(create_app(no_keys, reload_interval_s=0), raise_server_exceptions=False) as c:
        assert _assert_problem(c.post("/api/admin/reindex", headers={"X-API-Key": API_KEY}), 403)["code"] == (
            "admin-disabled"
        )


def test_health_ready_and_metrics(client: TestClient, demo: DemoIndex) -> None:
    health = client.get("/healthz").json()
    assert health == {
        "status": "ok",
        "version": __version__,
        "index_version": None,
        "count": None,
        "reason": None,
    }
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["count"] == len(demo.records)
    client.get("/api/search", params={"q": "a tower"})
    text = client.get("/metrics").text
    assert 'iconosearch_http_requests_total{method="GET",route="/api/search",status="200"}' in text
    assert "iconosearch_query_embedding_seconds_count" in text
    assert "iconosearch_search_seconds_count" in text
    assert f"iconosearch_index_size {float(len(demo.records))}" in text
    # The text-batching worker's counters (the warm-up query alone makes one batch of one text).
    counters = {
        name: float(value)
        for name, value in re.findall(r"^(iconosearch_text_batch\w*) ([0-9.e+]+)$", text, re.MULTILINE)
    }
    batches = counters["iconosearch_text_batches"]
    assert (
        1
        <= batches
        <= counters["iconosearch_text_batch_texts"]
        <= counters["iconosearch_text_batch_requests"]
    )


def test_cors_for_configured_origins(client: TestClient) -> None:
    r = client.options(
        "/api/search",
        headers={"Origin": "https://catalogue.example.org", "Access-Control-Request-Method": "GET"},
    )
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "https://catalogue.example.org"
    r = client.get("/api/search", params={"q": "x"}, headers={"Origin": "https://evil.example.com"})
    assert "access-control-allow-origin" not in r.headers


def test_empty_data_dir_is_not_ready_and_says_so(tmp_path: Path) -> None:
    with TestClient(create_app(Settings(data_dir=tmp_path), reload_interval_s=0)) as c:
        assert c.get("/healthz").status_code == 200
        assert c.get("/readyz").status_code == 503
        body = _assert_problem_5xx(c.get("/api/search", params={"q": "x"}))
        assert body["code"] == "index-not-ready"
        cols = c.get("/api/collections").json()
        assert cols["count"] == 0 and cols["index_version"] is None


def _assert_problem_5xx(response: httpx.Response) -> dict:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    return response.json()


def test_new_index_versions_are_picked_up_without_restart(tmp_path: Path, demo: DemoIndex) -> None:
    from iconosearch.index.store import IndexStore
    from iconosearch.index.versions import EmbeddedRecord, ModelInfo, write_version
    from iconosearch.models.embedder import load_embedder

    data_dir = tmp_path / "data"
    shutil.copytree(demo.data_dir / "indexes", data_dir / "indexes")
    embedder = load_embedder("iconosearch-lite")
    model = ModelInfo(spec=embedder.spec, fingerprint=embedder.fingerprint, dim=embedder.dim)
    store = IndexStore(data_dir / "indexes", "default")

    def write(n: int) -> str:
        recs = demo.records[:n]
        images = []
        for rec in recs:
            with Image.open(demo.image_files[rec.id]) as im:
                images.append(im.convert("RGB"))
        vectors = embedder.embed_images(images)
        items = [EmbeddedRecord(r, f"h{i}", vectors[i]) for i, r in enumerate(recs)]
        return write_version(store, items, model).version

    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    try:
        with TestClient(create_app(_settings(data_dir), reload_interval_s=0.2, settle_heap=True)) as c:
            wait_ready(c)
            # Warmed up, the serving process's heap is settled (see settle_heap).
            assert gc.get_freeze_count() > 0
            gc.unfreeze()
            before = c.get("/readyz").json()
            # The indexer writes a new version: the running app switches to it by itself.
            version = write(3)
            deadline = time.monotonic() + 15
            while c.get("/readyz").json()["index_version"] != version:
                assert time.monotonic() < deadline, "new version not picked up"
                time.sleep(0.1)
            assert version != before["index_version"]
            # ...warms it up, and settles the heap again.
            while gc.get_freeze_count() == 0:
                assert time.monotonic() < deadline + 60, "heap not settled after the reload"
                time.sleep(0.1)
            _check_reloaded(c, version)
    finally:
        gc.unfreeze()  # the rest of the test session collects as usual


def _check_reloaded(c: TestClient, version: str) -> None:
    assert c.get("/readyz").json()["count"] == 3
    assert len(c.get("/api/search", params={"q": "x", "k": 10}).json()["results"]) <= 3
    assert "iconosearch_index_reloads_total 1.0" in c.get("/metrics").text
    # And on demand, through the admin endpoint.
    r = c.post("/api/admin/reload", headers={"X-API-Key": API_KEY})
    assert r.status_code == 200 and r.json()["index_version"] == version


def test_admin_reindex_runs_in_the_background(tmp_path: Path) -> None:
    with TestClient(create_app(_settings(tmp_path), reload_interval_s=0)) as c:
        headers = {"X-API-Key": API_KEY}
        r = c.post("/api/admin/reindex", headers=headers)
        assert r.status_code == 202 and r.json()["status"] == "started"
        deadline = time.monotonic() + 300  # ready includes the cold model's warm-up query
        while (status := c.get("/api/admin/reindex", headers=headers).json())["status"] == "running":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        # Nothing harvested here: the job ends (done with an empty index, or failed saying why).
        assert status["status"] in {"done", "failed"} and (status["status"] == "done" or status["detail"])
        assert c.get("/healthz").status_code == 200


def test_web_ui_and_assets_are_served(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'id="q"' in page.text
    assert client.get("/app.js").status_code == 200
    assert client.get("/style.css").status_code == 200
    osd = client.get("/vendor/openseadragon/openseadragon.min.js")
    assert osd.status_code == 200, "run `make web` to fetch OpenSeadragon from npm"


def test_local_folder_iiif_is_served_and_thumbnailed(tmp_path: Path, demo: DemoIndex) -> None:
    """A folder made into static IIIF (iiif.local) is served at /iiif/local/ and our thumbnails resolve."""
    from dataclasses import replace

    from iconosearch.api.presenting import thumbnail
    from iconosearch.iiif.image_api import parse_service
    from iconosearch.iiif.local import build_local_iiif
    from iconosearch.iiif.manifest import parse_manifest

    folder = tmp_path / "folder"
    folder.mkdir()
    for src in list(dict.fromkeys(demo.image_files.values()))[:3]:
        shutil.copy(src, folder / src.name)
    data_dir = tmp_path / "data"
    base = "http://testserver/iiif/local/mini"
    build_local_iiif(folder, data_dir / "local-iiif" / "mini", base_url=base, label="Mini")

    def local(url: str) -> str:
        assert url.startswith("http://testserver/")
        return url.removeprefix("http://testserver")

    with TestClient(create_app(Settings(data_dir=data_dir), reload_interval_s=0)) as c:
        coll = c.get("/iiif/local/mini/collection.json")
        assert coll.status_code == 200 and coll.headers["access-control-allow-origin"] == "*"
        manifests = [m["id"] for m in coll.json()["items"]]
        assert len(manifests) == 3
        for url in manifests:
            parsed = parse_manifest(c.get(local(url)).json(), collection="mini")
            record = parsed.records[0]
            assert record.service is not None
            # As the harvester does: complete a thin level-0 service from its info.json.
            info = parse_service(c.get(local(f"{record.service.id}/info.json")).json())
            assert info is not None
            record = replace(
                record,
                service=replace(record.service, sizes=info.sizes, width=info.width, height=info.height),
            )
            thumb = thumbnail(record)
            assert thumb.url is not None
            got = c.get(local(thumb.url))
            assert got.status_code == 200, thumb.url
            with Image.open(io.BytesIO(got.content)) as im:
                assert im.size == (thumb.width, thumb.height)


def test_serve_command_serves_the_index(demo: DemoIndex, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from tests.helpers.demo_index import free_port

    port = free_port()
    env = {
        **os.environ,
        "ICONOSEARCH_DATA_DIR": str(demo.data_dir),
        "ICONOSEARCH_CONFIG": str(tmp_path / "none.toml"),
    }
    (tmp_path / "none.toml").write_text("")
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "iconosearch"),
            "--quiet",
            "serve",
            "--port",
            str(port),
            "--reload-interval",
            "0",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300  # ready includes the cold model's warm-up query
        while True:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                if ready.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.2)
        assert ready.status_code == 200 and ready.json()["count"] == len(demo.records)
        page = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
        assert page.status_code == 200 and "iconosearch" in page.text
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_api_docs_page_needs_no_cdn(client: TestClient) -> None:
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert "/vendor/swagger-ui/swagger-ui-bundle.js" in docs.text and "cdn" not in docs.text.lower()
    assert client.get("/vendor/swagger-ui/swagger-ui-bundle.js").status_code == 200
