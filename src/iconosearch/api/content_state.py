"""IIIF Content State API 1.0: point a viewer at one canvas (and region) of a manifest.

A content state is a JSON annotation whose target is the canvas, ``partOf`` its manifest. In URLs it is
passed as ``iiif-content``: the UTF-8 JSON encoded as base64url with the ``=`` padding removed.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

CONTEXT = "http://iiif.io/api/presentation/3/context.json"


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
    """base64url of the compact UTF-8 JSON, padding removed (Content State API §2.3)."""
    raw = json.dumps(state, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_content_state(value: str) -> dict:
    """Inverse of :func:`encode_content_state`; raises ``ValueError`` on anything that is not one."""
    padded = value + "=" * (-len(value) % 4)
    try:
        raw = base64.urlsafe_b64decode(padded.encode("ascii"))
        data = json.loads(raw.decode("utf-8"))
    except (binascii.Error, UnicodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not a base64url-encoded content state: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError("a content state must be a JSON object")
    return data
