"""Training inputs: captions as tokens, images as pixels, or frozen trunks' outputs from the feature cache.

Where a trunk is frozen (see :class:`~iconosearch.training.trainee.Trainee`), its outputs are computed once
per image content hash and caption, on all cores, and kept in the on-disk feature cache; epochs then only
run the heads. Where it trains, images are decoded for every batch (validation and test keep their
preprocessed pixels in memory, as float16).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from iconosearch.evaluation.benchmark import ModelEmbeddings
from iconosearch.evaluation.pairs import Pair
from iconosearch.training.features import FeatureCache, digest
from iconosearch.training.finetune_config import FinetuneConfig

if TYPE_CHECKING:
    import torch

    from iconosearch.training.trainee import Trainee

ProgressFn = Callable[[str, int, int], None]
"""(stage, done, total)."""


@dataclass
class Inputs:
    """Tower inputs of a set of pairs: cached features where the tower is frozen, else raw inputs."""

    pairs: tuple[Pair, ...]
    caption_index: list[list[int]]
    """Per pair, indices of its captions in the flat caption arrays."""
    image_feats: torch.Tensor | None
    text_feats: torch.Tensor | None
    tokens: torch.Tensor | None
    pixels: torch.Tensor | None = None
    """Preprocessed images kept in memory (validation/test only, when the image tower trains)."""
    rejected: dict[str, int] = field(default_factory=dict)
    """Pairs left out because their image cannot be decoded, by reason."""


def _chunks(n: int, size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, n, size):
        yield start, min(n, start + size)


def decode(pair: Pair, config: FinetuneConfig) -> Any:
    from iconosearch.images import open_image

    return open_image(pair.image_path, max_pixels=config.max_pixels, max_side=config.image_side)


@dataclass
class _Progress:
    report: ProgressFn | None
    stage: str
    total: int
    done: int = 0

    def add(self, n: int) -> None:
        self.done += n
        if self.report:
            self.report(self.stage, self.done, self.total)


def build_inputs(
    trainee: Trainee,
    pairs: Sequence[Pair],
    config: FinetuneConfig,
    cache: FeatureCache,
    *,
    keep_pixels: bool,
    progress: ProgressFn | None = None,
    stage: str = "features",
    batch_size: int = 32,
) -> Inputs:
    """Tokenise captions and compute (or load) the frozen trunks' features of ``pairs``.

    Pairs whose image cannot be decoded are left out and counted in ``Inputs.rejected``.
    """
    import torch

    rejected: dict[int, str] = {}
    if not trainee.image_frozen():
        # The image tower runs on every batch: weed out undecodable images now, not mid-epoch.
        rejected = _undecodable(pairs, config)
        pairs = [p for i, p in enumerate(pairs) if i not in rejected]
    texts = [c.text for p in pairs for c in p.captions]
    caption_index, start = [], 0
    for p in pairs:
        caption_index.append(list(range(start, start + len(p.captions))))
        start += len(p.captions)
    tokens = trainee.tokenizer(texts) if texts else None
    counter = _Progress(progress, stage, len(pairs) + len(texts))
    image_feats = text_feats = pixels = None
    if trainee.image_frozen():
        rows = _image_features(trainee, pairs, config, cache, batch_size, rejected, counter)
        if any(r is None for r in rows):
            # Undecodable images: rebuild without them (their features stay cached for the others).
            keep = [p for p, r in zip(pairs, rows, strict=True) if r is not None]
            again = build_inputs(trainee, keep, config, cache, keep_pixels=keep_pixels, batch_size=batch_size)
            again.rejected = dict(Counter(rejected.values()))
            return again
        image_feats = torch.from_numpy(np.stack([r for r in rows if r is not None])) if rows else None
    else:
        counter.add(len(pairs))
        if keep_pixels:
            pixels = torch.stack([trainee.preprocess(decode(p, config)).half() for p in pairs])
    if trainee.text_frozen() and tokens is not None:
        text_feats = _text_features(trainee, texts, tokens, config, cache, batch_size * 4, counter)
    counter.add(0)
    return Inputs(
        tuple(pairs), caption_index, image_feats, text_feats, tokens, pixels, dict(Counter(rejected.values()))
    )


def _undecodable(pairs: Sequence[Pair], config: FinetuneConfig) -> dict[int, str]:
    from iconosearch.images import ImageRejectedError, probe_image

    rejected: dict[int, str] = {}
    for i, p in enumerate(pairs):
        try:
            probe_image(p.image_path, max_pixels=config.max_pixels)
        except ImageRejectedError as exc:
            rejected[i] = exc.reason
    return rejected


def _image_features(
    trainee: Trainee,
    pairs: Sequence[Pair],
    config: FinetuneConfig,
    cache: FeatureCache,
    batch_size: int,
    rejected: dict[int, str],
    counter: _Progress,
) -> list[np.ndarray | None]:
    """Frozen image-trunk features per pair, from the cache or computed and cached; None when rejected."""
    import torch

    from iconosearch.images import ImageRejectedError

    img_key, _ = trainee.tower_keys(config.image_side)
    rows: list[np.ndarray | None] = [cache.get(img_key, p.content_hash) for p in pairs]
    todo = [i for i, r in enumerate(rows) if r is None]
    counter.add(len(pairs) - len(todo))
    for a, b in _chunks(len(todo), batch_size):
        idx, decoded = [], []
        for i in todo[a:b]:
            try:
                decoded.append(trainee.preprocess(decode(pairs[i], config)))
                idx.append(i)
            except ImageRejectedError as exc:
                rejected[i] = exc.reason
        if idx:
            px = torch.stack(decoded).to(trainee.device)
            with torch.inference_mode():
                feats = trainee.image_trunk(px).float().cpu().numpy()
            for i, f in zip(idx, feats, strict=True):
                rows[i] = f
                cache.put(img_key, pairs[i].content_hash, f)
        counter.add(b - a)
    return rows


def _text_features(
    trainee: Trainee,
    texts: list[str],
    tokens: torch.Tensor,
    config: FinetuneConfig,
    cache: FeatureCache,
    batch_size: int,
    counter: _Progress,
) -> torch.Tensor:
    """Frozen text-trunk features per caption, from the cache or computed and cached."""
    import torch

    _, txt_key = trainee.tower_keys(config.image_side)
    rows: list[np.ndarray | None] = [cache.get(txt_key, digest(t)) for t in texts]
    todo = [i for i, r in enumerate(rows) if r is None]
    counter.add(len(texts) - len(todo))
    for a, b in _chunks(len(todo), batch_size):
        idx = todo[a:b]
        with torch.inference_mode():
            feats = trainee.text_trunk(tokens[idx].to(trainee.device)).float().cpu().numpy()
        for i, f in zip(idx, feats, strict=True):
            rows[i] = f
            cache.put(txt_key, digest(texts[i]), f)
        counter.add(len(idx))
    return torch.from_numpy(np.stack([r for r in rows if r is not None]))


def image_batch(
    trainee: Trainee, inputs: Inputs, idx: Sequence[int], config: FinetuneConfig, dropout: float
) -> torch.Tensor:
    import torch

    if inputs.image_feats is not None:
        x = inputs.image_feats[list(idx)].to(trainee.device)
        return trainee.image_head(torch.nn.functional.dropout(x, dropout, training=dropout > 0))
    if inputs.pixels is not None:
        px = inputs.pixels[list(idx)].float().to(trainee.device)
    else:
        px = torch.stack([trainee.preprocess(decode(inputs.pairs[i], config)) for i in idx]).to(
            trainee.device
        )
    return trainee.image_head(trainee.image_trunk(px))


def text_batch(trainee: Trainee, inputs: Inputs, cidx: Sequence[int], dropout: float) -> torch.Tensor:
    import torch

    if inputs.text_feats is not None:
        x = inputs.text_feats[list(cidx)].to(trainee.device)
        return trainee.text_head(torch.nn.functional.dropout(x, dropout, training=dropout > 0))
    assert inputs.tokens is not None
    return trainee.text_head(trainee.text_trunk(inputs.tokens[list(cidx)].to(trainee.device)))


def embed_inputs(trainee: Trainee, inputs: Inputs, config: FinetuneConfig) -> ModelEmbeddings:
    """Final (as-saved) vectors of every image and caption of ``inputs``."""
    import torch

    n_img = len(inputs.pairs)
    n_txt = sum(len(c) for c in inputs.caption_index)
    img_out, txt_out = [], []
    with torch.inference_mode():
        for a, b in _chunks(n_img, 64):
            idx = list(range(a, b))
            if inputs.image_feats is not None:
                x = inputs.image_feats[a:b].to(trainee.device)
            elif inputs.pixels is not None:
                x = trainee.image_trunk(inputs.pixels[a:b].float().to(trainee.device))
            else:
                px = [trainee.preprocess(decode(inputs.pairs[i], config)) for i in idx]
                x = trainee.image_trunk(torch.stack(px).to(trainee.device))
            img_out.append(trainee.final_image(x).float().cpu().numpy())
        for a, b in _chunks(n_txt, 256):
            if inputs.text_feats is not None:
                x = inputs.text_feats[a:b].to(trainee.device)
            else:
                assert inputs.tokens is not None
                x = trainee.text_trunk(inputs.tokens[a:b].to(trainee.device))
            txt_out.append(trainee.final_text(x).float().cpu().numpy())
    return ModelEmbeddings(texts=np.concatenate(txt_out), images=np.concatenate(img_out))
