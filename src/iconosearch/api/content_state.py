"""IIIF Content State API 1.0: point a viewer at one canvas (and region) of a manifest.

A content state is a JSON annotation whose target is the canvas, ``partOf`` its manifest. In URLs it is
passed as ``iiif-content``, *content-state-encoded* (§6.1): ``encodeURIComponent`` of the JSON, then
base64url, then the ``=`` padding removed. The first step is what keeps ``%`` and non-ASCII identifiers
intact through the spec's JavaScript decoder (``atob`` yields bytes as Latin-1 characters, so raw UTF-8
would come out as mojibake), and the same functions run in our viewer page (``web/viewer/``).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any
from urllib.parse import unquote

CONTEXT = "http://iiif.io/api/presentation/3/context.json"
_JS_UNRESERVED = "!'()*"
"""What ``encodeURIComponent`` leaves alone beyond what :func:`urllib.parse.quote` always keeps."""
_URI_COMPONENT = [
    chr(b) if chr(b).isascii() and (chr(b).isalnum() or chr(b) in "-_.~" + _JS_UNRESERVED) else f"%{b:02X}"
    for b in range(256)
]
"""Each UTF-8 byte as ``encodeURIComponent`` writes it: a table lookup per byte, several times faster
than :func:`urllib.parse.quote` (every search result carries a content state)."""
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def content_state(
    manifest_id: str, canvas_id: str, region: str | None = None, *, id: str | None = None
) -> dict:
    """The content-state annotation selecting ``canvas_id`` (``#xywh=`` fragment when ``region`` is set)."""
    target_id = f"{canvas_id}#xywh={region}" if region else canvas_id
    annotation: dict[str, Any] = {
        "@context": CONTEXT,
        "type": "Annotation",
        "motivation": ["contentState"],
        "target": {
            "id": target_id,
            "type": "Canvas",
            "partOf": [{"id": manifest_id, "type": "Manifest"}],
        },
    }
    if id is not None:
        annotation = {
            "@context": CONTEXT,
            "id": id,
            **{k: v for k, v in annotation.items() if k != "@context"},
        }
    return annotation


def encode_content_state(state: dict) -> str:
    """Content-state-encoding (§6.1) of the compact JSON: encodeURIComponent, base64url, no padding."""
    text = json.dumps(state, ensure_ascii=False, separators=(",", ":"))
    uri_encoded = "".join(map(_URI_COMPONENT.__getitem__, text.encode("utf-8")))  # encodeURIComponent
    return base64.urlsafe_b64encode(uri_encoded.encode("ascii")).decode("ascii").rstrip("=")


def decode_content_state(value: str) -> dict:
    """Inverse of :func:`encode_content_state` (§6.3); raises ``ValueError`` on anything that is not one."""
    if len(value) % 4 == 1:
        raise ValueError("not a content state: a base64url string cannot have this length")
    padded = value + "=" * (-len(value) % 4)
    try:
        uri_encoded = base64.b64decode(padded.encode("ascii"), altchars=b"-_", validate=True).decode("ascii")
        if _BAD_ESCAPE.search(uri_encoded):
            raise ValueError("a % not followed by two hex digits")  # decodeURIComponent throws here too
        data = json.loads(unquote(uri_encoded, errors="strict"))
    except (binascii.Error, UnicodeError, json.JSONDecodeError, ValueError) as exc:
        raise ValueError(f"not a content-state-encoded content state: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError("a content state must be a JSON object")
    return data
