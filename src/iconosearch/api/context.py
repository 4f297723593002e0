"""What every request handler shares: settings, the engine, metrics, and the admin reindex job."""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from starlette.requests import Request

from iconosearch.api.metrics import Metrics
from iconosearch.api.presenting import Presenter
from iconosearch.api.problems import ProblemError
from iconosearch.config import Settings
from iconosearch.index.engine import IndexNotReadyError, ModelMismatchError, SearchEngine
from iconosearch.models.specs import ModelSpecError, ModelUnavailableError

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class ReindexJob:
    """The admin reindex running in a background thread (one at a time)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    running: bool = False
    last_status: str = "idle"
    last_detail: str = ""
    last_version: str | None = None


@dataclass
class ApiContext:
    settings: Settings
    engine: SearchEngine
    metrics: Metrics
    reindex: ReindexJob = field(default_factory=ReindexJob)

    def presenter(self, request: Request) -> Presenter:
        return Presenter(base_url=self.base_url(request), viewers=self.settings.server.viewers)

    def base_url(self, request: Request) -> str:
        public = self.settings.server.public_url
        return (public or str(request.base_url)).rstrip("/")

    async def call(self, fn: Callable[..., T], *args: object) -> T:
        """Run blocking engine work off the event loop, bounded by the request timeout."""
        try:
            return await asyncio.wait_for(
                asyncio.to_thread(fn, *args), timeout=self.settings.limits.request_timeout_s
            )
        except TimeoutError as exc:
            raise ProblemError(
                504, "timeout", f"the search took longer than {self.settings.limits.request_timeout_s:g} s"
            ) from exc
        except IndexNotReadyError as exc:
            raise ProblemError(503, "index-not-ready", str(exc) or "no index has been built yet") from exc
        except (ModelUnavailableError, ModelSpecError, ModelMismatchError) as exc:
            # The index is there but its model cannot be used here: an operator problem, not a client one.
            log.error("model problem: %s", exc)
            raise ProblemError(503, "model-unavailable", f"the search model cannot be used: {exc}") from exc

    def check_admin(self, request: Request) -> None:
        keys = [k.get_secret_value() for k in self.settings.server.api_keys]
        if not keys:
            raise ProblemError(
                403, "admin-disabled", "admin endpoints are disabled: no API keys are configured"
            )
        given = request.headers.get("x-api-key")
        auth = request.headers.get("authorization", "")
        if given is None and auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        if not given or not any(secrets.compare_digest(given.encode(), k.encode()) for k in keys):
            raise ProblemError(401, "unauthorized", "a valid API key is required (X-API-Key header)")
