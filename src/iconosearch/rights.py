"""Rights classes of licence/rights URIs, for filtering results ("open" = free to reuse).

Open: CC0, Public Domain Mark, CC BY, CC BY-SA, and rightsstatements.org NoC-* (no copyright) statements.
Restricted: any CC licence with NC or ND, and rightsstatements.org InC* (in copyright). Everything else,
including "copyright not evaluated" statements, is unknown.
"""

from __future__ import annotations

import json
import re
from typing import Any

from iconosearch.records import RightsClass

_CC = re.compile(r"creativecommons\.org/(licenses|publicdomain)/([a-z0-9\-+]+)", re.IGNORECASE)
# Legacy Europeana statements: rr-f/rr-p/rr-r are "rights reserved" (free/paid/restricted access).
_EUROPEANA_RR = re.compile(r"europeana\.eu/rights/rr-[fpr]", re.IGNORECASE)
_RS = re.compile(r"rightsstatements\.org/(?:vocab|page)/([a-z\-]+)", re.IGNORECASE)


def rights_class(uri: str | None) -> RightsClass:
    """The class ("open", "restricted" or "unknown") of a rights/licence URI, tolerant of scheme and case."""
    if not uri or not isinstance(uri, str):
        return "unknown"
    text = uri.strip()
    m = _CC.search(text)
    if m:
        kind, code = m.group(1).lower(), m.group(2).lower()
        if kind == "publicdomain":
            return "open" if code in ("zero", "mark") else "unknown"
        parts = set(code.split("-"))
        if parts & {"nc", "nd"}:
            return "restricted"
        if parts <= {"by", "sa"} and "by" in parts:
            return "open"
        return "unknown"
    m = _RS.search(text)
    if m:
        code = m.group(1).upper()
        if code.startswith("NOC"):
            return "open"
        if code.startswith("INC"):
            return "restricted"
        return "unknown"
    if _EUROPEANA_RR.search(text):
        return "restricted"
    return "unknown"


_LICENCE_URL = re.compile(
    r"https?://(?:www\.)?(?:creativecommons\.org/(?:licenses|publicdomain)/[a-z0-9\-+]+(?:/[0-9.]+)?"
    r"(?:/[a-z]{2}(?:-[a-z]{2})?)?/?|rightsstatements\.org/(?:vocab|page)/[a-z\-]+/[0-9.]+/?)",
    re.IGNORECASE,
)


def licence_in(value: Any) -> str | None:
    """The first Creative Commons or rightsstatements.org URL mentioned anywhere in a IIIF value.

    Some publishers state the licence only inside ``requiredStatement`` or v2 ``attribution`` HTML
    (``<a href="https://creativecommons.org/licenses/by/4.0/">CC BY</a>``) and leave ``rights`` empty.
    """
    if value is None:
        return None
    m = _LICENCE_URL.search(json.dumps(value, ensure_ascii=False).replace("\\/", "/"))
    return m.group(0) if m else None
