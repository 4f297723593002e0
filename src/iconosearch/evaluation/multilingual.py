"""Multilingual evaluation from human translations: ICONCLASS texts in en, de, fr, it and pt.

Two measurements:

- **text → image R@10 per language** on a local-folder collection (``metadata.csv`` + images): for each
  concept of :data:`CONCEPTS` that the collection shows (an ICONCLASS notation, and the English catalogue
  words that make an image relevant, matched on title and subjects), the queries are the notation's
  ICONCLASS text in each language ("Früchte: Apfel") and its head, the part after the last colon
  ("Apfel"). A query scores a hit when a relevant image is among the 10 most similar. Every text comes from
  ICONCLASS's own translators; a notation whose text in some language is only the generic fallback with an
  English name in brackets ("fruits (GRAPE)") is left out, so no language gets a machine-made or English
  query in disguise.
- **cross-lingual text retrieval**: for ``n`` notations with a text in all five languages, each non-English
  text retrieves its English text among the ``n`` (and back); R@1. Pairs whose two texts are the same
  string are left out (they would measure string identity, not understanding).
"""

from __future__ import annotations

import csv
import math
import random
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

from iconosearch.subjects import UnknownSubjectError
from iconosearch.subjects.iconclass import LANGUAGES, Iconclass

K: Final = 10

# (ICONCLASS notation, English catalogue words that make an image relevant — a regex on title + subjects).
CONCEPTS: Final[tuple[tuple[str, str], ...]] = (
    ("25G21(APPLE)", r"\bapples?\b"),
    ("25G21(PEAR)", r"\bpears?\b"),
    ("25G21(PEACH)", r"\bpeach(es)?\b"),
    ("25G21(PLUM)", r"\bplums?\b"),
    ("25G21(CHERRY)", r"\bcherr(y|ies)\b"),
    ("25G21(STRAWBERRY)", r"\bstrawberr(y|ies)\b"),
    ("25G21(ORANGE)", r"\boranges?\b"),
    ("25G21(LEMON)", r"\blemons?\b"),
    ("25G21(QUINCE)", r"\bquinces?\b"),
    ("47I4222", r"\bgrapes?\b"),
    ("25G41", r"\bflowers?\b"),
    ("46C24", r"\b(ships?|boats?|sailing)\b"),
    ("46C223", r"\bharbou?rs?\b"),
    ("46C13141", r"\bhorses?\b"),
    ("25F23(LION)", r"\blions?\b"),
    ("25F23(BEAR)", r"\bbears?\b"),
    ("25F33(EAGLE)", r"\beagles?\b"),
    ("25F36(SWAN)", r"\bswans?\b"),
    ("34B11", r"\bdogs?\b"),
    ("24D1", r"\bconstellations?\b"),
    ("25H", r"\blandscapes?\b"),
    ("25H213", r"\brivers?\b"),
    ("43C11", r"\bhunt(s|ing)?\b"),
    ("11F4", r"\b(madonna|virgin and child)\b"),
    ("11H", r"\bsaint\b|\bst\.\s"),
    ("25A1", r"\b(world map|map of the world)\b"),
)


@dataclass(frozen=True, slots=True)
class CatalogueImage:
    path: Path
    catalogue: str
    """Title and subjects: what relevance is judged on."""


@dataclass(frozen=True, slots=True)
class ConceptQueries:
    notation: str
    relevant: tuple[int, ...]
    """Indexes of the relevant images."""
    queries: dict[str, tuple[str, ...]]
    """Language → ICONCLASS query texts (the full text and its head)."""


def read_collection(folder: Path) -> list[CatalogueImage]:
    """Images of a local-folder collection (``metadata.csv`` with ``file``, ``title``, ``subjects``)."""
    with (folder / "metadata.csv").open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    images = []
    for row in rows:
        path = folder / (row.get("file") or "")
        if path.is_file():
            images.append(CatalogueImage(path, f"{row.get('title') or ''}; {row.get('subjects') or ''}"))
    return images


def _human_text(iconclass: Iconclass, notation: str, language: str) -> str | None:
    """The notation's text in ``language``, or ``None`` when ICONCLASS has only the generic fallback."""
    text, found_in = iconclass.text(notation, language)
    name = re.search(r"\(([^()+]+)\)$", notation)
    if found_in != language or not text or (name and f"({name.group(1)})" in text):
        return None
    return text


def query_set(iconclass: Iconclass, images: Sequence[CatalogueImage]) -> list[ConceptQueries]:
    """The concepts the collection shows, each with its queries in every ICONCLASS language."""
    out = []
    for notation, pattern in CONCEPTS:
        rule = re.compile(pattern, re.IGNORECASE)
        relevant = tuple(i for i, im in enumerate(images) if rule.search(im.catalogue))
        if not relevant:
            continue
        try:
            iconclass.canonical(notation)
        except UnknownSubjectError:
            continue
        texts = {lang: _human_text(iconclass, notation, lang) for lang in LANGUAGES}
        if any(t is None for t in texts.values()):
            continue
        queries = {}
        for lang, text in texts.items():
            assert text is not None
            head = text.rsplit(":", 1)[-1].strip()
            queries[lang] = tuple(dict.fromkeys((text, head)))
        out.append(ConceptQueries(notation, relevant, queries))
    return out


def hit_at_k(sims: np.ndarray, relevant: Sequence[int], k: int = K) -> bool:
    top = np.argsort(-sims, kind="stable")[:k]
    return bool(set(top.tolist()) & set(relevant))


def chance_at_k(gallery: int, relevant: int, k: int = K) -> float:
    """Probability that ``k`` random images include at least one of ``relevant``."""
    if gallery - relevant < k:
        return 1.0
    return 1.0 - math.comb(gallery - relevant, k) / math.comb(gallery, k)


def text_to_image(
    concepts: Sequence[ConceptQueries],
    image_vectors: np.ndarray,
    embed_texts: Callable[[Sequence[str]], np.ndarray],
) -> dict[str, Any]:
    """R@10 per language (mean over queries), with English, the gap to English and chance."""
    per_language: dict[str, dict[str, Any]] = {}
    per_concept: dict[str, dict[str, float]] = {}
    for lang in LANGUAGES:
        texts = [q for c in concepts for q in c.queries[lang]]
        owners = [c for c in concepts for _ in c.queries[lang]]
        vectors = embed_texts(texts)
        hits = [hit_at_k(image_vectors @ v, c.relevant) for v, c in zip(vectors, owners, strict=True)]
        per_language[lang] = {"r10": round(float(np.mean(hits)), 4), "queries": len(hits)}
        for c in concepts:
            mine = [h for h, o in zip(hits, owners, strict=True) if o is c]
            per_concept.setdefault(c.notation, {})[lang] = round(float(np.mean(mine)), 3)
    english = per_language["en"]["r10"]
    others = [per_language[lang]["r10"] for lang in LANGUAGES if lang != "en"]
    for lang in LANGUAGES:
        per_language[lang]["minus_en"] = round(per_language[lang]["r10"] - english, 4)
    gallery = len(image_vectors)
    return {
        "images": gallery,
        "concepts": len(concepts),
        "chance_r10": round(float(np.mean([chance_at_k(gallery, len(c.relevant)) for c in concepts])), 4),
        "per_language": per_language,
        "mean_non_english_r10": round(float(np.mean(others)), 4),
        "mean_non_english_minus_en": round(float(np.mean(others)) - english, 4),
        "worst_minus_en": round(min(others) - english, 4),
        "per_concept": per_concept,
        "relevant_images": {c.notation: len(c.relevant) for c in concepts},
    }


def parallel_texts(iconclass: Iconclass, n: int, seed: int = 17) -> list[dict[str, str]]:
    """``n`` notations (seeded sample) with a human text in every language, as ``{lang: text}``."""
    pool = []
    for notation in iconclass.notations:
        texts = {lang: _human_text(iconclass, notation, lang) for lang in LANGUAGES}
        if all(texts.values()):
            pool.append({lang: str(t) for lang, t in texts.items()})
    # One notation per English text: duplicates would make "the" right answer ambiguous.
    counts = Counter(p["en"] for p in pool)
    unique = [p for p in pool if counts[p["en"]] == 1]
    return random.Random(seed).sample(unique, min(n, len(unique)))


def cross_lingual(
    texts: Sequence[dict[str, str]], embed_texts: Callable[[Sequence[str]], np.ndarray]
) -> dict[str, dict[str, float | int]]:
    """R@1 of X→en and en→X text retrieval among ``texts``, per non-English language X."""
    english = embed_texts([t["en"] for t in texts])
    out: dict[str, dict[str, float | int]] = {}
    for lang in LANGUAGES:
        if lang == "en":
            continue
        keep = [i for i, t in enumerate(texts) if t[lang].casefold() != t["en"].casefold()]
        other = embed_texts([texts[i][lang] for i in keep])
        sims = other @ english[keep].T
        truth = np.arange(len(keep))
        out[lang] = {
            "pairs": len(keep),
            "to_en_r1": round(float((sims.argmax(axis=1) == truth).mean()), 4),
            "from_en_r1": round(float((sims.argmax(axis=0) == truth).mean()), 4),
        }
    return out
