"""The caption rule: the text of a record used for keyword search, training and evaluation.

For every language present, the caption joins (with ". "), in this order and without repeats:

1. the canvas label, unless it is only a page/folio/sequence label ("f. 1r", "p. 12", "[3]", "IMG_0012.jpg",
   "recto"); a folio prefix is removed from a longer label ("f. 33v [The king]" → "[The king]" → "The king");
2. the manifest label;
3. the summary (manifest summary/description, else the canvas one);
4. the values of the chosen metadata fields, matched case-insensitively against the pair's label in any
   language (``CollectionConfig.caption_fields``, default title, description, subject).

Values without a language (``none``) belong to every language, after the language's own texts (so that
untagged text in another language cannot lead an ``en`` caption); a caption in ``none`` is made only when
no language-tagged text exists. Each caption is capped at :data:`MAX_CHARS` characters.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from iconosearch.records import NO_LANG, ImageRecord, LangMap, MetadataPair

MAX_CHARS = 1000
DEFAULT_FIELDS = ("title", "description", "subject")

_NUM = r"(?:\d{1,5}[a-z]?|[ivxlcdm]{1,6})\s*[rv]?"
_FOLIO_PREFIX = re.compile(
    # With a page word, arabic or roman numbers ("f. 33v", "p. xii"); without one, arabic only ("12r", "[3]").
    r"^\s*(?:(?:f|fol|folio|fo|p|pp|page|pag|s|seite|bl|blatt|pl|plate|tab|taf|img|image|scan|canvas|"
    rf"bild|nr|no|n°|#)\.?\s*[\[(]?\s*{_NUM}(?:\s*[-–/]\s*{_NUM})?|[\[(]?\s*\d{{1,5}}\s*[rv]?"
    r"(?:\s*[-–/]\s*\d{1,5}\s*[rv]?)?)\s*[\])]?(?=\s|$|[,.:;\[(])",
    re.IGNORECASE,
)
_ROMAN = re.compile(r"^\s*[\[(]?[ivxlcdm]{1,8}[\])]?\.?\s*$", re.IGNORECASE)
_PAGE_WORDS = re.compile(
    r"^\s*(recto|verso|front|back|spine|cover|front cover|back cover|inside front cover|inside back cover|"
    r"upper cover|lower cover|fore-edge|head|tail|endpaper|flyleaf|title page|colour chart|color chart|"
    r"ruler|blank|blank page|page|untitled|no title|ohne titel|sans titre|none|null|n/a|-)\s*$",
    re.IGNORECASE,
)
_FILENAME = re.compile(r"^\s*(file:)?[\w\-. ]+\.(jpe?g|tiff?|png|gif|jp2|webp)\s*$", re.IGNORECASE)
_CONTENT = re.compile(r"[^\W\d_]{2,}")


def clean_canvas_label(text: str) -> str | None:
    """The informative part of a canvas label, or None when it is only a page label or file name."""
    if _FILENAME.match(text) or _PAGE_WORDS.match(text) or _ROMAN.match(text):
        return None
    rest = _FOLIO_PREFIX.sub("", text, count=1).strip(" \t,.:;-–[]()")
    if not rest or not _CONTENT.search(rest) or _PAGE_WORDS.match(rest):
        return None
    return rest


def field_values(metadata: Sequence[MetadataPair], fields: Sequence[str]) -> list[LangMap]:
    """Values of the metadata pairs labelled (any language, any case) as one of ``fields``, in field order."""
    wanted = [f.strip().lower() for f in fields if f.strip()]
    by_label: dict[str, list[LangMap]] = {}
    for pair in metadata:
        labels = {v.strip().lower().rstrip(":") for vals in pair.label.values() for v in vals}
        for label in labels:
            by_label.setdefault(label, []).append(pair.value)
    return [value for want in wanted for value in by_label.get(want, [])]


def build_caption(
    record: ImageRecord, fields: Sequence[str] = DEFAULT_FIELDS, *, chosen: list[LangMap] | None = None
) -> LangMap:
    """The caption of ``record`` per language (see the module docs for the rule).

    ``chosen``: the result of :func:`field_values` for the record's metadata, when the caller already
    has it (a manifest's canvases share their metadata).
    """
    canvas: LangMap = {}
    for lang, values in record.canvas_label.items():
        kept = [c for c in (clean_canvas_label(v) for v in values) if c]
        if kept:
            canvas[lang] = kept
    chosen = field_values(record.metadata, fields) if chosen is None else chosen
    parts: list[LangMap] = [canvas, record.manifest_label, record.summary, *chosen]
    langs = [lang for part in parts for lang in part if lang != NO_LANG]
    targets = list(dict.fromkeys(langs)) or [NO_LANG]
    caption: LangMap = {}
    for lang in targets:
        texts: list[str] = []
        # The language's own texts first, then the untagged ones: untagged text is often in another
        # language (a German title under "none" in an English record) and must not lead, or crowd out,
        # the caption of a language the record has words in.
        for key in (lang, NO_LANG) if lang != NO_LANG else (NO_LANG,):
            for part in parts:
                for v in part.get(key, []):
                    norm = v.strip().rstrip(".").strip()
                    if norm and not any(norm.lower() in t.lower() for t in texts):
                        texts.append(norm)
        if texts:
            text = ". ".join(texts)
            caption[lang] = [text[:MAX_CHARS].rstrip()]
    return caption
