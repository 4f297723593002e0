"""Disk full and other file-system errors of long jobs, told in one line: what, where, how much space.

A job wraps its writing stages in :func:`writing`; an ``OSError`` (or SQLite's own "database or disk
is full" / "disk I/O error") escaping from it becomes a :class:`StorageError` whose message is the
whole story — the job, the file, the free space on that file system and, where the job can tell, the
space it needs. The CLI prints that line and exits non-zero instead of a traceback. Each job cleans
up after itself on the way out (staging directories, temporary files, transactions), so a failed
write leaves nothing half-written behind.
"""

from __future__ import annotations

import errno
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_FILE_SYSTEM = _NO_SPACE | {errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO, errno.ENOENT, errno.ENOTDIR}
_SQLITE_NO_SPACE = ("database or disk is full",)
_SQLITE_FILE_SYSTEM = (*_SQLITE_NO_SPACE, "disk i/o error", "readonly database", "unable to open database")


class StorageError(RuntimeError):
    """A write failed at the file-system level; the message is one line for the operator."""

    def __init__(self, message: str, *, no_space: bool) -> None:
        super().__init__(message)
        self.no_space = no_space


def is_storage_error(exc: BaseException) -> bool:
    """A file-system failure (as opposed to, say, a network ``OSError`` such as a refused connection)."""
    if isinstance(exc, sqlite3.OperationalError):
        return any(s in str(exc).lower() for s in _SQLITE_FILE_SYSTEM)
    return isinstance(exc, OSError) and exc.errno in _FILE_SYSTEM


def _no_space(exc: BaseException) -> bool:
    if isinstance(exc, sqlite3.OperationalError):
        return any(s in str(exc).lower() for s in _SQLITE_NO_SPACE)
    return isinstance(exc, OSError) and exc.errno in _NO_SPACE


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def _free_space(where: Path) -> str:
    probe = where
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return f"{human_bytes(shutil.disk_usage(probe).free)} free there"
    except OSError:
        return "free space unknown"


def describe(exc: BaseException, what: str, where: Path, needed: int | None = None) -> str:
    """The one line: ``<what> failed: <cause> writing <file> (<free> free there; about <needed> needed)``."""
    target = Path(exc.filename) if isinstance(exc, OSError) and exc.filename else where
    if _no_space(exc):
        cause = "no space left on the device"
        if isinstance(exc, OSError) and exc.errno == errno.EFBIG:
            cause = "file size limit reached"
        room = _free_space(where)
        if needed is not None:
            room += f"; it needs about {human_bytes(needed)}"
        return (
            f"{what} failed: {cause} writing {target} ({room}); "
            "nothing half-written is left: free some space and run it again"
        )
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return f"{what} failed: {reason.lower()} at {target}; nothing half-written is left"


@contextmanager
def writing(what: str, where: Path, *, needed: int | None = None) -> Iterator[None]:
    """Turn a file-system failure inside the block into a :class:`StorageError` saying ``what``."""
    try:
        yield
    except StorageError:
        raise
    except (OSError, sqlite3.OperationalError) as exc:
        if not is_storage_error(exc):
            raise
        raise StorageError(describe(exc, what, where, needed), no_space=_no_space(exc)) from exc
