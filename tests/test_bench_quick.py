"""Every speed benchmark in ``bench/`` offers ``--quick``: a smoke run in under 60 s that prints the same
JSON keys, so checks can run it. Running them all is too slow for the suite (they load models and
start servers), so the suite checks that each script accepts the option, and runs the cheapest one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
SCRIPTS = sorted(p for p in BENCH.glob("*.py") if not p.name.startswith("_"))


def test_there_are_bench_scripts() -> None:
    assert len(SCRIPTS) >= 8


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_every_bench_script_offers_quick(script: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "--quick" in done.stdout


def test_quick_verify_prints_the_full_runs_keys() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH / "verify.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    report = json.loads(done.stdout)
    assert set(report) == {
        "bench",
        "algorithm",
        "vectors",
        "dim",
        "bytes",
        "seconds",
        "gb_per_s",
        "machine",
        "page_cache",
    }
    assert report["vectors"] == 50_000
