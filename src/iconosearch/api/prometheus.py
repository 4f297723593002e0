"""Prometheus metrics of one app instance (its own registry, so several apps can live in one process)."""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from iconosearch.models.batching import BatchStats

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "iconosearch_http_requests",
            "HTTP requests answered, by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "iconosearch_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template and method.",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.embed_seconds = Histogram(
            "iconosearch_query_embedding_seconds",
            "Time spent embedding query terms (text/image) per search.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.search_seconds = Histogram(
            "iconosearch_search_seconds",
            "Time spent in the index (vector search, filters, fusion) per search.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.index_size = Gauge(
            "iconosearch_index_size", "Images in the served index version.", registry=self.registry
        )
        self.reloads = Counter(
            "iconosearch_index_reloads", "Times a new index version was picked up.", registry=self.registry
        )
        self.degraded = Gauge(
            "iconosearch_index_degraded",
            "1 while the served version is a fallback because CURRENT is damaged (see /readyz).",
            registry=self.registry,
        )
        self.busy_refusals = Counter(
            "iconosearch_busy_refusals",
            "Requests refused with 503 because their lane was full (admission control).",
            ["lane"],
            registry=self.registry,
        )

        self.text_batches = Gauge(
            "iconosearch_text_batches",
            "Batches the query-text encoder ran since the served model was loaded.",
            registry=self.registry,
        )
        self.text_batch_texts = Gauge(
            "iconosearch_text_batch_texts",
            "Distinct texts those batches encoded (÷ batches = the mean batch size under load).",
            registry=self.registry,
        )
        self.text_batch_requests = Gauge(
            "iconosearch_text_batch_requests",
            "Texts asked of the encoder, including those that joined an identical text in flight.",
            registry=self.registry,
        )

    def set_text_batch_source(self, source: Callable[[], BatchStats | None]) -> None:
        """Where the text-batching counters come from (the engine's current batcher)."""

        def read(name: str) -> Callable[[], float]:
            return lambda: float(getattr(source() or BatchStats(), name))

        self.text_batches.set_function(read("batches"))
        self.text_batch_texts.set_function(read("texts"))
        self.text_batch_requests.set_function(read("requests"))

    def set_index_size_source(self, source: Callable[[], float]) -> None:
        self.index_size.set_function(source)

    def set_degraded_source(self, source: Callable[[], float]) -> None:
        self.degraded.set_function(source)

    def observe_search(self, embed_ms: float, search_ms: float) -> None:
        self.embed_seconds.observe(embed_ms / 1000.0)
        self.search_seconds.observe(search_ms / 1000.0)

    def render(self) -> Response:
        return Response(generate_latest(self.registry), media_type="text/plain; version=0.0.4; charset=utf-8")


class MetricsMiddleware:
    """Counts and times every HTTP request by its route template (not its raw path: bounded labels)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = _route_label(scope)
            method = str(scope.get("method", "GET"))
            self.metrics.requests.labels(route, method, str(status)).inc()
            self.metrics.latency.labels(route, method).observe(time.perf_counter() - start)


def _route_label(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    raw = str(scope.get("path", ""))
    for prefix in ("/iiif/local", "/vendor", "/api"):
        if raw.startswith(prefix):
            return prefix + "/*"
    return "/static" if raw != "/" else "/"
