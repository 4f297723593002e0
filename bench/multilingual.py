"""Multilingual evaluation with ICONCLASS's human translations; prints one JSON object.

- ``text_to_image``: per model spec, text→image R@10 per language (en, de, fr, it, pt) on a local-folder
  collection (default: the demo collection), next to English, with chance; queries are ICONCLASS texts of
  the concepts the collection shows (see ``iconosearch.evaluation.multilingual``);
- ``cross_lingual``: R@1 of X↔en retrieval between ICONCLASS texts of ``--parallel`` notations, for the
  USE-m3 text tower and for each model's own text encoder.

Run: ``nice python bench/multilingual.py [--model SPEC]… [--collection DIR] [--parallel 1000]
[--markdown report.md]``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _image_vectors(embedder: Any, paths: Sequence[Path]) -> np.ndarray:
    from iconosearch.images import open_image
    from iconosearch.models.pipeline import DECODE_MAX_SIDE

    out = []
    for start in range(0, len(paths), 32):
        batch = [
            open_image(p, max_pixels=64_000_000, max_side=DECODE_MAX_SIDE) for p in paths[start : start + 32]
        ]
        out.append(embedder.embed_images(batch))
    return np.concatenate(out)


def _tower_texts(kind: str) -> Any:
    from iconosearch.models.towers import load_text_tower

    tower = load_text_tower(kind)
    return lambda texts: tower.encode(list(texts)).numpy()


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    from iconosearch.evaluation import multilingual as ml
    from iconosearch.models.embedder import load_embedder
    from iconosearch.subjects import vocabulary
    from iconosearch.subjects.iconclass import Iconclass

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", help="model spec (repeatable; default iconosearch-lite)")
    parser.add_argument("--collection", type=Path, default=ROOT / "demo" / "collection")
    parser.add_argument("--parallel", type=int, default=1000, help="notations for cross-lingual retrieval")
    parser.add_argument("--text-tower", default="use-m3", help="text tower for cross-lingual retrieval")
    parser.add_argument("--markdown", type=Path, help="also write a Markdown report here")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run in under 60 s with the same JSON keys (smaller sizes)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.parallel = 50

    start = time.perf_counter()
    iconclass = vocabulary("iconclass")
    assert isinstance(iconclass, Iconclass)
    images = ml.read_collection(args.collection)
    if args.quick:  # every 8th image keeps each set (and most query concepts) represented
        images = images[::8]
    concepts = ml.query_set(iconclass, images)
    parallel = ml.parallel_texts(iconclass, args.parallel)
    report: dict[str, Any] = {
        "collection": str(args.collection),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "query_set": {
            c.notation: {"relevant_images": len(c.relevant), "queries": c.queries} for c in concepts
        },
        "text_to_image": {},
        "cross_lingual": {"notations": len(parallel)},
    }
    report["cross_lingual"][args.text_tower] = ml.cross_lingual(parallel, _tower_texts(args.text_tower))
    for spec in args.model or ["iconosearch-lite"]:
        embedder = load_embedder(spec)
        vectors = _image_vectors(embedder, [im.path for im in images])
        report["text_to_image"][spec] = ml.text_to_image(concepts, vectors, embedder.embed_texts)
        report["cross_lingual"][spec] = ml.cross_lingual(parallel, embedder.embed_texts)
    report["seconds"] = round(time.perf_counter() - start, 1)
    if args.markdown:
        args.markdown.write_text(markdown(report), encoding="utf-8")
    return report


def markdown(report: dict[str, Any]) -> str:
    from iconosearch.subjects.iconclass import LANGUAGES

    lines = [f"Collection: `{report['collection']}`.", ""]
    for spec, t2i in report["text_to_image"].items():
        lines += [
            f"### Text → image R@10, `{spec}` ({t2i['images']} images, {t2i['concepts']} concepts, "
            f"chance {t2i['chance_r10']:.1%})",
            "",
            "| language | R@10 | vs English | queries |",
            "|---|---|---|---|",
        ]
        for lang in LANGUAGES:
            row = t2i["per_language"][lang]
            lines.append(f"| {lang} | {row['r10']:.1%} | {row['minus_en'] * 100:+.1f} | {row['queries']} |")
        lines += [
            "",
            f"Mean of de/fr/it/pt: {t2i['mean_non_english_r10']:.1%} "
            f"({t2i['mean_non_english_minus_en'] * 100:+.1f} points vs English; worst "
            f"{t2i['worst_minus_en'] * 100:+.1f}).",
            "",
        ]
    cl = report["cross_lingual"]
    lines += [
        f"### Cross-lingual retrieval between ICONCLASS texts ({cl['notations']} notations), R@1",
        "",
        "| encoder | " + " | ".join(f"{lang}→en / en→{lang}" for lang in LANGUAGES if lang != "en") + " |",
        "|---|" + "---|" * (len(LANGUAGES) - 1),
    ]
    for name, rows in cl.items():
        if name == "notations":
            continue
        cells = [f"{rows[lang]['to_en_r1']:.1%} / {rows[lang]['from_en_r1']:.1%}" for lang in rows]
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    print(json.dumps(main(), indent=2, ensure_ascii=False))
