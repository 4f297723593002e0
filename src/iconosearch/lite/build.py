"""The reproducible build of iconosearch-lite (``iconosearch models build-lite``).

Data: the Debian clip-art corpus (:mod:`iconosearch.lite.corpus`, its 0.1 split kept so clip-art numbers
stay comparable) and the heritage sets (:mod:`iconosearch.lite.heritage`, split by work or series).
Steps: frozen tower features (cached, :mod:`iconosearch.lite.features`) → heads trained per variant with
symmetric InfoNCE (:mod:`iconosearch.training.contrastive`) on clip art + heritage captions of every query
type + ImageNet prototypes, epoch chosen on validation → variant and concept-bridge weight chosen on the
macro-average of the heritage validation sets → test metrics per set and query type with bootstrap CIs
and a paired comparison with the baseline (0.1) → ``heads.safetensors``, ``config.json``, ``split.json``,
``metrics.json`` and ``MODEL_CARD.md`` in the output folder.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import torch

from iconosearch.evaluation.metrics import RetrievalRanks
from iconosearch.evaluation.pairs import Pair
from iconosearch.lite import evaluate as ev
from iconosearch.lite.corpus import default_cache_dir
from iconosearch.lite.distil import (
    base_matrices,
    base_model,
    base_source,
    distil_texts,
    same_towers,
    warm_heads,
)
from iconosearch.lite.features import Features, Progress, feature_cache, towers_embedder
from iconosearch.lite.heritage import (
    QUERY_TYPES,
    HeritageItem,
    article,
    singular,
)
from iconosearch.lite.prototypes import (
    PROTOTYPE_TEMPLATES,
    Prototypes,
    class_short_names,
    prototype_image_features,
)
from iconosearch.lite.sources import HERITAGE_SETS, load_sources
from iconosearch.models.lite import LiteConfig, LiteModel
from iconosearch.training.contrastive import ContrastiveHeads, PairFeatures, TrainConfig, train_heads

BRIDGE_WEIGHTS: Final = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
CLIPART_MAX_DROP: Final = 0.02
"""A choice may cost at most this much clip-art validation text→image R@10 relative to the baseline."""
FEATURE_DROPOUT: Final = 0.3
SELECTION_SETS: Final = (*HERITAGE_SETS, "photos")
"""Macro-averaged for the choice of variant and bridge weight: each set counts once, however large."""
QUERY_WEIGHTS: Final = {"full": 0.45, "title": 0.2, "subject": 0.2, "creator": 0.1, "period": 0.05}
"""How often each query type is the training caption of a heritage image in an epoch."""


@dataclass(frozen=True, slots=True)
class Variant:
    name: str
    warm_start: bool
    """Start from the baseline's heads (keeps its clip-art knowledge) instead of fresh ones."""
    prototypes_per_epoch: int
    lr: float
    epochs: int
    seed: int = 0


DEFAULT_VARIANTS: Final = (
    Variant("warm mlp, lr 3e-4", True, 0, 3e-4, 20),
    Variant("warm mlp, lr 1e-4", True, 0, 1e-4, 20),
)
"""Warm starts only: 0.1's heads already learned clip art and the ImageNet prototypes; training from
scratch would need the whole clip-art corpus's features, more CPU than a build on 2 cores can spend."""
CROSS_TOWER_VARIANTS: Final = (
    Variant("distilled, no contrastive epochs", True, 0, 1e-4, 0),
    Variant("distilled + warm mlp, lr 1e-4", True, 0, 1e-4, 20),
    Variant("distilled + warm mlp, lr 3e-4", True, 0, 3e-4, 20),
)
"""With another text tower than the baseline's: the image head is the baseline's, the text head is
distilled from the baseline's, then (or not: epoch 0) both are trained contrastively as above."""


@dataclass(frozen=True, slots=True)
class BuildInputs:
    heritage: Path
    """Folder holding the heritage sets (``wga-paintings/``, ``usda-pomological/``, ...)."""
    baseline: Path
    """A lite checkpoint (0.1): warm start, and the model the new one is compared with."""
    demo_metadata: Path | None = None
    """The demo collection's ``metadata.csv``: its watercolours (and their varieties) are kept out."""
    cache_dir: Path | None = None
    clipart_train: int = 200
    """Clip-art training pairs: a deterministic subsample of the corpus's train part (CPU time)."""
    photos: int = 150
    """Photo-like Tux Paint stamps used (a deterministic subsample; CPU time)."""
    text_tower: str = "minilm"
    """Text-tower kind of the new model (``minilm``, or a registered kind such as ``use-m3``). When it
    differs from the baseline's, the new text head is first distilled from the baseline's (see
    :mod:`iconosearch.lite.distil`)."""
    image_tower: str = "lite0"
    """Image-tower kind (:mod:`iconosearch.models.towers.image`), embedded at the resolution it was trained
    at. When it differs from the baseline's, the new image head is first distilled from the baseline's."""

    def tower_config(self) -> LiteConfig:
        """The new model's towers and preprocessing (heads and bridge are chosen by the build)."""
        from iconosearch.models.towers.image import image_tower

        size = image_tower(self.image_tower).image_size
        return LiteConfig(text_tower=self.text_tower, image_tower=self.image_tower, image_size=size)


@dataclass(frozen=True, slots=True)
class BuildReport:
    out_dir: Path
    variant: str
    best_epoch: int
    bridge_weight: float
    metrics: dict[str, Any]


def training_texts(item: HeritageItem) -> dict[str, list[str]]:
    """Caption variants per query type used in training (evaluation uses ``item.queries`` as they are)."""
    out = {t: [q] for t, q in item.queries.items()}
    subject = item.queries.get("subject")
    if subject is not None and item.pair.collection == "watercolours":
        out["subject"] += [
            article(singular(subject)),
            f"a watercolour of {subject}",
            f"{subject}, botanical art",
        ]
    elif subject is not None:
        out["subject"] += [f"the constellation {subject}", f"{subject}, a constellation figure"]
    return out


@dataclass
class Data:
    """Everything the training and evaluation read, as rows of two feature matrices."""

    image: np.ndarray
    text: np.ndarray
    """Text features of the new model's tower."""
    base_text: np.ndarray
    """The same texts (same rows) through the baseline's tower; ``text`` itself when the towers agree."""
    base_image: np.ndarray
    """The same images (same rows) through the baseline's image tower; ``image`` itself when it is shared."""
    image_row: dict[str, int]
    text_row: dict[str, int]
    clipart_train: PairFeatures
    heritage_train: list[tuple[int, list[tuple[str, float]]]]
    """(image row, [(text, weight)]) per heritage training image."""
    val: dict[str, ev.Gallery]
    test: dict[str, ev.Gallery]
    counts: dict[str, Any]
    distil_rows: np.ndarray
    """Rows of the training-side texts (never a validation or test query): what distillation reads."""
    distil_image_rows: np.ndarray
    """Rows of the training images (clip-art pairs and heritage train): what image-head distillation reads."""


def query_galleries(prefix: str, items: Sequence[HeritageItem], data_rows: Any) -> dict[str, ev.Gallery]:
    image_row, text_row = data_rows
    out = {}
    for query_type in QUERY_TYPES:
        entries = [(i.pair, i.queries[query_type]) for i in items if query_type in i.queries]
        if entries:
            out[f"{prefix}/{query_type}"] = ev.gallery(entries, image_row, text_row)
    return out


def build_features(inputs: BuildInputs) -> Features:
    """Feature source of the new model's towers (the image tower is shared by every text tower)."""
    config = inputs.tower_config()
    cache = feature_cache(inputs.cache_dir or default_cache_dir())
    return Features(cache, lambda: towers_embedder(config), config)


def _feature_matrices(
    features: Features, paths: dict[str, Path], texts: set[str], progress: Progress | None
) -> tuple[np.ndarray, np.ndarray, dict[str, int], dict[str, int]]:
    """Image and text feature matrices, with the row of each image hash and each text."""
    image_feats = features.images(paths, progress=progress)
    text_feats = features.texts(sorted(texts))
    hashes = sorted(image_feats)
    text_list = sorted(text_feats)
    image = np.stack([image_feats[h] for h in hashes]).astype(np.float32)
    text = np.stack([text_feats[t] for t in text_list]).astype(np.float32)
    return image, text, {h: n for n, h in enumerate(hashes)}, {t: n for n, t in enumerate(text_list)}


def assemble(
    inputs: BuildInputs,
    base: tuple[LiteConfig, Features | None],
    log: Callable[[str], None],
    progress: Progress | None,
) -> tuple[Data, Any]:
    """Load both corpora, split them, compute (or read) every feature, also through the baseline's towers
    (``base``: its config and feature source, see :mod:`iconosearch.lite.distil`); returns the data and the
    split."""
    base_config = base[0]
    src = load_sources(inputs, log)
    clip, sets, demo, split, heritage = src.clip, src.sets, src.demo, src.split, src.heritage
    clip_pairs, photo_pairs = src.clip_pairs, src.photo_pairs

    paths = {p.content_hash: p.image_path for ps in (*clip_pairs.values(), photo_pairs) for p in ps}
    parts = ("train", "val", "test")
    in_split = [i for items in sets.values() for i in items if split.part_of(i.pair) in parts]
    paths.update({i.pair.content_hash: i.pair.image_path for i in in_split})
    texts = {c.text for ps in (*clip_pairs.values(), photo_pairs) for p in ps for c in p.captions}
    train_texts = {i.pair.item_id: training_texts(i) for s in heritage.values() for i in s["train"]}
    texts |= {t for variants in train_texts.values() for vs in variants.values() for t in vs}
    held_out = {
        q for s in heritage.values() for p in ("val", "test") for i in s[p] for q in i.queries.values()
    }
    texts |= held_out
    distil = set()
    if inputs.text_tower != base_config.text_tower:
        distil = distil_texts(src.clip_train_captions, train_texts) - held_out
        texts |= distil
    log(f"features: {len(paths)} images, {len(texts)} texts (cached ones are read, not recomputed)")
    matrices = _feature_matrices(build_features(inputs), paths, texts, progress)
    image, text, image_row, text_row = matrices
    same = same_towers(base_config, inputs.tower_config())
    base_image, base_text = base_matrices(base[1], same, paths, matrices, progress)
    rows = (image_row, text_row)

    def clip_gallery(pairs: Sequence[Pair]) -> ev.Gallery:
        return ev.gallery([(p, p.captions[0].text) for p in pairs if p.content_hash in image_row], *rows)

    train_ok = [p for p in clip_pairs["train"] if p.content_hash in image_row]
    heritage_train = []
    train_images = {image_row[p.content_hash] for p in train_ok}
    for s in heritage.values():
        for item in s["train"]:
            variants = train_texts[item.pair.item_id]
            choices = [(t, QUERY_WEIGHTS[q] / len(vs)) for q, vs in variants.items() for t in vs]
            heritage_train.append((image_row[item.pair.content_hash], choices))
            train_images.add(image_row[item.pair.content_hash])
    val = {"clipart/full": clip_gallery(clip_pairs["val"]), "photos/full": clip_gallery(photo_pairs)}
    test = {
        "clipart/full": clip_gallery(clip_pairs["test"]),
        "photos/full": clip_gallery(photo_pairs),
    }
    for name, s in heritage.items():
        val.update(query_galleries(name, s["val"], rows))
        test.update(query_galleries(name, s["test"], rows))
    counts = {
        "clipart": {**{p: len(v) for p, v in clip.items()}, "stamps": len(src.stamps)},
        "photos": len(src.photos),
        "heritage": {name: {p: len(v) for p, v in s.items()} for name, s in heritage.items()},
        "heritage_heldout": {
            name: sum(split.part_of(i.pair) == "heldout" for i in items) for name, items in sets.items()
        },
        "demo_in_training": sorted(
            i.pair.item_id for s in heritage.values() for i in s["train"] if i.pair.item_id in demo
        ),
    }
    data = Data(
        image,
        text,
        base_text,
        base_image,
        image_row,
        text_row,
        PairFeatures(
            image[[image_row[p.content_hash] for p in train_ok]],
            text[[text_row[p.captions[0].text] for p in train_ok]],
        ),
        heritage_train,
        val,
        test,
        counts,
        np.array(sorted(text_row[t] for t in distil), dtype=np.int64),
        np.array(sorted(train_images), dtype=np.int64),
    )
    return data, (split, src.corpus_split)


def heritage_sampler(data: Data) -> Callable[[int, np.random.Generator], PairFeatures]:
    """One caption per heritage training image per epoch, its query type drawn by :data:`QUERY_WEIGHTS`."""

    def sample(_epoch: int, rng: np.random.Generator) -> PairFeatures:
        rows, texts = [], []
        for row, choices in data.heritage_train:
            weights = np.array([w for _t, w in choices])
            pick = int(rng.choice(len(choices), p=weights / weights.sum()))
            rows.append(row)
            texts.append(data.text_row[choices[pick][0]])
        return PairFeatures(data.image[rows], data.text[texts])

    return sample


def encoder(heads: ContrastiveHeads, lite: LiteModel, weight: float) -> ev.Encoder:
    """Cached features → the vectors the shipped model computes: heads fused with the concept bridge."""
    import torch.nn.functional as F  # noqa: N812

    def encode(image: np.ndarray, text: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        heads.eval()
        with torch.inference_mode():
            i, t = torch.from_numpy(image), torch.from_numpy(text)
            hi, ht = F.normalize(heads.image_head(i), dim=-1), F.normalize(heads.text_head(t), dim=-1)
            if weight <= 0:
                return hi.numpy(), ht.numpy()
            a, b = float(np.sqrt(1 - weight)), float(np.sqrt(weight))
            img = torch.cat([a * hi, b * lite.bridge_image(i)], dim=-1)
            txt = torch.cat([a * ht, b * F.normalize(t, dim=-1)], dim=-1)
            return img.numpy(), txt.numpy()

    return encode


def evaluate_all(
    enc: ev.Encoder, galleries: dict[str, ev.Gallery], data: Data, *, baseline: bool = False
) -> dict[str, RetrievalRanks]:
    """Ranks per gallery; ``baseline`` reads the features of the baseline's towers."""
    image, text = (data.base_image, data.base_text) if baseline else (data.image, data.text)
    return {name: ev.ranks(enc, g, image, text) for name, g in galleries.items()}


def selection_score(ranks: dict[str, RetrievalRanks]) -> float:
    """Macro-average over :data:`SELECTION_SETS` of each set's mean text→image R@10 over its query types."""
    per_set = []
    for name in SELECTION_SETS:
        values = [ev.r10(r) for key, r in ranks.items() if key.split("/")[0] == name]
        per_set.append(float(np.mean(values)))
    return float(np.mean(per_set))


def _prototypes(data: Data, features: Features) -> Prototypes:
    lite = features.embedder.lite
    weight = lite.classifier.weight.detach().numpy()
    bias = lite.classifier.bias.detach().numpy()
    start = data.image.mean(axis=0)
    proto_img = prototype_image_features(weight, bias, start)
    names = class_short_names()
    texts = [t.format(n) for n in names for t in PROTOTYPE_TEMPLATES]
    found = features.texts(texts)
    proto_txt = np.stack([found[t] for t in texts]).reshape(len(names), len(PROTOTYPE_TEMPLATES), -1)
    return Prototypes(proto_img, proto_txt.astype(np.float32), data.image.std(axis=0).astype(np.float32))


def _train(
    variant: Variant,
    data: Data,
    warm: tuple[ContrastiveHeads, str],
    prototypes: Prototypes | None,
    score: Callable[[ContrastiveHeads], float],
) -> tuple[ContrastiveHeads, Any]:
    """Train one variant from the warm heads (``warm``: heads and their text-tower kind) or fresh ones."""
    from iconosearch.lite.heads import new_heads

    heads = (
        copy.deepcopy(warm[0])
        if variant.warm_start
        else new_heads(LiteConfig(head="mlp", text_tower=warm[1]), seed=variant.seed)
    )
    heritage = heritage_sampler(data)
    protos = (
        prototypes.sampler(variant.prototypes_per_epoch)
        if prototypes and variant.prototypes_per_epoch
        else None
    )

    def extra(epoch: int, rng: np.random.Generator) -> PairFeatures:
        parts = [heritage(epoch, rng)] + ([protos(epoch, rng)] if protos else [])
        return PairFeatures(np.concatenate([p.image for p in parts]), np.concatenate([p.text for p in parts]))

    config = TrainConfig(
        epochs=variant.epochs, lr=variant.lr, seed=variant.seed, feature_dropout=FEATURE_DROPOUT
    )
    result = train_heads(heads, data.clipart_train, config=config, evaluate=score, extra_pairs=extra)
    return heads, result


def _bridge_curve(heads: ContrastiveHeads, lite: Any, data: Data) -> dict[float, dict[str, Any]]:
    """Validation scores of trained heads at every bridge weight."""
    curve: dict[float, dict[str, Any]] = {}
    for w in BRIDGE_WEIGHTS:
        ranks = evaluate_all(encoder(heads, lite, w), data.val, data)
        curve[w] = {
            "score": selection_score(ranks),
            "clipart": ev.r10(ranks["clipart/full"]),
            "sets": {k: ev.r10(r) for k, r in ranks.items()},
        }
    return curve


def _choose(curves: Sequence[dict[float, dict[str, Any]]], clip_floor: float) -> tuple[int, float]:
    """(variant, bridge weight) with the best selection score among those that keep clip art.

    When none does (a new text tower can lose clip art whatever the weight), the floor moves down to
    :data:`CLIPART_MAX_DROP` below the best clip art any choice reaches: lose least, then the best score.
    """
    every = [(n, w) for n in range(len(curves)) for w in BRIDGE_WEIGHTS]
    best_clipart = max(curves[n][w]["clipart"] for n, w in every)
    floor = clip_floor if best_clipart >= clip_floor else best_clipart - CLIPART_MAX_DROP
    candidates = [(n, w) for n, w in every if curves[n][w]["clipart"] >= floor]
    return max(candidates, key=lambda c: curves[c[0]][c[1]]["score"])


def build_lite(
    out_dir: Path,
    inputs: BuildInputs,
    *,
    variants: Sequence[Variant] | None = None,
    log: Callable[[str], None] = lambda _m: None,
    progress: Progress | None = None,
) -> BuildReport:
    """Run the whole build; writes heads, config, split, metrics and the model card into ``out_dir``."""
    from iconosearch.lite.heads import compute_class_text, heads_state, load_heads
    from iconosearch.models.lite import save_lite

    base_config, base_heads, base_class_text = load_heads(inputs.baseline)
    new_config = inputs.tower_config()
    if variants is None:
        same = all(same_towers(base_config, new_config))
        variants = DEFAULT_VARIANTS if same else CROSS_TOWER_VARIANTS
    base_features = base_source(inputs.cache_dir, base_config, new_config)
    data, (split, corpus_split) = assemble(inputs, (base_config, base_features), log, progress)
    log(f"data: {json.dumps({k: v for k, v in data.counts.items() if k != 'demo_in_training'})}")
    features = build_features(inputs)
    lite = features.embedder.lite
    lite.class_text = compute_class_text(lite, features.embedder.tokenizer)
    base_lite = base_model(base_config, base_class_text, lite, base_features)
    base_enc = encoder(base_heads, base_lite, base_config.bridge_weight)
    base_val = evaluate_all(base_enc, data.val, data, baseline=True)
    clip_floor = ev.r10(base_val["clipart/full"]) - CLIPART_MAX_DROP
    prototypes = _prototypes(data, features) if any(v.prototypes_per_epoch for v in variants) else None
    warm = (warm_heads(data, inputs.baseline, new_config), inputs.text_tower)

    def epoch_score(heads: ContrastiveHeads) -> float:
        # Per epoch: the selection score at a middle bridge weight (the weight is chosen afterwards).
        return selection_score(evaluate_all(encoder(heads, lite, 0.3), data.val, data))

    results = []
    for variant in variants:
        heads, result = _train(variant, data, warm, prototypes, epoch_score)
        curve = _bridge_curve(heads, lite, data)
        log(
            f"{variant.name}: best epoch {result.best_epoch}, "
            + ", ".join(f"w={w}: {c['score']:.3f} (clip art {c['clipart']:.3f})" for w, c in curve.items())
        )
        results.append((variant, heads, result, curve))
    chosen, weight = _choose([r[3] for r in results], clip_floor)
    variant, heads, result, _curve = results[chosen]
    config = dataclasses.replace(
        new_config,
        head="mlp",
        bridge_weight=weight,
        extra={
            "variant": variant.name,
            "best_epoch": result.best_epoch,
            "split_seed": split.seed,
            "corpus_digest": corpus_split.corpus_digest,
            "temperature": float(1 / heads.logit_scale.exp().item()),
        },
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    save_lite(out_dir, config, heads_state(heads), class_text=lite.class_text)
    metrics = paired_test_metrics(encoder(heads, lite, weight), base_enc, data)
    metrics.update(
        {
            "variant": variant.name,
            "best_epoch": result.best_epoch,
            "bridge_weight": weight,
            "text_tower": inputs.text_tower,
            "image_tower": inputs.image_tower,
            "baseline": {
                "path": inputs.baseline.as_posix(),
                "text_tower": base_config.text_tower,
                "image_tower": base_config.image_tower,
                "bridge_weight": base_config.bridge_weight,
                "val": {k: ev.r10(r) for k, r in base_val.items()},
                "clipart_floor": clip_floor,
            },
            "variants": {
                v.name: {
                    "best_epoch": r.best_epoch,
                    "val_selection_score": r.best_score,
                    "bridge_curve": {str(w): c for w, c in cu.items()},
                    "history": [asdict(e) for e in r.history],
                }
                for v, _h, r, cu in results
            },
            "counts": data.counts,
        }
    )
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n", encoding="utf-8")
    _write_split(out_dir / "split.json", split, corpus_split)
    return BuildReport(out_dir, variant.name, result.best_epoch, weight, metrics)


def paired_test_metrics(new: ev.Encoder, base: ev.Encoder, data: Data) -> dict[str, Any]:
    new_ranks = evaluate_all(new, data.test, data)
    base_ranks = evaluate_all(base, data.test, data, baseline=True)
    per_gallery = {
        name: {"new": ev.report(new_ranks[name], g), "baseline": ev.report(base_ranks[name], g)}
        for name, g in data.test.items()
    }
    heritage = [k for k in data.test if k.split("/")[0] in HERITAGE_SETS]
    comparisons: dict[str, Any] = {}
    for label, keys in {
        "heritage, all query types": heritage,
        "heritage, full captions": [k for k in heritage if k.endswith("/full")],
        **{f"{s}, all query types": [k for k in heritage if k.startswith(s + "/")] for s in HERITAGE_SETS},
        **{f"{s}, full captions": [f"{s}/full"] for s in HERITAGE_SETS},
        "clip art": ["clipart/full"],
        "photo-like stamps": ["photos/full"],
    }.items():
        comparisons[label] = ev.compare(
            [new_ranks[k] for k in keys], [base_ranks[k] for k in keys], [data.test[k] for k in keys]
        )
    return {"test": per_gallery, "vs_baseline_t2i_R@10": comparisons}


def _write_split(path: Path, split: Any, corpus_split: Any) -> None:
    from iconosearch.lite.corpus import split_to_json

    payload = {
        "format": "iconosearch-lite-split/2",
        "heritage": split.to_json(),
        "clipart": split_to_json(corpus_split),
    }
    path.write_text(json.dumps(payload, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
