"""Rebuild the demo collection (demo/collection/: images + metadata.csv) deterministically.

    python demo/build_collection.py            # rewrite demo/collection from the sources
    python demo/build_collection.py --check    # rebuild into a temp folder and compare with the committed one

Sources, all public domain and none of them ever seen by iconosearch-lite in training:

1. the ``demo`` part of the iconosearch-lite split (``src/iconosearch/models/lite/split.json``): Open Clip
   Art Library drawings (Debian ``openclipart-png``/``openclipart-svg`` 0.18) held out per heritage concept,
   read through ``iconosearch.lite.corpus`` (fetched with ``apt-get download`` into
   ``~/.cache/iconosearch/corpus`` on first use, no root needed);
2. a few public-domain images from Debian ``marble-qt-data`` (G. van Schagen's 1689 world map and details
   of it; NASA's Blue Marble and City Lights), fetched the same way into
   ``~/.cache/iconosearch/demo-sources``.

Selection rule (see DATASHEET.md): demo-part items from the Open Clip Art Library whose long side is at
least 96 px, whose title is not boilerplate, that fall in one of the concepts below by folder/keywords,
and that are not on the short list of mislabelled or broken items; one image per caption. Every image is
decoded with ``iconosearch.images.open_image`` (transparency onto white), shrunk to a long side of 384 px
and saved as JPEG (quality 85), so the output depends only on the sources and the Pillow version.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import filecmp
import html
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from iconosearch.images import open_image
from iconosearch.lite.corpus import (
    CorpusItem,
    default_cache_dir,
    load_corpus,
    normalise_caption,
    read_split,
)

HERE = Path(__file__).resolve().parent
OUT = HERE / "collection"
LONG_SIDE = 384
MIN_SOURCE_SIDE = 96
JPEG_QUALITY = 85
MAX_TOTAL_BYTES = 15 * 1024 * 1024
FIELDS = ("file", "title", "description", "date", "creator", "rights", "attribution", "source", "subjects")

CC0 = "https://creativecommons.org/publicdomain/zero/1.0/"
PD_MARK = "https://creativecommons.org/publicdomain/mark/1.0/"
OPENCLIPART_DEB = "openclipart-png 1:0.18+dfsg-19"
OPENCLIPART_ATTRIBUTION = "Open Clip Art Library (public domain), via Debian"

# Concepts, first match wins: (name, folder prefixes, keyword/title pattern).
CONCEPTS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("heraldry", (), r"coat of arms|heraldr|\bshield\b|\bcrest\b|blazon"),
    ("flags", ("signs_and_symbols/flags",), r"\bflag\b"),
    ("maps", ("geography",), r"\bmaps?\b|\bmapa\b|\bglobe\b"),
    ("ships", ("transportation/boating",), r"\bboat|\bship|\bsail|\banchor\b|lighthouse|sailor"),
    (
        "instruments",
        (),
        r"violin|cello|\bharp\b|guitar|trumpet|oboe|\bdrum|piano|maraca|flute|\blute\b|saxophone|\bsax\b",
    ),
    ("music", ("recreation/music",), r"$^"),
    ("buildings", ("buildings/homes",), r"\bbuilding\b|\bhouse\b|\btower\b|\bchurch\b|\bcastle\b|library"),
    ("animals", ("animals",), r"\bdog\b|\bhorse\b|\bbird\b|\blion\b|\bcat\b"),
    ("plants", ("plants",), r"\bflower|\btree\b|\bplant\b|\bleaf\b"),
    ("people", ("people",), r"\bking\b|\bqueen\b|portrait|\bknight\b"),
)
SKIP_FOLDERS = ("people/clothing/pantyhose", "people/smilies", "people/stickmen", "buildings/furniture")
BOILERPLATE_TITLE = re.compile(
    r"clipart by|etiquette icons|^icons?$|rpg map elements|map symbols|^c rollandin", re.I
)
# Demo-pool items whose picture does not show the concept their folder or keywords suggest, or is broken
# (checked by eye on a contact sheet of the build).
EXCLUDED = frozenset(
    {
        "openclipart:people/stylized_yoga_person_ger_01",  # rendered with a "Linked Image Not Found" box
        "openclipart:people/stylized_yoga_person_ger_02",
        "openclipart:animals/lucchetto_grigio_archite_01",  # padlocks
        "openclipart:animals/lucchetto_ottone_archite_01",
        "openclipart:animals/tante_orme_sulla_neve_ar_01",  # footprints
        "openclipart:animals/tatoo_tatuaggio_tatuagg_01",
        "openclipart:electronics/macchina_fotografica_di_01",  # a camera
        "openclipart:food/meats_and_eggs/hot_dog",
        "openclipart:tools/leafrake_benji_park_01",
        "openclipart:recreation/music/CD_Player/rca_stereo_cd_player_jo_r",
        "openclipart:recreation/music/boombox_linda_kim_01",
        "openclipart:recreation/music/headphones_davide_pesent_",
        "openclipart:recreation/music/piano_theory_ganson1",  # a chord chart
        "openclipart:people/safety_pin_timothy_whit_r",
    }
)


@dataclass(frozen=True, slots=True)
class Entry:
    """One demo item: where its pixels come from and its metadata.csv row."""

    file: str
    load: object  # a Path, or a (Path, crop box) pair
    row: dict[str, str]
    concept: str


def fix_text(text: str) -> str:
    """Undo double HTML escaping and UTF-8 read as Latin-1 ('L&Atilde;&copy;zard' → 'Lézard')."""
    for _ in range(3):
        unescaped = html.unescape(text)
        if unescaped == text:
            break
        text = unescaped
    if "Ã" in text or "Â" in text:
        with contextlib.suppress(UnicodeEncodeError, UnicodeDecodeError):
            text = text.encode("latin-1").decode("utf-8")
    return " ".join(text.split())


def concept_of(item: CorpusItem) -> str | None:
    if any(item.category == f or item.category.startswith(f + "/") for f in SKIP_FOLDERS):
        return None
    text = f"{item.title} {item.description} {' '.join(item.keywords)}".lower()
    for name, folders, pattern in CONCEPTS:
        in_folder = any(item.category == f or item.category.startswith(f + "/") for f in folders)
        if in_folder or re.search(pattern, text):
            return name
    return None


_DATE_PATTERNS = (
    (re.compile(r"^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})"), lambda m: (m[1], m[2], m[3])),
    (re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})$"), lambda m: (m[3], m[1], m[2])),
)


def svg_date(item: CorpusItem, corpus_cache: Path) -> str:
    """The drawing's dc:date from its SVG, normalised to ISO (YYYY-MM-DD or YYYY), or ''."""
    rel = item.key.split(":", 1)[1]
    svg = corpus_cache / "extract" / "openclipart-svg" / "usr/share/openclipart/svg" / f"{rel}.svg"
    try:
        text = svg.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    found = re.search(r"<dc:date>([^<]*)</dc:date>", text)
    raw = found.group(1).strip() if found else ""
    for pattern, parts in _DATE_PATTERNS:
        m = pattern.match(raw)
        if m:
            year, month, day = parts(m)
            if 1990 < int(year) < 2030 and 1 <= int(month) <= 12 and 1 <= int(day) <= 31:
                return f"{year}-{int(month):02d}-{int(day):02d}"
    year_only = re.search(r"\b(199\d|20[0-2]\d)\b", raw)
    return year_only.group(1) if year_only else ""


def slug(text: str, limit: int = 48) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit].rstrip("-") or "item"


def openclipart_entries(corpus_cache: Path) -> list[Entry]:
    items = load_corpus(corpus_cache)
    split = read_split()
    demo_keys = set(split.parts["demo"])
    entries: list[Entry] = []
    seen_captions: set[str] = set()
    for item in sorted(items, key=lambda i: i.key):
        if item.key not in demo_keys or item.key in EXCLUDED or item.source != "openclipart-png":
            continue
        title = fix_text(item.title)
        if BOILERPLATE_TITLE.search(title):
            continue
        concept = concept_of(item)
        if concept is None:
            continue
        caption = normalise_caption(item.caption)
        if caption in seen_captions:
            continue
        with Image.open(item.image) as im:
            if max(im.size) < MIN_SOURCE_SIDE:
                continue
        seen_captions.add(caption)
        rel = item.key.split(":", 1)[1]
        keywords = [fix_text(k) for k in item.keywords]
        subjects = [concept, *[k for k in keywords if k != concept]]
        entries.append(
            Entry(
                file=f"oca-{slug(rel.rsplit('/', 1)[-1])}.jpg",
                load=item.image,
                concept=concept,
                row={
                    "title": title[:1].upper() + title[1:],
                    "description": fix_text(item.description),
                    "date": svg_date(item, corpus_cache),
                    "creator": fix_text(item.creator or ""),
                    "rights": CC0,
                    "attribution": f"{fix_text(item.creator or 'unknown artist')} / "
                    + OPENCLIPART_ATTRIBUTION,
                    "source": f"Debian {OPENCLIPART_DEB}: /usr/share/openclipart/png/{rel}.png",
                    "subjects": ";".join(subjects),
                },
            )
        )
    return entries


MARBLE_DEB = "marble-qt-data"
MARBLE_MAPS = Path("usr/share/marble/data/maps/earth")
SCHAGEN = "Gerard van Schagen"
SCHAGEN_NOTE = (
    "Hand-coloured engraved world map published by Gerard van Schagen in Amsterdam in 1689, shown as the "
    "plate carrée texture of Marble's 'Historical Map 1689' theme."
)


def marble_entries(cache: Path) -> list[Entry]:
    root = fetch_deb(MARBLE_DEB, cache) / MARBLE_MAPS
    schagen = root / "schagen1689" / "schagen1689.jpg"
    source = f"Debian {MARBLE_DEB}: /{MARBLE_MAPS}/"
    common = {"creator": SCHAGEN, "date": "1689", "rights": PD_MARK}
    attribution = "Gerard van Schagen, 1689 (public domain; scan via Wikipedia, Marble project via Debian)"
    crops: list[tuple[str, str, str, tuple[int, int, int, int] | None, str]] = [
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
    ]
    entries = [
        Entry(
            file=name,
            load=(schagen, box),
            concept="maps",
            row={
                **common,
                "title": title,
                "description": description,
                "attribution": attribution,
                "source": source + "schagen1689/schagen1689.jpg (Wikipedia, public domain)",
                "subjects": subjects,
            },
        )
        for name, title, description, box, subjects in crops
    ]
    nasa = [
        (
            "nasa-blue-marble.jpg",
            "bluemarble/bluemarble.jpg",
            "The Blue Marble: the whole Earth from satellite imagery",
            "Cloud-free map of the Earth's land and oceans made from satellite images, in plate carrée "
            "projection.",
            "NASA Goddard Space Flight Center, Earth Observatory",
            "maps;world map;Earth;satellite image",
        ),
        (
            "nasa-city-lights.jpg",
            "citylights/citylights.jpg",
            "Earth's city lights at night",
            "World map of city lights seen from space at night, assembled from satellite data.",
            "Marc Imhoff (NASA GSFC), Christopher Elvidge (NOAA NGDC), Craig Mayhew and Robert Simmon "
            "(NASA GSFC)",
            "maps;world map;Earth;night;satellite image",
        ),
    ]
    for name, rel, title, description, creator, subjects in nasa:
        entries.append(
            Entry(
                file=name,
                load=(root / rel, None),
                concept="maps",
                row={
                    "title": title,
                    "description": description,
                    "date": "",
                    "creator": creator,
                    "rights": PD_MARK,
                    "attribution": f"{creator} (public domain, US government work), via Marble and Debian",
                    "source": f"{source}{rel}",
                    "subjects": subjects,
                },
            )
        )
    return entries


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


def render(entry: Entry, dest: Path) -> None:
    if isinstance(entry.load, tuple):
        path, box = entry.load
        with Image.open(path) as src:
            im = src.convert("RGB") if box is None else src.convert("RGB").crop(box)
        im.thumbnail((LONG_SIDE, LONG_SIDE), Image.Resampling.LANCZOS)
    else:
        assert isinstance(entry.load, Path)
        im = open_image(entry.load, max_pixels=200_000_000, max_side=LONG_SIDE)
    im.save(dest, format="JPEG", quality=JPEG_QUALITY, optimize=True)


def build(out: Path, corpus_cache: Path, extra_cache: Path) -> Counter[str]:
    entries = openclipart_entries(corpus_cache) + marble_entries(extra_cache)
    names = Counter(e.file for e in entries)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    used: dict[str, int] = {}
    rows = []
    for entry in entries:
        name = entry.file
        if names[name] > 1:  # same file stem in two folders: number them in key order
            used[name] = used.get(name, 0) + 1
            name = f"{name.removesuffix('.jpg')}-{used[name]}.jpg"
        render(entry, out / name)
        rows.append({"file": name, **entry.row})
    rows.sort(key=lambda r: r["file"])
    with (out / "metadata.csv").open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    total = sum(p.stat().st_size for p in out.iterdir())
    if total > MAX_TOTAL_BYTES:
        raise SystemExit(f"demo collection is {total} bytes, over the {MAX_TOTAL_BYTES} byte budget")
    return Counter(e.concept for e in entries)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--corpus-cache", type=Path, default=default_cache_dir())
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "iconosearch" / "demo-sources")
    parser.add_argument("--check", action="store_true", help="rebuild in a temp folder and compare")
    args = parser.parse_args()
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            fresh = Path(tmp) / "collection"
            build(fresh, args.corpus_cache, args.cache)
            cmp = filecmp.dircmp(fresh, args.out)
            bad = cmp.left_only + cmp.right_only + cmp.diff_files + cmp.funny_files
            _, mismatch, errors = filecmp.cmpfiles(fresh, args.out, cmp.common_files, shallow=False)
            bad += mismatch + errors
            if bad:
                print(f"demo collection differs from a fresh build: {sorted(bad)[:20]}", file=sys.stderr)
                return 1
            print(f"demo collection matches a fresh build ({len(cmp.common_files)} files)")
            return 0
    counts = build(args.out, args.corpus_cache, args.cache)
    total = sum(p.stat().st_size for p in args.out.iterdir())
    print(f"wrote {sum(counts.values())} images ({total / 1e6:.1f} MB) to {args.out}")
    for concept, n in sorted(counts.items(), key=lambda kv: -kv[1]):
        print(f"  {concept:12s} {n}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
