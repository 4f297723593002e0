"""Security headers on every response (errors and 500s included) and the admin-key attempt limiter.

Content-Security-Policy, for the web UI's future authors: the pages may load scripts and styles only
from this server, and **no inline script or style attribute in markup** (set styles through CSSOM,
``node.style.x = …``, which CSP allows). Images and IIIF ``info.json`` may come from any http(s)
server, because results show institutions' IIIF images. The API docs page (``/docs``) carries one
inline script from FastAPI; it gets its own policy that allows exactly that script by its hash.

The headers are added by a wrapper *outside* Starlette's error middleware (see
:func:`wrap_outermost`): 0.1 added them in an ordinary middleware, which a 500 answer bypasses, so
500s went out without ``nosniff``.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from typing import Final

from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from iconosearch.api.problems import ProblemError

CSP: Final = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' http: https: data: blob:",
        "connect-src 'self' http: https:",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)

_SCRIPT: Final = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def csp_allowing_inline_scripts(html: str) -> str:
    """:data:`CSP` plus the hashes of the inline scripts of ``html`` (a page we generate ourselves)."""
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'"
        for s in _SCRIPT.findall(html)
    )
    return CSP.replace("script-src 'self'", f"script-src 'self' {hashes}")


class SecurityHeadersMiddleware:
    """``nosniff``, ``X-Frame-Options``, referrer policy and (unless the route set its own) CSP."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                for name, value in (
                    (b"x-content-type-options", b"nosniff"),
                    (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"strict-origin-when-cross-origin"),
                    (b"content-security-policy", CSP.encode()),
                ):
                    if name not in names:
                        headers.append((name, value))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_wrapper)


class AdminKeyLimiter:
    """At most ``per_minute`` *failed* admin-key attempts per client address (moving window)."""

    def __init__(self, per_minute: int) -> None:
        self._item = RateLimitItemPerMinute(per_minute)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def check(self, client: str) -> None:
        """Refuse (429) a client that used up its failed attempts, before its key is even compared."""
        if not self._limiter.test(self._item, client):
            reset = self._limiter.get_window_stats(self._item, client).reset_time
            wait = max(1, int(reset - time.time()) + 1)
            raise ProblemError(
                429,
                "too-many-attempts",
                f"too many failed API key attempts from this address; retry in {wait} s",
                retry_after=wait,
            )

    def failed(self, client: str) -> None:
        self._limiter.hit(self._item, client)
