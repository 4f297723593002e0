"""Harvest speed; prints one JSON object.

- ``parse``: records/s parsing the largest real fixture manifests (pure parsing, captions included,
  no I/O; JSON decoding timed separately);
- ``fetch``: images/s harvested end to end (manifest → image URL choice → HTTP → bomb-safe check →
  content-hash cache → SQLite) from a local HTTP server on 127.0.0.1 that adds ``--latency`` seconds to
  every response, once with the default politeness settings (4 requests per host in flight, 0.1 s between
  request starts) and once without the delay;
- ``reharvest_s``: the same collection harvested again (conditional requests, no image work).

Run: ``nice python bench/harvest.py [--images 200] [--latency 0.05] [--repeat 3]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers.http_server import FixtureServer, image_server  # noqa: E402

from iconosearch.config import LimitsConfig, Settings  # noqa: E402
from iconosearch.harvest.harvester import harvest  # noqa: E402
from iconosearch.iiif.manifest import parse_manifest  # noqa: E402

FIXTURES = ROOT.parent / "shared" / "fixtures" / "iiif"


def bench_parse(repeat: int) -> dict[str, Any]:
    files = sorted(FIXTURES.glob("manifest-v*/*.json"), key=lambda p: p.stat().st_size, reverse=True)[:5]
    texts = [p.read_text(encoding="utf-8") for p in files]
    t0 = time.perf_counter()
    docs = [json.loads(t) for t in texts]
    decode_s = time.perf_counter() - t0
    best = float("inf")
    records = 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        records = sum(len(parse_manifest(d, collection="bench").records) for d in docs)
        best = min(best, time.perf_counter() - t0)
    return {
        "manifests": [p.name for p in files],
        "bytes": sum(len(t) for t in texts),
        "records": records,
        "records_per_s": round(records / best),
        "json_decode_s": round(decode_s, 4),
        "parse_s": round(best, 4),
    }


def synthetic_manifest(base: str, n: int) -> dict[str, Any]:
    items = []
    for i in range(n):
        canvas = f"{base}/m/canvas/{i}"
        service = {
            "@id": f"{base}/img/i{i}",
            "@type": "ImageService2",
            "profile": "http://iiif.io/api/image/2/level1.json",
            "width": 1200,
            "height": 900,
        }
        items.append(
            {
                "@id": canvas,
                "@type": "sc:Canvas",
                "label": f"Image {i}",
                "width": 1200,
                "height": 900,
                "images": [
                    {
                        "@type": "oa:Annotation",
                        "motivation": "sc:painting",
                        "on": canvas,
                        "resource": {"@id": f"{base}/img/i{i}/full/full/0/default.jpg", "service": service},
                    }
                ],
            }
        )
    return {
        "@context": "http://iiif.io/api/presentation/2/context.json",
        "@id": f"{base}/m/manifest.json",
        "@type": "sc:Manifest",
        "label": "Benchmark",
        "sequences": [{"@type": "sc:Sequence", "canvases": items}],
    }


def bench_fetch(n: int, latency: float, delay: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, FixtureServer() as srv:
        image_server(srv)
        srv.add_json("/m/manifest.json", synthetic_manifest(srv.base_url, n))
        srv.delay = latency
        settings = Settings(data_dir=Path(tmp), limits=LimitsConfig(harvest_delay_s=delay))
        t0 = time.perf_counter()
        summary = asyncio.run(harvest(settings, srv.url("/m/manifest.json")))
        first = time.perf_counter() - t0
        assert summary.images_fetched == n, summary.failures
        t0 = time.perf_counter()
        again = asyncio.run(harvest(settings, srv.url("/m/manifest.json")))
        second = time.perf_counter() - t0
        assert again.images_fetched == 0
        return {
            "images": n,
            "latency_s": latency,
            "politeness_delay_s": delay,
            "concurrency_per_host": settings.limits.harvest_concurrency,
            "seconds": round(first, 3),
            "images_per_s": round(n / first, 1),
            "reharvest_s": round(second, 3),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run in under 60 s with the same JSON keys (smaller sizes)",
    )
    args = parser.parse_args()
    if args.quick:
        args.images, args.repeat = 20, 1
    result = {
        "machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine()},
        "parse": bench_parse(args.repeat),
        "fetch_polite": bench_fetch(args.images, args.latency, 0.1),
        "fetch_no_delay": bench_fetch(args.images, args.latency, 0.0),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
