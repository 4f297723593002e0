"""SHA-256 of the model files this package checks (shipped heads, towers from PyPI packages)."""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path


@cache
def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file; cached per path, since the files checked are installed, not edited."""
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()
