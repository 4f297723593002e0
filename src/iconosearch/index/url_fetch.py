"""Fetching a query image by URL without letting the server be used against its own network (SSRF).

Only http/https; the host name is resolved first (with a deadline) and every address must be global
unicast (:mod:`iconosearch.net_guard` has the rule, embedded IPv4 forms included); the request then
goes to the vetted address itself (``Host`` header and TLS SNI keep the name), so a DNS answer that
changes between check and connect cannot redirect it. Redirects are followed by hand, each hop
vetted again. Size and time are capped.
"""

from __future__ import annotations

import time
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

from iconosearch.net_guard import AddressNotAllowedError, resolve_public
from iconosearch.query import InvalidImageError, UrlNotAllowedError

MAX_REDIRECTS = 3


def _vetted_address(host: str, port: int, *, allow_private: bool, timeout_s: float) -> str:
    try:
        return resolve_public(host, port, timeout_s=timeout_s, allow_private=allow_private)
    except AddressNotAllowedError as exc:
        raise UrlNotAllowedError(str(exc)) from exc


def fetch_image_bytes(url: str, *, max_bytes: int, timeout_s: float, allow_private: bool = False) -> bytes:
    """The body of ``url`` (at most ``max_bytes``, within ``timeout_s`` overall) or a ``QueryError``.

    ``allow_private`` exists for tests against a local server only.
    """
    deadline = time.monotonic() + timeout_s
    for _ in range(MAX_REDIRECTS + 1):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UrlNotAllowedError("only http:// and https:// image URLs are allowed")
        if parts.username or parts.password:
            raise UrlNotAllowedError("image URLs with credentials are not allowed")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        host = parts.hostname
        remaining = deadline - time.monotonic()
        addr = _vetted_address(host, port, allow_private=allow_private, timeout_s=max(0.01, remaining))
        netloc = f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"
        target = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise UrlNotAllowedError("fetching the image URL timed out")
        headers = {"Host": parts.netloc.rsplit("@", 1)[-1], "Accept": "image/*"}
        try:
            with (
                httpx.Client(timeout=remaining, follow_redirects=False, trust_env=False) as client,
                client.stream("GET", target, headers=headers, extensions={"sni_hostname": host}) as resp,
            ):
                if resp.is_redirect and "location" in resp.headers:
                    url = urljoin(url, resp.headers["location"])
                    continue
                if resp.status_code != 200:
                    raise InvalidImageError(f"the image URL answered HTTP {resp.status_code}")
                declared = resp.headers.get("content-length")
                if declared is not None and declared.isdigit() and int(declared) > max_bytes:
                    raise InvalidImageError(f"the image at the URL is larger than {max_bytes} bytes")
                body = bytearray()
                for chunk in resp.iter_bytes():
                    body.extend(chunk)
                    if len(body) > max_bytes:
                        raise InvalidImageError(f"the image at the URL is larger than {max_bytes} bytes")
                    if time.monotonic() > deadline:
                        raise UrlNotAllowedError("fetching the image URL timed out")
                return bytes(body)
        except httpx.TimeoutException as exc:
            raise UrlNotAllowedError("fetching the image URL timed out") from exc
        except httpx.HTTPError as exc:
            raise InvalidImageError(f"cannot fetch the image URL: {exc}") from exc
    raise UrlNotAllowedError("too many redirects")
