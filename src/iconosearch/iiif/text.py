"""Texts in IIIF documents: language maps, v2 ``@value``/``@language`` objects, plain strings, HTML.

Everything becomes a :data:`~iconosearch.records.LangMap` (``{lang: [values]}``) of plain text: HTML is
sanitised with nh3 (an allow-list cleaner) down to its text, entities are decoded and whitespace collapsed.
Pure functions; never raise on odd input (numbers, nested lists, Omeka value objects, ``@none``).
"""

from __future__ import annotations

import html
import re
from typing import Any

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
    if not isinstance(lang, str) or not lang.strip() or lang in ("@none", "none", "und"):
        return NO_LANG
    return lang.strip()


def _add(out: LangMap, lang: str, raw: str) -> None:
    text = clean_text(raw)
    if text and text not in out.setdefault(lang, []):
        out[lang].append(text)


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
