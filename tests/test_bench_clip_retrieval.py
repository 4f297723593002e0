"""``bench/clip_retrieval.py`` is optional: where clip-retrieval cannot run it says why and exits 0.

The comparison itself needs clip-retrieval in its own venv (it pins numpy < 2) and minutes of CPU, so
only the skip is checked here; the measured run is in docs/performance.md."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "clip_retrieval.py"


@pytest.mark.parametrize(
    ("given", "reason"),
    [
        ([], "no --clip-retrieval-python given"),
        (["--clip-retrieval-python", "/nonexistent/python"], "cannot run /nonexistent/python"),
        (["--clip-retrieval-python", sys.executable], "cannot import clip_retrieval.clip_back"),
    ],
    ids=["not-given", "missing-interpreter", "without-clip-retrieval"],
)
def test_skips_with_the_reason_when_clip_retrieval_is_unavailable(given: list[str], reason: str) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", *given],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert list(report) == ["skipped"]
    assert reason in report["skipped"]
