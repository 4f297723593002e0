"""Machine-suggested ICONCLASS subjects (``subjects.suggested``): precision on catalogued items; JSON.

Items: the demo collection's USDA watercolours whose catalogue names one fruit kind ("Malus domestica;
apples") that ICONCLASS names too: the common name, singular and upper-cased, is looked up among the
candidates' named plant notations (``25G…(APPLE)``). Names with no such notation ("crab apple", "avocados")
leave the item out; nothing is matched by hand. The other demo sets have no subjects that map.

Per item, the model's top 5 suggestions over the whole candidate set are scored against

- **kind@1 / kind@5**: the kind's own notation first / among the five;
- **P@1 / P@5**: the fraction of the first one / five that are the kind's notation *or one of its
  ancestors* in the candidate set (``25G21`` fruits, ``25G2`` products of plants, ``25G`` plants, ``25``,
  ``2``): each of those is a true subject of the picture, so they count as correct, and anything else
  (another fruit, a division unrelated to plants) as wrong.

Run: ``nice -n 10 python bench/subjects.py [--model SPEC] [--cache DIR]``. Embeds ~5,000 candidate texts
once per model (cached in ``--cache``) and the ~150 images.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from iconosearch.subjects.iconclass import load_iconclass  # noqa: E402
from iconosearch.subjects.suggested import SubjectLabels, candidate_notations, load_labels  # noqa: E402

COLLECTION = ROOT / "demo" / "collection"


def singular(name: str) -> str:
    name = name.strip().lower()
    for plural, one in (("ies", "y"), ("ches", "ch"), ("oes", "o"), ("s", "")):
        if name.endswith(plural):
            return name[: -len(plural)] + one
    return name


def catalogued_kinds(candidates: list[str]) -> list[tuple[Path, str]]:
    """``(image, kind notation)`` of every watercolour whose common name is an ICONCLASS plant name."""
    named = {
        n[n.index("(") + 1 : -1]: n
        for n in sorted(candidates, key=len, reverse=True)
        if n.startswith("25G") and "(" in n
    }
    out = []
    with (COLLECTION / "metadata.csv").open(newline="") as fh:
        for row in csv.DictReader(fh):
            parts = row["subjects"].split(";")
            if not row["file"].startswith("usda-pomological/") or len(parts) != 2:
                continue
            notation = named.get(singular(parts[1]).upper())
            if notation is not None:
                out.append((COLLECTION / row["file"], notation))
    return out


def evaluate(
    labels: SubjectLabels, vectors: Any, targets: list[str], parents: dict[str, set[str]]
) -> dict[str, Any]:
    suggestions = labels.suggest(vectors, top=5)
    kind1 = kind5 = p1 = p5 = 0.0
    for picks, target in zip(suggestions, targets, strict=True):
        notations = [s.notation for s in picks]
        right = {target} | parents[target]
        kind1 += notations[0] == target
        kind5 += target in notations
        p1 += notations[0] in right
        p5 += sum(n in right for n in notations) / 5
    n = len(targets)
    return {
        "items": n,
        "kinds": len(set(targets)),
        "kind_at_1": round(kind1 / n, 3),
        "kind_at_5": round(kind5 / n, 3),
        "precision_at_1": round(p1 / n, 3),
        "precision_at_5": round(p5 / n, 3),
        "chance_kind_at_1": round(1 / len(labels.notations), 5),
    }


def main() -> None:
    from iconosearch.models.embedder import load_embedder
    from iconosearch.models.pipeline import embed_images

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="iconosearch-lite")
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "iconosearch" / "bench-subjects")
    ap.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run in under 60 s with the same JSON keys (every 8th image; the candidate texts' "
        "embeddings come from --cache after a first run)",
    )
    args = ap.parse_args()
    vocabulary = load_iconclass()
    candidates = candidate_notations(vocabulary)
    items = catalogued_kinds(candidates)
    if args.quick:
        items = items[::8]
    embedder = load_embedder(args.model)
    t0 = time.perf_counter()
    labels = load_labels(embedder, args.cache, lambda: vocabulary)
    t_labels = time.perf_counter() - t0
    t0 = time.perf_counter()
    labels = load_labels(embedder, args.cache)
    t_cached = time.perf_counter() - t0
    hashed = [(hashlib.sha256(p.read_bytes()).hexdigest(), p) for p, _ in items]
    embedded = embed_images(embedder, hashed, cache_dir=args.cache)
    row = {h: i for i, h in enumerate(embedded.hashes)}
    vectors = embedded.vectors[[row[h] for h, _ in hashed]]
    tree = vocabulary._ic._D  # the package keeps each notation's parent path only here
    chosen = set(candidates)
    parents = {t: {p for p in tree[t].get("p", ()) if p in chosen and p != t} for _, t in items}
    t0 = time.perf_counter()
    result = evaluate(labels, vectors, [t for _, t in items], parents)
    t_suggest = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "bench": "subjects",
                "model": args.model,
                "fingerprint": embedder.fingerprint[:16],
                "candidates": len(candidates),
                "watercolours": result,
                "seconds": {
                    "embed_candidate_texts": round(t_labels, 1),
                    "load_cached_texts": round(t_cached, 3),
                    "suggest_per_image_ms": round(t_suggest / max(len(items), 1) * 1000, 3),
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
