"""Rights classes of licence/rights URIs, for filtering results ("open" = free to reuse).

Open: CC0, Public Domain Mark, CC BY, CC BY-SA, and rightsstatements.org NoC-* (no copyright) statements.
Restricted: any CC licence with NC or ND, and rightsstatements.org InC* (in copyright). Everything else,
including "copyright not evaluated" statements, is unknown.

Harvested values are kept verbatim in records and the API; what we *publish* as IIIF uses
:func:`canonical_rights`, the ``http://`` forms that the Presentation 3 spec and its official validator
accept (``https://creativecommons.org/...`` fails the validator's schema).
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
_CC_FULL = re.compile(
    r"^\s*https?://(?:www\.)?creativecommons\.org/(licenses|publicdomain)/([a-z0-9\-+]+)/(\d+(?:\.\d+)?)"
    r"(?:/([a-z]{2}(?:-[a-z]{2})?))?(?=/|$)",
    re.IGNORECASE,
)
_RS_FULL = re.compile(
    r"^\s*https?://(?:www\.)?rightsstatements\.org/(?:vocab|page)/([a-z\-]+)/(\d+\.\d+)(?:/|\?|$)",
    re.IGNORECASE,
)
# The twelve RightsStatements.org statements, in the case their URIs use.
_RS_CODES = {
    code.upper(): code
    for code in (
        "InC",
        "InC-OW-EU",
        "InC-EDU",
        "InC-NC",
        "InC-RUU",
        "NoC-CR",
        "NoC-NC",
        "NoC-OKLR",
        "NoC-US",
        "CNE",
        "UND",
        "NKC",
    )
}


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


def canonical_rights(uri: str | None) -> str | None:
    """The canonical ``http://`` URI of a Creative Commons licence or tool, or of a RightsStatements.org
    statement; ``None`` for anything else, which IIIF ``rights`` must not carry (Presentation 3 §3.3.1).

    Scheme, ``www.``, case, ``legalcode``/``deed.*`` suffixes, query strings and the ``page/`` form of
    RightsStatements.org are normalised away; a jurisdiction port (``/3.0/nl/``) is kept.
    """
    if not uri or not isinstance(uri, str):
        return None
    m = _CC_FULL.match(uri)
    if m:
        kind, code, version, port = m.group(1).lower(), m.group(2).lower(), m.group(3), m.group(4)
        tail = f"{port.lower()}/" if port else ""
        return f"http://creativecommons.org/{kind}/{code}/{version}/{tail}"
    m = _RS_FULL.match(uri)
    if m:
        code = _RS_CODES.get(m.group(1).upper())
        return f"http://rightsstatements.org/vocab/{code}/{m.group(2)}/" if code else None
    return None


def allows_derivatives(uri: str | None) -> bool:
    """False when the licence forbids derivatives (CC ``-nd``), so the item may only be shown whole.

    Cropping a region out of an image is an adaptation under CC's ND terms, while scaling and format
    changes are not; so for these items thumbnails, viewers' image URLs and image services must use the
    full region. Only an explicit ND licence says no: other statements leave the publisher in charge.
    """
    if not uri or not isinstance(uri, str):
        return True
    m = _CC.search(uri.strip())
    if m is None or m.group(1).lower() != "licenses":
        return True
    return "nd" not in m.group(2).lower().split("-")
