"""What a lite build reads, split: the clip-art corpus, the photo-like stamps and the heritage sets.

Shared by the build (:mod:`iconosearch.lite.build`) and the comparisons that must see exactly its splits
(:mod:`iconosearch.lite.compare`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from iconosearch.evaluation.pairs import Caption, Pair
from iconosearch.lite.corpus import CorpusItem, default_cache_dir, load_corpus, make_split, normalise_caption
from iconosearch.lite.features import colour_count
from iconosearch.lite.heritage import HeritageItem, demo_item_ids, load_heritage, split_heritage

if TYPE_CHECKING:
    from iconosearch.lite.build import BuildInputs

PHOTO_MIN_COLOURS: Final = 2000
"""A Tux Paint stamp with more distinct colours than this (at 128 px) counts as a photograph."""
SAMPLE_SEED: Final = 20261130
HERITAGE_SETS: Final = ("paintings", "watercolours", "manuscripts")
PARTS: Final = ("train", "val", "test")


def _rank(text: str) -> str:
    return hashlib.sha256(f"{SAMPLE_SEED}:{text}".encode()).hexdigest()


def _file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def clipart_pair(item: CorpusItem, collection: str) -> Pair:
    return Pair(
        item.key,
        f"{collection}:{normalise_caption(item.caption)}",
        collection,
        item.image,
        _file_hash(item.image),
        (Caption(item.caption, "en"),),
        rights=item.license,
    )


@dataclass(frozen=True, slots=True)
class Sources:
    corpus_split: Any
    clip: dict[str, list[CorpusItem]]
    """Clip art per part; ``train`` is the build's deterministic subsample."""
    clip_train_captions: set[str]
    """Every clip-art training caption (distillation reads texts only, so all of them)."""
    stamps: list[CorpusItem]
    photos: list[CorpusItem]
    """The photo-like stamps used (a deterministic subsample)."""
    sets: dict[str, list[HeritageItem]]
    demo: set[str]
    split: Any
    heritage: dict[str, dict[str, list[HeritageItem]]]
    """Heritage items per set and part."""

    @property
    def clip_pairs(self) -> dict[str, list[Pair]]:
        return {p: [clipart_pair(i, "clipart") for i in items] for p, items in self.clip.items()}

    @property
    def photo_pairs(self) -> list[Pair]:
        return [clipart_pair(i, "photos") for i in self.photos]


def load_sources(inputs: BuildInputs, log: Callable[[str], None]) -> Sources:
    """Load both corpora and split them as the build does."""
    corpus = load_corpus(inputs.cache_dir or default_cache_dir(), log=log)
    corpus_split = make_split(corpus)
    part = corpus_split.part_of()
    clip = {p: [i for i in corpus if part[i.key] == p] for p in PARTS}
    clip_train_captions = {i.caption for i in clip["train"]}
    clip["train"] = sorted(clip["train"], key=lambda i: _rank(i.key))[: inputs.clipart_train]
    stamps = [i for i in corpus if part[i.key] == "institution"]
    photos = [i for i in stamps if colour_count(i.image) > PHOTO_MIN_COLOURS]
    photos = sorted(photos, key=lambda i: _rank(i.key))[: inputs.photos]
    sets = load_heritage(inputs.heritage, HERITAGE_SETS)
    demo = demo_item_ids(inputs.demo_metadata) if inputs.demo_metadata else set()
    # The demo shows every painting and manuscript figure (they may be trained on by their split), but
    # only a slice of the watercolours: those, with their whole variety, stay out of training.
    split = split_heritage(sets, held_out={d for d in demo if d.startswith("watercolours/")})
    heritage = {
        name: {p: [i for i in items if split.part_of(i.pair) == p] for p in PARTS}
        for name, items in sets.items()
    }
    return Sources(corpus_split, clip, clip_train_captions, stamps, photos, sets, demo, split, heritage)
