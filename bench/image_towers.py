"""Image-encode cost of each registered EfficientNet-Lite tower, torch and ONNX Runtime; prints JSON.

For every tower kind (``lite0``, ``lite1``, ``lite2``; kinds whose optional package is missing are
reported as such) the shipped model's shape is timed on its own resolution: the trunk, the MLP image head
and the concept bridge (w = 0.3, 768-d), on images already decoded and preprocessed in memory (decoding is
the same for every tower and is left out). Per runtime (``torch``, ``onnx``) and thread count (1 and 2):

- ``batch_ms_per_image``: batches of ``--batch-size`` images (indexing), the median of ``--repeats`` runs
  divided by the batch size;
- ``single_ms``: one image at a time (a query by image), p50 over ``--repeats`` × 4 calls.

``onnx_vs_torch_min_cosine`` checks that ONNX Runtime gives the torch vectors (the export handles the
tower). Each (tower, runtime, threads) cell is timed in turn, interleaved over the towers, so load drift on
a shared machine hits every tower alike; the load average is printed next to the numbers.

Run: ``flock /work/tools/bench.lock nice -n -10 python bench/image_towers.py [--batch-size 16]
[--repeats 5]``. Quality per tower: ``bench/image_towers_quality.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
HELDOUT = ROOT / "tests" / "data" / "lite_heldout"


def _model(kind: str, folder: Path, runtime: str, threads: int) -> Any:
    """An embedder of the default's shape on ``kind`` (heads untrained: their cost is what counts)."""
    import torch

    from iconosearch.lite.heads import heads_state, new_heads
    from iconosearch.models.embedder import load_embedder
    from iconosearch.models.lite import LiteConfig, save_lite
    from iconosearch.models.towers.image import image_tower

    config = LiteConfig(
        head="mlp",
        bridge_weight=0.3,
        text_tower="use-m3",
        image_tower=kind,
        image_size=image_tower(kind).image_size,
    )
    out = folder / kind
    if not out.is_dir():
        class_text = torch.nn.functional.normalize(torch.randn(1000, config.text_dim), dim=-1)
        save_lite(out, config, heads_state(new_heads(replace(config))), class_text=class_text)
    return load_embedder(str(out), device="cpu", text_runtime=runtime, text_threads=threads)


def _images(n: int) -> list[Any]:
    from PIL import Image

    files = sorted(HELDOUT.glob("*.png"))
    return [Image.open(files[i % len(files)]).convert("RGB") for i in range(n)]


def _time_cell(embedder: Any, pixels: Any, repeats: int) -> dict[str, float]:
    embedder.embed_image_tensors(pixels[:2])  # warm-up (and, on ONNX, the export or its cache)
    batch = []
    for _ in range(repeats):
        start = time.perf_counter()
        embedder.embed_image_tensors(pixels)
        batch.append((time.perf_counter() - start) * 1000 / len(pixels))
    single = []
    for i in range(repeats * 4):
        one = pixels[i % len(pixels) : i % len(pixels) + 1]
        start = time.perf_counter()
        embedder.embed_image_tensors(one)
        single.append((time.perf_counter() - start) * 1000)
    return {
        "batch_ms_per_image": round(statistics.median(batch), 2),
        "single_ms": round(statistics.median(single), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--kinds", nargs="*", default=None)
    parser.add_argument("--quick", action="store_true", help="batches of 4, one repeat: smoke run")
    args = parser.parse_args()
    if args.quick:
        args.batch_size, args.repeats = 4, 1

    import torch

    from iconosearch.models.specs import ModelUnavailableError
    from iconosearch.models.towers.image import image_tower, image_tower_kinds

    kinds = args.kinds or image_tower_kinds()
    images = _images(args.batch_size)
    report: dict[str, Any] = {
        "load_avg_start": os.getloadavg(),
        "cpus": os.cpu_count(),
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "towers": {},
    }
    folder = Path(tempfile.mkdtemp(prefix="image-towers-"))
    available = []
    for kind in kinds:
        try:
            image_tower(kind).weights()
            available.append(kind)
            report["towers"][kind] = {"image_size": image_tower(kind).image_size, "timings": {}}
        except ModelUnavailableError as exc:
            report["towers"][kind] = {"unavailable": str(exc)}
    vectors: dict[tuple[str, str], np.ndarray] = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for runtime in ("torch", "onnx"):
            for kind in available:
                embedder = _model(kind, folder, runtime, threads)
                pixels = embedder.pixels(images)
                cell = _time_cell(embedder, pixels, args.repeats)
                report["towers"][kind]["timings"][f"{runtime}/{threads} thread(s)"] = cell
                vectors[(kind, runtime)] = embedder.embed_image_tensors(pixels)
    for kind in available:
        cos = (vectors[(kind, "torch")] * vectors[(kind, "onnx")]).sum(axis=1)
        report["towers"][kind]["onnx_vs_torch_min_cosine"] = round(float(cos.min()), 5)
    report["load_avg_end"] = os.getloadavg()
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
