"""ICONCLASS, from the ``iconclass`` package (MIT): ~40k notations with texts and keywords in en, de, fr, it
and pt, read from the data file inside the wheel (no network).

:meth:`Iconclass.resolve` gives a notation's text in a language plus its keywords; :meth:`Iconclass.suggest`
autocompletes notations from the words a user types, in any of the five languages, ranked.

The package fetches Wikidata labels for ``(wd:Q…)`` names and downloads its data when the file is missing;
both would be network access, so such notations are refused and a missing data file is an error here.
"""

from __future__ import annotations

import bisect
import contextlib
import io
import re
import unicodedata
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from iconosearch.subjects import Subject, Suggestion, UnknownSubjectError

SCHEME: Final = "iconclass"
LANGUAGES: Final = ("en", "de", "fr", "it", "pt")
FALLBACK: Final = "en"
_WORD = re.compile(r"\w+")
_BRACKETED = re.compile(r"\([^()]*\)")
_COMBINING = re.compile(r"[\u0300-\u036f]")
"""Combining diacritical marks, as NFKD splits them off Latin letters ("ê" → "e" + U+0302)."""
_PLACEHOLDER = "(...)"
MIN_SUGGEST_CHARS: Final = 2
"""Shorter input matches too much of the vocabulary to be a useful suggestion."""
MAX_SCORED: Final = 200
"""Candidates scored per language (the cheap pre-order keeps whole-word and general ones)."""


def normalise(text: str) -> str:
    """Case- and accent-insensitive form used for matching: ``"Pêches"`` → ``"peches"``."""
    return _COMBINING.sub("", unicodedata.normalize("NFKD", text.casefold()))


def words(text: str) -> list[str]:
    return _WORD.findall(normalise(text))


@dataclass(slots=True)
class _LanguageIndex:
    """Word → notation numbers for one language; ``vocab`` is sorted, for prefix lookups by bisection."""

    postings: dict[str, list[int]]
    vocab: list[str]

    def prefixed(self, prefix: str) -> set[int]:
        out: set[int] = set()
        start = bisect.bisect_left(self.vocab, prefix)
        for word in self.vocab[start:]:
            if not word.startswith(prefix):
                break
            out.update(self.postings[word])
        return out


class Iconclass:
    """The ICONCLASS vocabulary (texts + keywords in :data:`LANGUAGES`) with a suggestion index."""

    scheme: str = SCHEME
    languages: tuple[str, ...] = LANGUAGES

    def __init__(self) -> None:
        import iconclass

        data = Path(iconclass.__file__).resolve().parent / "data.zip"
        if not data.is_file():
            raise UnknownSubjectError(f"the iconclass package has no data file ({data}); reinstall it")
        # The package prints a line per dangling child while building its tree; keep stdout clean (--json).
        with contextlib.redirect_stdout(io.StringIO()):
            self._ic = iconclass.Iconclass()
            for language in LANGUAGES:
                self._ic.load(language)
        tree: dict[str | None, dict[str, Any]] = self._ic._D
        self.notations: list[str] = sorted(n for n in tree if n and _PLACEHOLDER not in n)
        self.depths = [len(tree[n].get("p", ())) for n in self.notations]
        """Each notation's depth in the hierarchy (``2`` is 1, ``25G21`` is 5)."""
        self._index = {language: self._build_index(language) for language in LANGUAGES}

    def _build_index(self, language: str) -> _LanguageIndex:
        texts, keywords = self._ic.texts[language], self._ic.keywords[language]
        postings: defaultdict[str, list[int]] = defaultdict(list)
        for number, notation in enumerate(self.notations):
            for word in set(words("\n".join((texts.get(notation, ""), *keywords.get(notation, ()))))):
                postings[word].append(number)
        return _LanguageIndex(dict(postings), sorted(postings))

    # --- resolving ---------------------------------------------------------------------------
    def canonical(self, notation: str) -> str:
        """The notation as the vocabulary spells it (case-insensitive input); unknown ones raise."""
        from iconclass import NotationNotFound

        text = notation.strip()
        if "wd:" in text.lower():
            raise UnknownSubjectError(
                f"{text!r}: Wikidata-named ICONCLASS notations need the network to be labelled; "
                "use the name form, e.g. 11H(GEORGE)"
            )
        for candidate in (text, text.upper(), _upper_code(text)):
            try:
                self._ic.obj(candidate)
            except (NotationNotFound, KeyError, IndexError, TypeError):
                continue
            if self._ic.txt(candidate, FALLBACK):
                return candidate
        raise UnknownSubjectError(f"{text!r} is not an ICONCLASS notation")

    def text(self, notation: str, language: str) -> tuple[str, str]:
        """``(text, its language)``: in ``language`` when the vocabulary has it, else in English."""
        if language in LANGUAGES:
            text = self._ic.txt(notation, language)
            if text.strip(" :"):
                return text, language
        return self._ic.txt(notation, FALLBACK), FALLBACK

    def keywords(self, notation: str, language: str | None = None) -> tuple[str, ...]:
        """Keywords in every language, ``language``'s first, without repeats."""
        order = [language] if language in LANGUAGES else []
        order += [lang for lang in LANGUAGES if lang not in order]
        found: dict[str, None] = {}
        for lang in order:
            for keyword in self._ic.kw(notation, lang):
                if keyword.strip():
                    found.setdefault(keyword.strip(), None)
        return tuple(found)

    def resolve(self, notation: str, language: str | None = None) -> Subject:
        canonical = self.canonical(notation)
        text, text_language = self.text(canonical, (language or FALLBACK).lower())
        return Subject(SCHEME, canonical, text, text_language, self.keywords(canonical, language))

    # --- suggesting --------------------------------------------------------------------------
    def suggest(self, text: str, language: str | None = None, limit: int = 10) -> list[Suggestion]:
        """Notations whose text or keywords (in any language) contain words starting with each typed word.

        Ranking, best first: a keyword equal to the whole input, then every typed word being a whole word of
        the match, then matches in the requested language, then general notations (shallow in the
        hierarchy) before specific ones, then short texts; ties by notation.
        """
        typed = words(text)
        if sum(map(len, typed)) < MIN_SUGGEST_CHARS:
            return []
        wanted = (language or FALLBACK).lower()
        whole = " ".join(typed)
        best: dict[int, tuple[float, str, str]] = {}
        for lang in LANGUAGES:
            for number in self._candidates(self._index[lang], typed):
                score, matched = self._score(number, lang, typed, whole, text)
                score += 1.0 if lang == wanted else 0.0
                if number not in best or score > best[number][0]:
                    best[number] = (score, matched, lang)
        ranked = sorted(best.items(), key=lambda item: (-item[1][0], self.notations[item[0]]))
        out = []
        for number, (score, matched, lang) in ranked[:limit]:
            notation = self.notations[number]
            label, label_language = self.text(notation, wanted)
            out.append(Suggestion(notation, label, label_language, matched, lang, round(score, 4)))
        return out

    def _candidates(self, index: _LanguageIndex, typed: list[str]) -> list[int]:
        """Notations matching every typed word as a prefix: whole-word matches first, then the rest, each
        by depth; at most :data:`MAX_SCORED` (a two-letter prefix can match thousands)."""
        exact: set[int] | None = None
        prefixed: set[int] | None = None
        for word in typed:
            whole = set(index.postings.get(word, ()))
            found = index.prefixed(word)
            exact = whole if exact is None else exact & whole
            prefixed = found if prefixed is None else prefixed & found
            if not prefixed:
                return []
        assert exact is not None and prefixed is not None
        by_depth = self.depths.__getitem__
        first = sorted(exact, key=by_depth)[:MAX_SCORED]
        rest = sorted(prefixed - exact, key=by_depth)[: MAX_SCORED - len(first)]
        return first + rest

    def _score(
        self, number: int, language: str, typed: list[str], whole: str, typed_text: str
    ) -> tuple[float, str]:
        """4: a keyword is the whole input (ignoring bracketed qualifiers: "George (St.)"); +2: a keyword
        has every typed word; +2: the text has every typed word (whole words); minus depth and text
        length, so general and concise notations come first."""
        notation = self.notations[number]
        text = self._ic.texts[language].get(notation, "")
        keywords = self._ic.keywords[language].get(notation, [])
        score, matched = 0.0, ""
        text_words = set(words(text))
        for keyword in keywords:
            if " ".join(words(_BRACKETED.sub(" ", keyword))) == whole:
                # Accents decide between otherwise equal words ("maçã" is apple, "maca" a stretcher).
                exact = keyword.casefold().strip() == typed_text.casefold().strip()
                score, matched = 4.5 if exact else 4.0, keyword
                break
        if any(all(w in words(k) for w in typed) for k in keywords):
            score += 2.0
        if all(w in text_words for w in typed):
            score += 2.0
        if not matched:
            matched = next((k for k in keywords if all(_has_prefix(k, w) for w in typed)), text)
        score -= 0.1 * self.depths[number] + 0.002 * len(text)
        return score, matched


def _has_prefix(phrase: str, prefix: str) -> bool:
    return any(w.startswith(prefix) for w in words(phrase))


def _upper_code(notation: str) -> str:
    """Upper-case the code before the first bracket, keep the bracketed name as typed."""
    code, bracket, rest = notation.partition("(")
    return code.upper() + bracket + rest


def load_iconclass() -> Iconclass:
    return Iconclass()
