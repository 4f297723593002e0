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
import hashlib
import itertools
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import _api_index  # noqa: E402  (bench/ is on the path when this runs as a script)
import _load  # noqa: E402
from iconosearch.index import faiss_index, ivf_build  # noqa: E402
from iconosearch.index.faiss_index import FaissSpec  # noqa: E402

# Query texts in five languages: template × subject × second subject × colour, each asked once, so the
# query-embedding cache never answers (thousands of distinct texts, no numbers appended).
LANGUAGES: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "en": (
        ("a {c} {a} with a {b}", "{a} and {b} in {c}", "old print of a {c} {a} near a {b}"),
        (
            "ship",
            "harbour",
            "portrait",
            "church",
            "flower",
            "horse",
            "river",
            "castle",
            "map",
            "dog",
            "bridge",
            "garden",
        ),
        ("blue", "red", "green", "dark", "golden", "white"),
    ),
    "de": (
        ("ein {c}es {a} mit einem {b}", "{a} und {b} in {c}", "alter Stich: {a} am {b}, {c}"),
        (
            "Schiff",
            "Hafen",
            "Bildnis",
            "Kirche",
            "Blume",
            "Pferd",
            "Fluss",
            "Schloss",
            "Karte",
            "Hund",
            "Brücke",
            "Garten",
        ),
        ("blau", "rot", "grün", "dunkel", "golden", "weiß"),
    ),
    "fr": (
        ("un {a} {c} avec un {b}", "{a} et {b} en {c}", "gravure ancienne : {a} près d'un {b}, {c}"),
        (
            "navire",
            "port",
            "portrait",
            "clocher",
            "bouquet",
            "cheval",
            "fleuve",
            "château",
            "plan",
            "chien",
            "pont",
            "jardin",
        ),
        ("bleu", "rouge", "vert", "sombre", "doré", "blanc"),
    ),
    "it": (
        ("un {a} {c} con un {b}", "{a} e {b} in {c}", "stampa antica: {a} vicino a un {b}, {c}"),
        (
            "vascello",
            "porto",
            "ritratto",
            "campanile",
            "fiore",
            "cavallo",
            "fiume",
            "castello",
            "mappa",
            "cane",
            "ponte",
            "giardino",
        ),
        ("azzurro", "rosso", "verde", "scuro", "dorato", "bianco"),
    ),
    "nl": (
        ("een {c} {a} met een {b}", "{a} en {b} in het {c}", "oude prent van een {a} bij een {b}, {c}"),
        (
            "schip",
            "haven",
            "portret",
            "kerk",
            "bloem",
            "paard",
            "rivier",
            "kasteel",
            "kaart",
            "hond",
            "brug",
            "tuin",
        ),
        ("blauw", "rood", "groen", "donker", "goud", "wit"),
    ),
}


def _queries() -> list[str]:
    """Every distinct query text, languages interleaved (a fixed order, so runs are comparable)."""
    per_language = []
    for templates, nouns, colours in LANGUAGES.values():
        per_language.append(
            [
                t.format(a=a, b=b, c=c)
                for c in colours
                for t in templates
                for a in nouns
                for b in nouns
                if a != b
            ]
        )
    return [q for group in zip(*per_language, strict=True) for q in group]


QUERIES = _queries()


_asked = itertools.count()


def _next_query() -> str:
    """The next text never asked before in this run (they repeat only after all ``QUERIES``)."""
    return QUERIES[next(_asked) % len(QUERIES)]


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system, all threads) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spec_tag(spec: FaissSpec) -> str:
    """A short name for a FAISS index choice (its kind and a hash of its parameters), for cache folders."""
    key = json.dumps([spec.kind, spec.params], sort_keys=True, default=str)
    return f"{spec.kind}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


def _synthetic(n: int, cache: Path) -> tuple[Path, dict | None]:
    """The cached data dir of an ``n``-vector synthetic index for the default model (built on first use),
    and its build timings when it was built now."""
    from iconosearch.config import DEFAULT_MODEL
    from iconosearch.models.embedder import load_embedder

    model = load_embedder(DEFAULT_MODEL)
    # Keyed by the index the builder plans for n vectors today, too: a changed choice (kind, lists)
    # builds afresh instead of measuring yesterday's index.
    planned = ivf_build.plan(n, model.dim, memory_budget=faiss_index.DEFAULT_MEMORY_BUDGET)
    data_dir = cache / f"synthetic-{n}-{model.fingerprint[:12]}-{spec_tag(planned)}"
    if _api_index.has_index(data_dir):
        return data_dir, None
    shutil.rmtree(data_dir, ignore_errors=True)  # an interrupted build
    timings = _api_index.build(data_dir, n, spec=model.spec, fingerprint=model.fingerprint, dim=model.dim)
    return data_dir, timings


def _prepare(data_dir: Path | None, cache: Path) -> tuple[Path, int, str]:
    """A data dir with an index, the port to serve it on, and where it came from. The demo test index
    is built once per model into ``cache`` (embedding its images is most of a ``--quick`` run)."""
    if data_dir is not None and _api_index.has_index(data_dir):
        return data_dir, _free_port(), str(data_dir)
    from tests.helpers.demo_index import MODEL, build_demo_index

    from iconosearch.models.embedder import load_embedder

    port = _free_port()
    embedder = load_embedder(MODEL)
    demo = cache / f"demo-{embedder.fingerprint[:12]}"
    if not _api_index.has_index(demo):
        shutil.rmtree(demo, ignore_errors=True)  # an interrupted build
        # Its IIIF URLs name the port of the first run; the bench never follows them.
        build_demo_index(demo, f"http://127.0.0.1:{port}", embedder=embedder)
    return demo, port, f"demo collection (test index, {demo})"


def _percentiles_ms(latencies: list[float]) -> Callable[[float], float]:
    """``pct(p)``: the p-quantile (0–1) of ``latencies`` (seconds) in ms; nan when there are none."""
    ordered = sorted(latencies)

    def pct(p: float) -> float:
        if not ordered:
            return float("nan")
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000, 2)

    return pct


async def _level(base: str, concurrency: int, seconds: float, server_pid: int) -> dict:
    """``concurrency`` clients asking one new text after another for ``seconds``; also the CPU time the
    server and this load generator spent per request (on a 2-core box the generator's share counts)."""

    def search(_: int) -> _load.Request:
        return _load.Request("GET", "/api/search?" + urlencode({"q": _next_query(), "k": 24}))

    async with httpx.AsyncClient(base_url=base, timeout=60.0) as client:
        before = await _server_counters(client)
        server_cpu = _cpu_s(server_pid)
        run = await _load.closed_loop(base, concurrency, seconds, search)
        server_cpu = _cpu_s(server_pid) - server_cpu
        counted = {k: v - before[k] for k, v in (await _server_counters(client)).items()}
    answered = {le: counted[f"within_{le}"] for le in ("50", "100", "250", "all")}
    latencies = run.latencies()
    pct = _percentiles_ms(latencies)
    done = max(1, len(run.answers))
    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "errors": run.failures(),
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 2) if latencies else None,
        "throughput_rps": round(len(latencies) / run.elapsed_s, 2),
        "seconds": round(run.elapsed_s, 2),
        "server_cpu_ms_per_request": round(server_cpu * 1000 / done, 2),
        "client_cpu_ms_per_request": round(run.client_cpu_s * 1000 / done, 2),
        "client_cpu_share": round(run.client_cpu_s / max(1e-9, server_cpu + run.client_cpu_s), 3),
        # The server's own view (its request histogram, from the request reaching the app to the
        # answer leaving it): what share it answered within 50 / 100 / 250 ms.
        "server_answered_within_ms": {
            le: round(n / answered["all"], 4) if answered["all"] else None
            for le, n in answered.items()
            if le != "all"
        },
        "text_batches": int(counted["batches"]),
        "mean_text_batch": round(counted["texts"] / counted["batches"], 2) if counted["batches"] else None,
    }


async def _server_counters(client: httpx.AsyncClient) -> dict[str, float]:
    """From one read of the server's ``/metrics``: its text batches and the distinct texts they encoded,
    and its ``GET /api/search`` answers so far within 50, 100 and 250 ms (its request histogram) and
    in all."""
    text = (await client.get("/metrics")).text
    batches = dict(re.findall(r"^iconosearch_text_batch(es|_texts) ([0-9.e+]+)$", text, re.MULTILINE))
    answered = dict(
        re.findall(
            r'^iconosearch_http_request_duration_seconds_bucket\{le="([^"]+)",method="GET",'
            r'route="/api/search"\} ([0-9.e+]+)$',
            text,
            re.MULTILINE,
        )
    )
    buckets = {"within_50": "0.05", "within_100": "0.1", "within_250": "0.25", "within_all": "+Inf"}
    return {
        "batches": float(batches.get("es", 0)),
        "texts": float(batches.get("_texts", 0)),
        **{key: float(answered.get(le, 0)) for key, le in buckets.items()},
    }


def _encode_ceiling(batches: tuple[int, ...] = (1, 2, 4, 8, 16), rounds: int = 5) -> dict:
    """The issue's ceiling: available cores ÷ the per-query encode time at the best batch size, with the
    default model's text tower on the runtime the server uses, one thread per encode (run after the
    server has stopped, so nothing else of ours competes)."""
    from iconosearch.config import DEFAULT_MODEL
    from iconosearch.models.batching import available_cores
    from iconosearch.models.embedder import load_embedder

    model = load_embedder(DEFAULT_MODEL, device="cpu", text_threads=1)
    texts = iter(QUERIES[len(QUERIES) // 2 :])  # not asked over HTTP (no embedding cache here anyway)
    model.embed_texts([next(texts) for _ in range(8)])  # warm-up
    per_query: dict[int, float] = {}
    for b in batches:
        times = []
        for _ in range(rounds):
            chunk = [next(texts) for _ in range(b)]
            start = time.perf_counter()
            model.embed_texts(chunk)
            times.append((time.perf_counter() - start) * 1000 / b)
        per_query[b] = round(statistics.median(times), 3)
    best = min(per_query, key=lambda b: per_query[b])
    cores = available_cores()
    return {
        "encode_ms_per_query_by_batch": per_query,
        "best_batch": best,
        "cores": cores,
        "ceiling_rps": round(cores * 1000 / per_query[best], 1),
    }


async def _cached_text(base: str, seconds: float) -> dict:
    """One client repeating one text, so its embedding is cached: what HTTP and the presenter add to
    the engine (``overhead`` = HTTP p50 − the engine's own embed + search p50), and the page sizes.

    The engine's ``timings`` leave out two things it does per first page: hybrid mode's keyword guard
    (an FTS5 count of the records holding the words) and the facet counts. So ``server_p50_ms`` (the
    handler's ``total_ms``: engine, thread hop, presenting) splits the overhead into the server's share
    and ``http_layer_p50_ms`` (uvicorn, routing, parameters, JSON, the client), and ``vector_mode``
    repeats the measurement with ``mode=vector`` (no keyword guard), interleaved request by request."""
    runs: dict[str, dict[str, list[float]]] = {
        mode: {"http": [], "engine": [], "server": []} for mode in ("default", "vector")
    }
    params = {"q": "a sailing ship in a harbour", "k": 24}
    async with httpx.AsyncClient(base_url=base, timeout=60.0) as client:
        sizes = {}
        for fields in ("compact", "full"):
            r = await client.get("/api/search", params={**params, "fields": fields})
            # A server without fields= (0.1) answers 400: its only payload is the full one.
            sizes[fields] = len(r.content) if r.status_code == 200 else None
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            for mode, extra in (("default", {}), ("vector", {"mode": "vector"})):
                start = time.perf_counter()
                r = await client.get("/api/search", params={**params, **extra})
                runs[mode]["http"].append((time.perf_counter() - start) * 1000)
                t = r.json()["timings"]
                runs[mode]["engine"].append(t["embed_ms"] + t["search_ms"])
                runs[mode]["server"].append(t["total_ms"])
    p50 = {mode: {k: statistics.median(v) for k, v in run.items()} for mode, run in runs.items()}
    main, vector = p50["default"], p50["vector"]
    return {
        "requests": len(runs["default"]["http"]),
        "results": params["k"],
        "http_p50_ms": round(main["http"], 2),
        "engine_p50_ms": round(main["engine"], 2),
        "overhead_p50_ms": round(main["http"] - main["engine"], 2),
        "server_p50_ms": round(main["server"], 2),
        "http_layer_p50_ms": round(main["http"] - main["server"], 2),
        "vector_mode": {
            "http_p50_ms": round(vector["http"], 2),
            "engine_p50_ms": round(vector["engine"], 2),
            "overhead_p50_ms": round(vector["http"] - vector["engine"], 2),
            "server_p50_ms": round(vector["server"], 2),
        },
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


async def _hostile_level(base: str, concurrency: int, seconds: float, png: bytes) -> dict:
    """Like :func:`_level`, but every 5th request uploads the heavy PNG."""
    upload = httpx.Request("POST", f"{base}/api/search/image", files={"file": ("big.png", png, "image/png")})
    body, content_type = upload.read(), upload.headers["content-type"]  # httpx writes the multipart body
    counter = itertools.count(1)

    def next_request(_: int) -> _load.Request:
        if next(counter) % 5 == 0:
            return _load.Request("POST", "/api/search/image", body, content_type, label="upload")
        return _load.Request("GET", "/api/search?" + urlencode({"q": _next_query(), "k": 24}))

    run = await _load.closed_loop(base, concurrency, seconds, next_request)
    pct = _percentiles_ms(run.latencies())
    return {
        "concurrency": concurrency,
        "ordinary_requests": len(run.latencies()),
        "ordinary_errors": run.failures(),
        "ordinary_p50_ms": pct(0.50),
        "ordinary_p99_ms": pct(0.99),
        "uploads_by_status": run.statuses("upload"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, default=ROOT / "data")
    parser.add_argument("--seconds", type=float, default=8.0, help="measuring time per concurrency level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument(
        "--synthetic",
        type=int,
        default=0,
        metavar="N",
        help="serve an N-vector synthetic index (built once into --cache-dir) instead of --data-dir",
    )
    parser.add_argument(
        "--cache-dir", type=Path, default=Path.home() / ".cache" / "iconosearch" / "bench-api"
    )
    parser.add_argument("--hostile", type=int, default=8, help="concurrency of the hostile-mix run")
    parser.add_argument("--no-hostile", dest="hostile", action="store_const", const=0)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run in under 60 s with the same JSON keys (smaller sizes)",
    )
    args = parser.parse_args()
    started = time.perf_counter()
    if args.quick:
        args.seconds, args.concurrency, args.hostile = 1.0, [1, 4], min(args.hostile, 2)
    seconds = min(max(args.seconds, 1.0), 60.0)  # bounded run

    build = None
    if args.synthetic:
        data_dir, build = _synthetic(args.synthetic, args.cache_dir)
        port, source = _free_port(), f"synthetic ({data_dir})"
    else:
        data_dir, port, source = _prepare(args.data_dir, args.cache_dir)
    phases = {"index_s": time.perf_counter() - started}
    load_before = os.getloadavg()
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
        deadline = time.monotonic() + 1200  # readiness: checksums of every file (6 GB at 1M) + warm-up
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
        # Warm up: load the model and touch the index (and, on a large one, its metadata pages).
        with httpx.Client(base_url=base, timeout=120) as warm:
            for _ in range(5 if args.quick else 50):
                warm.get("/api/search", params={"q": _next_query(), "k": 24}).raise_for_status()
        phases["server_ready_and_warm_s"] = time.perf_counter() - started - sum(phases.values())
        cached = asyncio.run(_cached_text(base, seconds))
        levels = [asyncio.run(_level(base, c, seconds, server.pid)) for c in args.concurrency]
        hostile = None
        if args.hostile:
            calm = asyncio.run(_level(base, args.hostile, seconds, server.pid))
            rss_before = _peak_rss_mb(server.pid)
            png = _hostile_png()
            phases["hostile_png_s"] = time.perf_counter() - started - sum(phases.values())
            mixed = asyncio.run(_hostile_level(base, args.hostile, seconds, png))
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
    load_during = os.getloadavg()
    phases["measuring_s"] = time.perf_counter() - started - sum(phases.values())
    ceiling = _encode_ceiling(rounds=2 if args.quick else 7)
    phases["encode_ceiling_s"] = time.perf_counter() - started - sum(phases.values())
    report = {
        "bench": "api.search",
        "endpoint": "GET /api/search?q=<unique text>&k=24",
        "index": source,
        "index_count": info.get("count"),
        "index_build_s": build,
        "model": info.get("model"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "server": "iconosearch serve (uvicorn, 1 process)",
        "load_average": {"before": load_before, "after_http": load_during, "after": os.getloadavg()},
        "cached_text": cached,
        "levels": levels,
        "ceiling": ceiling,
        "targets": _targets(cached, levels, ceiling),
        "hostile_mix": hostile,
        "wall_s": round(time.perf_counter() - started, 1),
        "phases_s": {k: round(v, 1) for k, v in phases.items()},
    }
    print(json.dumps(report, indent=2))


def _targets(cached: dict, levels: list[dict], ceiling: dict) -> dict:
    """Issue 16's targets against this run (the latency ones are stated for a 1M-vector index)."""
    by_clients = {level["concurrency"]: level for level in levels}
    out: dict[str, object] = {
        "overhead_p50_le_4ms": cached["overhead_p50_ms"] <= 4.0,
        "default_page_le_25kb": (cached["response_bytes_default"] or 0) <= 25_000,
    }
    if 1 in by_clients:
        one = by_clients[1]
        out["single_p50_le_15ms"] = one["p50_ms"] <= 15.0
        out["single_p99_le_40ms"] = one["p99_ms"] <= 40.0
    if 16 in by_clients:
        many = by_clients[16]
        out["clients16_ge_100rps"] = many["throughput_rps"] >= 100.0
        out["clients16_p99_le_250ms"] = many["p99_ms"] <= 250.0
        out["clients16_of_ceiling"] = round(many["throughput_rps"] / ceiling["ceiling_rps"], 3)
    return out


if __name__ == "__main__":
    main()
