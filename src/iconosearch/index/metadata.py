"""SQLite metadata of one index version: records, the columns filters use, FTS5 over captions.

Keyed by the FAISS id (``records.id_to_int64``). The full record is stored as its JSON
(``records.record_to_dict``, written by orjson) compressed by zstandard against a dictionary trained on a
sample of the version's own records (table ``codec``): records share their URL prefixes, field names and
vocabulary, so one compresses to about a tenth on its own, where a record's JSON alone is ~1.4 KB (see
docs/performance.md, "Index builds"). Versions written before 0.2 store plain JSON text, read as they are.
The filter columns are derived from the record once, at build time:

- ``collection``; providers (all labels, any language, case-insensitive) in ``providers``;
- ``year_start``/``year_end`` from the record's date range (navDate or parsed metadata dates);
- ``rights_class`` from the rights URI (``rights.rights_class``: open / restricted / unknown);
- caption languages in ``languages`` (full tag and primary subtag, lower case); ``has_caption``;
- ``dup_group``: near-duplicate group label (records with the same label are near-identical).

The filter tables are ``WITHOUT ROWID`` (their key is the lookup), and the captions' FTS5 table is
contentless: the text is in the record already, and only matching and BM25 read the index. A record's
caption is removed from it with FTS5's ``delete`` command and the text re-derived from the stored record.
Versions written before 0.2 (rowid tables, FTS5 with its own copy of the text) are read and updated as
they are.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import zstandard

from iconosearch import lru
from iconosearch.query import Filters, InvalidFilterError
from iconosearch.records import NO_LANG, ImageRecord, id_to_int64, record_from_dict
from iconosearch.rights import rights_class
from iconosearch.subjects.suggested import SuggestedSubject

SCHEMA = """
CREATE TABLE records (
    int_id INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    row INTEGER NOT NULL,
    collection TEXT NOT NULL,
    institution TEXT,
    rights_class TEXT NOT NULL,
    year_start INTEGER,
    year_end INTEGER,
    century INTEGER,
    has_caption INTEGER NOT NULL,
    dup_group INTEGER NOT NULL,
    content_hash TEXT,
    data BLOB NOT NULL
);
CREATE TABLE providers (
    int_id INTEGER NOT NULL, label TEXT NOT NULL COLLATE NOCASE, PRIMARY KEY (label, int_id)
) WITHOUT ROWID;
CREATE TABLE languages (
    int_id INTEGER NOT NULL, lang TEXT NOT NULL, PRIMARY KEY (lang, int_id)
) WITHOUT ROWID;
CREATE VIRTUAL TABLE captions USING fts5(text, content = '', tokenize = 'unicode61 remove_diacritics 2');
CREATE TABLE codec (name TEXT PRIMARY KEY, value BLOB NOT NULL);
"""

INDEXES = """
CREATE INDEX IF NOT EXISTS records_collection ON records(collection);
CREATE INDEX IF NOT EXISTS records_rights ON records(rights_class);
CREATE INDEX IF NOT EXISTS records_year ON records(year_start, year_end);
CREATE INDEX IF NOT EXISTS records_group ON records(dup_group);
CREATE UNIQUE INDEX IF NOT EXISTS records_row ON records(row);
CREATE INDEX IF NOT EXISTS providers_id ON providers(int_id);
CREATE INDEX IF NOT EXISTS languages_id ON languages(int_id);
"""
"""The secondary indexes, made by :meth:`Metadata.finish` once a new file holds its rows: one sort each
instead of a random B-tree insert per row (50k records: the records table's inserts took 3.2 s with its
indexes kept up to date, 0.9 s without plus 0.4 s to build them after)."""
WRITE_CACHE_KIB = 256 * 1024
"""SQLite page cache of a writing connection (the default 2 MiB cannot hold a big build's B-trees)."""

SUGGESTIONS_SCHEMA = """
CREATE TABLE IF NOT EXISTS suggested_subjects (
    int_id INTEGER NOT NULL,
    rank INTEGER NOT NULL,
    notation TEXT NOT NULL,
    score REAL NOT NULL,
    label TEXT NOT NULL,
    division TEXT NOT NULL,
    PRIMARY KEY (int_id, rank)
);
CREATE INDEX IF NOT EXISTS suggested_division ON suggested_subjects(division, int_id);
"""


_INSERT_RECORD = "INSERT INTO records VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"
_INSERT_PROVIDER = "INSERT OR IGNORE INTO providers VALUES (?,?)"  # labels differing in case only
_INSERT_LANGUAGE = "INSERT INTO languages VALUES (?,?)"
_INSERT_CAPTION = "INSERT INTO captions(rowid, text) VALUES (?,?)"
_INSERTS = (_INSERT_RECORD, _INSERT_PROVIDER, _INSERT_LANGUAGE, _INSERT_CAPTION)


def _first(labels: dict[str, list[str]]) -> str | None:
    for lang in ("en", NO_LANG, *labels):
        values = labels.get(lang)
        if values:
            return values[0]
    return None


def caption_text(record: ImageRecord) -> str:
    return "\n".join(v for values in record.caption.values() for v in values if v)


def caption_languages(record: ImageRecord) -> set[str]:
    langs: set[str] = set()
    for tag, values in record.caption.items():
        if tag == NO_LANG or not any(values):
            continue
        lower = tag.lower()
        langs.add(lower)
        langs.add(lower.split("-")[0])
    return langs


DICTIONARY_BYTES = 16384
"""Size of the zstandard dictionary trained per version (it is stored once, in the ``codec`` table)."""
DICTIONARY_SAMPLES = 2000
COMPRESSION_LEVEL = 3
"""zstandard level 3: 15 µs a record; level 9 saved another 6 % for 7× the time."""


def record_json(record: ImageRecord) -> bytes:
    """The stored JSON of a record: ``records.record_to_dict`` as orjson writes it (50× faster than
    ``dataclasses.asdict`` + ``json.dumps``, which took most of a 1M build's metadata stage)."""
    return orjson.dumps(record)


class RecordCodec:
    """Compresses stored records against one zstandard dictionary (none: plain zstandard frames)."""

    def __init__(self, dictionary: bytes | None) -> None:
        self.dictionary = dictionary
        data = zstandard.ZstdCompressionDict(dictionary) if dictionary else None
        self._compressor = zstandard.ZstdCompressor(
            level=COMPRESSION_LEVEL, dict_data=data, write_checksum=False, write_dict_id=False
        )
        self._decompressor = zstandard.ZstdDecompressor(dict_data=data)
        self._lock = threading.Lock()
        """zstandard contexts are not for concurrent use; search threads share one version's codec."""

    @classmethod
    def trained(cls, samples: Sequence[bytes]) -> RecordCodec:
        """A codec with a dictionary trained on ``samples`` (too few or too alike to train: none)."""
        try:
            trained = zstandard.train_dictionary(DICTIONARY_BYTES, list(samples))
        except zstandard.ZstdError:
            return cls(None)
        return cls(trained.as_bytes())

    def compress(self, data: bytes) -> bytes:
        return self._compressor.compress(data)

    def decompress(self, blob: bytes) -> bytes:
        with self._lock:
            return self._decompressor.decompress(blob)


def _json(data: str | bytes, codec: RecordCodec | None) -> bytes:
    """A stored record's JSON: zstandard-compressed, or JSON text as versions before 0.2 wrote it."""
    if isinstance(data, str):
        return data.encode()
    if codec is None:
        raise sqlite3.DatabaseError("a compressed record in a metadata file without its codec")
    return codec.decompress(data)


@dataclass(frozen=True, slots=True)
class Row:
    """One stored record with what the engine needs besides the record itself."""

    row: int
    dup_group: int
    content_hash: str | None


DECODED_RECORDS = 1024
"""Records a read-only version keeps decoded, least recently used out: the most shown ones."""
CACHED_RECORDS = 8192
"""Records it keeps read and decompressed (JSON), least recently used out: a few hundred result pages."""


class Metadata:
    """One ``metadata.sqlite``: written once by the builder, then read-only for the engine."""

    def __init__(self, path: Path, *, readonly: bool = True) -> None:
        self.path = path
        # A committed version never changes, so search threads share its kept records: few decoded
        # (~40 objects each the garbage collector walks: 8,192 made 80-175 ms pauses at 1M), more as
        # JSON bytes, which it does not track (docs/performance.md, third pass).
        self._decoded: OrderedDict[int, ImageRecord] | None = OrderedDict() if readonly else None
        self._cached: OrderedDict[int, bytes] = OrderedDict()
        self._cached_lock = threading.Lock()
        self._local = threading.local()
        self._closed = False
        self._writer: sqlite3.Connection | None = None
        if not readonly:
            self._writer = sqlite3.connect(path, check_same_thread=False)
            self._writer.execute("PRAGMA journal_mode=OFF")
            self._writer.execute("PRAGMA synchronous=OFF")
            self._writer.execute(f"PRAGMA cache_size=-{WRITE_CACHE_KIB}")
        self.codec = self._load_codec()

    @property
    def conn(self) -> sqlite3.Connection:
        """The writer's connection; read-only, the calling thread's own: one shared under a lock kept
        search threads waiting two thirds of their time (py-spy, 1M, 16 clients)."""
        if self._writer is not None:
            return self._writer
        if self._closed:
            self._close_own()
            raise sqlite3.ProgrammingError("Cannot operate on a closed database.")
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            # immutable=1: committed versions never change, so SQLite may skip locking entirely.
            uri = f"{self.path.resolve().as_uri()}?mode=ro&immutable=1"
            conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
            self._local.conn = conn
        return conn

    @classmethod
    def create(cls, path: Path, samples: Sequence[ImageRecord] = ()) -> Metadata:
        """A new, empty metadata file whose records compress against a dictionary trained on ``samples``
        (a spread of the records about to be inserted)."""
        meta = cls(path, readonly=False)
        meta.conn.executescript(SCHEMA)
        meta.codec = RecordCodec.trained([record_json(r) for r in samples])
        meta.conn.execute("INSERT INTO codec VALUES ('zstd-dictionary', ?)", (meta.codec.dictionary or b"",))
        return meta

    def _load_codec(self) -> RecordCodec | None:
        """The version's codec; ``None`` for versions written before 0.2 (their records are JSON text)."""
        if not self._has_table("codec"):
            return None
        row = self.conn.execute("SELECT value FROM codec WHERE name = 'zstd-dictionary'").fetchone()
        return RecordCodec(bytes(row[0]) or None) if row is not None else None

    def _encode(self, record: ImageRecord) -> str | bytes:
        data = record_json(record)
        # An incremental update of a pre-0.2 version keeps its file, and with it JSON text.
        return self.codec.compress(data) if self.codec is not None else data.decode()

    def close(self) -> None:
        """Close the writer's connection, or end reading: this thread's connection closes now, every
        other thread's at its next use (which raises SQLite's "closed database" error) or when this
        object goes. Closing a connection while another thread reads on it crashes the process."""
        if self._writer is not None:
            self._writer.close()
            return
        self._closed = True
        self._close_own()

    def _close_own(self) -> None:
        """Close the calling thread's read connection (its own: no other thread is using it)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            self._local.conn = None
            conn.close()

    # --- writing -------------------------------------------------------------------------------
    def insert(self, items: Iterable[tuple[ImageRecord, int, int, str | None]], batch: int = 5000) -> None:
        """Insert ``(record, row, dup_group, content_hash)`` tuples: rows are gathered per table and
        written with one prepared statement each (``executemany``), in the writer's one transaction."""
        tables: dict[str, list[tuple[object, ...]]] = {sql: [] for sql in _INSERTS}
        for n, (record, row, group, content_hash) in enumerate(items, 1):
            iid = id_to_int64(record.id)
            date = record.date
            labels = {v for p in record.providers for values in p.label.values() for v in values if v}
            institution = next(iter(_first(p.label) for p in record.providers if _first(p.label)), None)
            text = caption_text(record)
            tables[_INSERT_RECORD].append(
                (
                    iid,
                    record.id,
                    row,
                    record.collection,
                    institution,
                    rights_class(record.rights),
                    date.start_year if date else None,
                    date.end_year if date else None,
                    date.century if date else None,
                    1 if text.strip() else 0,
                    group,
                    content_hash,
                    self._encode(record),
                )
            )
            tables[_INSERT_PROVIDER].extend((iid, label) for label in sorted(labels))
            tables[_INSERT_LANGUAGE].extend((iid, lang) for lang in sorted(caption_languages(record)))
            if text.strip():
                tables[_INSERT_CAPTION].append((iid, text))
            if n % batch == 0:
                self._flush(tables)
        self._flush(tables)

    def _flush(self, tables: dict[str, list[tuple[object, ...]]]) -> None:
        for sql, rows in tables.items():
            if rows:
                self.conn.executemany(sql, rows)
                rows.clear()

    def delete(self, int_ids: Sequence[int]) -> None:
        cur = self.conn.cursor()
        if self._has_table("captions_content"):  # a pre-0.2 version: FTS5 keeps its own copy of the text
            cur.executemany("DELETE FROM captions WHERE rowid = ?", [(i,) for i in int_ids])
        else:  # contentless: FTS5 is told the text it indexed, derived again from the stored record
            texts = [(iid, caption_text(r)) for iid, r in self.records(list(int_ids)).items()]
            cur.executemany(
                "INSERT INTO captions(captions, rowid, text) VALUES ('delete', ?, ?)",
                [(iid, text) for iid, text in texts if text.strip()],
            )
        for table, col in (("records", "int_id"), ("providers", "int_id"), ("languages", "int_id")):
            cur.executemany(f"DELETE FROM {table} WHERE {col} = ?", [(i,) for i in int_ids])  # noqa: S608
        if self._has_table("suggested_subjects"):
            cur.executemany("DELETE FROM suggested_subjects WHERE int_id = ?", [(i,) for i in int_ids])

    def set_rows(self, rows: Iterable[tuple[int, int]]) -> None:
        """Renumber ``(int_id, row)`` after vectors were compacted (two passes avoid UNIQUE clashes)."""
        pairs = list(rows)
        self.conn.execute("UPDATE records SET row = -row - 1")
        self.conn.executemany("UPDATE records SET row = ? WHERE int_id = ?", [(r, i) for i, r in pairs])

    def set_groups(self, groups: Iterable[tuple[int, int]]) -> None:
        self.conn.executemany(
            "UPDATE records SET dup_group = ? WHERE int_id = ?", [(g, i) for i, g in groups]
        )

    def set_aliases(self, aliases: Mapping[str, str]) -> None:
        """Old record ids → current ones (see ``HarvestState.aliases``), so that old links resolve."""
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS aliases (old_id TEXT PRIMARY KEY, new_id TEXT NOT NULL)"
        )
        self.conn.executemany("INSERT OR REPLACE INTO aliases VALUES (?, ?)", sorted(aliases.items()))

    def set_suggestions(
        self, int_ids: Sequence[int], suggested: Sequence[Sequence[SuggestedSubject]]
    ) -> None:
        """Machine-suggested subjects of ``int_ids`` (``subjects.suggested``): a table of their own, never
        mixed into the records' catalogue data; by division too, for filters and facets."""
        self.conn.executescript(SUGGESTIONS_SCHEMA)
        self.conn.executemany(
            "INSERT OR REPLACE INTO suggested_subjects VALUES (?,?,?,?,?,?)",
            [
                (int(iid), rank, s.notation, s.score, s.label, s.division)
                for iid, picks in zip(int_ids, suggested, strict=True)
                for rank, s in enumerate(picks)
            ],
        )

    def suggestions(self, int_id: int) -> list[SuggestedSubject]:
        """``int_id``'s suggested subjects, best first (none when the version was built without)."""
        if not self._has_table("suggested_subjects"):
            return []
        rows = self.conn.execute(
            "SELECT notation, score, label FROM suggested_subjects WHERE int_id = ? ORDER BY rank", (int_id,)
        )
        return [SuggestedSubject(str(n), float(s), str(label)) for n, s, label in rows]

    def commit(self) -> None:
        self.conn.commit()

    def finish(self) -> None:
        """Index, optimise and analyse before the file becomes immutable."""
        self.conn.executescript(INDEXES)
        self.conn.commit()
        self.conn.execute("INSERT INTO captions(captions) VALUES ('optimize')")
        self.conn.execute("ANALYZE")
        self.conn.commit()

    # --- reading -------------------------------------------------------------------------------
    def count(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM records").fetchone()[0])

    def collections(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT DISTINCT collection FROM records ORDER BY 1")]

    def stored(self) -> Iterator[tuple[str, str | None, str, dict[str, Any]]]:
        """``(record id, content_hash, collection, record dict)`` of every record."""
        for rid, h, coll, data in self.conn.execute("SELECT id, content_hash, collection, data FROM records"):
            yield rid, h, coll, orjson.loads(_json(data, self.codec))

    def rows_by_id(self) -> Iterator[tuple[int, int, str, str | None]]:
        """``(int_id, row, record id, content_hash)`` of every record."""
        yield from self.conn.execute("SELECT int_id, row, id, content_hash FROM records")

    def aliases(self) -> dict[str, str]:
        if not self._has_aliases():
            return {}
        return dict(self.conn.execute("SELECT old_id, new_id FROM aliases").fetchall())

    def _has_aliases(self) -> bool:
        return self._has_table("aliases")

    def _has_table(self, name: str) -> bool:
        has = self.conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,))
        return has.fetchone() is not None

    def alias(self, old_id: str) -> str | None:
        """The current id of a record known by ``old_id`` (versions built before aliases have none)."""
        if not self._has_aliases():
            return None
        row = self.conn.execute("SELECT new_id FROM aliases WHERE old_id = ?", (old_id,)).fetchone()
        return str(row[0]) if row else None

    def lookup(self, int_ids: Sequence[int]) -> dict[int, Row]:
        out: dict[int, Row] = {}
        for chunk in _chunks(int_ids):
            q = f"SELECT int_id, row, dup_group, content_hash FROM records WHERE int_id IN ({_marks(chunk)})"  # noqa: S608
            for iid, row, group, h in self.conn.execute(q, chunk):
                out[iid] = Row(row, group, h)
        return out

    def records(self, int_ids: Sequence[int]) -> dict[int, ImageRecord]:
        decoded, cached = self._decoded, self._cached
        out: dict[int, ImageRecord] = {}
        found: dict[int, bytes] = {}
        if decoded is not None:
            with self._cached_lock:
                for iid in int_ids:
                    if (record := decoded.get(iid)) is not None:
                        decoded.move_to_end(iid)
                        out[iid] = record
                    elif (data := cached.get(iid)) is not None:
                        cached.move_to_end(iid)
                        found[iid] = data
        missing = [i for i in int_ids if i not in out and i not in found]
        read: dict[int, bytes] = {}
        for chunk in _chunks(missing):
            q = f"SELECT int_id, data FROM records WHERE int_id IN ({_marks(chunk)})"  # noqa: S608
            for iid, data in self.conn.execute(q, chunk):
                read[iid] = _json(data, self.codec)
        raw = found | read
        order = [iid for iid in dict.fromkeys(int_ids) if iid in raw]
        fresh = {iid: record_from_dict(orjson.loads(raw[iid])) for iid in order}
        if decoded is not None and fresh:
            with self._cached_lock:
                lru.keep(cached, read, CACHED_RECORDS)
                lru.keep(decoded, fresh, DECODED_RECORDS)
        out |= fresh
        return {iid: out[iid] for iid in int_ids if iid in out}

    def years(self, int_ids: Sequence[int]) -> dict[int, tuple[int, int]]:
        """``(year_start, year_end)`` of the dated records among ``int_ids``."""
        out: dict[int, tuple[int, int]] = {}
        for chunk in _chunks(int_ids):
            q = (
                f"SELECT int_id, year_start, year_end FROM records WHERE int_id IN ({_marks(chunk)}) "  # noqa: S608
                "AND year_start IS NOT NULL"
            )
            for iid, start, end in self.conn.execute(q, chunk):
                out[iid] = (start, end if end is not None else start)
        return out

    def group_members(self, groups: Sequence[int]) -> dict[int, list[str]]:
        """Record ids per duplicate group label, in id order."""
        out: dict[int, list[str]] = {}
        for chunk in _chunks(groups):
            q = f"SELECT dup_group, id FROM records WHERE dup_group IN ({_marks(chunk)}) ORDER BY id"  # noqa: S608
            for group, rid in self.conn.execute(q, chunk):
                out.setdefault(group, []).append(rid)
        return out

    def shared_groups(self) -> dict[int, int]:
        """``int_id → group`` for records that have near-duplicates (everyone else is alone)."""
        sql = (
            "SELECT int_id, dup_group FROM records WHERE dup_group IN "
            "(SELECT dup_group FROM records GROUP BY dup_group HAVING count(*) > 1)"
        )
        return dict(self.conn.execute(sql).fetchall())

    def filter_sql(self, filters: Filters) -> tuple[str, list[object]] | None:
        """``WHERE`` clause (on table alias ``r``) and parameters for ``filters``; ``None``: no filter."""
        clauses: list[str] = []
        params: list[object] = []
        if filters.collections:
            clauses.append(f"r.collection IN ({_marks(filters.collections)})")
            params.extend(filters.collections)
        if filters.providers:
            marks = _marks(filters.providers)
            clauses.append(f"r.int_id IN (SELECT int_id FROM providers WHERE label IN ({marks}))")  # noqa: S608
            params.extend(p.strip() for p in filters.providers)
        if filters.year_from is not None or filters.year_to is not None:
            # Overlap of the record's span with the asked span; undated records do not match.
            clauses.append("r.year_start IS NOT NULL")
            if filters.year_to is not None:
                clauses.append("r.year_start <= ?")
                params.append(filters.year_to)
            if filters.year_from is not None:
                clauses.append("r.year_end >= ?")
                params.append(filters.year_from)
        if filters.rights:
            clauses.append(f"r.rights_class IN ({_marks(filters.rights)})")
            params.extend(filters.rights)
        if filters.languages:
            langs = [lang.strip().lower() for lang in filters.languages]
            clauses.append(f"r.int_id IN (SELECT int_id FROM languages WHERE lang IN ({_marks(langs)}))")  # noqa: S608
            params.extend(langs)
        if filters.has_caption is not None:
            clauses.append("r.has_caption = ?")
            params.append(1 if filters.has_caption else 0)
        if filters.suggested_divisions:
            if not self._has_table("suggested_subjects"):
                clauses.append("0")  # built without suggestions: nothing has one
            else:
                marks = _marks(filters.suggested_divisions)
                best = f"SELECT int_id FROM suggested_subjects WHERE rank = 0 AND division IN ({marks})"  # noqa: S608
                clauses.append(f"r.int_id IN ({best})")
                params.extend(filters.suggested_divisions)
        if not clauses:
            return None
        return " AND ".join(clauses), params

    def filtered(self, filters: Filters) -> tuple[list[int], list[int]] | None:
        """``(int_ids, rows)`` of records matching ``filters`` (``None`` when nothing is filtered)."""
        where = self.filter_sql(filters)
        if where is None:
            return None
        sql, params = where
        ids: list[int] = []
        rows: list[int] = []
        for iid, row in self.conn.execute(f"SELECT r.int_id, r.row FROM records r WHERE {sql}", params):  # noqa: S608
            ids.append(iid)
            rows.append(row)
        return ids, rows

    def keyword_ranking(self, match: str, filters: Filters, limit: int) -> list[int]:
        """Ids whose caption matches the FTS5 expression ``match``, best (BM25) first, then by id."""
        rows = self._keyword_query(
            "SELECT c.rowid {} ORDER BY bm25(captions), c.rowid LIMIT ?", match, filters, limit
        )
        return [r[0] for r in rows]

    def keyword_count(self, match: str, filters: Filters, limit: int) -> int:
        """How many records ``filters`` allow match the FTS5 expression ``match``, counted up to ``limit``
        (unranked, so a word in every caption costs ``limit`` rows, not a BM25 sort of all of them)."""
        rows = self._keyword_query("SELECT count(*) FROM (SELECT 1 {} LIMIT ?)", match, filters, limit)
        return int(rows[0][0])

    def _keyword_query(self, template: str, match: str, filters: Filters, limit: int) -> list[Any]:
        """``template`` with ``{}`` replaced by the FTS5 match of the captions the filters allow; a bad
        FTS5 expression is the caller's error, not the server's."""
        where = self.filter_sql(filters)
        if where:
            joined = "FROM captions c JOIN records r ON r.int_id = c.rowid WHERE captions MATCH ?"
            matching, params = f"{joined} AND {where[0]}", where[1]
        else:  # every caption row is a record's: without filters the join only costs (a third at 1M)
            matching, params = "FROM captions c WHERE captions MATCH ?", []
        try:
            return self.conn.execute(template.format(matching), [match, *params, limit]).fetchall()
        except sqlite3.OperationalError as exc:
            raise InvalidFilterError(f"the keyword clause cannot be searched: {exc}") from exc

    def facet_rows(
        self, filters: Filters, int_ids: Sequence[int] | None = None
    ) -> list[tuple[str, str | None, str, int | None, str | None]]:
        """Facet source rows for records matching ``filters`` (restricted to ``int_ids`` if given):
        collection, institution, rights class, century and the best suggested subject's division."""
        where = self.filter_sql(filters)
        sql, params = (where[0], list(where[1])) if where else ("1", [])
        if int_ids is not None:
            sql += " AND r.int_id IN (SELECT value FROM json_each(?))"
            params.append(json.dumps(list(int_ids)))
        division, join = "NULL", ""
        if self._has_table("suggested_subjects"):
            division, join = (
                "s.division",
                " LEFT JOIN suggested_subjects s ON s.int_id = r.int_id AND s.rank = 0",
            )
        q = (
            f"SELECT r.collection, r.institution, r.rights_class, r.century, {division}"  # noqa: S608
            f" FROM records r{join} WHERE {sql}"
        )
        return list(self.conn.execute(q, params))


def _marks(values: Sequence[object]) -> str:
    return ",".join("?" * len(values))


def _chunks(values: Sequence[int], size: int = 900) -> Iterator[list[int]]:
    for start in range(0, len(values), size):
        yield list(values[start : start + size])
