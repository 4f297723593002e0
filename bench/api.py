"""Latency and throughput of ``GET /api/search`` under 1, 8 and 32 concurrent clients (loopback only).

The server is the real ``iconosearch serve`` in its own process, serving the demo index: an existing
data dir (``--data-dir``, default ``data/`` when it holds an index) or, failing that, the small test
index built from the demo collection with the default model. Every request asks a different text (so
the query-embedding cache never answers), 24 results per page. Prints JSON.

``cached_text`` repeats one text from one client (its embedding cached): the HTTP p50, the engine's
own p50, their difference (the HTTP and presentation overhead), and the page's size by default and
with ``fields=full``.

The "hostile mix" run (``--hostile``, on by default) repeats one concurrency level with 20 % of the
requests replaced by heavy uploads — the 7990×7990 16-bit greyscale PNG of issue 13 (124 KB on the
wire, 128 MB decoded) — and reports the ordinary searches' p50/p99 with and without the mix, the
uploads' answers (200, or 503 ``busy`` from admission control) and the server's peak RSS.

    python bench/api.py [--data-dir data] [--seconds 8] [--concurrency 1 8 32] [--hostile 8 | --no-hostile]
                        [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WORDS = [
    "map",
    "harbour",
    "portrait",
    "woman",
    "man",
    "ship",
    "sea",
    "church",
    "flower",
    "vase",
    "bird",
    "dog",
    "horse",
    "tree",
    "river",
    "city",
    "street",
    "night",
    "moon",
    "sun",
    "record",
    "music",
    "cat",
    "dinosaur",
    "flag",
    "house",
    "tower",
    "garden",
    "mountain",
    "book",
    "letter",
    "king",
    "queen",
]


def _query(i: int) -> str:
    n = len(WORDS)
    return f"a {WORDS[i % n]} with a {WORDS[(i * 7 + 3) % n]} {i}"


def _has_index(data_dir: Path) -> bool:
    return (data_dir / "indexes" / "default" / "CURRENT").is_file()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _prepare(data_dir: Path | None) -> tuple[Path, int, str]:
    """A data dir with an index, the port to serve it on, and where it came from."""
    if data_dir is not None and _has_index(data_dir):
        return data_dir, _free_port(), str(data_dir)
    from tests.helpers.demo_index import build_demo_index

    port = _free_port()
    tmp = Path(tempfile.mkdtemp(prefix="iconosearch-bench-"))
    build_demo_index(tmp, f"http://127.0.0.1:{port}")
    return tmp, port, "demo collection (test index)"


def _percentiles_ms(latencies: list[float]) -> Callable[[float], float]:
    """``pct(p)``: the p-quantile (0–1) of ``latencies`` (seconds) in ms; nan when there are none."""
    ordered = sorted(latencies)

    def pct(p: float) -> float:
        if not ordered:
            return float("nan")
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000, 2)

    return pct


async def _level(base: str, concurrency: int, seconds: float, offset: int) -> dict:
    latencies: list[float] = []
    errors = 0
    counter = offset
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60.0) as client:

        async def worker() -> None:
            nonlocal counter, errors
            while time.perf_counter() < deadline:
                counter += 1
                start = time.perf_counter()
                try:
                    r = await client.get("/api/search", params={"q": _query(counter), "k": 24})
                    ok = r.status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - start)
                else:
                    errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    pct = _percentiles_ms(latencies)

    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "errors": errors,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 2) if latencies else None,
        "throughput_rps": round(len(latencies) / elapsed, 2),
        "seconds": round(elapsed, 2),
    }


async def _cached_text(base: str, seconds: float) -> dict:
    """One client repeating one text, so its embedding is cached: what HTTP and the presenter add to
    the engine (``overhead`` = HTTP p50 − the engine's own embed + search p50), and the page sizes."""
    latencies: list[float] = []
    engine: list[float] = []
    params = {"q": "a sailing ship in a harbour", "k": 24}
    async with httpx.AsyncClient(base_url=base, timeout=60.0) as client:
        sizes = {}
        for fields in ("compact", "full"):
            r = await client.get("/api/search", params={**params, "fields": fields})
            # A server without fields= (0.1) answers 400: its only payload is the full one.
            sizes[fields] = len(r.content) if r.status_code == 200 else None
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            r = await client.get("/api/search", params=params)
            latencies.append((time.perf_counter() - start) * 1000)
            t = r.json()["timings"]
            engine.append(t["embed_ms"] + t["search_ms"])
    http_p50, engine_p50 = statistics.median(latencies), statistics.median(engine)
    return {
        "requests": len(latencies),
        "results": params["k"],
        "http_p50_ms": round(http_p50, 2),
        "engine_p50_ms": round(engine_p50, 2),
        "overhead_p50_ms": round(http_p50 - engine_p50, 2),
        "response_bytes_default": sizes["compact"],
        "response_bytes_full": sizes["full"],
    }


def _hostile_png() -> bytes:
    import io

    import numpy as np
    from PIL import Image

    arr = np.zeros((7990, 7990), dtype=np.uint16)
    arr[::7, :] = 40000
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG", compress_level=6)
    return buf.getvalue()


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


async def _hostile_level(base: str, concurrency: int, seconds: float, offset: int, png: bytes) -> dict:
    """Like :func:`_level`, but every 5th request uploads the heavy PNG."""
    latencies: list[float] = []
    uploads: dict[str, int] = {}
    errors = 0
    counter = offset
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60.0) as client:

        async def worker() -> None:
            nonlocal counter, errors
            while time.perf_counter() < deadline:
                counter += 1
                if counter % 5 == 0:
                    try:
                        r = await client.post(
                            "/api/search/image", files={"file": ("big.png", png, "image/png")}
                        )
                        key = str(r.status_code)
                    except httpx.HTTPError as exc:
                        key = type(exc).__name__
                    uploads[key] = uploads.get(key, 0) + 1
                    continue
                start = time.perf_counter()
                try:
                    r = await client.get("/api/search", params={"q": _query(counter), "k": 24})
                    ok = r.status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - start)
                else:
                    errors += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    pct = _percentiles_ms(latencies)

    return {
        "concurrency": concurrency,
        "ordinary_requests": len(latencies),
        "ordinary_errors": errors,
        "ordinary_p50_ms": pct(0.50),
        "ordinary_p99_ms": pct(0.99),
        "uploads_by_status": uploads,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, default=ROOT / "data")
    parser.add_argument("--seconds", type=float, default=8.0, help="measuring time per concurrency level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--hostile", type=int, default=8, help="concurrency of the hostile-mix run")
    parser.add_argument("--no-hostile", dest="hostile", action="store_const", const=0)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run in under 60 s with the same JSON keys (smaller sizes)",
    )
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.concurrency, args.hostile = 1.0, [1, 4], min(args.hostile, 2)
    seconds = min(max(args.seconds, 1.0), 60.0)  # bounded run

    data_dir, port, source = _prepare(args.data_dir)
    env = {**os.environ, "ICONOSEARCH_DATA_DIR": str(data_dir), "HF_HUB_OFFLINE": "1"}
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "iconosearch"),
            "--quiet",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 400  # readiness includes the model's warm-up query
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(
                    f"server did not become ready: {server.stderr.read() if server.stderr else ''}"
                )
            time.sleep(0.2)
        info = httpx.get(f"{base}/api/collections", timeout=10).json()
        # Warm up: load the model and touch the index before measuring.
        for i in range(5):
            httpx.get(f"{base}/api/search", params={"q": f"warm up {i}"}, timeout=120).raise_for_status()
        cached = asyncio.run(_cached_text(base, seconds))
        levels = []
        for n, c in enumerate(args.concurrency):
            levels.append(asyncio.run(_level(base, c, seconds, offset=n * 1_000_000)))
        hostile = None
        if args.hostile:
            calm = asyncio.run(_level(base, args.hostile, seconds, offset=50_000_000))
            rss_before = _peak_rss_mb(server.pid)
            mixed = asyncio.run(_hostile_level(base, args.hostile, seconds, 60_000_000, _hostile_png()))
            hostile = {
                "without_mix": {k: calm[k] for k in ("concurrency", "requests", "p50_ms", "p99_ms")},
                "with_mix": mixed,
                "peak_rss_mb_before_mix": rss_before,
                "peak_rss_mb": _peak_rss_mb(server.pid),
            }
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
    print(
        json.dumps(
            {
                "bench": "api.search",
                "endpoint": "GET /api/search?q=<unique text>&k=24",
                "index": source,
                "index_count": info.get("count"),
                "model": info.get("model"),
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                "server": "iconosearch serve (uvicorn, 1 process)",
                "load_average_1m": round(os.getloadavg()[0], 2),
                "cached_text": cached,
                "levels": levels,
                "hostile_mix": hostile,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
