"""Image–caption pairs of a harvested collection, and their deterministic split by manifest.

Pages of one book must never straddle train and test, or a fine-tuned model is rewarded for memorising a
book rather than for understanding its pictures: the split unit is therefore the *group* (the manifest).
Identical images (same content hash) are kept once, so one picture cannot sit on both sides either.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from iconosearch.records import HarvestedImage, ImageRecord, local_identity

Part = Literal["train", "val", "test", "heldout"]
PARTS: tuple[Part, ...] = ("train", "val", "test", "heldout")
SPLIT_FORMAT = "iconosearch-split/1"
MIN_GROUPS = 3


@dataclass(frozen=True, slots=True)
class Caption:
    text: str
    lang: str
    """BCP-47 tag, or ``"none"`` when the source did not say."""


@dataclass(frozen=True, slots=True)
class Pair:
    """One image with its captions (one per language)."""

    item_id: str
    """Record id of the image."""
    group: str
    """Split unit: the manifest the image belongs to."""
    collection: str
    image_path: Path
    content_hash: str
    captions: tuple[Caption, ...]
    rights: str | None = None
    provider: str | None = None
    century: int | None = None


@dataclass(frozen=True, slots=True)
class PairSet:
    pairs: tuple[Pair, ...]
    excluded: dict[str, int] = field(default_factory=dict)
    """Why records were left out, and how many: ``captionless``, ``duplicate-image``, ``missing-file``."""


def captions_of(record: ImageRecord) -> tuple[Caption, ...]:
    """One caption per language from the record's caption (built by the harvest's caption rule)."""
    out: list[Caption] = []
    for lang, values in sorted(record.caption.items()):
        text = ". ".join(v.strip().rstrip(".") for v in values if v and v.strip())
        if text:
            out.append(Caption(text=text, lang=lang))
    return tuple(out)


def pair_of(image: HarvestedImage) -> Pair | None:
    """The pair of a harvested image, or None when it has no caption."""
    record = image.record
    captions = captions_of(record)
    if not captions:
        return None
    provider = None
    if record.providers:
        label = record.providers[0].label
        values = next(iter(label.values()), [])
        provider = values[0] if values else None
    if provider is None and record.required_statement is not None:
        # No provider stated (local folders, many v2 manifests): the attribution names who supplied it.
        values = next(iter(record.required_statement.value.values()), [])
        provider = values[0] if values else None
    return Pair(
        item_id=record.id,
        # Saved splits name groups: a local collection's manifest is named without the address it was
        # served at, so that a split still matches after the demo moves to another port or host.
        group=local_identity(record.manifest_id) or record.manifest_id,
        collection=record.collection,
        image_path=image.path,
        content_hash=image.content_hash,
        captions=captions,
        rights=record.rights,
        provider=provider,
        century=record.date.century if record.date is not None else None,
    )


def collect_pairs(images: Iterable[HarvestedImage]) -> PairSet:
    """Pairs from harvested images: captionless records and repeated images are excluded and counted."""
    pairs: list[Pair] = []
    excluded: Counter[str] = Counter()
    seen: set[str] = set()
    for image in images:
        if not image.path.is_file():
            excluded["missing-file"] += 1
            continue
        pair = pair_of(image)
        if pair is None:
            excluded["captionless"] += 1
            continue
        if image.content_hash in seen:
            excluded["duplicate-image"] += 1
            continue
        seen.add(image.content_hash)
        pairs.append(pair)
    return PairSet(pairs=tuple(pairs), excluded=dict(excluded))


def pairs_from_harvest(state_db: Path, collections: Sequence[str]) -> PairSet:
    """Pairs of the given harvested collections (images from the harvest cache)."""
    from iconosearch.harvest.state import HarvestState

    total: list[Pair] = []
    excluded: Counter[str] = Counter()
    with HarvestState(state_db) as state:
        for name in collections:
            part = collect_pairs(state.iter_images(name))
            total.extend(part.pairs)
            excluded.update(part.excluded)
    return PairSet(pairs=tuple(total), excluded=dict(excluded))


def pairs_from_jsonl(path: Path) -> PairSet:
    """Pairs from a JSON-lines file, for material that is not harvested (an export, a research set).

    One object per line: ``image`` (path, relative to the file), ``caption`` (text) or ``captions``
    (``{lang: text}``), and optionally ``id``, ``group`` (the split unit, default: the image path),
    ``collection`` (default: the file's stem), ``lang`` (of ``caption``, default ``none``), ``rights``,
    ``provider`` (or ``attribution``), ``century``.
    """
    pairs: list[Pair] = []
    excluded: Counter[str] = Counter()
    seen: set[str] = set()
    base = path.parent
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            image = base / str(obj["image"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}:{n}: not a pair object with an 'image' ({exc})") from exc
        caps = obj.get("captions") or {}
        if not caps and obj.get("caption"):
            caps = {obj.get("lang", "none"): obj["caption"]}
        captions = tuple(
            Caption(text=str(t).strip(), lang=str(lang)) for lang, t in sorted(caps.items()) if str(t).strip()
        )
        if not captions:
            excluded["captionless"] += 1
            continue
        if not image.is_file():
            excluded["missing-file"] += 1
            continue
        digest = hashlib.sha256(image.read_bytes()).hexdigest()
        if digest in seen:
            excluded["duplicate-image"] += 1
            continue
        seen.add(digest)
        pairs.append(
            Pair(
                item_id=str(obj.get("id") or digest[:16]),
                group=str(obj.get("group") or obj["image"]),
                collection=str(obj.get("collection") or path.stem),
                image_path=image,
                content_hash=digest,
                captions=captions,
                rights=obj.get("rights"),
                provider=obj.get("provider") or obj.get("attribution"),
                century=obj.get("century"),
            )
        )
    return PairSet(pairs=tuple(pairs), excluded=dict(excluded))


class TooFewPairsError(ValueError):
    """Not enough pairs (or manifests) to make a train/validation/test split."""

    def __init__(self, message: str, *, minimum_pairs: int, got_pairs: int, got_groups: int) -> None:
        super().__init__(message)
        self.minimum_pairs = minimum_pairs
        self.got_pairs = got_pairs
        self.got_groups = got_groups


@dataclass(frozen=True, slots=True)
class Split:
    """Which part each group (manifest) belongs to; saved next to every model trained on it."""

    seed: int
    val_fraction: float
    test_fraction: float
    assignment: dict[str, Part]
    """group → part."""
    heldout_collections: tuple[str, ...] = ()
    created: str = ""
    collections: tuple[str, ...] = ()
    """Harvested collections the pairs came from, so that a split alone names its material."""
    pairs_file: Path | None = None
    """JSON-lines pairs file the pairs came from (saved relative to the split file)."""

    def part_of(self, pair: Pair) -> Part | None:
        """The part of a pair; None for groups the split has never seen (never used for training)."""
        return self.assignment.get(pair.group)

    def select(self, pairs: Iterable[Pair], part: Part) -> tuple[Pair, ...]:
        return tuple(p for p in pairs if self.assignment.get(p.group) == part)

    def counts(self, pairs: Iterable[Pair]) -> dict[str, int]:
        c: Counter[str] = Counter(self.part_of(p) or "unassigned" for p in pairs)
        return {k: c.get(k, 0) for k in (*PARTS, "unassigned")}

    def to_json(self) -> dict[str, Any]:
        groups: dict[str, list[str]] = {p: [] for p in PARTS}
        for g, p in sorted(self.assignment.items()):
            groups[p].append(g)
        return {
            "format": SPLIT_FORMAT,
            "unit": "manifest",
            "seed": self.seed,
            "val_fraction": self.val_fraction,
            "test_fraction": self.test_fraction,
            "heldout_collections": list(self.heldout_collections),
            "created": self.created,
            "collections": list(self.collections),
            "pairs_file": str(self.pairs_file) if self.pairs_file is not None else None,
            "groups": groups,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Split:
        if data.get("format") != SPLIT_FORMAT:
            raise ValueError(f"not an iconosearch split file (format {data.get('format')!r})")
        assignment: dict[str, Part] = {}
        for part in PARTS:
            for g in data["groups"].get(part, []):
                assignment[g] = part
        return cls(
            seed=int(data["seed"]),
            val_fraction=float(data["val_fraction"]),
            test_fraction=float(data["test_fraction"]),
            assignment=assignment,
            heldout_collections=tuple(data.get("heldout_collections", ())),
            created=str(data.get("created", "")),
            collections=tuple(data.get("collections") or ()),
            pairs_file=Path(data["pairs_file"]) if data.get("pairs_file") else None,
        )

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = self.to_json()
        if self.pairs_file is not None:
            # Relative to the split file, so a model folder and its pairs can move together.
            data["pairs_file"] = os.path.relpath(self.pairs_file.resolve(), path.parent.resolve())
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> Split:
        split = cls.from_json(json.loads(path.read_text(encoding="utf-8")))
        if split.pairs_file is not None and not split.pairs_file.is_absolute():
            split = replace(split, pairs_file=path.parent / split.pairs_file)
        return split


def minimum_pairs(val_fraction: float, test_fraction: float, min_eval_pairs: int) -> int:
    """Fewest pairs for which validation and test can each get ``min_eval_pairs``."""
    return max(MIN_GROUPS, math.ceil(min_eval_pairs / min(val_fraction, test_fraction)))


def _order_key(seed: int, group: str) -> str:
    return hashlib.sha256(f"{seed}\n{group}".encode()).hexdigest()


def split_by_group(
    pairs: Sequence[Pair],
    *,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    min_eval_pairs: int = 10,
    heldout_collections: Sequence[str] = (),
) -> Split:
    """Deterministic split of whole groups: shuffled by a seeded hash, then cut by pair counts.

    Pairs of ``heldout_collections`` all go to the ``heldout`` part. Raises :class:`TooFewPairsError` when
    validation or test would get fewer than ``min_eval_pairs`` pairs or there are fewer than 3 groups.
    """
    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError("val and test fractions must be in (0, 1) and sum to less than 1")
    held = set(heldout_collections)
    sizes: Counter[str] = Counter()
    assignment: dict[str, Part] = {}
    for p in pairs:
        if p.collection in held:
            assignment[p.group] = "heldout"
        else:
            sizes[p.group] += 1
    # A manifest in both a held-out and a training collection stays held out entirely.
    for g in list(sizes):
        if assignment.get(g) == "heldout":
            del sizes[g]
    n = sum(sizes.values())
    minimum = minimum_pairs(val_fraction, test_fraction, min_eval_pairs)

    def refuse(why: str) -> TooFewPairsError:
        return TooFewPairsError(
            f"too few image–caption pairs to split: {why}. A split needs at least {minimum} pairs from at "
            f"least {MIN_GROUPS} manifests (validation and test {min_eval_pairs} pairs each); "
            f"got {n} pairs from {len(sizes)} manifests",
            minimum_pairs=minimum,
            got_pairs=n,
            got_groups=len(sizes),
        )

    if n < minimum or len(sizes) < MIN_GROUPS:
        raise refuse("not enough pairs" if n < minimum else "not enough manifests")
    order = sorted(sizes, key=lambda g: _order_key(seed, g))
    targets: list[tuple[Part, float]] = [("test", test_fraction * n), ("val", val_fraction * n)]
    got: Counter[str] = Counter()
    i = 0
    for part, target in targets:
        # Always at least one group; stop before overshooting unless the part is still short of its target.
        while i < len(order) - 1 and (got[part] == 0 or got[part] + sizes[order[i]] / 2 <= target):
            assignment[order[i]] = part
            got[part] += sizes[order[i]]
            i += 1
    for g in order[i:]:
        assignment[g] = "train"
        got["train"] += sizes[g]
    if got["test"] < min_eval_pairs or got["val"] < min_eval_pairs or got["train"] == 0:
        raise refuse("the manifests are too unevenly sized to give every part enough pairs")
    return Split(
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        assignment=assignment,
        heldout_collections=tuple(sorted(held)),
        created=datetime.now(UTC).isoformat(timespec="seconds"),
    )
