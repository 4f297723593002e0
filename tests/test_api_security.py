"""Security headers, admin-key attempt limits, protected metrics and readiness, on a real server.

0.1 sent no Content-Security-Policy and no X-Frame-Options, lost ``nosniff`` on 500 answers, let
anyone try admin keys without limit, served ``/metrics`` to anyone, and said ready before the model
was loaded (the first query then took 17–26 s).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from iconosearch.api.app import create_app
from iconosearch.api.server import BackgroundServer
from iconosearch.config import ServerConfig, Settings
from iconosearch.index.engine import SearchEngine
from tests.helpers.demo_index import free_port
from tests.helpers.index_data import HashEmbedder, build, make_items

KEY = "right-key"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("security")
    build(path, make_items(60))
    return path


class SlowLoader:
    """Loads the embedder after a pause, like a real model; counts loads."""

    def __init__(self, pause_s: float = 0.0, fail: bool = False) -> None:
        self.pause_s, self.fail, self.loads = pause_s, fail, 0
        self.embedder = HashEmbedder()
        self.loaded = threading.Event()

    def __call__(self, spec: str) -> Any:
        time.sleep(self.pause_s)
        self.loads += 1
        if self.fail:
            raise RuntimeError("boom: a bug, not bad input")
        self.loaded.set()
        return self.embedder


@contextlib.contextmanager
def running(data_dir: Path, loader: SlowLoader, **server: Any) -> Iterator[str]:
    settings = Settings(data_dir=data_dir, server=ServerConfig(api_keys=[KEY], **server))
    engine = SearchEngine.open(data_dir, embedder_loader=loader)
    srv = BackgroundServer(create_app(settings, engine=engine, reload_interval_s=0), "127.0.0.1", free_port())
    srv.start()
    try:
        yield srv.url
    finally:
        srv.stop()


def _ready(url: str, timeout_s: float = 30) -> httpx.Response:
    deadline = time.monotonic() + timeout_s
    while (r := httpx.get(f"{url}/readyz", timeout=60)).status_code != 200:
        assert time.monotonic() < deadline, r.text
        time.sleep(0.05)
    return r


def test_security_headers_on_pages_api_errors_and_500s(data_dir: Path) -> None:
    with running(data_dir, SlowLoader(fail=True)) as url:
        _ready(url)
        answers = {
            "page": httpx.get(f"{url}/", timeout=60),
            "api": httpx.get(f"{url}/api/collections", timeout=60),
            "404": httpx.get(f"{url}/api/items/ffffffffffffffff", timeout=60),
            "422": httpx.get(f"{url}/api/search", timeout=60, params={"q": "x", "k": "many"}),
            "500": httpx.get(f"{url}/api/search", timeout=60, params={"q": "x"}),
        }
    assert answers["500"].status_code == 500
    for what, r in answers.items():
        assert r.headers.get("x-content-type-options") == "nosniff", what
        assert r.headers.get("x-frame-options") == "DENY", what
        csp = r.headers.get("content-security-policy", "")
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp, what
        assert "unsafe-inline" not in csp, what


def test_docs_page_allows_only_its_own_inline_script(data_dir: Path) -> None:
    with running(data_dir, SlowLoader()) as url:
        r = httpx.get(f"{url}/docs", timeout=60)
    csp = r.headers["content-security-policy"]
    if "<script>" in r.text:  # swagger-ui assets present: its one inline script is allowed by hash
        assert "'sha256-" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp


def test_failed_admin_key_attempts_are_limited_per_client(data_dir: Path) -> None:
    with running(data_dir, SlowLoader(), admin_attempts_per_minute=3) as url:
        statuses = [
            httpx.post(f"{url}/api/admin/reload", timeout=60, headers={"X-API-Key": f"guess-{i}"}).status_code
            for i in range(5)
        ]
        assert statuses == [401, 401, 401, 429, 429]
        r = httpx.post(f"{url}/api/admin/reload", timeout=60, headers={"X-API-Key": KEY})
        assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
        assert r.json()["code"] == "too-many-attempts"


def test_metrics_can_require_the_admin_key(data_dir: Path) -> None:
    with running(data_dir, SlowLoader()) as url:
        assert httpx.get(f"{url}/metrics", timeout=60).status_code == 200
    with running(data_dir, SlowLoader(), metrics_require_key=True) as url:
        assert httpx.get(f"{url}/metrics", timeout=60).status_code == 401
        r = httpx.get(f"{url}/metrics", timeout=60, headers={"X-API-Key": KEY})
        assert r.status_code == 200 and "iconosearch_index_size" in r.text


def test_ready_only_after_the_model_answered_a_warm_up_query(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="iconosearch.api.app")
    loader = SlowLoader(pause_s=2.0)
    with running(data_dir, loader) as url:
        early = httpx.get(f"{url}/readyz", timeout=60)
        assert early.status_code == 503 and early.json()["status"] == "warming-up"
        assert loader.loads == 0
        assert _ready(url).json()["status"] == "ok"
        assert loader.loads == 1
        texts_before = loader.embedder.text_calls
        r = httpx.get(f"{url}/api/search", timeout=60, params={"q": "river street"})
        assert r.status_code == 200
        # The first real query finds the model loaded: no load, just its own text embedding.
        assert loader.loads == 1 and loader.embedder.text_calls == texts_before + 1
    assert any("warmed up in" in rec.getMessage() for rec in caplog.records)
