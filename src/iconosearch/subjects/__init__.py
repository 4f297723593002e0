"""Subject vocabularies (ICONCLASS, …): notations named in queries, resolved to words the model and the
keyword index understand.

A query names a subject as ``SCHEME:NOTATION`` inside its text (``iconclass:25G21(APPLE)``) or as a term of
kind ``"subject"``. :func:`expand_subjects` rewrites it, before anything is embedded, into

- a text term: the notation's text in the query's language (English when the query says none, or when the
  vocabulary has no text in that language), with the subject term's weight, and
- ``keyword_any`` phrases: the notation's keywords in every language the vocabulary has, any of which may
  match a caption (a notation names a concept, not a language; catalogues describe it in theirs).

Vocabularies are registered by scheme (:func:`register_vocabulary`) and loaded lazily, once per process.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Final, Protocol

from iconosearch.captions import field_values
from iconosearch.query import Query, QueryError, Term
from iconosearch.records import ImageRecord


class UnknownSubjectError(QueryError):
    code = "unknown-subject"


@dataclass(frozen=True, slots=True)
class Subject:
    scheme: str
    notation: str
    text: str
    """The notation's text in the requested language (or the fallback language)."""
    language: str
    """The language of ``text``."""
    keywords: tuple[str, ...]
    """Keywords in every language of the vocabulary, deduplicated, requested language first."""

    @property
    def ref(self) -> str:
        return f"{self.scheme}:{self.notation}"


@dataclass(frozen=True, slots=True)
class Suggestion:
    notation: str
    label: str
    """Text of the notation in the requested language (fallback: English)."""
    label_language: str
    matched: str
    """The text or keyword the typed words matched."""
    matched_language: str
    score: float
    """Higher is better; comparable within one answer only."""


class Vocabulary(Protocol):
    scheme: str
    languages: tuple[str, ...]

    def resolve(self, notation: str, language: str | None = None) -> Subject: ...

    def suggest(self, text: str, language: str | None = None, limit: int = 10) -> list[Suggestion]: ...


_FACTORIES: dict[str, Callable[[], Vocabulary]] = {}
_LOADED: dict[str, Vocabulary] = {}
_LOCK = threading.Lock()


def register_vocabulary(scheme: str, factory: Callable[[], Vocabulary]) -> None:
    if scheme in _FACTORIES:
        raise ValueError(f"subject vocabulary {scheme!r} is already registered")
    _FACTORIES[scheme] = factory


def schemes() -> list[str]:
    return sorted(_FACTORIES)


def vocabulary(scheme: str) -> Vocabulary:
    """The vocabulary of ``scheme`` (loaded once per process; ICONCLASS takes a few seconds)."""
    factory = _FACTORIES.get(scheme.lower())
    if factory is None:
        raise UnknownSubjectError(f"unknown subject scheme {scheme!r}; known: {', '.join(schemes())}")
    with _LOCK:
        loaded = _LOADED.get(scheme.lower())
        if loaded is None:
            loaded = factory()
            _LOADED[scheme.lower()] = loaded
        return loaded


def vocabulary_loaded(scheme: str) -> bool:
    """Whether ``scheme``'s vocabulary is loaded (asking does not load it)."""
    return scheme.lower() in _LOADED


# A notation: a code, then bracketed parts — a name "(APPLE)", "(JOHN THE BAPTIST)", a key "(+1)".
_NOTATION = r"[0-9A-Za-z][0-9A-Za-z.]*(?:\([^()]*\))*"


def _refs_pattern() -> re.Pattern[str]:
    names = "|".join(re.escape(s) for s in schemes())
    return re.compile(rf"(?<![\w:])({names}):\s*({_NOTATION})", re.IGNORECASE)


def split_subject_refs(text: str) -> tuple[str, list[tuple[str, str]]]:
    """``"iconclass:25G21(APPLE) on a table"`` → ``("on a table", [("iconclass", "25G21(APPLE)")])``."""
    pattern = _refs_pattern()
    refs = [(m.group(1).lower(), m.group(2)) for m in pattern.finditer(text)]
    rest = " ".join(pattern.sub(" ", text).split())
    return rest, refs


def parse_subject_ref(value: str) -> tuple[str, str]:
    """``"iconclass:11H(GEORGE)"`` → ``("iconclass", "11H(GEORGE)")``; a bare notation means ICONCLASS."""
    scheme, sep, notation = value.strip().partition(":")
    if not sep or scheme.lower() not in _FACTORIES:
        scheme, notation = "iconclass", value.strip()
    if not re.fullmatch(_NOTATION, notation.strip()):
        raise UnknownSubjectError(f"{value!r} is not a subject notation such as 'iconclass:25G21(APPLE)'")
    return scheme.lower(), notation.strip()


def resolve(scheme: str, notation: str, language: str | None = None) -> Subject:
    return vocabulary(scheme).resolve(notation, language)


def expand_subjects(query: Query) -> Query:
    """``query`` with every subject reference replaced by text + keyword phrases (see the module doc).

    A query without subject references comes back unchanged (no vocabulary is loaded).
    """
    terms: list[Term] = []
    phrases: list[str] = list(query.keyword_any)
    changed = False
    for term in query.terms:
        refs: list[tuple[str, str]] = []
        if term.kind == "subject" and isinstance(term.value, str):
            refs, rest = [parse_subject_ref(term.value)], ""
        elif term.kind == "text" and isinstance(term.value, str) and ":" in term.value:
            rest, refs = split_subject_refs(term.value)
        if not refs:
            terms.append(term)
            continue
        changed = True
        if rest:
            terms.append(Term("text", rest, term.weight))
        for scheme, notation in refs:
            subject = resolve(scheme, notation, query.language)
            terms.append(Term("text", subject.text, term.weight))
            if term.weight > 0:
                phrases.extend(subject.keywords)
    if not changed:
        return query
    return replace(query, terms=tuple(terms), keyword_any=tuple(dict.fromkeys(phrases)))


def subject_refs(values: Sequence[str]) -> list[Term]:
    """``subject`` values of a request body as terms (each checked for form, resolved later)."""
    return [Term("subject", ":".join(parse_subject_ref(v))) for v in values]


CATALOGUE_SUBJECT_FIELDS: Final = ("subject", "subjects")
"""Metadata labels (any language, any case) whose values are the catalogue's own subjects."""


def catalogue_subjects(record: ImageRecord) -> list[str]:
    """The subjects the catalogue itself gives ``record`` (its ``Subject`` metadata), every language, without
    repeats; machine-suggested subjects (:mod:`iconosearch.subjects.suggested`) are never among them."""
    found: dict[str, None] = {}
    for value in field_values(record.metadata, CATALOGUE_SUBJECT_FIELDS):
        for texts in value.values():
            found.update((text.strip(), None) for text in texts if text.strip())
    return list(found)


def _iconclass() -> Vocabulary:
    from iconosearch.subjects.iconclass import load_iconclass

    return load_iconclass()


register_vocabulary("iconclass", _iconclass)
