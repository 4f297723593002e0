"""What every request handler shares: settings, the engine, metrics, and the admin reindex job."""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from starlette.requests import Request

from iconosearch.api.admission import Lane
from iconosearch.api.presenting import PresentedCache, Presenter
from iconosearch.api.problems import ProblemError
from iconosearch.api.prometheus import Metrics
from iconosearch.api.security import AdminKeyLimiter
from iconosearch.config import Settings
from iconosearch.deadline import DeadlineExceededError
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
    warmed: bool = False
    """The served version's model has answered a warm-up query (``/readyz`` waits for it)."""
    search_lane: Lane = field(init=False)
    image_lane: Lane = field(init=False)
    admin_limiter: AdminKeyLimiter = field(init=False)
    presented: PresentedCache = field(default_factory=PresentedCache)

    def __post_init__(self) -> None:
        self.admin_limiter = AdminKeyLimiter(self.settings.server.admin_attempts_per_minute)
        limits = self.settings.limits
        self.search_lane = Lane(
            "search", workers=limits.search_concurrency, queue=8 * limits.search_concurrency
        )
        self.image_lane = Lane(
            "image", workers=limits.image_decode_concurrency, queue=limits.image_decode_concurrency
        )

    def close(self) -> None:
        self.search_lane.close()
        self.image_lane.close()

    def presenter(self, request: Request) -> Presenter:
        return Presenter(
            base_url=self.base_url(request), viewers=self.settings.server.viewers, cache=self.presented
        )

    def base_url(self, request: Request) -> str:
        public = self.settings.server.public_url
        return (public or str(request.base_url)).rstrip("/")

    async def call(self, fn: Callable[..., T], *args: object, heavy: bool = False) -> T:
        """Run blocking engine work off the event loop in a bounded lane, within the request timeout.

        ``heavy`` work (image decoding and embedding) has its own small lane; see ``api.admission``.
        """
        lane = self.image_lane if heavy else self.search_lane
        try:
            return await lane.run(fn, *args, timeout_s=self.settings.limits.request_timeout_s)
        except ProblemError as exc:
            if exc.code == "busy":
                self.metrics.busy_refusals.labels(lane.name).inc()
            raise
        except (TimeoutError, DeadlineExceededError) as exc:
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
        """Require a configured API key; failed attempts are limited per client address (429)."""
        keys = [k.get_secret_value() for k in self.settings.server.api_keys]
        if not keys:
            raise ProblemError(
                403, "admin-disabled", "admin endpoints are disabled: no API keys are configured"
            )
        client = request.client.host if request.client else "unknown"
        self.admin_limiter.check(client)
        given = request.headers.get("x-api-key")
        auth = request.headers.get("authorization", "")
        if given is None and auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        if not given or not any(secrets.compare_digest(given.encode(), k.encode()) for k in keys):
            self.admin_limiter.failed(client)
            raise ProblemError(401, "unauthorized", "a valid API key is required (X-API-Key header)")
