"""Text→image R@10 per set of each image tower on the lite build's test splits (reduced recipe); prints JSON.

The reduced recipe of ``docs/image-towers.md`` (:mod:`iconosearch.lite.compare`): no training, the concept
bridge alone (each tower's ImageNet classifier over USE-m3 class-name embeddings), on exactly the splits
``iconosearch models build-lite`` uses. Per set (paintings, watercolours, manuscripts: all query types
together; clip art; photo-like stamps): each tower's R@10 with its 95 % group-bootstrap CI, and its paired
difference from the first tower. Features are cached per tower, so a second run only ranks.

Run: ``nice -n 10 python bench/image_towers_quality.py --heritage DIR [--kinds lite0 lite1 lite2]``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--heritage", type=Path, required=True)
    parser.add_argument("--demo-metadata", type=Path, default=ROOT / "demo" / "collection" / "metadata.csv")
    parser.add_argument("--kinds", nargs="+", default=["lite0", "lite1", "lite2"])
    parser.add_argument("--text-tower", default="use-m3")
    parser.add_argument("--clipart-train", type=int, default=800)
    parser.add_argument("--photos", type=int, default=150, help="photo-like Tux Paint stamps (as the build)")
    parser.add_argument(
        "--quick", action="store_true", help="the first two towers and 30 stamps: a smoke run, same keys"
    )
    args = parser.parse_args()
    if args.quick:
        args.kinds, args.photos = args.kinds[:2], 30

    import torch

    from iconosearch.lite.build import BuildInputs
    from iconosearch.lite.compare import compare_towers

    torch.set_num_threads(2)
    inputs = BuildInputs(
        args.heritage,
        ROOT / "bench" / "baselines" / "iconosearch-lite-en",
        args.demo_metadata,
        clipart_train=args.clipart_train,
        photos=args.photos,
        text_tower=args.text_tower,
    )
    result = compare_towers(inputs, args.kinds, log=lambda m: print(m, file=sys.stderr))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
