"""Machine-suggested ICONCLASS subjects: an image's top notations, chosen zero-shot by the image model.

**Candidates** (:func:`candidate_notations`): a documented subset of ICONCLASS, small enough to embed once
per model and general enough to be right more often than not:

- every notation down to depth :data:`MAX_DEPTH` (``25G2`` "products of plants in general" is depth 4)
  without a bracketed name or a structural digit beyond it (2,460 notations in ``iconclass`` 1.x);
- plus the *named* notations of :data:`NAMED_BRANCHES` (saints, animals, plants and fruit: ``11H(GEORGE)``,
  ``25F23(LION)``, ``25G21(APPLE)``), without their sub-divisions (``11H(GEORGE)1`` …) or qualifiers.

**Scores**: each candidate's English text (cut at its first ";", which starts the "possible attributes"
lists of saints) is embedded by the model's text tower, and an image's suggestions are the candidates
whose text vectors have the highest cosine with its image vector, with that cosine as the score. Cosines
are comparable within one model only, so the score is for ranking and display, not a probability.

The text vectors are cached per model fingerprint, ``iconclass`` data version and :data:`SUBSET_VERSION`
(:func:`load_labels`), with the notations and texts, so a cached build neither embeds nor loads the
vocabulary: ~5,000 texts take minutes on a small CPU once, then loading takes milliseconds. Suggestions are
machine-made and are kept apart from the catalogue's own subjects wherever they are stored or shown.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Final

import numpy as np

from iconosearch.query import InvalidFilterError

if TYPE_CHECKING:
    from iconosearch.models.embedder import Embedder
    from iconosearch.subjects.iconclass import Iconclass

log = logging.getLogger(__name__)

MAX_DEPTH: Final = 4
NAMED_BRANCHES: Final = ("11H(", "11HH(", "25F", "25G")
"""Prefixes whose bracketed names are candidates: male and female saints, animals, plants and fruit."""
TOP: Final = 5
"""Suggestions kept per image."""
DIVISIONS: Final = tuple("0123456789")
"""ICONCLASS's ten top-level divisions, the values of the ``suggested_division`` filter and facet."""
EMBED_BATCH: Final = 256
SUBSET_VERSION: Final = 1
"""Bump when :func:`candidate_notations` or :func:`label_text` change: cached label vectors go stale."""


@dataclass(frozen=True, slots=True)
class SuggestedSubject:
    notation: str
    score: float
    """Cosine between the image and the notation's text; for ranking within one model."""
    label: str
    """The English text the notation was scored by."""

    @property
    def division(self) -> str:
        """ICONCLASS's top-level division (``"2"`` Nature, ``"1"`` Religion and Magic, …)."""
        return self.notation[0]


def parse_divisions(values: Iterable[str]) -> tuple[str, ...]:
    """``["2", "1,7"]`` (the CLI's ``--suggested-division``) → ``("2", "1", "7")``; anything but a division
    ``0``–``9`` raises :class:`~iconosearch.query.InvalidFilterError`."""
    out: dict[str, None] = {}
    for value in values:
        for part in value.split(","):
            division = part.strip()
            if division not in DIVISIONS:
                raise InvalidFilterError(
                    f"suggested division {part.strip()!r} is not an ICONCLASS top-level division 0-9"
                )
            out[division] = None
    return tuple(out)


def division_labels(divisions: Iterable[str], language: str | None = None) -> dict[str, str]:
    """Each division's ICONCLASS text in ``language`` (English where the vocabulary has none)."""
    from iconosearch.subjects import vocabulary

    vocab = vocabulary("iconclass")
    return {d: vocab.resolve(d, language).text for d in divisions}


def in_language(suggested: Sequence[SuggestedSubject], language: str | None) -> list[SuggestedSubject]:
    """``suggested`` with each label in ``language`` from the vocabulary (stored labels are the English
    texts they were scored by); unchanged without a language or for English, so nothing is loaded."""
    if not suggested or language in (None, "en"):
        return list(suggested)
    from iconosearch.subjects import vocabulary

    vocab = vocabulary("iconclass")
    return [
        replace(s, label=vocab.resolve(s.notation, language).text.split(";")[0].strip()) for s in suggested
    ]


def candidate_notations(vocabulary: Iconclass) -> list[str]:
    """The documented candidate subset (module doc), sorted; notations without an English text (nothing
    to score them by) are left out."""
    shallow = [
        n
        for n, depth in zip(vocabulary.notations, vocabulary.depths, strict=True)
        if depth <= MAX_DEPTH and "(" not in n
    ]
    named = [
        n
        for n in vocabulary.notations
        if n.startswith(NAMED_BRANCHES) and n.endswith(")") and n.count("(") == 1 and "(+" not in n
    ]
    return sorted(n for n in set(shallow) | set(named) if label_text(vocabulary, n))


def label_text(vocabulary: Iconclass, notation: str) -> str:
    """The English text a candidate is embedded as (attribute lists cut off)."""
    text, _ = vocabulary.text(notation, "en")
    return text.split(";")[0].strip()


@dataclass(frozen=True, slots=True)
class SubjectLabels:
    """Candidate notations and their unit text vectors under one model."""

    notations: tuple[str, ...]
    texts: tuple[str, ...]
    vectors: np.ndarray
    fingerprint: str

    def suggest(self, images: np.ndarray, top: int = TOP) -> list[list[SuggestedSubject]]:
        """The ``top`` candidates of each row of ``images`` (unit image vectors), best first."""
        images = np.atleast_2d(np.asarray(images, dtype=np.float32))
        if images.shape[1] != self.vectors.shape[1]:
            raise ValueError(f"image vectors have {images.shape[1]} dims, the labels {self.vectors.shape[1]}")
        out: list[list[SuggestedSubject]] = []
        for start in range(0, len(images), EMBED_BATCH):
            scores = images[start : start + EMBED_BATCH] @ self.vectors.T
            best = np.argsort(-scores, axis=1, kind="stable")[:, :top]
            for row, picks in zip(scores, best, strict=True):
                out.append(
                    [
                        SuggestedSubject(self.notations[i], round(float(row[i]), 4), self.texts[i])
                        for i in picks
                    ]
                )
        return out


def _cache_path(cache_dir: Path, fingerprint: str) -> Path:
    return cache_dir / fingerprint / f"iconclass-{version('iconclass')}-labels-v{SUBSET_VERSION}.npz"


def load_labels(
    embedder: Embedder, cache_dir: Path | None, vocabulary: Callable[[], Iconclass] | None = None
) -> SubjectLabels:
    """The candidates' text vectors under ``embedder``, from ``cache_dir`` when embedded before;
    ``vocabulary`` (default: :func:`~iconosearch.subjects.iconclass.load_iconclass`) is called on a miss."""
    path = _cache_path(cache_dir, embedder.fingerprint) if cache_dir is not None else None
    if path is not None and path.is_file():
        with np.load(path) as cached:
            notations, texts, vectors = (cached[k] for k in ("notations", "texts", "vectors"))
        if vectors.shape == (len(notations), embedder.dim):
            return SubjectLabels(
                tuple(notations.tolist()), tuple(texts.tolist()), vectors, embedder.fingerprint
            )
        log.warning("ignoring a subject label cache of the wrong shape: %s", path)
    if vocabulary is None:
        from iconosearch.subjects.iconclass import load_iconclass

        vocabulary = load_iconclass
    ic = vocabulary()
    notations = candidate_notations(ic)
    texts = [label_text(ic, n) for n in notations]
    parts = [embedder.embed_texts(texts[s : s + EMBED_BATCH]) for s in range(0, len(texts), EMBED_BATCH)]
    vectors = np.concatenate(parts).astype(np.float32)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, notations=np.array(notations), texts=np.array(texts), vectors=vectors)
        tmp.replace(path)  # readers never see half a file
    return SubjectLabels(tuple(notations), tuple(texts), vectors, embedder.fingerprint)
