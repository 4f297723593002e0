"""A full disk surfaces as SQLite's own "database or disk is full", not as a second error about a
ROLLBACK with no transaction (0.1 rolled back twice and hid the cause). The limit is SQLite's real
``max_page_count``: the same SQLITE_FULL path a full filesystem takes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from iconosearch.models.pipeline import EmbeddingCache


def test_full_embedding_cache_reports_disk_full_and_keeps_what_it_had(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path, "fp-test", 64)
    first = np.ones((4, 64), dtype=np.float32)
    cache.put_many([f"a{i}" for i in range(4)], first)
    pages = cache._db.execute("PRAGMA page_count").fetchone()[0]
    cache._db.execute(f"PRAGMA max_page_count = {pages + 1}")
    many = np.random.default_rng(0).standard_normal((5000, 64)).astype(np.float32)
    with pytest.raises(sqlite3.OperationalError, match="full"):
        cache.put_many([f"b{i}" for i in range(5000)], many)
    assert len(cache) == 4  # the failed batch left nothing half-written
    assert not cache._db.in_transaction
