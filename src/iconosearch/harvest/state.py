"""Harvest state in SQLite: documents seen, records and their image status, skips, failures, runs.

One file (``DataDir.state_db``) in WAL mode, so readers (the indexer) never block the harvester. Every
change is one short transaction, which is what makes a ``kill -9`` harmless: a manifest's records are
written together, an image's record is updated only after its file is in place (files are written to a
temporary name and renamed), and everything is keyed (records by collection + id, images by content
hash), so a rerun redoes at most the unfinished step and never duplicates.

A record's ``status`` is ``pending`` (image not fetched yet, or its image URL changed), ``fetched``,
``failed`` (retried on the next run; the reason is in ``error`` and ``failures``) or ``deleted`` (gone
from the source; kept so the indexer can drop it).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from iconosearch.records import HarvestedImage, ImageRecord, record_from_dict, record_id, record_to_dict

_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    url TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    doc_id TEXT,
    etag TEXT,
    last_modified TEXT,
    content_hash TEXT,
    fetched_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS records (
    collection TEXT NOT NULL,
    id TEXT NOT NULL,
    manifest_id TEXT NOT NULL,
    data TEXT NOT NULL,
    image_url TEXT,
    status TEXT NOT NULL,
    content_hash TEXT,
    path TEXT,
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    run INTEGER NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (collection, id)
);
CREATE INDEX IF NOT EXISTS records_status ON records (collection, status);
CREATE INDEX IF NOT EXISTS records_manifest ON records (collection, manifest_id);
CREATE TABLE IF NOT EXISTS images (
    content_hash TEXT PRIMARY KEY,
    path TEXT NOT NULL,
    width INTEGER,
    height INTEGER,
    format TEXT,
    bytes INTEGER NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS image_urls (
    url TEXT PRIMARY KEY,
    content_hash TEXT NOT NULL,
    etag TEXT,
    last_modified TEXT
);
CREATE TABLE IF NOT EXISTS skips (
    collection TEXT NOT NULL,
    ref TEXT NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    run INTEGER NOT NULL,
    PRIMARY KEY (collection, ref, reason)
);
CREATE TABLE IF NOT EXISTS failures (
    collection TEXT NOT NULL,
    ref TEXT NOT NULL,
    stage TEXT NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    run INTEGER NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (collection, ref, stage)
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    collection TEXT NOT NULL,
    source TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    complete INTEGER NOT NULL DEFAULT 0,
    summary TEXT
);
CREATE TABLE IF NOT EXISTS cursors (
    collection TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS id_aliases (
    old_id TEXT PRIMARY KEY,
    new_id TEXT NOT NULL
);
"""
SCHEMA_VERSION = 2
"""``PRAGMA user_version`` of the current layout; 2: record ids no longer depend on the serving address."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True, slots=True)
class DocumentState:
    url: str
    kind: str
    doc_id: str | None
    etag: str | None
    last_modified: str | None
    content_hash: str | None


@dataclass(frozen=True, slots=True)
class PendingImage:
    """A record whose image still has to be fetched."""

    record: ImageRecord
    image_url: str | None
    attempts: int


@dataclass(frozen=True, slots=True)
class CollectionStats:
    name: str
    records: int
    """Live records (not deleted)."""
    images: int
    """Live records whose image is cached."""
    failed: int
    pending: int
    last_harvest: datetime | None


@dataclass(frozen=True, slots=True)
class Failure:
    ref: str
    stage: str
    reason: str
    detail: str


class HarvestState:
    """The harvest state database. Cheap to open; one connection per instance (not thread-shared)."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        db_path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(db_path, timeout=30.0, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=30000")
        self._db.executescript(_SCHEMA)
        self._migrate()

    def _migrate(self) -> None:
        """Re-key records made by 0.1, whose ids hashed the address local IIIF was served at.

        Each old id is kept as an alias of the new one, so that old links keep working once an index is
        rebuilt (the builder copies the aliases into the index). Runs once per database, in one
        transaction, so a concurrent opener waits and then sees it done.
        """
        db = self._db
        if db.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION:
            return
        db.execute("BEGIN IMMEDIATE")
        try:
            if db.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                rows = db.execute("SELECT collection, id, data, status FROM records").fetchall()
                for row in rows:
                    self._rekey(row["collection"], row["id"], json.loads(row["data"]))
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            db.execute("COMMIT")
        except BaseException:
            # SQLite may have rolled back already (disk full): a second ROLLBACK would hide the cause.
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def _rekey(self, collection: str, old: str, data: dict[str, Any]) -> None:
        new = record_id(data["manifest_id"], data["canvas_id"], data["image_id"])
        if new == old:
            return
        db = self._db
        db.execute("INSERT OR REPLACE INTO id_aliases (old_id, new_id) VALUES (?, ?)", (old, new))
        taken = db.execute(
            "SELECT 1 FROM records WHERE collection = ? AND id = ?", (collection, new)
        ).fetchone()
        if taken:
            # The same object was harvested again under another address: one row is enough.
            db.execute("DELETE FROM records WHERE collection = ? AND id = ?", (collection, old))
            return
        data["id"] = new
        db.execute(
            "UPDATE records SET id = ?, data = ? WHERE collection = ? AND id = ?",
            (new, json.dumps(data, ensure_ascii=False, default=str), collection, old),
        )

    def aliases(self) -> dict[str, str]:
        """Old record id → current id, for links made before ids became independent of the address."""
        return dict(self._db.execute("SELECT old_id, new_id FROM id_aliases").fetchall())

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> HarvestState:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- runs -------------------------------------------------------------------------------------------

    def start_run(self, collection: str, source: str) -> int:
        cur = self._db.execute(
            "INSERT INTO runs (collection, source, started_at) VALUES (?, ?, ?)", (collection, source, _now())
        )
        assert cur.lastrowid is not None
        return cur.lastrowid

    def finish_run(self, run: int, *, complete: bool, summary: dict[str, Any]) -> None:
        self._db.execute(
            "UPDATE runs SET finished_at = ?, complete = ?, summary = ? WHERE id = ?",
            (_now(), int(complete), json.dumps(summary, default=str), run),
        )

    def last_harvest(self, collection: str) -> datetime | None:
        """When the last harvest of ``collection`` that ran to completion started."""
        row = self._db.execute(
            "SELECT MAX(started_at) AS t FROM runs WHERE collection = ? AND complete = 1", (collection,)
        ).fetchone()
        return datetime.fromisoformat(row["t"]) if row and row["t"] else None

    def get_cursor(self, collection: str) -> str | None:
        row = self._db.execute("SELECT value FROM cursors WHERE collection = ?", (collection,)).fetchone()
        return row["value"] if row else None

    def set_cursor(self, collection: str, value: str) -> None:
        self._db.execute(
            "INSERT INTO cursors (collection, value) VALUES (?, ?) "
            "ON CONFLICT (collection) DO UPDATE SET value = excluded.value",
            (collection, value),
        )

    # -- documents --------------------------------------------------------------------------------------

    def document(self, url: str) -> DocumentState | None:
        row = self._db.execute("SELECT * FROM documents WHERE url = ?", (url,)).fetchone()
        if row is None:
            return None
        return DocumentState(
            row["url"], row["kind"], row["doc_id"], row["etag"], row["last_modified"], row["content_hash"]
        )

    def save_document(
        self,
        url: str,
        kind: str,
        *,
        doc_id: str | None,
        etag: str | None,
        last_modified: str | None,
        content_hash: str | None,
    ) -> None:
        self._db.execute(
            "INSERT INTO documents (url, kind, doc_id, etag, last_modified, content_hash, fetched_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (url) DO UPDATE SET kind = excluded.kind, "
            "doc_id = excluded.doc_id, etag = excluded.etag, last_modified = excluded.last_modified, "
            "content_hash = excluded.content_hash, fetched_at = excluded.fetched_at",
            (url, kind, doc_id, etag, last_modified, content_hash, _now()),
        )

    # -- records ----------------------------------------------------------------------------------------

    def save_manifest_records(
        self,
        collection: str,
        manifest_id: str,
        records: Iterable[tuple[ImageRecord, str | None]],
        run: int,
    ) -> tuple[int, int]:
        """Upsert a manifest's records (with their image URLs) at once; drop the ones no longer there.

        A record whose image URL is unchanged keeps its fetched image; a changed URL makes it pending.
        Returns (new records, records removed from the manifest).
        """
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            existing = {
                row["id"]: row
                for row in db.execute(
                    "SELECT id, image_url, status FROM records WHERE collection = ? AND manifest_id = ?",
                    (collection, manifest_id),
                )
            }
            new = 0
            seen: set[str] = set()
            now = _now()
            for record, image_url in records:
                seen.add(record.id)
                data = json.dumps(record_to_dict(record), ensure_ascii=False, default=str)
                # Not under this manifest id: the same object may have been listed under another
                # address of the manifest (a local collection served elsewhere); it is not new.
                old = (
                    existing.get(record.id)
                    or db.execute(
                        "SELECT id, image_url, status FROM records WHERE collection = ? AND id = ?",
                        (collection, record.id),
                    ).fetchone()
                )
                if old is None or old["status"] == "deleted":
                    new += 1
                if old is not None and old["image_url"] == image_url and old["status"] != "deleted":
                    db.execute(
                        "UPDATE records SET manifest_id = ?, data = ?, run = ?, updated_at = ? "
                        "WHERE collection = ? AND id = ?",
                        (manifest_id, data, run, now, collection, record.id),
                    )
                else:
                    db.execute(
                        "INSERT INTO records (collection, id, manifest_id, data, image_url, status, run, "
                        "updated_at) VALUES (?, ?, ?, ?, ?, 'pending', ?, ?) ON CONFLICT (collection, id) "
                        "DO UPDATE SET manifest_id = excluded.manifest_id, data = excluded.data, "
                        "image_url = excluded.image_url, status = 'pending', content_hash = NULL, "
                        "path = NULL, error = NULL, attempts = 0, run = excluded.run, "
                        "updated_at = excluded.updated_at",
                        (collection, record.id, manifest_id, data, image_url, run, now),
                    )
            gone = [rid for rid, row in existing.items() if rid not in seen and row["status"] != "deleted"]
            for rid in gone:
                db.execute(
                    "UPDATE records SET status = 'deleted', updated_at = ? WHERE collection = ? AND id = ?",
                    (now, collection, rid),
                )
            db.execute("COMMIT")
        except BaseException:
            # SQLite may have rolled back already (disk full): a second ROLLBACK would hide the cause.
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return new, len(gone)

    def touch_manifest(self, collection: str, manifest_id: str, run: int) -> int:
        """Mark an unchanged manifest's records as seen in ``run``; returns how many live records it has."""
        cur = self._db.execute(
            "UPDATE records SET run = ? WHERE collection = ? AND manifest_id = ? AND status != 'deleted'",
            (run, collection, manifest_id),
        )
        return cur.rowcount

    def delete_manifest(self, collection: str, manifest_id: str) -> int:
        cur = self._db.execute(
            "UPDATE records SET status = 'deleted', updated_at = ? "
            "WHERE collection = ? AND manifest_id = ? AND status != 'deleted'",
            (_now(), collection, manifest_id),
        )
        return cur.rowcount

    def delete_unseen(self, collection: str, run: int) -> int:
        """After a complete walk: records not seen in ``run`` are gone from the source."""
        cur = self._db.execute(
            "UPDATE records SET status = 'deleted', updated_at = ? "
            "WHERE collection = ? AND run != ? AND status != 'deleted'",
            (_now(), collection, run),
        )
        return cur.rowcount

    def pending_images(self, collection: str, *, max_attempts: int | None = None) -> list[PendingImage]:
        """Records whose image is not (validly) cached: new, changed, or failed before."""
        rows = self._db.execute(
            "SELECT data, image_url, attempts FROM records "
            "WHERE collection = ? AND status IN ('pending', 'failed') ORDER BY manifest_id, id",
            (collection,),
        ).fetchall()
        out = [
            PendingImage(record_from_dict(json.loads(r["data"])), r["image_url"], r["attempts"]) for r in rows
        ]
        if max_attempts is not None:
            out = [p for p in out if p.attempts < max_attempts]
        return out

    def requeue_missing_files(self, collection: str) -> int:
        """Records marked fetched whose cached file is gone (cache cleared by hand) become pending."""
        rows = self._db.execute(
            "SELECT id, path FROM records WHERE collection = ? AND status = 'fetched'", (collection,)
        ).fetchall()
        missing = [r["id"] for r in rows if not Path(r["path"]).is_file()]
        for rid in missing:
            self._db.execute(
                "UPDATE records SET status = 'pending', content_hash = NULL, path = NULL "
                "WHERE collection = ? AND id = ?",
                (collection, rid),
            )
        if missing:
            self._db.execute(
                "DELETE FROM images WHERE content_hash NOT IN "
                "(SELECT content_hash FROM records WHERE content_hash IS NOT NULL)"
            )
        return len(missing)

    def image_for_url(self, url: str) -> tuple[str, Path, str | None, str | None] | None:
        """(content hash, path, etag, last-modified) of an image already fetched from ``url``."""
        row = self._db.execute(
            "SELECT u.content_hash, i.path, u.etag, u.last_modified FROM image_urls u "
            "JOIN images i ON i.content_hash = u.content_hash WHERE u.url = ?",
            (url,),
        ).fetchone()
        if row is None:
            return None
        return row["content_hash"], Path(row["path"]), row["etag"], row["last_modified"]

    def save_image(
        self,
        collection: str,
        record_id: str,
        *,
        url: str,
        content_hash: str,
        path: Path,
        width: int | None,
        height: int | None,
        fmt: str | None,
        size: int,
        etag: str | None,
        last_modified: str | None,
    ) -> None:
        """Record a cached image (the file must already be in place) and mark the record fetched."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(
                "INSERT OR IGNORE INTO images (content_hash, path, width, height, format, bytes, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (content_hash, str(path), width, height, fmt, size, _now()),
            )
            db.execute(
                "INSERT INTO image_urls (url, content_hash, etag, last_modified) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (url) DO UPDATE SET content_hash = excluded.content_hash, etag = excluded.etag, "
                "last_modified = excluded.last_modified",
                (url, content_hash, etag, last_modified),
            )
            db.execute(
                "UPDATE records SET status = 'fetched', content_hash = ?, path = ?, error = NULL, "
                "updated_at = ? WHERE collection = ? AND id = ?",
                (content_hash, str(path), _now(), collection, record_id),
            )
            db.execute(
                "DELETE FROM failures WHERE collection = ? AND ref = ? AND stage = 'image'",
                (collection, record_id),
            )
            db.execute("COMMIT")
        except BaseException:
            # SQLite may have rolled back already (disk full): a second ROLLBACK would hide the cause.
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def fail_image(self, collection: str, record_id: str, reason: str, detail: str, run: int) -> None:
        """The image could not be fetched; the record stays harvested and is retried next run."""
        db = self._db
        db.execute(
            "UPDATE records SET status = 'failed', error = ?, attempts = attempts + 1, updated_at = ? "
            "WHERE collection = ? AND id = ?",
            (f"{reason}: {detail}", _now(), collection, record_id),
        )
        self.record_failure(collection, record_id, "image", reason, detail, run)

    def record_failure(
        self, collection: str, ref: str, stage: str, reason: str, detail: str, run: int
    ) -> None:
        self._db.execute(
            "INSERT INTO failures (collection, ref, stage, reason, detail, run, at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (collection, ref, stage) DO UPDATE SET reason = excluded.reason, "
            "detail = excluded.detail, run = excluded.run, at = excluded.at",
            (collection, ref, stage, reason, detail[:2000], run, _now()),
        )

    def clear_failure(self, collection: str, ref: str, stage: str) -> None:
        self._db.execute(
            "DELETE FROM failures WHERE collection = ? AND ref = ? AND stage = ?", (collection, ref, stage)
        )

    def record_skip(self, collection: str, ref: str, reason: str, detail: str, run: int) -> None:
        self._db.execute(
            "INSERT INTO skips (collection, ref, reason, detail, run) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (collection, ref, reason) DO UPDATE SET detail = excluded.detail, "
            "run = excluded.run",
            (collection, ref, reason, detail[:2000], run),
        )

    def failures(self, collection: str) -> list[Failure]:
        rows = self._db.execute(
            "SELECT ref, stage, reason, detail FROM failures WHERE collection = ? ORDER BY at, ref",
            (collection,),
        ).fetchall()
        return [Failure(r["ref"], r["stage"], r["reason"], r["detail"]) for r in rows]

    # -- readers (the indexer, the API, the CLI) ---------------------------------------------------------

    def iter_records(self, collection: str) -> Iterator[ImageRecord]:
        """Live records of ``collection`` (fetched image or not), in manifest order."""
        rows = self._db.execute(
            "SELECT data FROM records WHERE collection = ? AND status != 'deleted' ORDER BY manifest_id, id",
            (collection,),
        ).fetchall()
        for row in rows:
            yield record_from_dict(json.loads(row["data"]))

    def iter_images(self, collection: str) -> Iterator[HarvestedImage]:
        """Live records whose image is cached: what the indexer embeds."""
        rows = self._db.execute(
            "SELECT data, content_hash, path FROM records "
            "WHERE collection = ? AND status = 'fetched' ORDER BY manifest_id, id",
            (collection,),
        ).fetchall()
        for row in rows:
            yield HarvestedImage(
                record_from_dict(json.loads(row["data"])), row["content_hash"], Path(row["path"])
            )

    def deleted_ids(self, collection: str) -> list[str]:
        rows = self._db.execute(
            "SELECT id FROM records WHERE collection = ? AND status = 'deleted' ORDER BY id", (collection,)
        ).fetchall()
        return [r["id"] for r in rows]

    def status_counts(self, collection: str) -> dict[str, int]:
        rows = self._db.execute(
            "SELECT status, COUNT(*) AS n FROM records WHERE collection = ? GROUP BY status", (collection,)
        ).fetchall()
        return {r["status"]: r["n"] for r in rows}

    def collections(self) -> list[CollectionStats]:
        names = [
            r["collection"]
            for r in self._db.execute(
                "SELECT collection FROM records UNION SELECT collection FROM runs ORDER BY collection"
            )
        ]
        out: list[CollectionStats] = []
        for name in names:
            counts = self.status_counts(name)
            live = sum(n for s, n in counts.items() if s != "deleted")
            out.append(
                CollectionStats(
                    name=name,
                    records=live,
                    images=counts.get("fetched", 0),
                    failed=counts.get("failed", 0),
                    pending=counts.get("pending", 0),
                    last_harvest=self.last_harvest(name),
                )
            )
        return out


def harvested_collections(data_dir: Path) -> set[str]:
    """Names of the collections in the harvest state: configured ones and IIIF URLs harvested by name."""
    db = data_dir / "state.sqlite"
    if not db.is_file():
        return set()
    with HarvestState(db) as st:
        return {c.name for c in st.collections()}
