"""Load-time cost of verifying an index version at 1M vectors (xxh3-128 of every file, full read).

A version of 1M × 512-d vectors holds ``vectors.npy`` (float32, 2 GiB), an IVF-SQ8 ``vectors.faiss``
(~0.5 GiB), ``ids.npy`` (8 MB) and ``metadata.sqlite`` (records; ~0.5 GiB assumed). The bench writes
files of exactly those sizes (random bytes, so nothing compresses or dedupes) into a temporary
directory and times :func:`iconosearch.index.verify.folder_checksums` over them: once right after
writing (the page cache holds them, as after a fresh build) and once more. Cold-cache cost is bounded
by disk read speed instead. Prints JSON.

    python bench/verify.py [--vectors 1000000] [--dim 512]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from iconosearch.index.verify import ALGORITHM, folder_checksums  # noqa: E402

CHUNK = 64 * 1024 * 1024


def _write(path: Path, size: int) -> None:
    block = os.urandom(CHUNK)
    with path.open("wb") as fh:
        left = size
        while left > 0:
            fh.write(block[: min(left, CHUNK)])
            left -= CHUNK


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--vectors", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run in under 60 s with the same JSON keys (smaller sizes)",
    )
    args = parser.parse_args()
    if args.quick:
        args.vectors = 50_000
    n, d = args.vectors, args.dim
    sizes = {
        "vectors.npy": n * d * 4 + 128,
        "vectors.faiss": n * d + n * 8 + 4 * 1024 * 1024,
        "ids.npy": n * 8 + 128,
        "metadata.sqlite": n * 512,
    }
    folder = Path(tempfile.mkdtemp(prefix="iconosearch-verify-"))
    try:
        for name, size in sizes.items():
            _write(folder / name, size)
        runs = []
        for _ in range(2):
            start = time.perf_counter()
            folder_checksums(folder)
            runs.append(time.perf_counter() - start)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    total = sum(sizes.values())
    best = min(runs)
    print(
        json.dumps(
            {
                "bench": "index.verify",
                "algorithm": ALGORITHM,
                "vectors": n,
                "dim": d,
                "bytes": total,
                "seconds": [round(r, 2) for r in runs],
                "gb_per_s": round(total / best / 1e9, 2),
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                "page_cache": "hot (files just written)",
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
