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


def shared_missing() -> None:
    """Skip a test that needs ../shared when it is absent, with the reason; in CI (``CI=true``) fail it.

    CI is where a missing checkout of ../shared must not pass unnoticed: the fixture tests would
    silently shrink to nothing and the kill -9 resume test would disappear.
    """
    reason = f"../shared is absent ({IIIF_FIXTURES} not found): real IIIF fixtures unavailable"
    if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
        pytest.fail(f"{reason}; with CI=true that fails (check out ../shared or set ICONOSEARCH_SHARED)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def iiif_fixtures() -> Path:
    """The real IIIF documents in ../shared/fixtures/iiif (read-only; never edit or copy them)."""
    if not IIIF_FIXTURES.is_dir():
        shared_missing()
    return IIIF_FIXTURES
