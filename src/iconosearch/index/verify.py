"""Verified index versions: a checksum of every file, written at build time, checked at load.

0.1 served a ``vectors.faiss`` with 200 KB overwritten in place as silent garbage (scores like
2.8e37), and ``index --check`` passed it. Now :meth:`IndexStore.commit` records an xxh3-128 digest
of every file of the version in its manifest (``checksums``), and the engine verifies them *fully*
before it serves a version. xxh3 is used rather than SHA-256 because this is about damage, not
about an adversary who can also rewrite the manifest, and it runs at memory speed: ``bench/verify.py``
measures the load-time cost at 1M vectors (README, "Measured").

Queries add a cheap sanity check on the scores FAISS returns (:func:`scores_are_sane`): normalised
vectors give cosines in [-1, 1], so anything else means the version is damaged.

Versions built before checksums existed verify as ``unchecked``, not as damaged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal

import numpy as np
import xxhash

if TYPE_CHECKING:
    from iconosearch.index.store import IndexStore, IndexVersion

ALGORITHM: Final = "xxh3_128"
_CHUNK: Final = 8 * 1024 * 1024
SCORE_TOLERANCE: Final = 0.01
"""Slack around [-1, 1]: 8-bit quantised indexes (ivf-sq8) are off by up to ~1e-3."""

Status = Literal["ok", "damaged", "missing", "unchecked"]


class IndexDamagedError(RuntimeError):
    """An index version whose files do not match their checksums or cannot be opened."""


@dataclass(frozen=True, slots=True)
class FileCheck:
    name: str
    status: Status
    detail: str = ""


def digest_file(path: Path) -> str:
    """``"xxh3_128:<hex>"`` of the file's bytes, read in chunks (memory stays flat)."""
    h = xxhash.xxh3_128()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return f"{ALGORITHM}:{h.hexdigest()}"


def folder_checksums(folder: Path, *, skip: Sequence[str] = ()) -> dict[str, str]:
    """Digests of the regular files directly in ``folder`` (the version's files), by name."""
    return {p.name: digest_file(p) for p in sorted(folder.iterdir()) if p.is_file() and p.name not in skip}


def check_files(version: IndexVersion) -> list[FileCheck]:
    """Each file the manifest lists, against its checksum (a full read of the version)."""
    expected = version.manifest.checksums
    if not expected:
        return [FileCheck("*", "unchecked", "built before checksums were recorded")]
    out: list[FileCheck] = []
    for name, want in sorted(expected.items()):
        path = version.path / name
        try:
            got = digest_file(path)
        except FileNotFoundError:
            out.append(FileCheck(name, "missing", "file is missing"))
            continue
        except OSError as exc:
            out.append(FileCheck(name, "damaged", f"cannot read: {exc.strerror or exc}"))
            continue
        if got != want:
            size = path.stat().st_size
            out.append(FileCheck(name, "damaged", f"checksum mismatch ({size} bytes on disk)"))
        else:
            out.append(FileCheck(name, "ok"))
    return out


def require_intact(version: IndexVersion) -> None:
    """Raise :class:`IndexDamagedError` naming the bad files, if any."""
    bad = [c for c in check_files(version) if c.status in ("damaged", "missing")]
    if bad:
        what = "; ".join(f"{c.name}: {c.detail}" for c in bad)
        raise IndexDamagedError(f"version {version.version} is damaged: {what}")


def scores_are_sane(scores: np.ndarray) -> bool:
    """Cosine scores of normalised vectors: finite and within [-1, 1] (with quantisation slack)."""
    if scores.size == 0:
        return True
    finite = bool(np.isfinite(scores).all())
    return finite and float(np.abs(scores).max()) <= 1.0 + SCORE_TOLERANCE


@dataclass(frozen=True, slots=True)
class VersionReport:
    """``index --check``: each file against its checksum, then ids and shapes (when files are intact)."""

    version: str
    files: tuple[FileCheck, ...]
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems and all(f.status in ("ok", "unchecked") for f in self.files)


def check_version(version: IndexVersion) -> VersionReport:
    """Verify ``version`` completely; every failure becomes a line in the report, never an exception."""
    from iconosearch.index.consistency import check_consistency

    files = tuple(check_files(version))
    problems: list[str] = []
    if all(f.status in ("ok", "unchecked") for f in files):
        try:
            consistency = check_consistency(version)
        except Exception as exc:  # a damaged file makes FAISS, numpy or SQLite raise anything
            problems.append(f"cannot open the version's files: {type(exc).__name__}: {exc}")
        else:
            problems.extend(consistency.problems)
            if consistency.faiss_only or consistency.metadata_only:
                problems.append(
                    f"{len(consistency.faiss_only)} ids only in FAISS, "
                    f"{len(consistency.metadata_only)} only in metadata"
                )
            if not consistency.vector_rows_ok:
                problems.append("vector rows do not match the ids")
    return VersionReport(version.version, files, tuple(dict.fromkeys(problems)))


def rollback_target(store: IndexStore, version: str | None) -> str:
    """The version ``index --rollback`` switches to: ``version`` if intact, else by default the newest
    intact version older than ``CURRENT``. Raises :class:`IndexDamagedError` when there is none."""
    from iconosearch.index.store import IndexStoreError

    current = store.current_name()
    if version is not None:
        candidates = [version]
    else:
        candidates = [v for v in reversed(store.versions()) if current is None or v < current]
    reasons: list[str] = []
    for name in candidates:
        try:
            target = store.open_version(name)
            require_intact(target)
        except (IndexStoreError, IndexDamagedError) as exc:
            reasons.append(str(exc))
            continue
        return name
    if not candidates:
        raise IndexDamagedError(f"index {store.name!r} has no version older than {current}")
    raise IndexDamagedError("no intact version to roll back to: " + "; ".join(reasons))
