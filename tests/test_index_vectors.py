"""Leaner index versions (issue 16 item 5): ``vectors.npy`` in float16, compressed records, a contentless
caption index, and versions written the old way (float32 vectors, JSON text records, FTS5 with its own
text) still read and updated."""

from __future__ import annotations

import dataclasses
import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from iconosearch.index import faiss_index
from iconosearch.index.consistency import check_consistency
from iconosearch.index.engine import SearchEngine
from iconosearch.index.metadata import Metadata, caption_text
from iconosearch.index.store import MANIFEST, IndexStore, IndexVersion
from iconosearch.index.verify import folder_checksums
from iconosearch.index.versions import update_version, write_version
from iconosearch.query import Filters, Query, Term
from iconosearch.records import id_to_int64, record_to_dict
from tests.helpers.index_data import MODEL, make_items, make_record

N = 600


def _store(tmp_path: Path) -> IndexStore:
    return IndexStore(tmp_path / "indexes", "default")


def test_vectors_are_stored_as_float16_and_rank_as_float32_did(tmp_path: Path) -> None:
    items = make_items(N, dim=64)
    version = write_version(_store(tmp_path), items, MODEL_64)
    stored = np.load(version.vectors_path)
    assert stored.dtype == np.float16 and stored.shape == (N, 64)
    exact = np.stack([i.vector / np.linalg.norm(i.vector) for i in items]).astype(np.float32)
    half = stored.astype(np.float32)
    # Each stored vector keeps its direction (cosine with the float32 original ≥ 0.9999; measured ≥ 0.99999)
    # and its length (a float16 step, ≤ 5e-4, off 1).
    norms = np.linalg.norm(half, axis=1)
    assert float(np.abs(norms - 1).max()) < 5e-4
    assert float(((half * exact).sum(axis=1) / norms).min()) >= 0.9999
    # Item queries find the same: scores move by < 1e-3, so every top-10 whose 10th and 11th scores are
    # further apart than twice that holds the same vectors (neighbours closer than that may swap places).
    queries = exact[:100]
    s32, r32 = faiss_index.exact_knn(exact, queries, 11)
    s16, r16 = faiss_index.exact_knn(half, half[:100], 11)
    assert float(np.abs(s32 - s16).max()) < 1e-3
    clear = (s32[:, 9] - s32[:, 10]) > 2e-3
    assert clear.sum() > 50
    assert all(set(a) == set(b) for a, b in zip(r32[clear, :10], r16[clear, :10], strict=True))


MODEL_64 = dataclasses.replace(MODEL, dim=64)


def _as_written_before_0_2(version: IndexVersion) -> None:
    """Rewrite ``version`` as 0.1 wrote it: float32 vectors, records as JSON text, FTS5 keeping its own
    text, rowid filter tables; checksums updated so that it verifies."""
    vectors = np.load(version.vectors_path).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    np.save(version.vectors_path, vectors)
    new = Metadata(version.metadata_path)
    try:
        records = new.records([iid for iid, _, _, _ in new.rows_by_id()])
        rows = list(new.conn.execute("SELECT * FROM records"))
    finally:
        new.close()
    version.metadata_path.unlink()
    conn = sqlite3.connect(version.metadata_path)
    conn.executescript(OLD_SCHEMA)
    for row in rows:
        text = json.dumps(record_to_dict(records[row[0]]), ensure_ascii=False, separators=(",", ":"))
        conn.execute("INSERT INTO records VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", (*row[:-1], text))
        record = records[row[0]]
        for p in record.providers:
            for values in p.label.values():
                conn.executemany("INSERT INTO providers VALUES (?,?)", [(row[0], v) for v in values])
        if caption_text(record).strip():
            conn.execute("INSERT INTO captions(rowid, text) VALUES (?,?)", (row[0], caption_text(record)))
    conn.commit()
    conn.close()
    m = dataclasses.replace(version.manifest, checksums=folder_checksums(version.path, skip=(MANIFEST,)))
    (version.path / MANIFEST).write_text(m.to_json(), encoding="utf-8")


OLD_SCHEMA = """
CREATE TABLE records (
    int_id INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, row INTEGER NOT NULL, collection TEXT NOT NULL,
    institution TEXT, rights_class TEXT NOT NULL, year_start INTEGER, year_end INTEGER, century INTEGER,
    has_caption INTEGER NOT NULL, dup_group INTEGER NOT NULL, content_hash TEXT, data TEXT NOT NULL
);
CREATE UNIQUE INDEX records_row ON records(row);
CREATE TABLE providers (int_id INTEGER NOT NULL, label TEXT NOT NULL COLLATE NOCASE);
CREATE INDEX providers_id ON providers(int_id);
CREATE TABLE languages (int_id INTEGER NOT NULL, lang TEXT NOT NULL);
CREATE INDEX languages_id ON languages(int_id);
CREATE VIRTUAL TABLE captions USING fts5(text, tokenize = 'unicode61 remove_diacritics 2');
"""


@pytest.mark.parametrize("kind", ["flat", "ivf-flat"])
def test_a_version_written_before_0_2_is_served_and_updated(tmp_path: Path, kind: str) -> None:
    from iconosearch.index.versions import BuildOptions

    store = _store(tmp_path)
    items = make_items(N)
    base = write_version(store, items, MODEL, options=BuildOptions(kind=kind))
    engine = SearchEngine.open(tmp_path)
    try:
        want = [
            h.record.id for h in engine.search(Query(terms=(Term("item", items[7].record.id),), k=10)).hits
        ]
    finally:
        engine.close()
    _as_written_before_0_2(base)
    assert np.load(base.vectors_path).dtype == np.float32
    engine = SearchEngine.open(tmp_path)
    try:
        page = engine.search(Query(terms=(Term("item", items[7].record.id),), k=10))
        assert [h.record.id for h in page.hits] == want
        assert page.hits[0].record == items[7].record
    finally:
        engine.close()
    # An incremental update carries the old version on: removed captions leave the old FTS5 table, and the
    # new version's vectors are float16.
    gone = [i for i in items[:40] if caption_text(i.record).strip()][:5]
    added = make_items(10, start=9000, seed=5)
    new = update_version(
        store,
        base,
        add=added,
        remove=[i.record.id for i in gone],
        model=MODEL,
        options=BuildOptions(kind=kind),
    )
    assert check_consistency(new).ok
    assert np.load(new.vectors_path).dtype == np.float16
    _check_captions(new, gone=[i.record for i in gone], kept=[i.record for i in [*items[40:60], *added]])


def _check_captions(version: IndexVersion, *, gone: list, kept: list) -> None:  # type: ignore[type-arg]
    copy = version.path.parent / "integrity-check.sqlite"  # the check is an INSERT: not on the version
    shutil.copyfile(version.metadata_path, copy)
    conn = sqlite3.connect(copy)
    try:
        conn.execute("INSERT INTO captions(captions) VALUES ('integrity-check')")  # raises when corrupt
    finally:
        conn.close()
        copy.unlink()
    meta = Metadata(version.metadata_path)
    try:
        for record in gone:
            word = caption_text(record).split()[1]  # "item <i> …": the record's own number
            assert id_to_int64(record.id) not in meta.keyword_ranking(f'"item {word}"', Filters(), 50)
            # …and not only hidden by the join with the records: the caption index itself forgot it.
            fts = meta.conn.execute("SELECT rowid FROM captions WHERE captions MATCH ?", (f'"item {word}"',))
            assert id_to_int64(record.id) not in {r for (r,) in fts}
        for record in kept:
            if caption_text(record).strip():
                word = caption_text(record).split()[1]
                assert id_to_int64(record.id) in meta.keyword_ranking(f'"item {word}"', Filters(), 50)
        assert meta.records([id_to_int64(r.id) for r in kept]) == {id_to_int64(r.id): r for r in kept}
    finally:
        meta.close()


def test_records_compress_and_contentless_captions_delete_cleanly(tmp_path: Path) -> None:
    store = _store(tmp_path)
    items = make_items(N)
    base = write_version(store, items, MODEL)
    meta = Metadata(base.metadata_path)
    try:
        kinds = {t for (t,) in meta.conn.execute("SELECT DISTINCT typeof(data) FROM records")}
        assert kinds == {"blob"} and meta.codec is not None and meta.codec.dictionary
        # The text is not stored twice: the FTS5 table is contentless.
        assert meta.conn.execute("SELECT text FROM captions LIMIT 1").fetchone() == (None,)
        assert (
            meta.records([id_to_int64(items[3].record.id)])[id_to_int64(items[3].record.id)]
            == items[3].record
        )
    finally:
        meta.close()
    gone = [i for i in items[:60] if caption_text(i.record).strip()][:8]
    changed = dataclasses.replace(items[70], record=make_record(70, caption="a harbour at dusk"))
    new = update_version(store, base, add=[changed], remove=[i.record.id for i in gone], model=MODEL)
    _check_captions(new, gone=[i.record for i in gone], kept=[i.record for i in items[80:120]])
    meta = Metadata(new.metadata_path)
    try:
        assert meta.keyword_ranking('"harbour at dusk"', Filters(), 10) == [id_to_int64(changed.record.id)]
        assert meta.keyword_ranking('"item 70"', Filters(), 10) == []
    finally:
        meta.close()
