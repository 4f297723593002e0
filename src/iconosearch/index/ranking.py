"""Pure ranking functions of the query engine: no I/O, testable on plain arrays.

- :func:`combine_terms`: weighted query terms → one unit query vector.
- :func:`reciprocal_rank_fusion`: fuse the visual and keyword rankings of a hybrid query.
- :func:`collapse_duplicates`: group near-identical results under their best-ranked member (numpy).
- :func:`encode_cursor` / :func:`decode_cursor`: opaque, validated paging cursors.
- :func:`count_facets`: facet counts from (collection, institution, rights, century, division) rows.
- :func:`fts_match_expression`: user keywords → a safe FTS5 MATCH expression.
- :func:`fts_words_expression`: a text query's content words → the MATCH expression of hybrid search.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from iconosearch.query import EmptyQueryError, InvalidCursorError, Query, QueryError

RRF_K = 60
"""The usual reciprocal-rank-fusion constant (Cormack et al. 2009): 1 / (RRF_K + rank)."""


def combine_terms(vectors: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """The query vector of weighted terms: the normalised sum of ``weight × unit(vector)``.

    Each term vector is first made unit length so that weights alone decide each term's pull;
    a negative weight subtracts its direction ("this − that"), pushing results away from it.
    At least one weight must be positive (a query of only "not this" has no direction to rank by),
    and the terms must not cancel out.
    """
    if not vectors:
        raise EmptyQueryError("the query has no terms")
    if len(vectors) != len(weights):
        raise ValueError("one weight per term vector")
    for w in weights:
        if not math.isfinite(w):
            raise QueryError(f"term weight {w!r} is not a finite number")
    if not any(w > 0 for w in weights):
        raise QueryError("at least one term needs a positive weight (all weights are zero or negative)")
    total = np.zeros(np.asarray(vectors[0]).reshape(-1).shape[0], dtype=np.float64)
    for vec, w in zip(vectors, weights, strict=True):
        v = np.asarray(vec, dtype=np.float64).reshape(-1)
        if v.shape != total.shape:
            raise ValueError("term vectors differ in dimension")
        norm = float(np.linalg.norm(v))
        if norm == 0.0 or not math.isfinite(norm):
            raise QueryError("a query term has no usable embedding")
        total += w * (v / norm)
    norm = float(np.linalg.norm(total))
    if norm < 1e-6:
        raise QueryError("the weighted terms cancel each other out")
    return (total / norm).astype(np.float32)


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[int]], *, k: int = RRF_K, weights: Sequence[float] | None = None
) -> list[tuple[int, float]]:
    """Fuse rankings (best first) into ``[(id, score)]`` best first; ties broken by id for stability."""
    weights = weights if weights is not None else [1.0] * len(rankings)
    scores: dict[int, float] = {}
    for ranking, w in zip(rankings, weights, strict=True):
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + w / (k + rank)
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))


def sort_ranked(ids: Iterable[int], scores: Iterable[float]) -> list[tuple[int, float]]:
    """Results in a deterministic order: score descending, then id — so pages are stable."""
    id_arr = np.fromiter(ids, dtype=np.int64)
    score_arr = np.fromiter(scores, dtype=np.float64)
    if len(id_arr) != len(score_arr):
        raise ValueError("one score per id")
    order = np.lexsort((id_arr, -score_arr))
    return list(zip(id_arr[order].tolist(), score_arr[order].tolist(), strict=True))


class Collapsed(NamedTuple):
    """One result after near-duplicate collapsing."""

    id: int
    score: float
    group: int
    """The duplicate group (equal to ``id``'s group label)."""


class DuplicateGroups(NamedTuple):
    """The near-duplicate group of each record that has duplicates, as sorted arrays (everyone else is
    alone: their group is their own id), so that a ranking is collapsed in numpy, not per hit."""

    ids: np.ndarray
    """Sorted record ids (int64)."""
    groups: np.ndarray
    """Each id's group label."""

    @classmethod
    def of(cls, group_of: Mapping[int, int]) -> DuplicateGroups:
        ids = np.fromiter(group_of.keys(), dtype=np.int64, count=len(group_of))
        groups = np.fromiter(group_of.values(), dtype=np.int64, count=len(group_of))
        order = np.argsort(ids)
        return cls(ids[order], groups[order])

    def group(self, ids: np.ndarray) -> np.ndarray:
        """Each id's group label (its own id when it has no duplicates)."""
        ids = np.asarray(ids, dtype=np.int64)
        out = ids.copy()
        if len(self.ids) and len(ids):
            pos = np.minimum(np.searchsorted(self.ids, ids), len(self.ids) - 1)
            shared = self.ids[pos] == ids
            out[shared] = self.groups[pos[shared]]
        return out

    def shared(self, groups: Iterable[int]) -> list[int]:
        """The labels in ``groups`` that more than one record carries (the others have no members to list)."""
        labels = np.fromiter(groups, dtype=np.int64)
        return sorted(set(labels[np.isin(labels, self.groups)].tolist()))


def collapse_duplicates(
    ids: np.ndarray, scores: np.ndarray, groups: DuplicateGroups, *, limit: int | None = None
) -> list[Collapsed]:
    """Keep the best-ranked result of each near-duplicate group of a ranking (``ids`` best first, their
    ``scores``), in rank order (at most ``limit``).

    Collapsing a prefix of a ranking gives a prefix of collapsing the whole ranking, so cursor
    pages over collapsed results stay consistent as the fetch depth grows.
    """
    labels = groups.group(ids)
    # Best first, so a group's first occurrence is its best-ranked member.
    _, first = np.unique(labels, return_index=True)
    keep = np.sort(first)[:limit]
    return [
        Collapsed(i, s, g)
        for i, s, g in zip(
            np.asarray(ids)[keep].tolist(),
            np.asarray(scores)[keep].tolist(),
            labels[keep].tolist(),
            strict=True,
        )
    ]


# --- cursors -------------------------------------------------------------------------------------


def query_key(query: Query) -> str:
    """Digest of everything that decides a query's ranking (not the page size or cursor)."""
    h = hashlib.sha256()
    for term in query.terms:
        value = term.value if isinstance(term.value, bytes) else term.value.encode()
        h.update(f"{term.kind}\x00{term.weight!r}\x00{term.region or ''}\x00".encode())
        h.update(hashlib.sha256(value).digest())
    f = query.filters
    h.update(
        json.dumps(
            [
                sorted(f.collections),
                sorted(p.casefold() for p in f.providers),
                f.year_from,
                f.year_to,
                sorted(f.rights),
                sorted(f.languages),
                f.has_caption,
                query.keywords,
                list(query.keyword_any),
                query.min_score,
                query.collapse_duplicates,
                query.sort,
                query.mode,
            ]
        ).encode()
    )
    return h.hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Cursor:
    version: str
    offset: int
    key: str


def encode_cursor(cursor: Cursor) -> str:
    raw = json.dumps([cursor.version, cursor.offset, cursor.key], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str, *, expected_key: str) -> Cursor:
    """Parse and check a cursor made by :func:`encode_cursor` for the same query."""
    if not text or len(text) > 512 or not re.fullmatch(r"[A-Za-z0-9_-]+", text):
        raise InvalidCursorError("the cursor is malformed")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        version, offset, key = json.loads(raw)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise InvalidCursorError("the cursor is malformed") from exc
    if not isinstance(version, str) or not isinstance(offset, int) or not isinstance(key, str) or offset < 0:
        raise InvalidCursorError("the cursor is malformed")
    if key != expected_key:
        raise InvalidCursorError("the cursor belongs to a different query")
    return Cursor(version, offset, key)


# --- facets --------------------------------------------------------------------------------------

FACETS = ("collection", "institution", "rights", "century", "suggested_division")
"""``suggested_division``: the best machine-suggested ICONCLASS subject's top-level division; records
without suggestions are not counted there (most versions have none)."""


def century_label(century: int | None) -> str:
    """``19`` → ``"19th c."``, ``-1`` → ``"1st c. BCE"``, ``None`` → ``"unknown"``."""
    if century is None:
        return "unknown"
    n = abs(century)
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix} c." + (" BCE" if century < 0 else "")


def count_facets(
    rows: Iterable[tuple[str, str | None, str, int | None, str | None]],
) -> dict[str, dict[str, int]]:
    """Counts per facet value from ``(collection, institution, rights class, century, division)`` rows.

    Values are ordered by count descending, then name, so the API can show them as they come.
    """
    counts: dict[str, dict[str, int]] = {f: {} for f in FACETS}
    for collection, institution, rights, century, division in rows:
        values = (collection, institution or "unknown", rights, century_label(century), division)
        for facet, value in zip(FACETS, values, strict=True):
            if value is not None:
                counts[facet][value] = counts[facet].get(value, 0) + 1
    return {f: dict(sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))) for f, c in counts.items()}


# --- keywords ------------------------------------------------------------------------------------

_TOKEN = re.compile(r"[\w]+(?:[-'’][\w]+)*", re.UNICODE)


def fts_match_expression(keywords: str) -> str:
    """An FTS5 MATCH expression requiring every word of ``keywords`` (each quoted: no FTS syntax
    from user input reaches SQLite). A trailing ``*`` on a word keeps prefix matching."""
    parts: list[str] = []
    for m in re.finditer(r"(\S+)", keywords):
        word = m.group(1)
        prefix = word.endswith("*")
        for tok in _TOKEN.findall(word):
            parts.append('"' + tok.replace('"', '""') + '"')
        if prefix and parts:
            parts[-1] += "*"
    if not parts:
        raise EmptyQueryError("the keyword clause has no words")
    return " ".join(parts)


MAX_ANY_PHRASES = 64
PHRASE_PREFIX_MIN = 4
"""A phrase's last word matches as a prefix ("apple" finds "apples") from this length on; shorter
ones ("ox", "St") would match unrelated longer words."""


def fts_any_expression(phrases: Sequence[str]) -> str | None:
    """An FTS5 MATCH expression matching captions that contain any of ``phrases`` (each a quoted phrase;
    ``None`` when no phrase has a word)."""
    parts: list[str] = []
    for phrase in phrases[:MAX_ANY_PHRASES]:
        tokens = _TOKEN.findall(phrase)
        if tokens:
            quoted = '"' + " ".join(tokens).replace('"', '""') + '"'
            parts.append(quoted + "*" if len(tokens[-1]) >= PHRASE_PREFIX_MIN else quoted)
    return " OR ".join(dict.fromkeys(parts)) or None


HYBRID_MAX_SHARE = 0.2
"""Hybrid search fuses a text query's keyword ranking only when its words match at most this share of
the records the filters allow: words that a fifth of a collection carries ("painting", "watercolor")
name a kind of thing, not a work, and fusing them would reorder a visual ranking by catalogue noise."""
HYBRID_MAX_MATCHES = 5000
"""…and at most this many records, whatever the collection's size: counting the matches up to the cap is
the price every hybrid text query pays (bench/hybrid.py --latency: about 27 ms for 40,000 rows at 200k
records), and a name that 5,000 records carry is a kind of record too."""

_STOP_WORDS = """a an the and or of in on at to for from with without by as is are be it its this that
    these those into onto over under near some any no not all one two three very what which who whose
    where when how
    de la le les des du et un une der die das den dem ein eine und mit von im il lo gli di del da"""
STOP_WORDS = frozenset(_STOP_WORDS.split())
"""Words a query is phrased with ("a winter landscape with skaters") that say nothing about which record
is meant; they are dropped before keyword matching (English, and the commonest of de/fr/it/pt)."""


def fts_words_expression(texts: Sequence[str]) -> str | None:
    """The FTS5 MATCH expression of hybrid search: every content word of ``texts`` (stop words dropped),
    each quoted, all required, a word of :data:`PHRASE_PREFIX_MIN` letters or more also as a prefix
    ("pear" finds "pears"); ``None`` when no content word is left.

    All words, not any: a name or a title ("Andromeda", "Stag Hunt") is matched when its words are all in
    a record's catalogue text, while a description of what an image shows rarely has every word in one
    record, and then nothing is fused and the visual ranking stands as it is."""
    words: list[str] = []
    for text in texts:
        for tok in _TOKEN.findall(text.lower()):  # FTS5 matches case-insensitively: one word, one term
            if tok not in STOP_WORDS and not (len(tok) == 1 and tok.isalpha()):
                quoted = '"' + tok.replace('"', '""') + '"'
                words.append(quoted + "*" if len(tok) >= PHRASE_PREFIX_MIN else quoted)
    return " ".join(dict.fromkeys(words)) or None


def merge_best(
    first: tuple[np.ndarray, np.ndarray],
    first_exhausted: bool,
    second: tuple[np.ndarray, np.ndarray],
    second_exhausted: bool,
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Two rankings ``(ids, scores)`` of the same ids (best first) → each id at its best score:
    ``(ids, scores, exhausted)``, best first, ties by id.

    A ranking cut at some depth says nothing about ids below its last score, so when either was cut,
    only ids scoring strictly above that cut are kept: their best score is then known exactly (it is
    in whichever list it came from). The result is exhausted only when both inputs are.
    """
    ids = np.concatenate([first[0], second[0]]).astype(np.int64, copy=False)
    scores = np.concatenate([first[1], second[1]]).astype(np.float64, copy=False)
    order = np.lexsort((ids, -scores))
    ids, scores = ids[order], scores[order]
    # Best first, so an id's first occurrence is its best score.
    _, first_seen = np.unique(ids, return_index=True)
    keep = np.sort(first_seen)
    ids, scores = ids[keep], scores[keep]
    floor = max(
        float(first[1][-1]) if len(first[1]) and not first_exhausted else -math.inf,
        float(second[1][-1]) if len(second[1]) and not second_exhausted else -math.inf,
    )
    if floor > -math.inf:
        above = scores > floor
        ids, scores = ids[above], scores[above]
    return ids, scores, first_exhausted and second_exhausted
