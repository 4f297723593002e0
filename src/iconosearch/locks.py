"""Exclusive locks between processes: one harvest per collection, one builder per index.

An advisory ``flock`` on a file in the data directory: the OS drops it when the holder dies, even by
``kill -9``, so a crashed run never leaves a stale lock behind. The holder writes its pid and start time
into the file, so that whoever finds the lock taken can say by whom and since when.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO


class LockHeldError(RuntimeError):
    """The lock is held by another process (or another builder in this one)."""

    def __init__(self, message: str, holder: Holder | None) -> None:
        super().__init__(message)
        self.holder = holder


@dataclass(frozen=True, slots=True)
class Holder:
    pid: int
    since: str
    """ISO 8601 time (UTC) the holder took the lock."""

    def describe(self) -> str:
        return f"pid {self.pid} since {self.since}"


def read_holder(path: Path) -> Holder | None:
    """Who holds (or last held) the lock at ``path``, as it wrote itself down."""
    try:
        data = json.loads(path.read_text(encoding="utf-8") or "null")
        return Holder(int(data["pid"]), str(data["since"]))
    except (OSError, ValueError, TypeError, KeyError):
        return None


def is_held(path: Path) -> Holder | None:
    """The holder when the lock at ``path`` is taken right now, else None (without taking it)."""
    if not path.is_file():
        return None
    try:
        with _locked(path):
            return None
    except LockHeldError as exc:
        return exc.holder or Holder(0, "an unknown time")


@contextlib.contextmanager
def exclusive(path: Path, busy: str) -> Iterator[Holder]:
    """Hold the lock at ``path`` for the block; raises :class:`LockHeldError` at once when it is taken.

    ``busy`` is the message's start, e.g. ``"index 'default' is being built"``; the holder is appended.
    """
    try:
        with _locked(path) as fh:
            me = Holder(os.getpid(), datetime.now(UTC).isoformat(timespec="seconds"))
            fh.seek(0)
            fh.truncate()
            fh.write(json.dumps({"pid": me.pid, "since": me.since}))
            fh.flush()
            yield me
    except LockHeldError as exc:
        who = exc.holder.describe() if exc.holder else "another process"
        raise LockHeldError(f"{busy} by {who} (lock {path})", exc.holder) from None


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[TextIO]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+", encoding="utf-8") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockHeldError(str(path), read_holder(path)) from None
        try:
            yield fh
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
