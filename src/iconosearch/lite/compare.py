"""Image towers compared on the build's own test splits, with nothing trained: the concept bridge alone.

The reduced recipe of ``docs/image-towers.md``. The full recipe (``build-lite --image-tower KIND``) extracts
every training, validation and test image through each tower and trains heads per variant; on the shared
2-core machine that did not fit. What is tower-specific and needs no training is the concept bridge: each
tower's own ImageNet classifier mixes the text tower's (USE-m3) embeddings of its top-20 class names, and
a query is the text tower's embedding of itself (the shipped model at bridge weight 1, no heads). Every
tower is run on exactly the build's test splits (:func:`iconosearch.lite.sources.load_sources`), and
text→image R@10 differences from a reference tower get a paired group bootstrap per set, as in the model
card.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from iconosearch.evaluation.metrics import RetrievalRanks
from iconosearch.lite import evaluate as ev
from iconosearch.lite.build import BuildInputs, build_features, query_galleries
from iconosearch.lite.sources import HERITAGE_SETS, Sources, load_sources

SETS = (*HERITAGE_SETS, "clipart", "photos")


def _test_galleries(
    src: Sources, image_row: dict[str, int], text_row: dict[str, int]
) -> dict[str, ev.Gallery]:
    rows = (image_row, text_row)
    out = {
        name: ev.gallery([(p, p.captions[0].text) for p in pairs if p.content_hash in image_row], *rows)
        for name, pairs in (("clipart/full", src.clip_pairs["test"]), ("photos/full", src.photo_pairs))
    }
    for name, parts in src.heritage.items():
        out.update(query_galleries(name, parts["test"], rows))
    return out


def bridge_test_ranks(
    inputs: BuildInputs, src: Sources, progress: Callable[[int, int], None] | None = None
) -> tuple[dict[str, RetrievalRanks], dict[str, ev.Gallery]]:
    """Test ranks per gallery of ``inputs``' towers through the concept bridge alone (features cached)."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    from iconosearch.lite.heads import compute_class_text

    pairs = [*src.clip_pairs["test"], *src.photo_pairs]
    pairs += [i.pair for parts in src.heritage.values() for i in parts["test"]]
    queries = {c.text for p in [*src.clip_pairs["test"], *src.photo_pairs] for c in p.captions}
    queries |= {q for parts in src.heritage.values() for i in parts["test"] for q in i.queries.values()}
    features = build_features(inputs)
    found = features.images({p.content_hash: p.image_path for p in pairs}, progress=progress)
    texts = features.texts(sorted(queries))
    hashes, text_list = sorted(found), sorted(texts)
    image = np.stack([found[h] for h in hashes]).astype(np.float32)
    text = np.stack([texts[t] for t in text_list]).astype(np.float32)
    galleries = _test_galleries(
        src, {h: n for n, h in enumerate(hashes)}, {t: n for n, t in enumerate(text_list)}
    )
    lite = features.embedder.lite
    lite.class_text = compute_class_text(lite, features.embedder.tokenizer)

    def encode(img: np.ndarray, txt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode():
            bridge = lite.bridge_image(torch.from_numpy(img))
            return bridge.numpy(), F.normalize(torch.from_numpy(txt), dim=-1).numpy()

    return {name: ev.ranks(encode, g, image, text) for name, g in galleries.items()}, galleries


def compare_towers(
    inputs: BuildInputs,
    kinds: Sequence[str],
    log: Callable[[str], None] = lambda _m: None,
) -> dict[str, Any]:
    """Per set: each tower's test R@10 (all query types together) with its 95 % CI and, against the first
    kind, the paired difference with its CI."""
    src = load_sources(inputs, log)
    ranks: dict[str, dict[str, RetrievalRanks]] = {}
    galleries: dict[str, dict[str, ev.Gallery]] = {}
    for kind in kinds:
        log(f"{kind}: test features and ranks")
        ranks[kind], galleries[kind] = bridge_test_ranks(dataclasses.replace(inputs, image_tower=kind), src)
    reference = kinds[0]
    ref = galleries[reference]
    for kind in kinds:
        if {k: g.data.text_items for k, g in galleries[kind].items()} != {
            k: g.data.text_items for k, g in ref.items()
        }:
            raise ValueError(f"tower {kind!r} was tested on other queries than {reference!r}")
    out: dict[str, Any] = {"reference": reference, "recipe": "concept bridge only", "sets": {}}
    for s in SETS:
        keys = [k for k in ref if k.split("/")[0] == s]
        groups = [group for k in keys for group in ref[k].data.text_groups]
        chance = sum(ev.chance_recall(ref[k], 10) * len(ref[k].data.texts) for k in keys) / len(groups)
        row: dict[str, Any] = {
            "queries": len(groups),
            "images": max(len(ref[k].data.pairs) for k in keys),
            "chance_R@10": chance,
        }
        for kind in kinds:
            t2i = np.concatenate([ranks[kind][k].t2i for k in keys])
            entry: dict[str, Any] = {"R@10": float(np.mean(t2i <= 10)), "ci": ev.recall_ci(t2i, groups)}
            if kind != reference:
                entry["vs_reference"] = ev.compare(
                    [ranks[kind][k] for k in keys],
                    [ranks[reference][k] for k in keys],
                    [ref[k] for k in keys],
                )
            row[kind] = entry
        out["sets"][s] = row
    return out
