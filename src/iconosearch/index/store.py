"""Versioned index directories with an atomic ``CURRENT`` pointer.

Layout of one index name::

    indexes/<name>/CURRENT              text file naming the served version (replaced with os.replace)
    indexes/<name>/<version>/           immutable once committed
        manifest.json                   :class:`IndexManifest`
        vectors.faiss                   FAISS index, ids = records.id_to_int64(record id)
        vectors.npy                     float16 (count, dim) unit vectors (0.1: float32), row i ↔ ids.npy[i]
        ids.npy                         int64 FAISS ids in row order
        metadata.sqlite                 records, filter columns, FTS5 captions (see metadata.py)
    indexes/<name>/.staging-<version>.pid<pid>/  being written; never read; removed when its
                                        builder is gone (next build) or by GC when stale
    indexes/<name>/.build.lock          held by the one process building this index (see :meth:`building`)

A version is written entirely in its staging directory, fsynced, renamed into place and only then
named by ``CURRENT``; readers only ever open versions through ``CURRENT``, so they never see a
half-written index. Old versions stay on disk for a grace period so that readers still holding them
(and cursors pointing at them) keep working.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from iconosearch.locks import Holder, LockHeldError, exclusive, is_held

MANIFEST = "manifest.json"
FAISS_FILE = "vectors.faiss"
VECTORS_FILE = "vectors.npy"
IDS_FILE = "ids.npy"
METADATA_FILE = "metadata.sqlite"
CURRENT = "CURRENT"
STAGING_PREFIX = ".staging-"
BUILD_LOCK = ".build.lock"
FORMAT_VERSION = 1


class IndexStoreError(RuntimeError):
    """An index directory that cannot be used as asked (missing, corrupt, other model)."""


class IndexBusyError(IndexStoreError):
    """Another builder holds the index's build lock."""


@dataclass(frozen=True, slots=True)
class IndexManifest:
    """What one index version holds and how it was built."""

    name: str
    version: str
    model_spec: str
    model_fingerprint: str
    dim: int
    count: int
    faiss_type: str
    """``flat``, ``ivf-flat``, ``ivf-pq``, ``hnsw``."""
    faiss_params: dict[str, Any] = field(default_factory=dict)
    """Factory string, nlist, nprobe, M, efSearch…, as built."""
    created: str = ""
    recall_at_10: float | None = None
    """Recall@10 of the approximate index against exact search on sample queries (None: exact)."""
    collections: tuple[str, ...] = ()
    harvest_state: dict[str, str | None] = field(default_factory=dict)
    """Per collection, the ISO time of the last harvest the version was built from."""
    parent: str | None = None
    """Version this one was derived from incrementally (None: full build or compaction)."""
    changes_since_compaction: int = 0
    """Records added + removed incrementally since the last full build."""
    failures: dict[str, str] = field(default_factory=dict)
    """Record id → reason, for images that could not be embedded."""
    checksums: dict[str, str] = field(default_factory=dict)
    """File name → ``"xxh3_128:<hex>"`` of every file of the version, written at commit (see verify.py)."""
    regions: dict[str, Any] = field(default_factory=dict)
    """Region embeddings, when the version has them: ``count``, ``faiss_type``, ``faiss_params``
    (see :mod:`iconosearch.index.regions`); empty when it has none."""
    format: int = FORMAT_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> IndexManifest:
        data = json.loads(text)
        data["collections"] = tuple(data.get("collections", ()))
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True, slots=True)
class IndexVersion:
    """A committed version directory and its manifest."""

    path: Path
    manifest: IndexManifest

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def faiss_path(self) -> Path:
        return self.path / FAISS_FILE

    @property
    def vectors_path(self) -> Path:
        return self.path / VECTORS_FILE

    @property
    def ids_path(self) -> Path:
        return self.path / IDS_FILE

    @property
    def metadata_path(self) -> Path:
        return self.path / METADATA_FILE


def new_version_name(now: datetime | None = None) -> str:
    """Sortable, unique-enough version name: UTC time to the microsecond."""
    now = now or datetime.now(UTC)
    return now.strftime("%Y%m%dT%H%M%S%fZ")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    for p in path.iterdir():
        if p.is_file():
            with p.open("rb") as fh:
                os.fsync(fh.fileno())
    _fsync_dir(path)


class IndexStore:
    """The versions of one index name under ``<data_dir>/indexes/<name>``."""

    def __init__(self, indexes_dir: Path, name: str) -> None:
        if not name or "/" in name or name.startswith(".") or name != name.strip():
            raise IndexStoreError(f"invalid index name {name!r}")
        self.name = name
        self.root = indexes_dir / name

    # --- reading -------------------------------------------------------------------------------
    def current_name(self) -> str | None:
        """The version ``CURRENT`` names, or ``None`` when nothing was committed yet."""
        try:
            text = (self.root / CURRENT).read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        return text or None

    def current(self) -> IndexVersion | None:
        name = self.current_name()
        return self.open_version(name) if name is not None else None

    def open_version(self, version: str) -> IndexVersion:
        path = self.root / version
        try:
            manifest = IndexManifest.from_json((path / MANIFEST).read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise IndexStoreError(f"index {self.name!r} has no version {version!r}") from exc
        except (ValueError, TypeError) as exc:
            raise IndexStoreError(f"index {self.name!r} version {version!r}: bad manifest: {exc}") from exc
        return IndexVersion(path=path, manifest=manifest)

    def versions(self) -> list[str]:
        """Committed versions, oldest first."""
        if not self.root.is_dir():
            return []
        return sorted(
            p.name
            for p in self.root.iterdir()
            if p.is_dir() and not p.name.startswith(".") and (p / MANIFEST).is_file()
        )

    # --- writing -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def building(self) -> Iterator[Holder]:
        """Hold this index's build lock: every writer (build, compact, GC) takes it, across processes.

        Raises :class:`IndexBusyError` at once, naming the holder, when another builder has it.
        """
        try:
            with exclusive(self.root / BUILD_LOCK, f"index {self.name!r} is being built") as me:
                yield me
        except LockHeldError as exc:
            raise IndexBusyError(str(exc)) from None

    def builder(self) -> Holder | None:
        """Who is building this index right now, if anyone."""
        return is_held(self.root / BUILD_LOCK)

    def begin(self, version: str | None = None) -> tuple[str, Path]:
        """A fresh staging directory for a new version: ``(version, staging path)``.

        The directory name carries the builder's pid; staging directories of builders that are gone
        (a killed build) are removed first, so they do not pile up until the next ``--gc``.
        """
        self.remove_orphaned_staging()
        version = version or new_version_name()
        staging = self.root / f"{STAGING_PREFIX}{version}{_PID_MARK}{os.getpid()}"
        staging.mkdir(parents=True, exist_ok=False)
        return version, staging

    def remove_orphaned_staging(self) -> list[str]:
        """Delete staging directories whose builder process no longer exists; returns their names."""
        if not self.root.is_dir():
            return []
        removed = []
        for p in self.root.iterdir():
            if not p.name.startswith(STAGING_PREFIX) or _PID_MARK not in p.name:
                continue
            pid_text = p.name.rsplit(_PID_MARK, 1)[1]
            if pid_text.isdigit() and not _alive(int(pid_text)):
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p.name)
        return removed

    def commit(self, staging: Path, manifest: IndexManifest, *, switch: bool = True) -> IndexVersion:
        """Record the files' checksums in the manifest, write it, make the staging dir a version and
        (by default) point ``CURRENT`` at it."""
        from iconosearch.index.verify import folder_checksums

        manifest = replace(manifest, checksums=folder_checksums(staging, skip=(MANIFEST,)))
        (staging / MANIFEST).write_text(manifest.to_json(), encoding="utf-8")
        _fsync_tree(staging)
        final = self.root / manifest.version
        staging.rename(final)
        _fsync_dir(self.root)
        if switch:
            self.switch(manifest.version)
        return IndexVersion(path=final, manifest=manifest)

    def switch(self, version: str) -> None:
        """Atomically make ``version`` the served one."""
        if not (self.root / version / MANIFEST).is_file():
            raise IndexStoreError(f"index {self.name!r} has no committed version {version!r}")
        tmp = self.root / f".{CURRENT}.{os.getpid()}.tmp"
        with tmp.open("w", encoding="utf-8") as fh:
            fh.write(version + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(self.root / CURRENT)
        _fsync_dir(self.root)

    def abort(self, staging: Path) -> None:
        shutil.rmtree(staging, ignore_errors=True)

    def gc(self, *, grace_s: float = 3600.0, keep: int = 1, now: float | None = None) -> list[str]:
        """Delete old versions and stale staging dirs; returns what was removed.

        A version goes once it was superseded (the next version committed) more than ``grace_s`` ago,
        so readers and cursors still on it have that long to move on. ``CURRENT`` and the ``keep``
        newest versions always stay.
        """
        now = time.time() if now is None else now
        current = self.current_name()
        versions = self.versions()
        protected = set(versions[-keep:]) if keep > 0 else set()
        if current is not None:
            protected.add(current)
        removed: list[str] = []
        for older, newer in itertools.pairwise(versions):
            superseded_at = (self.root / newer / MANIFEST).stat().st_mtime
            if older in protected or now - superseded_at < grace_s:
                continue
            shutil.rmtree(self.root / older, ignore_errors=True)
            removed.append(older)
        if self.root.is_dir():
            for p in self.root.iterdir():
                if p.name.startswith(STAGING_PREFIX) and now - p.stat().st_mtime >= grace_s:
                    shutil.rmtree(p, ignore_errors=True)
                    removed.append(p.name)
        return removed


_PID_MARK = ".pid"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
