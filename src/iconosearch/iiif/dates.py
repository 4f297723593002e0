"""Dates of IIIF resources as year ranges: ``navDate`` first, else a date-like metadata value.

Metadata dates are free text ("ca. 1650", "1650-1700", "17th century", "1850/1860", "300 BC"), so only
patterns that are unambiguous are read; anything else gives no date rather than a wrong one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from iconosearch.records import DateRange, MetadataPair

_NAVDATE = re.compile(r"^\s*(-?\d{1,4})-\d{2}-\d{2}")
_YEAR = re.compile(r"(?<![\d.])(\d{3,4})(?![\d])")
_CENTURY = re.compile(
    r"\b(\d{1,2})\s*(?:st|nd|rd|th|e|er|\.)\s*(?:century|siècle|siecle|jh|jahrhundert)", re.IGNORECASE
)
_BCE = re.compile(r"\b(b\.?\s?c\.?(e\.?)?|v\.\s?chr\.?|av\.\s?j\.?-?c\.?)", re.I)
_DATE_LABELS = (
    "date",
    "dates",
    "datum",
    "created",
    "date created",
    "creation date",
    "year",
    "jahr",
    "année",
    "period",
    "dating",
    "datierung",
    "published",
    "publication date",
    "erscheinungsjahr",
    "entstehungszeit",
    "dyddiad",
)
_MAX_YEAR = 2100


def parse_nav_date(value: object) -> DateRange | None:
    """``navDate`` (xsd:dateTime) as a one-year range."""
    if not isinstance(value, str):
        return None
    m = _NAVDATE.match(value)
    if not m:
        return None
    year = int(m.group(1))
    return DateRange(year, year, "navDate") if -9999 <= year <= _MAX_YEAR else None


def parse_date_text(text: str, source: str = "metadata") -> DateRange | None:
    """Year range of free-text dates; None when nothing unambiguous is found."""
    bce = bool(_BCE.search(text))
    years = [int(y) for y in _YEAR.findall(text) if 100 <= int(y) <= _MAX_YEAR or bce]
    if years:
        if bce:
            years = [-y for y in years]
        return DateRange(min(years), max(years), source)
    cent = [int(c) for c in _CENTURY.findall(text) if 0 < int(c) <= 21]
    if cent:
        lo, hi = min(cent), max(cent)
        if bce:
            return DateRange(-hi * 100, -(lo - 1) * 100 - 1, source)
        return DateRange((lo - 1) * 100 + 1, hi * 100, source)
    return None


def date_from_metadata(pairs: Iterable[MetadataPair]) -> DateRange | None:
    """The first metadata value whose label names a date and that reads as one."""
    for pair in pairs:
        labels = {v.strip().lower().rstrip(":") for vals in pair.label.values() for v in vals}
        hit = next((lab for lab in labels if lab in _DATE_LABELS), None)
        if hit is None:
            continue
        for values in pair.value.values():
            for v in values:
                found = parse_date_text(v, f"metadata:{hit}")
                if found is not None:
                    return found
    return None
