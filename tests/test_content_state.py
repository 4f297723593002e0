"""IIIF Content State API 1.0 §6: content-state-encoding, checked against the spec's own examples."""

from __future__ import annotations

import base64
import json

import pytest

from iconosearch.api.content_state import content_state, decode_content_state, encode_content_state

# Content State API 1.0 §6.3: the condensed example and the encoding the spec gives for it.
SPEC_STATE = (
    '{"id":"https://example.org/object1/canvas7#xywh=1000,2000,1000,2000","type":"Canvas",'
    '"partOf":[{"id":"https://example.org/object1/manifest","type":"Manifest"}]}'
)
SPEC_ENCODED = (
    "JTdCJTIyaWQlMjIlM0ElMjJodHRwcyUzQSUyRiUyRmV4YW1wbGUub3JnJTJGb2JqZWN0MSUyRmNhbnZhczclMjN4eXdoJTNE"
    "MTAwMCUyQzIwMDAlMkMxMDAwJTJDMjAwMCUyMiUyQyUyMnR5cGUlMjIlM0ElMjJDYW52YXMlMjIlMkMlMjJwYXJ0T2YlMjIl"
    "M0ElNUIlN0IlMjJpZCUyMiUzQSUyMmh0dHBzJTNBJTJGJTJGZXhhbXBsZS5vcmclMkZvYmplY3QxJTJGbWFuaWZlc3QlMjIl"
    "MkMlMjJ0eXBlJTIyJTNBJTIyTWFuaWZlc3QlMjIlN0QlNUQlN0Q"
)
# §5.4, the search-results example.
SEARCH_STATE = (
    '{"id":"https://example.org/alice/canvas77#xywh=1000,2000,1000,2000","type":"Canvas",'
    '"partOf":[{"id":"https://example.org/alice/manifest","type":"Manifest"}]}'
)
SEARCH_ENCODED = (
    "JTdCJTIyaWQlMjIlM0ElMjJodHRwcyUzQSUyRiUyRmV4YW1wbGUub3JnJTJGYWxpY2UlMkZjYW52YXM3NyUyM3h5d2glM0Qx"
    "MDAwJTJDMjAwMCUyQzEwMDAlMkMyMDAwJTIyJTJDJTIydHlwZSUyMiUzQSUyMkNhbnZhcyUyMiUyQyUyMnBhcnRPZiUyMiUz"
    "QSU1QiU3QiUyMmlkJTIyJTNBJTIyaHR0cHMlM0ElMkYlMkZleGFtcGxlLm9yZyUyRmFsaWNlJTJGbWFuaWZlc3QlMjIlMkMl"
    "MjJ0eXBlJTIyJTNBJTIyTWFuaWZlc3QlMjIlN0QlNUQlN0Q"
)


@pytest.mark.parametrize(("plain", "encoded"), [(SPEC_STATE, SPEC_ENCODED), (SEARCH_STATE, SEARCH_ENCODED)])
def test_the_spec_examples_encode_and_decode_exactly(plain: str, encoded: str) -> None:
    assert encode_content_state(json.loads(plain)) == encoded
    assert decode_content_state(encoded) == json.loads(plain)


@pytest.mark.parametrize(
    "canvas",
    [
        "https://example.org/canvas/p%C3%A9ge%201",  # an id that is itself percent-encoded
        "https://example.org/canvas/pége",  # non-ASCII
        "https://example.org/canvas/ペ-ジ/𝔣olio?x=1&y=(2)*!'~",  # astral plane; JS-unreserved marks
    ],
)
def test_percent_and_non_ascii_ids_round_trip(canvas: str) -> None:
    state = content_state("https://example.org/manifest", canvas, "1,2,3,4")
    encoded = encode_content_state(state)
    assert set(encoded) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    decoded = decode_content_state(encoded)
    assert decoded["target"]["id"] == f"{canvas}#xywh=1,2,3,4"
    # The first step really is encodeURIComponent: the base64 payload is pure ASCII with %-escapes.
    payload = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode("ascii")
    assert "%25" in payload if "%" in canvas else "%" in payload


def test_the_old_raw_base64url_form_is_refused() -> None:
    """0.1 encoded the raw UTF-8 JSON: its output must not pass as a content state now."""
    raw = json.dumps({"id": "https://example.org/c/pége", "type": "Canvas"}, ensure_ascii=False)
    old = base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")
    with pytest.raises(ValueError, match="content state"):
        decode_content_state(old)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "a",
        "!!!!",
        base64.urlsafe_b64encode(b"%ZZ").decode(),
        base64.urlsafe_b64encode(b"%5B%5D").decode(),
    ],
)
def test_garbage_is_refused_with_a_clear_error(value: str) -> None:
    with pytest.raises(ValueError, match="content state"):
        decode_content_state(value)
