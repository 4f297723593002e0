"""Query-text encoding cost of the default model: padded vs trimmed, torch vs ONNX Runtime, batch sizes.

Prints one JSON object (issue 16, items 1-3):

- ``single_ms``: one typical query (7-12 tokens) at a time, p50/p99, for ``torch_padded`` (every text
  padded to the context length, as 0.1 did), ``torch_trimmed`` (dynamic padding) and ``onnx`` (ONNX
  Runtime on the trimmed graph), each with ``--threads`` threads;
- ``batch_ms_per_query``: per-query cost of a batch of b distinct queries, b in ``--batches``, torch
  trimmed and ONNX;
- ``ceiling_rps``: the serving ceiling the issue defines, available cores ÷ the best per-query encode
  time over the batch sizes (the encoder is the bottleneck; FAISS and HTTP come on top);
- ``concurrent``: ``--clients`` threads each asking one distinct query after another for ``--seconds``,
  through the serving worker (:class:`~iconosearch.models.batching.TextBatcher`, ``batched``) or each
  encoding alone in its own thread as 0.1 did (``alone``): queries/s, p50/p99 and the mean batch size;
  ``of_ceiling`` is the batched rate over ``ceiling_rps``. Encoding only: no FAISS, no HTTP;
- ``ratios``: same-run ratios (padded/trimmed, torch/onnx), steadier than absolute times on busy cores;
- ``load_average`` before and after.

Runs and rounds interleave the variants, and each figure is the median over ``--rounds`` rounds, so load
from other processes affects them alike. ``--quick`` (a few rounds) finishes in well under a minute.

Run: ``nice python bench/encode.py [--quick] [--threads 1] [--rounds 7]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

QUERIES = (
    "a sailing ship in a storm",
    "portrait of a woman with a pearl earring",
    "a map of the world",
    "still life with apples and pears",
    "a dog sleeping by the fire",
    "Saint George killing the dragon",
    "a watercolour of peaches",
    "the moon over a harbour at night",
)


def _texts(n: int, offset: int) -> list[str]:
    return [f"{QUERIES[(offset + i) % len(QUERIES)]} {offset + i}" for i in range(n)]


def _time_ms(fn: Callable[[list[str]], object], texts: list[str]) -> float:
    start = time.perf_counter()
    fn(texts)
    return (time.perf_counter() - start) * 1000.0


def _unit(x: object) -> Any:
    import numpy as np
    import torch

    v = x.float().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 2)


def _concurrent(
    encode: Callable[[list[str]], object], *, batched: bool, args: argparse.Namespace, dim: int
) -> dict[str, Any]:
    """``args.clients`` threads asking distinct queries back to back for ``args.seconds``."""
    import threading

    import numpy as np

    from iconosearch.models.batching import TextBatcher

    batcher = TextBatcher(lambda t: np.asarray(encode(t)), dim, threads=args.threads) if batched else None
    latencies: list[float] = []
    lock = threading.Lock()
    deadline = time.perf_counter() + args.seconds

    def client(k: int) -> None:
        i = 0
        while time.perf_counter() < deadline:
            i += 1
            texts = [f"{QUERIES[(k + i) % len(QUERIES)]} client {k} query {i}"]
            start = time.perf_counter()
            (batcher.embed_texts if batcher is not None else encode)(texts)
            with lock:
                latencies.append((time.perf_counter() - start) * 1000.0)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(args.clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    out: dict[str, Any] = {
        "clients": args.clients,
        "queries": len(latencies),
        "rps": round(len(latencies) / elapsed, 1),
        "p50_ms": _pct(latencies, 0.5),
        "p99_ms": _pct(latencies, 0.99),
    }
    if batcher is not None:
        batcher.close()
        out["mean_batch"] = round(batcher.stats.texts / max(1, batcher.stats.batches), 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="iconosearch-lite")
    parser.add_argument("--threads", type=int, default=1, help="encoder threads (torch and ORT)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=20, help="single queries per variant per round")
    parser.add_argument("--batches", default="1,2,4,8,16")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=8.0, help="per concurrent variant")
    parser.add_argument("--quick", action="store_true", help="few rounds: under a minute")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.repeat, args.seconds = 1, 3, 2.0

    import numpy as np
    import torch

    from iconosearch.models.batching import available_cores
    from iconosearch.models.embedder import LiteEmbedder, load_embedder

    load_before = os.getloadavg()
    torch.set_num_threads(args.threads)
    torch_emb = load_embedder(args.model, device="cpu", text_runtime="torch")
    if not isinstance(torch_emb, LiteEmbedder):
        raise SystemExit(f"{args.model} is not an iconosearch-lite model")
    # The same loaded model with the text tower on ORT (a second load_embedder would load it again).
    onnx_emb = LiteEmbedder(
        torch_emb.spec,
        torch_emb.lite,
        torch_emb.fingerprint,
        "cpu",
        torch_emb.tokenizer,
        text_runtime="auto",
        text_threads=args.threads,
    )
    has_onnx = onnx_emb.text_onnx() is not None
    lite = torch_emb.lite

    def padded(texts: list[str]) -> object:
        # 0.1's path: every text through all context-length positions.
        if lite.text_tower is not None:
            return torch_emb.embed_texts(texts)  # a raw-string tower has no padding to cut
        text = lite.clip.text
        with torch.inference_mode():
            tokens = torch_emb.tokenizer(texts)
            mask = (tokens != text.config.pad_token_id).long()
            feats = text.pooler(text.transformer(input_ids=tokens, attention_mask=mask), mask)
            return lite.embed_text_features(feats)

    variants: dict[str, Callable[[list[str]], object]] = {
        "torch_padded": padded,
        "torch_trimmed": torch_emb.embed_texts,
    }
    if has_onnx:
        variants["onnx"] = onnx_emb.embed_texts
    probe = _texts(4, 0)
    reference = _unit(torch_emb.embed_texts(probe))
    agreement = {
        name: round(float(np.min(np.sum(_unit(fn(probe)) * reference, axis=1))), 7)
        for name, fn in variants.items()
    }
    for fn in variants.values():  # warm-up: first calls allocate
        fn(_texts(8, 10_000))

    sizes = [int(b) for b in args.batches.split(",")]
    single: dict[str, list[float]] = {name: [] for name in variants}
    single_rounds: dict[str, list[float]] = {name: [] for name in variants}
    batch: dict[str, dict[int, list[float]]] = {
        name: {b: [] for b in sizes} for name in variants if name != "torch_padded"
    }
    counter = 0
    for _ in range(args.rounds):
        for name, fn in variants.items():
            times = []
            for _ in range(args.repeat):
                counter += 1
                texts = _texts(1, counter)
                times.append(_time_ms(fn, texts))
            single[name].extend(times)
            single_rounds[name].append(statistics.median(times))
        for name in batch:
            for b in sizes:
                counter += b
                texts = _texts(b, counter)
                batch[name][b].append(_time_ms(variants[name], texts) / b)

    cores = available_cores()
    per_query = {
        name: {b: round(statistics.median(v), 2) for b, v in by.items()} for name, by in batch.items()
    }
    best = {name: min(by.values()) for name, by in per_query.items()}
    p50 = {name: round(statistics.median(r), 2) for name, r in single_rounds.items()}
    concurrent = {
        f"{name}_{mode}": _concurrent(variants[name], batched=mode == "batched", args=args, dim=torch_emb.dim)
        for name in batch
        for mode in ("alone", "batched")
    }
    for name in batch:
        concurrent[f"{name}_batched"]["of_ceiling"] = round(
            concurrent[f"{name}_batched"]["rps"] / (cores * 1000.0 / best[name]), 2
        )
    ratios: dict[str, Any] = {
        f"{name}_batched_over_alone_rps": round(
            concurrent[f"{name}_batched"]["rps"] / concurrent[f"{name}_alone"]["rps"], 2
        )
        for name in batch
    }
    if lite.text_tower is None:
        ratios["padded_over_trimmed"] = round(p50["torch_padded"] / p50["torch_trimmed"], 2)
    if has_onnx:
        ratios["torch_over_onnx"] = round(p50["torch_trimmed"] / p50["onnx"], 2)
        ratios["torch_over_onnx_best_batch"] = round(best["torch_trimmed"] / best["onnx"], 2)
    print(
        json.dumps(
            {
                "bench": "encode.text",
                "model": args.model,
                "text_tower": lite.config.text_tower,
                "threads": args.threads,
                "rounds": args.rounds,
                "single_ms": {name: {"p50": p50[name], "p99": _pct(single[name], 0.99)} for name in variants},
                "batch_ms_per_query": per_query,
                "best_ms_per_query": best,
                "cores": cores,
                "ceiling_rps": {name: round(cores * 1000.0 / ms, 1) for name, ms in best.items()},
                "concurrent": concurrent,
                "ratios": ratios,
                "min_cosine_vs_torch_trimmed": agreement,
                "load_average": {
                    "before": [round(x, 2) for x in load_before],
                    "after": [round(x, 2) for x in os.getloadavg()],
                },
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
