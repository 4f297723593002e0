"""Disk full during harvest and index, on a real (tiny) tmpfs: one clear line, non-zero exit, nothing
half-written. A mounted tmpfs gives the real ``ENOSPC`` path (``RLIMIT_FSIZE`` would give ``EFBIG``
and SQLite's "disk I/O error" instead), so these tests need root and mount rights, and skip, saying
so, without them."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from iconosearch.config import CollectionConfig, Settings
from iconosearch.index.builder import build_index
from iconosearch.index.consistency import check_consistency
from iconosearch.index.store import IndexStore
from iconosearch.storage import StorageError
from tests.helpers.index_data import HashEmbedder
from tests.test_index_builder import _harvest, _records

DISK_BYTES = 4 * 1024 * 1024


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(disk: Path, leave: int = 0) -> None:
    """Fill the file system up to ``leave`` free bytes with one ballast file."""
    ballast = disk / "ballast"
    with ballast.open("ab", buffering=0) as fh:  # unbuffered: closing it has nothing left to flush
        chunk = b"\0" * 65536
        try:
            while True:
                fh.write(chunk)
                fh.flush()
        except OSError:
            pass
    if leave:
        os.truncate(ballast, max(0, ballast.stat().st_size - leave))


def _settings(data_dir: Path, source: Path) -> Settings:
    return Settings(
        data_dir=data_dir,
        model="test-hash",
        collections={"maps": CollectionConfig(kind="local", path=source)},
    )


def test_an_index_build_on_a_full_disk_says_what_where_and_how_much_and_keeps_the_served_version(
    small_disk: Path,
) -> None:
    data_dir = small_disk / "data"
    settings = _settings(data_dir, small_disk / "src")
    _harvest(data_dir, "maps", _records(0, 30))
    first = build_index(settings, "default", ["maps"], HashEmbedder())
    _harvest(data_dir, "maps", _records(30, 20))
    _fill(small_disk, leave=96_000)  # room to open the state, not for a version
    with pytest.raises(StorageError) as info:
        build_index(settings, "default", ["maps"], HashEmbedder())
    message = str(info.value)
    assert info.value.no_space
    assert "\n" not in message
    assert "no space left on the device" in message
    assert "index 'default'" in message and str(data_dir) in message
    assert "free there" in message and "it needs about" in message
    store = IndexStore(data_dir / "indexes", "default")
    assert store.current_name() == first.version  # still served, untouched
    assert check_consistency(store.current()).ok  # type: ignore[arg-type]
    assert not [p for p in store.root.iterdir() if p.name.startswith(".staging")]


def _collection(folder: Path, n: int) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        pixels = rng.integers(0, 255, (96, 96, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"plate-{i:03d}.png")


def test_the_cli_ends_a_harvest_on_a_full_disk_with_one_line_and_a_non_zero_exit(
    small_disk: Path, tmp_path: Path
) -> None:
    source = tmp_path / "plates"
    _collection(source, 40)  # ≈ 28 KB each: the images do not fit in what is left
    config = tmp_path / "iconosearch.toml"
    config.write_text(
        f'data_dir = "{small_disk / "data"}"\n[collections.plates]\nkind = "local"\npath = "{source}"\n',
        encoding="utf-8",
    )
    _fill(small_disk, leave=300_000)
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from iconosearch.cli import main; main()",
            "-c",
            str(config),
            "harvest",
            "plates",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr
    assert "harvesting 'plates' failed: no space left on the device" in errors[0]
    assert "free there" in errors[0]
    assert not list((small_disk / "data").rglob("*.tmp"))  # no half-written image left behind
