"""The local Image API service: cold renders (regions, tiles, thumbnails) and cache hits, in-process.

One 3000×2000 photograph-like image becomes a local collection (its master is 2048×1365); requests go
through the real app (FastAPI TestClient, so no network): distinct regions and tiles rendered from the
master, then the same requests again from the disk cache. Also the peak RSS growth. Prints JSON.

    python bench/image_service.py [--requests 40]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def _ms(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))] * 1000, 1),
    }


def main() -> None:
    from fastapi.testclient import TestClient

    from iconosearch.api.app import create_app
    from iconosearch.config import Settings
    from iconosearch.iiif.local import build_local_iiif

    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run in under 60 s with the same JSON keys (smaller sizes)",
    )
    args = parser.parse_args()
    if args.quick:
        args.requests = 5
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as tmp:
        folder, data = Path(tmp) / "pics", Path(tmp) / "data"
        folder.mkdir()
        noise = np.random.default_rng(7).integers(0, 255, (2000, 3000, 3), dtype=np.uint8)
        Image.fromarray(noise).resize((3000, 2000)).save(folder / "photo.jpg", quality=90)
        base = "http://testserver/iiif/local/bench"
        build_local_iiif(folder, data / "local-iiif" / "bench", base_url=base, label="bench")
        slug = next((data / "local-iiif" / "bench" / "images").iterdir()).name
        with TestClient(create_app(Settings(data_dir=data), reload_interval_s=0)) as client:
            info = client.get(f"/iiif/local/bench/images/{slug}/info.json").json()
            w, h = info["width"], info["height"]
            paths = []
            for i in range(args.requests):
                if i % 2:
                    x, y = rng.randrange(0, w - 512, 64), rng.randrange(0, h - 512, 64)
                    paths.append(f"{x},{y},512,512/512,/0/default.jpg")  # a deep-zoom tile
                else:
                    rw, rh = rng.randrange(400, w // 2), rng.randrange(400, h // 2)
                    x, y = rng.randrange(0, w - rw), rng.randrange(0, h - rh)
                    paths.append(f"{x},{y},{rw},{rh}/!400,400/0/default.jpg")  # a region thumbnail
            rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            timings: dict[str, list[float]] = {"cold": [], "cached": []}
            for kind in ("cold", "cached"):
                for path in paths:
                    t = time.perf_counter()
                    r = client.get(f"/iiif/local/bench/images/{slug}/{path}")
                    timings[kind].append(time.perf_counter() - t)
                    assert r.status_code == 200, (path, r.text)
            rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "master": [w, h],
                "requests": args.requests,
                "cold_render": _ms(timings["cold"]),
                "cache_hit": _ms(timings["cached"]),
                "peak_rss_growth_mb": round((rss_after - rss_before) / 1024, 1),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
