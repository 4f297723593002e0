"""Texts in IIIF documents: language maps, v2 ``@value``/``@language`` objects, plain strings, HTML.

Everything becomes a :data:`~iconosearch.records.LangMap` (``{lang: [values]}``) of plain text: HTML is
sanitised with nh3 (an allow-list cleaner) down to its text, entities are decoded and whitespace collapsed.
Language keys are normalised to BCP 47 with langcodes (``fre`` → ``fr``, ``English`` → ``en``); keys that
name no language (``"true"``, ``"jp"``) keep their text under ``none``. Mojibake (UTF-8 read as Latin-1,
``"MusÃ©e"``) is repaired with ftfy; the original stays beside the repair, so nothing of the source is lost.
Pure functions; never raise on odd input (numbers, nested lists, Omeka value objects, ``@none``).
"""

from __future__ import annotations

import html
import re
from functools import lru_cache
from typing import Any

import ftfy
import langcodes
import nh3

from iconosearch.records import NO_LANG, LangMap

_WS = re.compile(r"\s+")
# Block-level tags whose boundaries separate words; without this "<p>a</p><p>b</p>" would become "ab".
_BLOCK = re.compile(r"<\s*(br|/p|/div|/li|/tr|/h[1-6]|p|div|li|tr|h[1-6])\b[^>]*>", re.IGNORECASE)
_MAX_DEPTH = 8


def clean_text(value: str) -> str:
    """Plain text of a IIIF string value: tags stripped (content kept), entities decoded, spaces collapsed."""
    text = value
    if "<" in text:
        text = _BLOCK.sub(" ", text)
        # No tags allowed: nh3 keeps the text content and drops script/style bodies entirely.
        text = nh3.clean(text, tags=set(), attributes={}, strip_comments=True)
    if "&" in text:
        text = html.unescape(text)
    return _WS.sub(" ", text).strip()


def _scalar(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    return None


def _norm_lang(lang: Any) -> str:
    if not isinstance(lang, str):
        return NO_LANG
    return normalise_lang(lang)


@lru_cache(maxsize=4096)
def normalise_lang(lang: str) -> str:
    """A BCP 47 tag for a language key as found in the wild, or ``"none"`` when it names no language."""
    key = lang.strip()
    if not key or key.lower() in ("@none", "none", "und"):
        return NO_LANG
    try:
        if langcodes.tag_is_valid(key):
            return str(langcodes.standardize_tag(key))
        # Not a tag: perhaps the language's name ("English", "Deutsch"), as some generators write.
        return str(langcodes.find(key).to_tag()) if key.isalpha() and len(key) > 3 else NO_LANG
    except (LookupError, ValueError):
        return NO_LANG


# ftfy's own heuristics decide what is mojibake; the rest of its normalisations are left out so that the
# source's text is only changed where it was demonstrably garbled.
_FTFY = ftfy.TextFixerConfig(
    unescape_html=False,
    fix_latin_ligatures=False,
    fix_character_width=False,
    uncurl_quotes=False,
    fix_line_breaks=False,
    normalization=None,
    explain=False,
)


def _add(out: LangMap, lang: str, raw: str) -> None:
    text = clean_text(raw)
    if not text:
        return
    values = out.setdefault(lang, [])
    repaired = text if text.isascii() else ftfy.fix_text(text, _FTFY)  # mojibake is never pure ASCII
    for value in (repaired, text) if repaired != text else (text,):
        if value not in values:
            values.append(value)


def _collect(value: Any, out: LangMap, lang: str, depth: int) -> None:
    if depth > _MAX_DEPTH or value is None:
        return
    scalar = _scalar(value)
    if scalar is not None:
        _add(out, lang, scalar)
        return
    if isinstance(value, list):
        for item in value:
            _collect(item, out, lang, depth + 1)
        return
    if not isinstance(value, dict):
        return
    if "@value" in value:
        # v2 literal {"@value": ..., "@language": ...}; also Omeka S value objects that carry @value.
        _collect(value["@value"], out, _norm_lang(value.get("@language", lang)), depth + 1)
        return
    if "value" in value and ("language" in value or "type" in value):
        _collect(value["value"], out, _norm_lang(value.get("language", lang)), depth + 1)
        return
    # A v3 language map: every key is a language tag (or "none"/"@none").
    for key, inner in value.items():
        if isinstance(key, str) and (not key.startswith("@") or key == "@none"):
            _collect(inner, out, _norm_lang(key), depth + 1)


def lang_map(value: Any) -> LangMap:
    """Flatten any IIIF text value to ``{lang: [plain texts]}``; empty values vanish, order is kept."""
    out: LangMap = {}
    _collect(value, out, NO_LANG, 0)
    return {lang: values for lang, values in out.items() if values}
