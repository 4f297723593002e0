"""One writer, enforced across real processes: one builder per index, one harvest per collection."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from iconosearch.api.app import create_app
from iconosearch.config import ServerConfig, Settings
from iconosearch.index.store import IndexStore
from iconosearch.locks import read_holder
from tests.helpers.http_server import FixtureServer

CLI = str(Path(sys.executable).parent / "iconosearch")
HOLD_BUILD_LOCK = """
import sys
from pathlib import Path
from iconosearch.index.store import IndexStore
with IndexStore(Path(sys.argv[1]), "default").building():
    print("held", flush=True)
    sys.stdin.read()
"""


@contextmanager
def _holder(indexes: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding index 'default''s build lock until we close its stdin."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_BUILD_LOCK, str(indexes)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        yield proc
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=30)


def _config(tmp_path: Path, url: str) -> Path:
    config = tmp_path / "iconosearch.toml"
    config.write_text(
        f'data_dir = "data"\n[collections.a]\nkind = "manifest"\nurl = "{url}"\n', encoding="utf-8"
    )
    return config


def _cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [CLI, "-c", str(config), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def test_a_second_index_builder_is_refused_with_who_and_since(tmp_path: Path) -> None:
    config = _config(tmp_path, "http://127.0.0.1:9/m.json")
    indexes = tmp_path / "data" / "indexes"
    with _holder(indexes) as proc:
        holder = IndexStore(indexes, "default").builder()
        assert holder is not None and holder.pid == proc.pid
        out = _cli(config, "index")
        assert out.returncode != 0
        assert f"index 'default' is being built by pid {proc.pid} since {holder.since}" in out.stderr
        # The API's reindex takes the same lock: it says who is building instead of racing them.
        settings = Settings(data_dir=tmp_path / "data", server=ServerConfig(api_keys=["k"]))
        with TestClient(create_app(settings, reload_interval_s=0)) as c:
            r = c.post("/api/admin/reindex", headers={"X-API-Key": "k"})
            assert r.status_code == 409 and f"pid {proc.pid}" in r.json()["detail"]
    # Released when the holder ends: the next builder gets past the lock (and stops at "nothing harvested").
    assert IndexStore(indexes, "default").builder() is None
    out = _cli(config, "index")
    assert out.returncode != 0 and "being built" not in out.stderr and "harvest" in out.stderr


def test_a_killed_builder_leaves_no_stale_lock(tmp_path: Path) -> None:
    indexes = tmp_path / "indexes"
    with _holder(indexes) as proc:
        proc.kill()
        proc.wait(timeout=30)
        assert IndexStore(indexes, "default").builder() is None
        with IndexStore(indexes, "default").building() as me:
            assert me.pid != proc.pid


@pytest.mark.slow
def test_a_second_harvest_of_one_collection_is_refused(tmp_path: Path) -> None:
    with FixtureServer() as srv:
        srv.add_json("/m.json", {"@context": "http://iiif.io/api/presentation/3/context.json"})
        srv.fault("/m.json", "slow", delay=20.0)
        config = _config(tmp_path, srv.url("/m.json"))
        first = subprocess.Popen(
            [CLI, "-c", str(config), "harvest", "a"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        try:
            locks = tmp_path / "data"
            deadline = time.monotonic() + 60
            while not any(read_holder(p) for p in locks.glob(".harvest-*.lock")):
                assert time.monotonic() < deadline, "the first harvest never took its lock"
                time.sleep(0.1)
            out = _cli(config, "harvest", "a")
            assert out.returncode != 0
            assert f"collection 'a' is being harvested by pid {first.pid} since" in out.stderr
        finally:
            first.kill()
            first.wait(timeout=30)
