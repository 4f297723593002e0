"""Polite HTTP fetching for the harvest (httpx, async).

Per host: at most ``concurrency`` requests in flight and at least ``delay_s`` between request starts.
Retries with exponential backoff on timeouts, connection errors, 429 and 5xx, honouring ``Retry-After``
(seconds or an HTTP date) up to ``max_retry_after_s``; beyond that the failure is reported (and retried
on the next run) instead of stalling the harvest. Conditional requests (``If-None-Match`` /
``If-Modified-Since``) turn unchanged documents into cheap 304s. Bodies are streamed and cut off at
``max_bytes``; content types are checked (an HTML error page is not a manifest). Configured local
mounts are read from disk, so a local folder harvests the same way as a server. ``file://`` URLs are
read only below ``file_roots``, the folders the operator pointed at: a fetched document that lists
``file:///etc/…`` must not make the harvester read (and store) local files.

Permanent errors are not retried: 4xx answers, a host name that does not resolve, a TLS failure. A host
that fails at that level ``HOST_DOWN_AFTER`` times in a row is marked down for the rest of the run, and
every later request to it fails at once with ``host-unreachable`` (the harvest records those as skipped).
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import random
import socket
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import httpx

Expect = Literal["json", "image", "text"]

_JSON_TYPES = ("application/json", "application/ld+json", "text/json", "application/activity+json")
# Servers label JSON loosely; these are accepted when the body parses as JSON.
_LOOSE_JSON_TYPES = ("text/plain", "application/octet-stream", "binary/octet-stream", "")


class FetchError(Exception):
    """A request that did not give a usable body. ``reason`` is a short machine code."""

    def __init__(
        self,
        reason: str,
        message: str,
        *,
        url: str,
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.url = url
        self.retryable = retryable
        self.retry_after = retry_after

    @property
    def detail(self) -> str:
        """The message and URL, without the reason code (for records that keep the reason apart)."""
        return f"{super().__str__()} ({self.url})"

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"


@dataclass(frozen=True, slots=True)
class FetchResult:
    url: str
    """Final URL after redirects."""
    status: int
    content: bytes
    content_type: str
    etag: str | None = None
    last_modified: str | None = None

    @property
    def not_modified(self) -> bool:
        return self.status == 304

    def json(self) -> Any:
        try:
            return json.loads(self.content)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise FetchError("invalid-json", f"body is not valid JSON: {exc}", url=self.url) from exc


HOST_DOWN_AFTER = 3
"""Host-level failures in a row (see ``HOST_LEVEL``) after which a host is down for the rest of the run."""
HOST_LEVEL = frozenset({"dns", "tls", "connection"})
"""Reasons that say the host, not one resource, is unusable (``connection`` only once retries ran out)."""
HOST_DOWN = "host-unreachable"


@dataclass
class _Host:
    semaphore: asyncio.Semaphore
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    next_start: float = 0.0
    failures_in_row: int = 0
    down: str | None = None
    """Why the host was marked down, once it was."""


def _transport_reason(exc: BaseException) -> tuple[str, bool]:
    """(reason, retryable) of a transport error, from the OS error underneath it."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, socket.gaierror):
            # EAI_AGAIN: the resolver did not answer (temporary); anything else: the name does not exist.
            return ("dns", False) if seen.errno != socket.EAI_AGAIN else ("dns-timeout", True)
        if isinstance(seen, ssl.SSLError):
            return "tls", False
        seen = seen.__cause__ or seen.__context__
    return "connection", True


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = now if now is not None else time.time()
    return max(0.0, when.timestamp() - current)


class Fetcher:
    """One harvest's HTTP client. Use as ``async with Fetcher(...) as f: await f.get(url, ...)``."""

    def __init__(
        self,
        *,
        user_agent: str,
        timeout_s: float = 30.0,
        concurrency: int = 4,
        delay_s: float = 0.1,
        retries: int = 4,
        backoff_s: float = 0.5,
        max_retry_after_s: float = 60.0,
        local_mounts: Mapping[str, Path] | None = None,
        file_roots: Sequence[Path] = (),
    ) -> None:
        self.user_agent = user_agent
        self.timeout_s = timeout_s
        self.concurrency = concurrency
        self.delay_s = delay_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_retry_after_s = max_retry_after_s
        self.local_mounts = {k.rstrip("/") + "/": v for k, v in (local_mounts or {}).items()}
        self.file_roots = tuple(root.resolve() for root in file_roots)
        self.requests = 0
        """HTTP requests made (retries included), for tests and summaries."""
        self._hosts: dict[str, _Host] = {}
        self._client: httpx.AsyncClient | None = None

    async def __aenter__(self) -> Fetcher:
        self._client = httpx.AsyncClient(
            headers={"User-Agent": self.user_agent},
            timeout=httpx.Timeout(self.timeout_s),
            follow_redirects=True,
            max_redirects=10,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    @staticmethod
    def _count_failure(host: _Host, exc: FetchError) -> None:
        if exc.reason not in HOST_LEVEL:
            host.failures_in_row = 0  # the host answered: it is up, whatever it said
            return
        host.failures_in_row += 1
        if host.failures_in_row >= HOST_DOWN_AFTER and host.down is None:
            host.down = f"{host.failures_in_row} {exc.reason} failures in a row, the last: {exc}"

    def _host(self, url: str) -> _Host:
        key = urlsplit(url).netloc.lower()
        host = self._hosts.get(key)
        if host is None:
            host = self._hosts[key] = _Host(asyncio.Semaphore(self.concurrency))
        return host

    async def _polite_start(self, host: _Host) -> None:
        async with host.lock:
            wait = host.next_start - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            host.next_start = time.monotonic() + self.delay_s

    async def get(
        self,
        url: str,
        *,
        expect: Expect,
        max_bytes: int,
        etag: str | None = None,
        last_modified: str | None = None,
    ) -> FetchResult:
        """GET ``url`` with retries; raises :class:`FetchError` when no usable body comes back."""
        local = self._local_path(url)
        if local is not None:
            return self._read_local(url, local, expect=expect, max_bytes=max_bytes)
        if not url.startswith(("http://", "https://")):
            raise FetchError("bad-url", "only http(s) and file URLs can be harvested", url=url)
        host = self._host(url)
        attempt = 0
        while True:
            try:
                result = await self._get_once(url, expect, max_bytes, etag, last_modified)
                host.failures_in_row = 0
                return result
            except FetchError as exc:
                wait = exc.retry_after
                if not exc.retryable or attempt >= self.retries:
                    self._count_failure(host, exc)
                    raise
                if wait is None:
                    wait = self.backoff_s * (2**attempt) * (0.75 + random.random() / 2)
                elif wait > self.max_retry_after_s:
                    raise FetchError(
                        exc.reason,
                        f"server asks to retry after {wait:.0f}s (more than {self.max_retry_after_s:.0f}s)",
                        url=url,
                        retryable=True,
                    ) from exc
                attempt += 1
                await asyncio.sleep(wait)

    async def _get_once(
        self, url: str, expect: Expect, max_bytes: int, etag: str | None, last_modified: str | None
    ) -> FetchResult:
        assert self._client is not None, "use Fetcher as an async context manager"
        headers = {"Accept": "application/ld+json, application/json;q=0.9, */*;q=0.1"}
        if expect == "image":
            headers = {"Accept": "image/jpeg, image/png, image/webp, image/*;q=0.8"}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        host = self._host(url)
        async with host.semaphore:
            # Checked once in line: requests queued behind the ones that failed are not sent at all.
            if host.down is not None:
                raise FetchError(HOST_DOWN, f"host marked down for this run: {host.down}", url=url)
            await self._polite_start(host)
            self.requests += 1
            try:
                async with self._client.stream("GET", url, headers=headers) as resp:
                    return await self._read(url, resp, expect, max_bytes)
            except httpx.TooManyRedirects as exc:
                raise FetchError("redirect-loop", "too many redirects", url=url) from exc
            except httpx.TimeoutException as exc:
                msg = f"no answer within {self.timeout_s:g}s"
                raise FetchError("timeout", msg, url=url, retryable=True) from exc
            except httpx.RemoteProtocolError as exc:
                # Most often a body shorter than its Content-Length: a truncated transfer.
                raise FetchError("truncated", f"transfer broke off: {exc}", url=url, retryable=True) from exc
            except httpx.TransportError as exc:
                reason, retryable = _transport_reason(exc)
                raise FetchError(
                    reason, f"{type(exc).__name__}: {exc}", url=url, retryable=retryable
                ) from exc

    async def _read(self, url: str, resp: httpx.Response, expect: Expect, max_bytes: int) -> FetchResult:
        final = str(resp.url)
        status = resp.status_code
        if status == 304:
            etag, modified = resp.headers.get("etag"), resp.headers.get("last-modified")
            return FetchResult(final, 304, b"", "", etag, modified)
        if status == 429 or status >= 500:
            raise FetchError(
                f"http-{status}",
                f"server answered {status}",
                url=final,
                retryable=True,
                retry_after=retry_after_seconds(resp.headers.get("retry-after")),
            )
        if status >= 400:
            raise FetchError(f"http-{status}", f"server answered {status}", url=final)
        ctype = resp.headers.get("content-type", "").split(";")[0].strip().lower()
        self._check_type(final, ctype, expect)
        declared = resp.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_bytes:
            raise FetchError(
                "too-large", f"{declared} bytes is more than the limit of {max_bytes}", url=final
            )
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.aiter_bytes():
            size += len(chunk)
            if size > max_bytes:
                raise FetchError("too-large", f"body exceeds the limit of {max_bytes} bytes", url=final)
            chunks.append(chunk)
        return FetchResult(
            final,
            status,
            b"".join(chunks),
            ctype,
            resp.headers.get("etag"),
            resp.headers.get("last-modified"),
        )

    @staticmethod
    def _check_type(url: str, ctype: str, expect: Expect) -> None:
        if expect == "json":
            if ctype in _JSON_TYPES or ctype in _LOOSE_JSON_TYPES or ctype.endswith("+json"):
                return
            if ctype in ("text/html", "application/xhtml+xml"):
                raise FetchError("html-instead-of-json", "server sent an HTML page, not JSON", url=url)
            raise FetchError("bad-content-type", f"expected JSON, got {ctype!r}", url=url)
        if expect == "text":
            if ctype.startswith("text/") or ctype in _LOOSE_JSON_TYPES:
                return
            raise FetchError("bad-content-type", f"expected text, got {ctype!r}", url=url)
        if ctype.startswith("image/") or ctype in ("application/octet-stream", "binary/octet-stream", ""):
            return
        raise FetchError("not-an-image", f"expected an image, got {ctype!r}", url=url)

    def _local_path(self, url: str) -> Path | None:
        if url[:7].lower() == "file://":
            path = Path(unquote(urlsplit(url).path)).resolve()
            if not any(path.is_relative_to(root) for root in self.file_roots):
                raise FetchError(
                    "file-not-allowed",
                    "file:// URLs are read only inside the configured local source's folder",
                    url=url,
                )
            return path
        for prefix, folder in self.local_mounts.items():
            if url.startswith(prefix):
                rel = unquote(url[len(prefix) :].split("?", 1)[0])
                path = (folder / rel).resolve()
                if not path.is_relative_to(folder.resolve()):
                    raise FetchError("bad-url", "path escapes the local IIIF folder", url=url)
                return path
        return None

    def _read_local(self, url: str, path: Path, *, expect: Expect, max_bytes: int) -> FetchResult:
        if path.is_dir():
            path = path / "index.json"
        try:
            size = path.stat().st_size
            if size > max_bytes:
                raise FetchError("too-large", f"{size} bytes is more than the limit of {max_bytes}", url=url)
            data = path.read_bytes()
        except OSError as exc:
            raise FetchError("http-404", f"cannot read {path}: {exc.strerror or exc}", url=url) from exc
        mtime = datetime.fromtimestamp(path.stat().st_mtime, UTC)
        ctype = {"json": "application/json", "text": "text/plain", "image": "image/jpeg"}[expect]
        return FetchResult(url, 200, data, ctype, None, email.utils.format_datetime(mtime, usegmt=True))
