"""The shipped default against an older lite model on the build's test splits (paired, no training); JSON.

``iconosearch models build-lite`` compares a new model only with the baseline it started from. The
default was built in steps (0.1 → the English heritage model → the multilingual default), so this
reports the default against any earlier checkpoint, by default 0.1's (``bench/baselines/``), with the
build's own splits, galleries and group-bootstrap CIs (:mod:`iconosearch.lite.versus`).

Run: ``nice -n 10 python bench/lite_vs_baseline.py --heritage DIR [--baseline bench/baselines/…]``.
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
    parser.add_argument(
        "--baseline", type=Path, default=ROOT / "bench" / "baselines" / "iconosearch-lite-0.1"
    )
    parser.add_argument("--model", type=Path, default=None, help="lite checkpoint folder (default: built-in)")
    parser.add_argument("--demo-metadata", type=Path, default=ROOT / "demo" / "collection" / "metadata.csv")
    parser.add_argument("--clipart-train", type=int, default=800)
    parser.add_argument("--photos", type=int, default=150, help="photo-like Tux Paint stamps (as the build)")
    parser.add_argument("--quick", action="store_true", help="30 stamps: a smoke run, same keys")
    args = parser.parse_args()
    if args.quick:
        args.photos = 30

    import torch

    from iconosearch.lite.build import BuildInputs
    from iconosearch.lite.versus import compare_checkpoint

    torch.set_num_threads(2)
    inputs = BuildInputs(
        args.heritage,
        args.baseline,
        args.demo_metadata,
        clipart_train=args.clipart_train,
        photos=args.photos,
    )
    result = compare_checkpoint(args.model, inputs, log=lambda m: print(m, file=sys.stderr))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
