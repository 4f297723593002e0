"""The FastAPI application: ``create_app(settings)`` wires routes, limits, errors, metrics, static files."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.routing import Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from iconosearch import __version__
from iconosearch.api.assets import mirador_dir, openseadragon_dir, swagger_ui_dir, web_dir
from iconosearch.api.context import ApiContext
from iconosearch.api.iiif_routes import LocalImages
from iconosearch.api.iiif_routes import router as iiif_router
from iconosearch.api.pages import router as pages_router
from iconosearch.api.problems import (
    PROBLEM_JSON,
    install_problem_handlers,
    problem_body,
    problem_response,
)
from iconosearch.api.prometheus import Metrics, MetricsMiddleware
from iconosearch.api.routes import router
from iconosearch.api.security import SecurityHeadersMiddleware, csp_allowing_inline_scripts
from iconosearch.api.subjects import router as subjects_router
from iconosearch.api.subjects import warm_up as warm_up_subjects
from iconosearch.config import Settings
from iconosearch.datadir import DataDir
from iconosearch.index.engine import IndexNotReadyError, SearchEngine

log = logging.getLogger(__name__)

BODY_OVERHEAD = 256 * 1024
"""Room for multipart headers and the other JSON fields around an image."""

DESCRIPTION = """
Search heritage images published through IIIF, by words, by image, or by example ("more like this").

Results carry the image's IIIF thumbnail, manifest and canvas (with region), rights and attribution as
published, and viewer links: a IIIF Content State (`iiif-content`) plus ready-made Mirador/Universal
Viewer URLs. `GET /api/search.iiif` returns the same search as a IIIF Presentation 3 Manifest.

Errors are RFC 9457 `application/problem+json` documents with a machine-readable `code`.
"""


def create_app(
    settings: Settings,
    *,
    engine: SearchEngine | None = None,
    reload_interval_s: float = 5.0,
    settle_heap: bool = False,
) -> FastAPI:
    """The API + web UI app. ``engine`` defaults to the ``default`` index under ``settings.data_dir``.
    ``settle_heap``: after each warm-up, :func:`settle_heap` (process-wide, so only for a process that
    is just this app: ``iconosearch serve``)."""
    metrics = Metrics()
    owned = engine is None
    if engine is None:
        engine = SearchEngine.open(
            settings.data_dir,
            "default",
            limits=settings.limits,
            allow_url_queries=settings.server.allow_url_queries,
            encoder=settings.encoder,
            search_mode=settings.search.mode,
        )
    ctx = ApiContext(settings=settings, engine=engine, metrics=metrics)
    metrics.set_index_size_source(lambda: _index_size(ctx))
    metrics.set_degraded_source(lambda: 1.0 if ctx.engine.degraded else 0.0)
    metrics.set_text_batch_source(engine.text_batch_stats)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        warm_up_subjects()
        tasks = [asyncio.create_task(_warm_up(ctx, settle=settle_heap))]
        if reload_interval_s > 0:
            tasks.append(asyncio.create_task(_watch_index(ctx, reload_interval_s, settle=settle_heap)))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            ctx.close()
            if owned:
                ctx.engine.close()

    app = _App(
        title="iconosearch",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served below from local swagger-ui assets: the default page loads them from a CDN
        redoc_url=None,
        openapi_tags=[
            {"name": "search", "description": "Search by words, images, items; facets."},
            {"name": "items", "description": "One image and images like it."},
            {"name": "collections", "description": "What is indexed."},
            {"name": "subjects", "description": "ICONCLASS notations: autocomplete and labels."},
            {"name": "admin", "description": "Reload or rebuild the index (API key)."},
            {"name": "health", "description": "Liveness, readiness, metrics."},
            {
                "name": "iiif",
                "description": "Local collections as IIIF: Image API 3.0 level 2, Presentation 3.",
            },
        ],
    )
    app.state.ctx = ctx
    install_problem_handlers(app)
    app.include_router(router)
    app.include_router(subjects_router)
    app.include_router(pages_router)
    app.state.local_images = LocalImages(settings)
    app.include_router(iiif_router)  # before the static mount below, which serves the rest of the tree

    app.add_middleware(
        BodyLimitMiddleware, max_bytes=(settings.limits.upload_max_bytes * 4) // 3 + BODY_OVERHEAD
    )
    if settings.server.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.server.cors_origins,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["Content-Type", "X-API-Key", "Authorization"],
            max_age=600,
        )
    app.add_middleware(PublicHeadersMiddleware)
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    # IIIF made from local folders; the demo harvests it over HTTP like any remote collection.
    app.mount("/iiif/local", StaticFiles(directory=DataDir(settings.data_dir).local_iiif), name="iiif-local")
    web = web_dir()
    osd = openseadragon_dir(web)
    if osd is not None:
        app.mount("/vendor/openseadragon", StaticFiles(directory=osd), name="openseadragon")
    mirador = mirador_dir(web)
    if mirador is not None:
        app.mount("/vendor/mirador", StaticFiles(directory=mirador), name="mirador")
    swagger = swagger_ui_dir(web)
    if swagger is not None:
        app.mount("/vendor/swagger-ui", StaticFiles(directory=swagger), name="swagger-ui")

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        if swagger is None:
            return HTMLResponse(
                "<!doctype html><title>iconosearch API</title><p>The interactive docs need "
                '<code>make web</code>; the API description is at <a href="/openapi.json">/openapi.json</a>.'
            )
        page = get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="iconosearch API",
            swagger_js_url="/vendor/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url="/vendor/swagger-ui/swagger-ui.css",
            swagger_favicon_url="/vendor/swagger-ui/favicon-32x32.png",
        )
        html = bytes(page.body).decode()
        page.headers["content-security-policy"] = csp_allowing_inline_scripts(html)
        return page

    if web is not None:
        app.mount("/", WebFiles(directory=web, html=True), name="web")
    else:
        log.warning("web UI not found (set ICONOSEARCH_WEB_DIR); serving the API only")
    return app


def _index_size(ctx: ApiContext) -> float:
    try:
        return float(ctx.engine.info().count) if ctx.engine.ready else 0.0
    except IndexNotReadyError:
        return 0.0


async def _warm_up(ctx: ApiContext, *, settle: bool, poll_s: float = 0.2) -> None:
    """Load the model and answer one query before ``/readyz`` says ready (waits for a first index)."""
    while not ctx.engine.ready:
        await asyncio.sleep(poll_s)
    try:
        seconds = await asyncio.to_thread(ctx.engine.warm_up)
        log.info("model loaded and warmed up in %.1f s; ready", seconds)
    except Exception as exc:  # a model problem: searches will say so (503); readiness must not hang
        log.error("warm-up query failed: %s", exc)
    if settle:
        await asyncio.to_thread(settle_heap)
    ctx.warmed = True


def settle_heap() -> None:
    """A full collection, then everything still alive (the model, torch, the libraries: about a million
    objects) moved out of the cyclic collector's reach. Without it, each full collection walked them
    all while holding the GIL: pauses of 280–440 ms under load at 1M vectors, the whole 16-client p99.
    Objects freed later by reference counting are still freed; only cycles among them wait for the
    next settle (each warm-up of a new version)."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


async def _watch_index(ctx: ApiContext, interval_s: float, *, settle: bool) -> None:
    """Pick up new index versions without restart (the indexer replaces CURRENT atomically)."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            if await asyncio.to_thread(ctx.engine.reload_if_changed):
                ctx.metrics.reloads.inc()
                log.info("now serving index version %s", ctx.engine.info().version)
                if ctx.warmed:  # a new version may bring another model: load it before users need it
                    await asyncio.to_thread(ctx.engine.warm_up)
                    if settle:
                        await asyncio.to_thread(settle_heap)
        except Exception:  # keep watching; the engine keeps serving the old version
            log.exception("index reload check failed")


class _App(FastAPI):
    """FastAPI whose security headers wrap even Starlette's error middleware (500s get them too)."""

    def build_middleware_stack(self) -> ASGIApp:
        return SecurityHeadersMiddleware(super().build_middleware_stack())


class WebFiles(StaticFiles):
    """The web UI at ``/``, which every path falls through to. Plain ``StaticFiles`` answered any
    other method with 405 ``Allow: GET, HEAD`` — also for API paths (``PUT /api/search``) and for
    ``OPTIONS``. Here ``OPTIONS`` gets 204 with the path's real methods, and other methods on an API
    path get 405 with that path's methods."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope.get("method", "GET")
        if scope["type"] != "http" or method in ("GET", "HEAD"):
            await super().__call__(scope, receive, send)
            return
        allowed = _api_methods(scope) or {"GET", "HEAD"}
        allow = ", ".join(sorted(allowed | {"OPTIONS"}))
        if method == "OPTIONS":
            response: Response = Response(status_code=204, headers={"Allow": allow})
        else:
            response = problem_response(
                405, "method-not-allowed", f"{method} is not allowed here", instance=scope.get("path")
            )
            response.headers["Allow"] = allow
        await response(scope, receive, send)


def _api_methods(scope: Scope) -> set[str]:
    """Methods of the API routes whose path matches (a method mismatch is a partial match)."""
    routes = [r for r in scope["app"].router.routes if not isinstance(r, Mount)]
    return {
        method
        for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
        if any(r.matches({**scope, "method": method})[0] == Match.FULL for r in routes)
    }


class BodyLimitMiddleware:
    """Refuse request bodies over the limit before reading them (413), and bodies of unknown length (411)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in {"POST", "PUT", "PATCH"}:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length_raw = headers.get(b"content-length")
        if length_raw is None:
            if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
                await _send_problem(
                    send, 411, "length-required", "send the body with a Content-Length", scope
                )
                return
            await self.app(scope, receive, send)
            return
        try:
            length = int(length_raw)
        except ValueError:
            await _send_problem(send, 400, "bad-content-length", "Content-Length is not a number", scope)
            return
        if length > self.max_bytes:
            await _send_problem(
                send,
                413,
                "upload-too-large",
                f"the request body is larger than {self.max_bytes} bytes",
                scope,
            )
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > length:
                    # More bytes than declared: treat as a disconnect rather than read on.
                    return {"type": "http.disconnect"}
            return message

        await self.app(scope, limited, send)


async def _send_problem(send: Send, status: int, code: str, detail: str, scope: Scope) -> None:
    import json

    body = json.dumps(problem_body(status, code, detail, instance=str(scope.get("path", "")))).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", PROBLEM_JSON.encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class PublicHeadersMiddleware:
    """IIIF resources are public data for any viewer (CORS ``*``); other headers: ``api.security``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))
        public_iiif = path.startswith("/iiif/") or path == "/api/search.iiif"

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                if public_iiif and b"access-control-allow-origin" not in names:
                    headers.append((b"access-control-allow-origin", b"*"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_wrapper)
