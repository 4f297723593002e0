"""A served (read-only) version keeps its decoded records: the second page of the same records is not
decoded again, and what comes back equals what was stored."""

from __future__ import annotations

from pathlib import Path

import pytest

from iconosearch.index import metadata
from iconosearch.index.metadata import Metadata
from iconosearch.records import id_to_int64
from tests.helpers.index_data import build, make_items


def test_decoded_records_are_kept_up_to_the_bound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    items = make_items(30)
    version = build(tmp_path, items)
    ids = [id_to_int64(i.record.id) for i in items]
    meta = Metadata(version.metadata_path)
    try:
        first = meta.records(ids[:10])
        again = meta.records(ids[:10])
        assert all(again[i] is first[i] for i in ids[:10])  # not decoded a second time
        assert [first[i] for i in ids[:10]] == [i.record for i in items[:10]]
        monkeypatch.setattr(metadata, "DECODED_RECORDS", 5)
        meta.records(ids[10:20])
        assert meta.records(ids[:1])[ids[0]] is not first[ids[0]]  # pushed out, decoded afresh
        assert meta.records(ids[:1])[ids[0]] == first[ids[0]]
    finally:
        meta.close()
