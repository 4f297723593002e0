"""Region search on synthetic pages of the demo's heritage images; prints one JSON object.

Pages are 2×2 and 3×2 collages and single images pasted small onto a large textured page (see
``iconosearch.evaluation.collages``; CC BY-ND images are never used). Each placed image's title is a
query for its page. Reported: text→page R@10 with whole-page vectors only and with regions (best of
page and crops, as the engine ranks), their paired bootstrap difference (resampling pages, since the
queries of one collage are correlated), per layout, and how often the matched region of a correct
hit overlaps the placement by IoU ≥ 0.3.

Run: ``nice python bench/regions.py [--model iconosearch-lite] [--collection demo/collection]
[--sources N]``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _sources(folder: Path) -> list[Any]:
    from iconosearch.evaluation.collages import Source

    with (folder / "metadata.csv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return [
        Source(folder / r["file"], r["title"], r["rights"] or None, r["file"].split("/")[0]) for r in rows
    ]


def main() -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="iconosearch-lite")
    parser.add_argument("--collection", type=Path, default=ROOT / "demo" / "collection")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sources", type=int, default=0, help="use an even spread of N images (0: all)")
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run in under 60 s with the same JSON keys (fewer pages)"
    )
    args = parser.parse_args()
    if args.quick:
        args.sources = args.sources or 40

    from iconosearch.evaluation import collages
    from iconosearch.evaluation.bootstrap import paired_bootstrap, recall_statistic
    from iconosearch.models.embedder import load_embedder

    started = time.perf_counter()
    every = _sources(args.collection)
    sources = collages.usable(every)
    left_out = len(every) - len(sources)
    if args.sources:
        sources = sources[:: max(1, len(sources) // args.sources)][: args.sources]
    pages = collages.make_pages(sources, seed=args.seed)
    embedder = load_embedder(args.model, device="cpu")
    pv = collages.embed_pages(embedder, pages)
    targets = [(p, box) for p, page in enumerate(pages) for _, box in page.placements]
    captions = [sources[sid].caption for page in pages for sid, _ in page.placements]
    texts = np.asarray(embedder.embed_texts(captions), dtype=np.float32)
    outcomes = collages.score_queries(texts, targets, pv, [p.kind for p in pages])

    whole = np.array([o.rank_whole for o in outcomes])
    with_regions = np.array([o.rank_regions for o in outcomes])
    clusters = np.array([p for p, _ in targets])
    diff = paired_bootstrap(with_regions, whole, recall_statistic(10), n_resamples=2000, clusters=clusters)
    by_kind = {}
    for kind in ("2x2", "3x2", "pasted"):
        mine = [o for o in outcomes if o.kind == kind]
        by_kind[kind] = {
            "queries": len(mine),
            "pages": sum(p.kind == kind for p in pages),
            "r10_whole": float(np.mean([o.rank_whole <= 10 for o in mine])),
            "r10_regions": float(np.mean([o.rank_regions <= 10 for o in mine])),
        }
    correct = [o for o in outcomes if o.rank_regions <= 10]
    localised = [o for o in correct if o.iou >= collages.IOU_HIT]
    return {
        "model": args.model,
        "sources": {"usable": len(sources), "left_out_no_derivatives": left_out},
        "pages": len(pages),
        "queries": len(outcomes),
        "chance_r10": 10 / len(pages),
        "r10_whole": float(np.mean(whole <= 10)),
        "r10_regions": float(np.mean(with_regions <= 10)),
        "r10_difference": diff.as_dict(),
        "by_layout": by_kind,
        "localisation": {
            "correct_hits": len(correct),
            "iou_at_least_0_3": len(localised),
            "share": len(localised) / max(len(correct), 1),
            "median_iou": float(np.median([o.iou for o in correct])) if correct else None,
        },
        "embeddings_per_page": 1 + float(np.mean([len(b) for _, b in pv.crops])),
        "seconds": round(time.perf_counter() - started, 1),
        "load_average": os.getloadavg()[0],
    }


if __name__ == "__main__":
    print(json.dumps(main(), indent=2, ensure_ascii=False))
