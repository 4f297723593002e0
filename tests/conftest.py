"""Fixtures every test area shares. Area-specific helpers live in tests/helpers/."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ICONOSEARCH_SHARED", ROOT.parent / "shared"))
IIIF_FIXTURES = SHARED / "fixtures" / "iiif"

# Tests must never reach for a model hub; the embedded default model loads offline.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def iiif_fixtures() -> Path:
    """The real IIIF documents in ../shared/fixtures/iiif (read-only; never edit or copy them)."""
    if not IIIF_FIXTURES.is_dir():
        pytest.skip(f"../shared is absent ({IIIF_FIXTURES} not found): real IIIF fixtures unavailable")
    return IIIF_FIXTURES
