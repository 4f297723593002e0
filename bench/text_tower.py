"""One-query latency of the registered text towers (e.g. USE-m3); prints one JSON object.

For each tower: load time, ``query_latency_ms`` (p50/p99 of one uncached multilingual query at a time, one
torch thread: the serving setting) and the same with torch's default threads, plus batch throughput.
Target for USE-m3 (issue 17): ≤ 25 ms p50 for one query on 2 cores. ``bench/embed.py`` includes this report.
Run: ``nice python bench/text_tower.py [--kind use-m3] [--queries 300]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Sequence
from typing import Any

# Human-written queries in the tower's languages; a counter makes every one a cache-free, distinct text.
QUERIES = (
    "a sailing ship in a storm",
    "zeilschip in een storm",
    "der heilige Georg tötet den Drachen",
    "la Vierge à l'Enfant",
    "una natura morta con mele e pere",
    "uma pintura de pêssegos",
    "un cheval dans un paysage d'hiver",
    "mapa del mundo antiguo",
    "Kolosseum in Rom",
    "martwa natura z winogronami",
)


def _latency(tower: Any, queries: int) -> dict[str, float]:
    texts = [f"{QUERIES[i % len(QUERIES)]} {i}" for i in range(queries)]
    for text in texts[:10]:  # warm-up: first calls allocate
        tower.encode([text + " warm"])
    latencies = []
    cpu = time.process_time()
    for text in texts:
        t0 = time.perf_counter()
        tower.encode([text])
        latencies.append((time.perf_counter() - t0) * 1000)
    # CPU time per query is what it costs on dedicated cores; wall time on a shared machine adds the waits.
    return {
        "p50": round(statistics.median(latencies), 2),
        "p99": round(statistics.quantiles(latencies, n=100)[98], 2),
        "cpu_ms_mean": round((time.process_time() - cpu) * 1000 / len(texts), 2),
    }


def tower_report(kind: str, queries: int) -> dict[str, Any]:
    import torch

    from iconosearch.models.towers import load_text_tower

    start = time.perf_counter()
    tower = load_text_tower(kind)
    report: dict[str, Any] = {
        "kind": kind,
        "dim": tower.dim,
        "fingerprint": tower.fingerprint[:16],
        "load_s": round(time.perf_counter() - start, 2),
    }
    default_threads = torch.get_num_threads()
    for label, threads in (("query_latency_ms", 1), ("query_latency_ms_default_threads", default_threads)):
        torch.set_num_threads(threads)
        report[label] = {"threads": threads, **_latency(tower, queries)}
    torch.set_num_threads(default_threads)
    batch = [f"{QUERIES[i % len(QUERIES)]} ({i})" for i in range(512)]
    start = time.perf_counter()
    tower.encode(batch)
    report["texts_per_s"] = round(len(batch) / (time.perf_counter() - start), 1)
    return report


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    from iconosearch.models.towers import text_tower_kinds

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", action="append", help="tower kind (repeatable; default: all registered)")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run in under 60 s with the same JSON keys (smaller sizes)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.queries = 20
    return {
        "cpu_cores": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "towers": [tower_report(kind, args.queries) for kind in args.kind or text_tower_kinds()],
    }


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
