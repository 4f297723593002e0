"""Rebuild the heritage demo collection (demo/collection/: images + metadata.csv) deterministically.

    python demo/build_collection.py --heritage PATH            # rewrite demo/collection from the sources
    python demo/build_collection.py --heritage PATH --check    # rebuild in a temp folder and compare

``PATH`` is a folder holding the heritage sets in the local-folder format (``images/`` + ``metadata.csv``
each): ``wga-paintings/``, ``usda-pomological/`` and ``stellarium-manuscripts/`` (in this project's
workspace: ``../shared/heritage``). The 1689 world map comes from Debian ``marble-qt-data``, fetched with
``apt-get download`` (no root needed) into ``~/.cache/iconosearch/demo-sources`` on first use.

What goes in (the rule is in DATASHEET.md, and :func:`select_watercolours` is its only implementation):

* every painting and every manuscript figure;
* a stratified slice of the watercolours: 200 places shared out over fruit kinds in proportion to the square
  root of each kind's size (largest remainders), each kind's places filled by cycling over its decades;
* Gerard van Schagen's 1689 world map and three details of it.

Each item keeps its source file name under a folder named after its set (``usda-pomological/image-12.jpg``
is ``usda-pomological/images/image-12.jpg`` of the source) and its metadata row verbatim, except that
paintings get the subject "paintings" and their dates are written in forms the IIIF date parser reads
("1550-52" → "1550/1552", "XVII century" → "17th century"). Images are only resized and re-encoded, never
cropped or edited (the manuscript figures are CC BY-ND): paintings and map to a long side of 640 px (JPEG
quality 80), larger manuscript figures to 640 px (quality 85); smaller ones and the watercolour
thumbnails are copied byte for byte.
"""

from __future__ import annotations

import argparse
import csv
import filecmp
import hashlib
import math
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

HERE = Path(__file__).resolve().parent
OUT = HERE / "collection"
FIELDS = ("file", "title", "description", "date", "creator", "rights", "attribution", "source", "subjects")
MAX_TOTAL_BYTES = 25 * 1024 * 1024
"""Budget for everything under demo/ (the collection is most of it)."""

PAINTINGS, WATERCOLOURS, MANUSCRIPTS, MAPS = (
    "wga-paintings",
    "usda-pomological",
    "stellarium-manuscripts",
    "maps",
)
WATERCOLOUR_PLACES = 200
UNDATED = "undated"


@dataclass(frozen=True, slots=True)
class Render:
    """How one image's pixels are made: copied, or resized (never cropped, except the PD map details)."""

    long_side: int | None = None
    """None: copy the source bytes unchanged."""
    quality: int = 80
    box: tuple[int, int, int, int] | None = None
    """A detail of a public-domain source; never used for items whose licence forbids derivatives."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One demo item: where its pixels come from, how they are rendered, and its metadata.csv row."""

    file: str
    source: Path
    render: Render
    row: dict[str, str]


def read_rows(folder: Path) -> list[dict[str, str]]:
    with (folder / "metadata.csv").open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        if tuple(reader.fieldnames or ()) != FIELDS:
            raise SystemExit(f"{folder}/metadata.csv: expected columns {FIELDS}, got {reader.fieldnames}")
        return list(reader)


def _entry(folder: Path, set_name: str, row: dict[str, str], render: Render, **changes: str) -> Entry:
    src = folder / row["file"]
    if not src.is_file():
        raise SystemExit(f"{src} is listed in {folder}/metadata.csv but missing")
    name = f"{set_name}/{Path(row['file']).name}"
    return Entry(file=name, source=src, render=render, row={**row, **changes, "file": name})


# ------------------------------------------------------------------ paintings

_ROMAN = {"XV": 15, "XVI": 16, "XVII": 17, "XVIII": 18, "XIX": 19, "XX": 20}


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def painting_date(text: str) -> str:
    """The Web Gallery of Art's date in a form that iconosearch's date parsers read without guessing.

    "1550-52" would otherwise be read as year 1550, month 52; "XVII century" would give no date at all.
    """
    text = text.strip()
    if m := re.fullmatch(r"(\d{4})-(\d{2})", text):
        return f"{m[1]}/{m[1][:2]}{m[2]}"
    if m := re.fullmatch(r"(\d{4})-(\d{4})", text):
        return f"{m[1]}/{m[2]}"
    if m := re.fullmatch(r"(\d{3})0s", text):
        return f"{m[1]}0/{m[1]}9"
    if m := re.fullmatch(r"(?:(first|second) half of )?([XVI]+) century", text):
        century = f"{_ordinal(_ROMAN[m[2]])} century"
        return f"{m[1]} half of the {century}" if m[1] else century
    return text


def painting_entries(heritage: Path) -> list[Entry]:
    folder = heritage / PAINTINGS
    return [
        _entry(
            folder,
            PAINTINGS,
            row,
            Render(long_side=640, quality=80),
            date=painting_date(row["date"]),
            subjects=row["subjects"] or "paintings",
        )
        for row in read_rows(folder)
    ]


# ------------------------------------------------------------------ manuscripts


def manuscript_entries(heritage: Path) -> list[Entry]:
    folder = heritage / MANUSCRIPTS
    entries = []
    for row in read_rows(folder):
        with Image.open(folder / row["file"]) as im:
            small = max(im.size) <= 640 and im.format == "JPEG"
        render = Render() if small else Render(long_side=640, quality=85)
        entries.append(_entry(folder, MANUSCRIPTS, row, render))
    return entries


# ------------------------------------------------------------------ watercolours


def fruit_kind(row: dict[str, str]) -> str:
    """The fruit kind: the last of the watercolour's subjects ("Malus domestica;apples" → "apples")."""
    return row["subjects"].split(";")[-1].strip().lower()


def decade(row: dict[str, str]) -> str:
    year = row["date"].strip()[:4]
    return f"{year[:3]}0s" if year.isdigit() else UNDATED


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def kind_places(counts: Counter[str], places: int) -> dict[str, int]:
    """Places per kind ∝ √(kind size), by largest remainders (ties: kind name); never more than it has."""
    weights = {k: math.sqrt(n) for k, n in counts.items()}
    total = sum(weights.values())
    exact = {k: places * w / total for k, w in weights.items()}
    out = {k: min(counts[k], math.floor(x)) for k, x in exact.items()}
    by_remainder = sorted(counts, key=lambda k: (-(exact[k] - math.floor(exact[k])), k))
    for k in by_remainder:
        if sum(out.values()) >= places:
            break
        if out[k] < counts[k]:
            out[k] += 1
    return out


def _cycle_decades(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """One kind's rows, ordered by cycling over its decades (chronological, undated last).

    Within a decade, rows are ordered by the SHA-256 of their source file name: a fixed, content-blind
    shuffle that does not depend on the order of metadata.csv.
    """
    by_decade: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in sorted(rows, key=lambda r: _hash(r["file"])):
        by_decade[decade(row)].append(row)
    order = sorted(by_decade, key=lambda d: (d == UNDATED, d))
    out: list[dict[str, str]] = []
    for i in range(max(len(v) for v in by_decade.values())):
        out += [by_decade[d][i] for d in order if i < len(by_decade[d])]
    return out


def select_watercolours(
    rows: Iterable[dict[str, str]], places: int = WATERCOLOUR_PLACES
) -> list[dict[str, str]]:
    """The demo's watercolours: a slice stratified by fruit kind and decade, one per variety first.

    Each kind's places are filled from its decade cycle, skipping a variety (title) already taken; only
    when a kind has fewer varieties than places are repeats taken, in the same order.
    """
    by_kind: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        by_kind[fruit_kind(row)].append(row)
    quota = kind_places(Counter({k: len(v) for k, v in by_kind.items()}), places)
    chosen: list[dict[str, str]] = []
    for kind in sorted(by_kind):
        cycle = _cycle_decades(by_kind[kind])
        firsts, repeats, titles = [], [], set()
        for row in cycle:
            (repeats if row["title"] in titles else firsts).append(row)
            titles.add(row["title"])
        chosen += (firsts + repeats)[: quota[kind]]
    return chosen


def watercolour_entries(heritage: Path) -> list[Entry]:
    folder = heritage / WATERCOLOURS
    return [_entry(folder, WATERCOLOURS, row, Render()) for row in select_watercolours(read_rows(folder))]


# ------------------------------------------------------------------ the 1689 world map

MARBLE_DEB = "marble-qt-data"
SCHAGEN_PATH = "usr/share/marble/data/maps/earth/schagen1689/schagen1689.jpg"
PD_MARK = "http://creativecommons.org/publicdomain/mark/1.0/"
SCHAGEN_NOTE = (
    "Hand-coloured engraved world map published by Gerard van Schagen in Amsterdam in 1689, shown as the "
    "plate carrée texture of Marble's 'Historical Map 1689' theme."
)
SCHAGEN_DETAILS: tuple[tuple[str, str, str, tuple[int, int, int, int] | None, str], ...] = (
    (
        "schagen-1689-world-map.jpg",
        "World map by Gerard van Schagen, 1689",
        SCHAGEN_NOTE,
        None,
        "maps;world map;cartography;17th century;engraving",
    ),
    (
        "schagen-1689-americas.jpg",
        "The Americas on Gerard van Schagen's world map, 1689",
        "Detail of the 1689 world map: North and South America, with California drawn as an island. "
        + SCHAGEN_NOTE,
        (0, 0, 1350, 1350),
        "maps;America;cartography;17th century;engraving",
    ),
    (
        "schagen-1689-old-world.jpg",
        "Europe, Africa and Asia on Gerard van Schagen's world map, 1689",
        "Detail of the 1689 world map: Europe, Africa, Asia and the East Indies. " + SCHAGEN_NOTE,
        (1350, 0, 2700, 1100),
        "maps;Europe;Africa;Asia;cartography;17th century;engraving",
    ),
    (
        "schagen-1689-title-cartouche.jpg",
        "Title cartouche of Gerard van Schagen's world map, 1689",
        "Detail of the 1689 world map: the title 'Nova totius terrarum orbis tabula' in a cartouche "
        "framed by a wreath of leaves. " + SCHAGEN_NOTE,
        (1330, 1080, 2270, 1340),
        "maps;cartouche;lettering;ornament;17th century;engraving",
    ),
)


def map_entries(cache: Path) -> list[Entry]:
    """The 1689 map (public domain) and three details of it: the only crops, of a public-domain work."""
    source = fetch_deb(MARBLE_DEB, cache) / SCHAGEN_PATH
    return [
        Entry(
            file=f"{MAPS}/{name}",
            source=source,
            render=Render(long_side=640, quality=80, box=box),
            row={
                "file": f"{MAPS}/{name}",
                "title": title,
                "description": description,
                "date": "1689",
                "creator": "Gerard van Schagen",
                "rights": PD_MARK,
                "attribution": "Gerard van Schagen, 1689 (public domain; scan via Wikipedia, Marble project "
                "via Debian)",
                "source": f"Debian {MARBLE_DEB}: /{SCHAGEN_PATH} (Wikipedia, public domain)",
                "subjects": subjects,
            },
        )
        for name, title, description, box, subjects in SCHAGEN_DETAILS
    ]


def fetch_deb(package: str, cache: Path) -> Path:
    """Download (apt-get download, no root) and unpack one Debian package; reuse what is there."""
    root = cache / "extract" / package
    if (root / ".complete").is_file():
        return root
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    if not list(debs.glob(f"{package}_*.deb")):
        subprocess.run(["apt-get", "download", package], cwd=debs, check=True)  # noqa: S603, S607
    deb = sorted(debs.glob(f"{package}_*.deb"))[-1]
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)  # noqa: S603, S607
    (root / ".complete").write_text(deb.name + "\n", encoding="utf-8")
    return root


# ------------------------------------------------------------------ build


def render(entry: Entry, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    how = entry.render
    if how.long_side is None:
        shutil.copyfile(entry.source, dest)
        return
    with Image.open(entry.source) as src:
        im = src.convert("RGB")
    if how.box is not None:
        im = im.crop(how.box)
    im.thumbnail((how.long_side, how.long_side), Image.Resampling.LANCZOS)
    im.save(dest, format="JPEG", quality=how.quality, optimize=True)


def entries(heritage: Path, cache: Path) -> list[Entry]:
    return (
        painting_entries(heritage)
        + manuscript_entries(heritage)
        + watercolour_entries(heritage)
        + map_entries(cache)
    )


def build(out: Path, heritage: Path, cache: Path) -> Counter[str]:
    items = entries(heritage, cache)
    duplicates = [name for name, n in Counter(e.file for e in items).items() if n > 1]
    if duplicates:
        raise SystemExit(f"two items would be written to the same file: {duplicates[:5]}")
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for entry in items:
        render(entry, out / entry.file)
    rows = sorted((e.row for e in items), key=lambda r: r["file"])
    with (out / "metadata.csv").open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    # The rest of demo/ (this script, the datasheet) plus the collection just written.
    total = sum(p.stat().st_size for p in HERE.rglob("*") if p.is_file() and OUT not in p.parents)
    total += sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    if total > MAX_TOTAL_BYTES:
        raise SystemExit(f"demo/ would be {total} bytes, over the {MAX_TOTAL_BYTES} byte budget")
    return Counter(e.file.split("/", 1)[0] for e in items)


def _differences(fresh: Path, committed: Path) -> list[str]:
    def files(root: Path) -> set[str]:
        return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}

    a, b = files(fresh), files(committed)
    bad = sorted(a ^ b)
    bad += [f for f in sorted(a & b) if not filecmp.cmp(fresh / f, committed / f, shallow=False)]
    return bad


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--heritage", type=Path, required=True, help="folder with the heritage sets")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "iconosearch" / "demo-sources")
    parser.add_argument("--check", action="store_true", help="rebuild in a temp folder and compare")
    args = parser.parse_args()
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            fresh = Path(tmp) / "collection"
            build(fresh, args.heritage, args.cache)
            bad = _differences(fresh, args.out)
            if bad:
                print(f"demo collection differs from a fresh build: {bad[:20]}", file=sys.stderr)
                return 1
            print("demo collection matches a fresh build")
            return 0
    counts = build(args.out, args.heritage, args.cache)
    total = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"wrote {sum(counts.values())} images ({total / 1e6:.1f} MB) to {args.out}")
    for name, n in sorted(counts.items()):
        print(f"  {name:24s} {n}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
