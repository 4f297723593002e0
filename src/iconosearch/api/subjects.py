"""ICONCLASS endpoints: autocomplete (``/api/iconclass/suggest``) and one notation (``/api/iconclass/{n}``).

The vocabulary takes seconds to load, so :func:`warm_up` starts loading it in the background when the
app starts; until it is ready, suggestions answer 503 with ``Retry-After`` instead of holding the typing
user's request (searches naming a notation simply wait for it).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Path, Query

from iconosearch.api import schemas as s
from iconosearch.api.problems import PROBLEM_JSON, ProblemError
from iconosearch.subjects import (
    Subject,
    Suggestion,
    UnknownSubjectError,
    Vocabulary,
    vocabulary,
    vocabulary_loaded,
)
from iconosearch.subjects.iconclass import LANGUAGES, MIN_SUGGEST_CHARS, SCHEME

log = logging.getLogger(__name__)

router = APIRouter(tags=["subjects"])


def _documented(*statuses: int) -> dict[int | str, dict[str, object]]:
    """Problem answers these routes can give, for the OpenAPI contract (tests/test_api_contract.py)."""
    return {
        code: {"description": "Problem details (RFC 9457)", "content": {PROBLEM_JSON: {}}}
        for code in statuses
    }


_LANG_DESCRIPTION = f"Language of the labels: {', '.join(LANGUAGES)} (others fall back to English)."


def warm_up() -> None:
    """Load the vocabulary in a daemon thread (no-op when it is loaded or loading)."""

    def load() -> None:
        try:
            vocabulary(SCHEME)
        except Exception:  # a broken install must not take the API down; requests report it
            log.exception("loading the ICONCLASS vocabulary failed")

    if not vocabulary_loaded(SCHEME):
        threading.Thread(target=load, name="iconclass-warm-up", daemon=True).start()


def _ready() -> Vocabulary:
    if not vocabulary_loaded(SCHEME):
        warm_up()
        raise ProblemError(503, "vocabulary-loading", "the ICONCLASS vocabulary is still loading; retry soon")
    return vocabulary(SCHEME)


@router.get("/api/iconclass/suggest", response_model=s.SubjectSuggestions, responses=_documented(503))
def suggest(
    q: Annotated[
        str,
        Query(
            min_length=1,
            max_length=200,
            description=f"What the user has typed so far (at least {MIN_SUGGEST_CHARS} letters give results)."
            " Words match the starts of words in ICONCLASS texts and keywords in en, de, fr, it and pt.",
            examples=["Apfel"],
        ),
    ],
    lang: Annotated[str, Query(max_length=35, description=_LANG_DESCRIPTION, examples=["de"])] = "en",
    limit: Annotated[int, Query(ge=1, le=50)] = 10,
) -> s.SubjectSuggestions:
    """Autocomplete ICONCLASS notations, best first, each with its label in `lang`.

    Put a suggestion's `ref` in `q` (`iconclass:25G21(APPLE)`) or in a `subject` term to search for it.
    """
    language = lang.strip().lower() or "en"
    return suggestions_document(q, language, _ready().suggest(q, language, limit))


def suggestions_document(q: str, language: str, found: Sequence[Suggestion]) -> s.SubjectSuggestions:
    """The answer of ``/api/iconclass/suggest`` (also what ``iconosearch subjects suggest --json`` prints)."""
    return s.SubjectSuggestions(
        q=q,
        lang=language,
        suggestions=[
            s.SubjectSuggestionOut(
                notation=x.notation,
                ref=f"{SCHEME}:{x.notation}",
                label=x.label,
                label_language=x.label_language,
                matched=x.matched,
                matched_language=x.matched_language,
                score=x.score,
            )
            for x in found
        ],
    )


@router.get("/api/iconclass/{notation}", response_model=s.SubjectOut, responses=_documented(404, 503))
def notation(
    notation: Annotated[str, Path(max_length=200, examples=["11H(GEORGE)"])],
    lang: Annotated[str, Query(max_length=35, description=_LANG_DESCRIPTION)] = "en",
) -> s.SubjectOut:
    """One ICONCLASS notation: its label in `lang` and its keywords in every language."""
    try:
        subject = _ready().resolve(notation, lang.strip().lower() or "en")
    except UnknownSubjectError as exc:
        raise ProblemError(404, exc.code, str(exc)) from exc
    return subject_document(subject)


def subject_document(subject: Subject) -> s.SubjectOut:
    """The answer of ``/api/iconclass/{notation}`` (also ``iconosearch subjects show --json``)."""
    return s.SubjectOut(
        notation=subject.notation,
        ref=subject.ref,
        label=subject.text,
        label_language=subject.language,
        keywords=list(subject.keywords),
    )
