"""A real HTTP server on 127.0.0.1 for tests: fixture documents, image folders and injected faults.

Usage::

    with FixtureServer(root=some_folder) as srv:          # root is optional
        srv.add_json("/m.json", doc, rewrite={"https://example.org/": srv.url("/")})
        srv.add("/img.jpg", jpeg_bytes, content_type="image/jpeg")
        srv.fault("/flaky.json", "status-then-ok", status=500, times=2)
        srv.fault("/busy.json", "status-then-ok", status=429, times=1, retry_after="1")
        url = srv.url("/m.json")
        ...
        srv.hits("/m.json")                                 # how many GETs it received

Routes (first match wins): faults, then exact documents added with ``add``/``add_json``, then prefix
handlers (``handle(prefix, fn)`` — ``fn(path, query)`` returns a :class:`Reply`), then files under
``root`` (symlinks followed, as static IIIF trees use them). Every 200 carries an ``ETag`` and
``Last-Modified`` and honours ``If-None-Match``/``If-Modified-Since`` with a 304.

Fault kinds (``fault(path, kind, **params)``):

- ``status-then-ok``: answer ``status`` (default 500) ``times`` times (default 1), with ``retry_after``
  as the Retry-After header if given, then serve normally;
- ``status``: always answer ``status`` (e.g. 404);
- ``slow``: wait ``delay`` seconds before answering (``times`` limits how often, default always);
- ``truncate``: declare the full Content-Length but send only ``keep`` bytes, then close;
- ``html``: answer 200 with an HTML error page instead of the document;
- ``redirect-loop``: 302 to itself forever;
- ``huge``: a 200 with ``size`` bytes of ``content_type`` (default 200 MB image/jpeg), generated lazily
  (``declare=False`` omits the Content-Length).

Images: :func:`image_server` mounts a small level-1 Image API on a prefix; :func:`jpeg` and
:func:`png_bomb` make test images.
"""

from __future__ import annotations

import email.utils
import hashlib
import io
import json
import mimetypes
import struct
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from PIL import Image

_STARTED = email.utils.formatdate(time.time() - 3600, usegmt=True)


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class _Fault:
    kind: str
    params: dict[str, Any]
    count: int = 0


def rewrite_urls(value: Any, mapping: Mapping[str, str]) -> Any:
    """``value`` with every string starting with a key of ``mapping`` re-based onto its value."""
    if isinstance(value, str):
        for old, new in mapping.items():
            if value.startswith(old):
                return new + value[len(old) :]
        return value
    if isinstance(value, list):
        return [rewrite_urls(v, mapping) for v in value]
    if isinstance(value, dict):
        return {k: rewrite_urls(v, mapping) for k, v in value.items()}
    return value


class FixtureServer:
    """Threaded HTTP/1.1 server bound to an ephemeral port on 127.0.0.1."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root
        self.docs: dict[str, Reply] = {}
        self.faults: dict[str, _Fault] = {}
        self.handlers: list[tuple[str, Callable[[str, str], Reply]]] = []
        self.counter: Counter[str] = Counter()
        self.request_headers: list[tuple[str, dict[str, str]]] = []
        self.delay = 0.0
        """Latency added to every response (seconds), to simulate a remote server."""
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    # -- set-up -------------------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + (path if path.startswith("/") else "/" + path)

    def add(
        self,
        path: str,
        body: bytes | str,
        *,
        content_type: str = "application/json",
        status: int = 200,
        headers: dict[str, str] | None = None,
    ) -> str:
        data = body.encode() if isinstance(body, str) else body
        self.docs[path] = Reply(status, data, content_type, dict(headers or {}))
        return self.url(path)

    def add_json(self, path: str, doc: Any, *, rewrite: Mapping[str, str] | None = None) -> str:
        if rewrite:
            doc = rewrite_urls(doc, rewrite)
        return self.add(path, json.dumps(doc), content_type="application/ld+json")

    def handle(self, prefix: str, fn: Callable[[str, str], Reply]) -> None:
        """Answer every path starting with ``prefix`` with ``fn(path, query)``."""
        self.handlers.append((prefix, fn))

    def fault(self, path: str, kind: str, **params: Any) -> None:
        self.faults[path] = _Fault(kind, params)

    def hits(self, path: str | None = None) -> int:
        with self._lock:
            return sum(self.counter.values()) if path is None else self.counter[path]

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> FixtureServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- serving ------------------------------------------------------------------------------------------

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                server._serve(self)

        return Handler

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(h.path)
        path = unquote(parts.path)
        with self._lock:
            self.counter[path] += 1
            self.request_headers.append((path, {k.lower(): v for k, v in h.headers.items()}))
        if self.delay:
            time.sleep(self.delay)
        try:
            fault = self.faults.get(path)
            if fault is not None and self._apply_fault(h, path, fault):
                return
            reply = self._resolve(path, parts.query)
            self._send(h, reply)
        except (BrokenPipeError, ConnectionResetError):
            return

    def _apply_fault(self, h: BaseHTTPRequestHandler, path: str, fault: _Fault) -> bool:
        p = fault.params
        with self._lock:
            fault.count += 1
            count = fault.count
        if fault.kind == "status-then-ok":
            if count <= p.get("times", 1):
                headers = {"Retry-After": str(p["retry_after"])} if "retry_after" in p else {}
                self._send(h, Reply(p.get("status", 500), b"busy", "text/plain", headers))
                return True
            return False
        if fault.kind == "status":
            self._send(h, Reply(p.get("status", 404), b"not here", "text/plain"))
            return True
        if fault.kind == "slow":
            if count <= p.get("times", 1 << 30):
                time.sleep(p.get("delay", 5.0))
            return False
        if fault.kind == "html":
            page = b"<!DOCTYPE html><html><body><h1>Service temporarily unavailable</h1></body></html>"
            self._send(h, Reply(200, page, "text/html; charset=utf-8"))
            return True
        if fault.kind == "redirect-loop":
            self._send(h, Reply(302, b"", "text/plain", {"Location": self.url(path)}))
            return True
        if fault.kind == "truncate":
            reply = self._resolve(path, "")
            h.send_response(reply.status)
            h.send_header("Content-Type", reply.content_type)
            h.send_header("Content-Length", str(len(reply.body)))
            h.end_headers()
            h.wfile.write(reply.body[: p.get("keep", len(reply.body) // 2)])
            h.wfile.flush()
            h.close_connection = True
            return True
        if fault.kind == "huge":
            size = int(p.get("size", 200 * 1024 * 1024))
            h.send_response(200)
            h.send_header("Content-Type", p.get("content_type", "image/jpeg"))
            if p.get("declare", True):
                h.send_header("Content-Length", str(size))
            h.send_header("Connection", "close")
            h.end_headers()
            chunk = b"\xff" * (1 << 20)
            sent = 0
            while sent < size:
                h.wfile.write(chunk[: min(len(chunk), size - sent)])
                sent += len(chunk)
            h.close_connection = True
            return True
        raise ValueError(f"unknown fault kind {fault.kind!r}")

    def _resolve(self, path: str, query: str) -> Reply:
        if path in self.docs:
            return self.docs[path]
        for prefix, fn in self.handlers:
            if path.startswith(prefix):
                return fn(path, query)
        if self.root is not None:
            file = (self.root / path.lstrip("/")).resolve()
            if file.is_dir():
                file = file / "index.json"
            if file.is_file() and file.is_relative_to(self.root.resolve()):
                ctype = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
                if file.suffix == ".json":
                    ctype = "application/json"
                return Reply(200, file.read_bytes(), ctype)
        return Reply(404, b"not found", "text/plain")

    def _send(self, h: BaseHTTPRequestHandler, reply: Reply) -> None:
        etag = f'"{hashlib.sha256(reply.body).hexdigest()[:16]}"'
        fresh = h.headers.get("If-None-Match") == etag or (
            h.headers.get("If-Modified-Since") == _STARTED and "If-None-Match" not in h.headers
        )
        if reply.status == 200 and fresh:
            h.send_response(304)
            h.send_header("ETag", etag)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        h.send_response(reply.status)
        h.send_header("Content-Type", reply.content_type)
        h.send_header("Content-Length", str(len(reply.body)))
        if reply.status == 200:
            h.send_header("ETag", etag)
            h.send_header("Last-Modified", _STARTED)
        for key, value in reply.headers.items():
            h.send_header(key, value)
        h.end_headers()
        h.wfile.write(reply.body)


# -- images ------------------------------------------------------------------------------------------

FULL = (1200, 900)


def jpeg(size: tuple[int, int], seed: str) -> bytes:
    digest = hashlib.sha256(seed.encode()).digest()
    buf = io.BytesIO()
    Image.new("RGB", size, (digest[0], digest[1], digest[2])).save(buf, "JPEG", quality=80)
    return buf.getvalue()


def png_bomb(width: int = 40_000, height: int = 40_000) -> bytes:
    """A tiny PNG whose header claims ``width`` × ``height`` pixels (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def _size(param: str, full: tuple[int, int]) -> tuple[int, int] | None:
    w, h = full
    if param in ("full", "max"):
        return full
    confined = param.startswith("!")
    a, _, b = param.lstrip("!").partition(",")
    try:
        rw, rh = (int(a) if a else None), (int(b) if b else None)
    except ValueError:
        return None
    if confined and rw and rh:
        scale = min(rw / w, rh / h)
        return max(1, round(w * scale)), max(1, round(h * scale))
    if rw and rh:
        return rw, rh
    if rw:
        return rw, max(1, round(h * rw / w))
    if rh:
        return max(1, round(w * rh / h)), rh
    return None


def image_server(srv: FixtureServer, prefix: str = "/img/") -> None:
    """A level-1 Image API 2 server under ``prefix``.

    ``<id>/info.json`` describes a ``FULL``-sized image; ``<id>/full/<size>/0/default.jpg`` renders a
    plain JPEG (its colour derived from the id) of the requested size.
    """

    def handler(path: str, query: str) -> Reply:
        rest = path[len(prefix) :]
        ident, _, tail = rest.partition("/")
        if tail == "info.json":
            doc = {
                "@context": "http://iiif.io/api/image/2/context.json",
                "@id": srv.url(f"{prefix}{ident}"),
                "protocol": "http://iiif.io/api/image",
                "width": FULL[0],
                "height": FULL[1],
                "profile": ["http://iiif.io/api/image/2/level1.json"],
            }
            return Reply(200, json.dumps(doc).encode(), "application/json")
        parts = tail.split("/")
        if len(parts) != 4 or parts[0] != "full":
            return Reply(400, b"unsupported", "text/plain")
        size = _size(parts[1], FULL)
        if size is None or max(size) > 2000:
            return Reply(400, b"bad size", "text/plain")
        return Reply(200, jpeg(size, ident), "image/jpeg")

    srv.handle(prefix, handler)
