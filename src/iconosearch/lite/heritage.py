"""Heritage image–caption pairs for the default model, from folders in the local-folder format.

Each heritage set (paintings, pomological watercolours, manuscript constellation figures) is registered
with three rules: its **split unit** (a work or a series, so near-duplicates never straddle train and
test), its **queries** (captions built from the real catalogue fields in the ways researchers search:
subject words, titles, creator and period, the full caption) and, where it is large, a deterministic
**subsample** that keeps CPU time bounded. The folder holding the sets is an argument, never a fixed path.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from iconosearch.evaluation.pairs import Caption, Pair, Part, Split, split_by_group

Row = dict[str, str]
QUERY_TYPES: Final = ("full", "title", "subject", "creator", "period")
"""Query kinds, as a researcher types them: the whole caption, a title, subject words, "a painting by X",
"a 17th-century painting"."""
SPLIT_SEED: Final = 20261130
SUBSAMPLE_SEED: Final = 20261130


@dataclass(frozen=True, slots=True)
class HeritageItem:
    pair: Pair
    """The image, its split group and its full caption."""
    queries: dict[str, str]
    """Query type → caption of that type (only the types this set's catalogue fields support)."""


@dataclass(frozen=True, slots=True)
class HeritageSet:
    name: str
    folder: str
    """Folder name under the heritage root."""
    group: Callable[[Row], str]
    queries: Callable[[Row], dict[str, str]]
    val_fraction: float
    test_fraction: float
    keep: Callable[[list[Row]], list[Row]] = list
    """Which rows to use at all (a deterministic subsample of a large set)."""


SETS: dict[str, HeritageSet] = {}


def register_set(heritage_set: HeritageSet) -> HeritageSet:
    if heritage_set.name in SETS:
        raise ValueError(f"heritage set {heritage_set.name!r} is already registered")
    SETS[heritage_set.name] = heritage_set
    return heritage_set


# --- catalogue fields → words ---------------------------------------------------------------------

_YEAR: Final = re.compile(r"\b(1[0-9]{3})\b")
_LIFE_DATES: Final = re.compile(r"^(ca\.|b\.|d\.|fl\.)?\s*\d{3,4}")


def person_name(creator: str) -> str:
    """'CONSTABLE, John' → 'John Constable'; 'Newton, Amanda Almira, ca. 1860-1943' → 'Amanda Almira
    Newton'."""
    parts = [p.strip() for p in creator.split(",") if p.strip()]
    parts = [p for p in parts if not _LIFE_DATES.match(p)]
    if not parts:
        return ""
    surname = parts[0].title() if parts[0].isupper() else parts[0]
    # Particles the WGA lists after the given name ("GOGH, Vincent van") belong before the surname.
    return " ".join([*parts[1:], surname]).strip()


def century(date: str) -> str | None:
    """'1622-25' → '17th-century'; None without a year."""
    match = _YEAR.search(date)
    if match is None:
        return None
    c = int(match.group(1)) // 100 + 1
    return f"{c}th-century"


def singular(plural: str) -> str:
    """'pears' → 'pear', 'peaches' → 'peach', 'cherries' → 'cherry'; other words unchanged."""
    if plural.endswith("ies"):
        return plural[:-3] + "y"
    if re.search(r"(ch|sh|x|o)es$", plural):
        return plural[:-2]
    if plural.endswith("s") and not plural.endswith("ss"):
        return plural[:-1]
    return plural


def article(word: str) -> str:
    return ("an " if word[:1].lower() in "aeiou" else "a ") + word


def _rank(seed: int, text: str) -> str:
    return hashlib.sha256(f"{seed}:{text}".encode()).hexdigest()


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


# --- the sets -----------------------------------------------------------------------------------


def _painting_queries(row: Row) -> dict[str, str]:
    name = person_name(row["creator"])
    period = century(row["date"])
    by = f", a painting by {name}" if name else ""
    out = {"full": f"{row['title']}{by}" + (f", {row['date']}" if row["date"] else ""), "title": row["title"]}
    if name:
        out["creator"] = f"a painting by {name}"
    if period:
        out["period"] = f"a {period} painting"
    return out


register_set(
    HeritageSet(
        name="paintings",
        folder="wga-paintings",
        group=lambda r: f"{_norm(r['title'])}|{_norm(r['creator'])}",
        queries=_painting_queries,
        val_fraction=0.2,
        test_fraction=0.25,
    )
)


def fruit_kind(row: Row) -> str:
    """The fruit kind of a watercolour: its last subject ('pears')."""
    return row["subjects"].split(";")[-1].strip()


WATERCOLOURS_PER_KIND: Final = 60
"""At most this many watercolours per fruit kind, whole varieties at a time: 3,807 apples would swamp
the set, and CPU time for tower features (images and captions) is the build's bottleneck on 2 cores."""


def _watercolour_subsample(rows: list[Row]) -> list[Row]:
    by_kind: dict[str, dict[str, list[Row]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        if fruit_kind(row) != "unknown":
            by_kind[fruit_kind(row)][row["title"]].append(row)
    kept: list[Row] = []
    for kind in sorted(by_kind):
        n = 0
        for title in sorted(by_kind[kind], key=lambda t: _rank(SUBSAMPLE_SEED, t)):
            if n >= WATERCOLOURS_PER_KIND:
                break
            kept += by_kind[kind][title]
            n += len(by_kind[kind][title])
    return kept


def _watercolour_queries(row: Row) -> dict[str, str]:
    kind = fruit_kind(row)
    name = person_name(row["creator"])
    by = f", by {name}" if name else ""
    # No separate title query: the pomological name is in the full caption, and a title per variety
    # would double the captions to embed (CPU time) for little.
    out = {"full": row["description"] + by + (f", {row['date']}" if row["date"] else ""), "subject": kind}
    if name:
        out["creator"] = f"a watercolour by {name}"
    return out


register_set(
    HeritageSet(
        name="watercolours",
        folder="usda-pomological",
        group=lambda r: _norm(r["title"]),  # the variety: its images are near-duplicates of each other
        queries=_watercolour_queries,
        val_fraction=0.1,
        test_fraction=0.15,
        keep=_watercolour_subsample,
    )
)


def _manuscript_queries(row: Row) -> dict[str, str]:
    subject = row["subjects"].split(";")[-1].strip()
    description = row["description"].split(". Cut out")[0]
    return {"full": f"{row['title']}. {description}", "title": row["title"], "subject": subject}


register_set(
    HeritageSet(
        name="manuscripts",
        folder="stellarium-manuscripts",
        # The constellation: the same figure in both manuscripts stays on one side.
        group=lambda r: _norm(r["subjects"].split(";")[-1]),
        queries=_manuscript_queries,
        val_fraction=0.2,
        test_fraction=0.25,
    )
)


# --- loading and splitting -----------------------------------------------------------------------


def read_rows(folder: Path) -> list[Row]:
    with (folder / "metadata.csv").open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_set(root: Path, heritage_set: HeritageSet) -> list[HeritageItem]:
    """The (subsampled) items of one set under ``root``, in a stable order."""
    folder = root / heritage_set.folder
    if not (folder / "metadata.csv").is_file():
        raise FileNotFoundError(f"{folder} is not a heritage set folder (no metadata.csv)")
    items = []
    for row in heritage_set.keep(read_rows(folder)):
        image = folder / row["file"]
        queries = heritage_set.queries(row)
        items.append(
            HeritageItem(
                pair=Pair(
                    item_id=f"{heritage_set.name}/{Path(row['file']).name}",
                    group=f"{heritage_set.name}:{heritage_set.group(row)}",
                    collection=heritage_set.name,
                    image_path=image,
                    content_hash=file_hash(image),
                    captions=(Caption(queries["full"], "en"),),
                    rights=row.get("rights") or None,
                    provider=row.get("attribution") or None,
                ),
                queries=queries,
            )
        )
    return sorted(items, key=lambda i: i.pair.item_id)


def load_heritage(root: Path, names: Iterable[str] | None = None) -> dict[str, list[HeritageItem]]:
    return {name: load_set(root, SETS[name]) for name in (names or SETS)}


def split_heritage(
    sets: dict[str, list[HeritageItem]], *, held_out: Iterable[str] = (), seed: int = SPLIT_SEED
) -> Split:
    """One split over all sets: each set by its own fractions, by group; ``held_out`` item ids (the demo
    collection's watercolours) put their whole group in ``heldout``, never trained on or evaluated."""
    held = set(held_out)
    assignment: dict[str, Part] = {}
    for name, items in sets.items():
        rule = SETS[name]
        held_groups = {i.pair.group for i in items if i.pair.item_id in held}
        rest = [i.pair for i in items if i.pair.group not in held_groups]
        part = split_by_group(
            rest, val_fraction=rule.val_fraction, test_fraction=rule.test_fraction, seed=seed
        )
        assignment.update(part.assignment)
        assignment.update(dict.fromkeys(held_groups, "heldout"))
    return Split(seed=seed, val_fraction=0.0, test_fraction=0.0, assignment=assignment)


def demo_item_ids(metadata: Path) -> set[str]:
    """Item ids (``<set>/<file name>``) of the heritage images in a demo collection's metadata.csv."""
    by_folder = {s.folder: s.name for s in SETS.values()}
    ids = set()
    for row in read_rows(metadata.parent) if metadata.is_file() else []:
        for text in (row.get("file", ""), row.get("source", "")):
            parts = Path(text).parts
            if len(parts) >= 2 and parts[0] in by_folder:
                ids.add(f"{by_folder[parts[0]]}/{parts[-1]}")
    return ids
