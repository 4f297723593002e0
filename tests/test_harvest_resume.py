"""A real harvest process killed with SIGKILL mid-run resumes with nothing lost and nothing duplicated."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from iconosearch.config import load_settings
from iconosearch.harvest.harvester import harvest
from iconosearch.harvest.state import HarvestState
from tests.helpers.http_server import FixtureServer
from tests.test_harvest import villanova_site

EXPECTED = 18


def _count(db: Path, sql: str) -> int:
    if not db.exists():
        return 0
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return int(con.execute(sql).fetchone()[0])
        finally:
            con.close()
    except sqlite3.OperationalError:
        return 0  # schema not created yet


def _start(config: Path) -> subprocess.Popen[bytes]:
    code = "from iconosearch.cli import main; main()"
    return subprocess.Popen(
        [sys.executable, "-c", code, "-c", str(config), "--quiet", "harvest", "vill"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _kill_when(proc: subprocess.Popen[bytes], db: Path, sql: str, at_least: int, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(
                f"harvest ended before the kill: {proc.stderr.read() if proc.stderr else ''!r}"
            )
        n = _count(db, sql)
        if n >= at_least:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
            return n
        time.sleep(0.01)
    proc.kill()
    raise AssertionError("harvest made no progress")


def test_kill_minus_nine_then_resume(iiif_fixtures: Path, tmp_path: Path) -> None:
    with FixtureServer() as srv:
        top = villanova_site(srv, iiif_fixtures)
        srv.delay = 0.15  # a remote-ish server, so that the kills land mid-run
        config = tmp_path / "iconosearch.toml"
        config.write_text(
            f'data_dir = "{tmp_path / "data"}"\n[limits]\nharvest_delay_s = 0\nharvest_concurrency = 2\n'
            f'[collections.vill]\nkind = "collection"\nurl = "{top}"\n',
            encoding="utf-8",
        )
        db = tmp_path / "data" / "state.sqlite"
        records_sql = "SELECT COUNT(*) FROM records"
        fetched_sql = "SELECT COUNT(*) FROM records WHERE status = 'fetched'"

        # Kill 1: while manifests are being read (some records stored, no images yet).
        _kill_when(_start(config), db, records_sql, 2)
        assert _count(db, records_sql) < EXPECTED
        # Kill 2: in the middle of fetching images.
        at_kill = _kill_when(_start(config), db, fetched_sql, 4)
        assert at_kill < EXPECTED
        fetched_before = _count(db, fetched_sql)
        image_requests_before = sum(n for p, n in srv.counter.items() if p.startswith("/img/"))

        srv.delay = 0.0
        settings = load_settings(config)
        summary = asyncio.run(harvest(settings, "vill"))
        assert summary.complete and summary.failures == []
        assert summary.records == EXPECTED and summary.images_cached == EXPECTED
        # Only the images not yet stored are fetched again (plus at most the ones in flight at the kill).
        assert summary.images_fetched + summary.images_reused == EXPECTED - fetched_before
        image_requests = sum(n for p, n in srv.counter.items() if p.startswith("/img/"))
        assert image_requests - image_requests_before == summary.images_fetched

    con = sqlite3.connect(db)
    assert con.execute("SELECT COUNT(*), COUNT(DISTINCT id) FROM records").fetchone() == (EXPECTED, EXPECTED)
    assert con.execute("SELECT COUNT(*) FROM records WHERE status != 'fetched'").fetchone() == (0,)
    (images,) = con.execute("SELECT COUNT(*) FROM images").fetchone()
    cache = tmp_path / "data" / "cache" / "images"
    files = [p for p in cache.rglob("*") if p.is_file() and not p.name.startswith(".")]
    assert images == len(files) == EXPECTED
    with HarvestState(db) as state:
        for h in state.iter_images("vill"):
            assert hashlib.sha256(h.path.read_bytes()).hexdigest() == h.content_hash
