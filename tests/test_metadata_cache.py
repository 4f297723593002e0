"""A served (read-only) version keeps its records, a few decoded and more as JSON: the second page of the
same records is not read again, and what comes back equals what was stored. Search threads read it at once,
each on its own SQLite connection."""

from __future__ import annotations

import gc
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from iconosearch.index import metadata
from iconosearch.index.metadata import Metadata
from iconosearch.records import id_to_int64
from tests.helpers.index_data import build, make_items


def test_records_are_kept_few_decoded_more_as_untracked_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    items = make_items(30)
    version = build(tmp_path, items)
    ids = [id_to_int64(i.record.id) for i in items]
    meta = Metadata(version.metadata_path)
    reads: list[str] = []
    meta.conn.set_trace_callback(reads.append)
    monkeypatch.setattr(metadata, "DECODED_RECORDS", 5)
    monkeypatch.setattr(metadata, "CACHED_RECORDS", 15)
    try:
        first = meta.records(ids[:10])
        assert list(first) == ids[:10]
        assert [first[i] for i in ids[:10]] == [i.record for i in items[:10]]
        assert len(reads) == 1
        again = meta.records(ids[5:10])
        assert all(again[i] is first[i] for i in ids[5:10])  # kept decoded: not read, not decoded
        assert len(reads) == 1
        meta.records(ids[10:20])  # pushes ids[:5] out of the JSON, ids[5:15] out of the decoded
        assert len(reads) == 2
        kept = meta.records(ids[5:6])[ids[5]]
        assert kept == first[ids[5]] and kept is not first[ids[5]]  # decoded again from kept JSON
        assert len(reads) == 2
        assert meta.records(ids[:1])[ids[0]] == first[ids[0]]  # pushed out of both: read again
        assert len(reads) == 3
        # The JSON costs the garbage collector nothing (a decoded record is ~40 tracked objects).
        assert len(meta._cached) == 15
        assert not any(gc.is_tracked(v) for v in meta._cached.values())
    finally:
        meta.close()


def test_search_threads_read_on_their_own_connections_and_close_ends_them_all(tmp_path: Path) -> None:
    items = make_items(40)
    version = build(tmp_path, items)
    ids = [id_to_int64(i.record.id) for i in items]
    meta = Metadata(version.metadata_path)
    start = threading.Barrier(4)
    seen: dict[int, tuple[int, list]] = {}

    def read(n: int) -> None:
        start.wait(30)  # all four threads read at once
        got = meta.records(ids[n * 10 : n * 10 + 10])
        seen[n] = (id(meta.conn), [got[i] for i in ids[n * 10 : n * 10 + 10]])

    threads = [threading.Thread(target=read, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    try:
        assert len({conn for conn, _ in seen.values()}) == 4  # one connection per thread
        assert [r for n in range(4) for r in seen[n][1]] == [i.record for i in items]
    finally:
        meta.close()
    with pytest.raises(sqlite3.ProgrammingError):
        meta.count()  # this thread's connection is closed
    errors: list[BaseException] = []
    late = threading.Thread(target=lambda: _catch(meta.count, errors))
    late.start()
    late.join(30)
    assert len(errors) == 1 and isinstance(errors[0], sqlite3.ProgrammingError)  # no new one opens


def _catch(fn: Callable[[], object], errors: list[BaseException]) -> None:
    try:
        fn()
    except BaseException as exc:  # the test inspects what was raised
        errors.append(exc)


def test_closing_while_another_thread_reads_lets_that_read_finish(tmp_path: Path) -> None:
    meta = Metadata(build(tmp_path, make_items(5)).metadata_path)
    started = threading.Event()
    results: list[int] = []
    errors: list[BaseException] = []
    slow = (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 2000000)"
        " SELECT count(*) FROM c"
    )

    def read() -> None:
        conn = meta.conn
        started.set()
        results.append(conn.execute(slow).fetchone()[0])
        _catch(meta.count, errors)

    reader = threading.Thread(target=read)
    reader.start()
    assert started.wait(30)
    meta.close()  # closing the reader's connection under it crashed the process
    reader.join(60)
    assert results == [2000000]
    assert len(errors) == 1 and isinstance(errors[0], sqlite3.ProgrammingError)
