"""The HTTP endpoints. Handlers translate HTTP ↔ query objects; the engine does the searching."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Sequence
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, File, Form, Path, Request, UploadFile
from fastapi.responses import JSONResponse, Response

from iconosearch import __version__
from iconosearch.api import schemas as s
from iconosearch.api.context import ApiContext
from iconosearch.api.examples import (
    COLLECTIONS_EXAMPLE,
    ITEM_EXAMPLE,
    MANIFEST_EXAMPLE,
    PROBLEM_EXAMPLE,
    SEARCH_EXAMPLE,
)
from iconosearch.api.iiif_search import search_manifest
from iconosearch.api.params import (
    RECORD_ID,
    SEARCH_OPENAPI,
    SearchParams,
    check_image_bytes,
    check_limits,
    query_from_body,
    search_params,
)
from iconosearch.api.problems import PROBLEM_JSON, ProblemError
from iconosearch.datadir import DataDir
from iconosearch.index.engine import IndexNotReadyError, SearchEngine
from iconosearch.index.store import IndexStore
from iconosearch.query import Filters, Query, SearchPage, Term, UnknownItemError
from iconosearch.records import ImageRecord
from iconosearch.relevance import POSSIBLE_FPR, STRONG_FPR, Thresholds
from iconosearch.subjects.suggested import SuggestedSubject

log = logging.getLogger(__name__)

IIIF_JSON = 'application/ld+json;profile="http://iiif.io/api/presentation/3/context.json"'

router = APIRouter()


async def ctx_of(request: Request) -> ApiContext:  # async: FastAPI runs a plain def in a thread
    ctx = request.app.state.ctx
    assert isinstance(ctx, ApiContext)
    return ctx


Ctx = Annotated[ApiContext, Depends(ctx_of)]
Params = Annotated[SearchParams, Depends(search_params)]


def _problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {
        status: {
            "description": "Problem details (RFC 9457)",
            "content": {PROBLEM_JSON: {"example": {**PROBLEM_EXAMPLE, "status": status}}},
        }
        for status in statuses
    }


def _ok(example: Any, media: str = "application/json") -> dict[int | str, dict[str, Any]]:
    return {200: {"content": {media: {"example": example}}}}


# What each operation can really answer (checked by Schemathesis in tests/test_api_contract.py):
# 404 for an unknown item id in like/unlike, 413/415 only where there is a body.
GET_SEARCH_RESPONSES = {**_ok(SEARCH_EXAMPLE), **_problems(400, 404, 422, 503, 504)}
SEARCH_RESPONSES = {**_ok(SEARCH_EXAMPLE), **_problems(400, 404, 413, 415, 422, 503, 504)}
IMAGE_SEARCH_RESPONSES = {**SEARCH_RESPONSES, **_problems(411)}


def _search_and_count(
    engine: SearchEngine, query: Query, facets: bool
) -> tuple[SearchPage, dict[str, dict[str, int]] | None]:
    """The page, and its facet counts when asked: one trip to the worker thread, not two."""
    page = engine.search(query)
    if not facets:
        return page, None
    return page, page.facets or engine.facets(query.filters)


async def _search(
    ctx: ApiContext, query: Query, *, facets: bool = False
) -> tuple[SearchPage, dict[str, dict[str, int]] | None]:
    check_limits(query, ctx.settings.limits)
    heavy = any(t.kind in ("image", "url") for t in query.terms)
    page, counts = await ctx.call(_search_and_count, ctx.engine, query, facets, heavy=heavy)
    ctx.metrics.observe_search(page.embed_ms, page.search_ms)
    return page, counts


async def _respond(
    ctx: ApiContext,
    request: Request,
    query: Query,
    *,
    facets: bool,
    fields: Sequence[str] = (),
    exclude: str | None = None,
) -> Response:
    """The search document, serialised by orjson straight from the presented (cached) results:
    FastAPI's response-model path would validate every result again on every request."""
    start = time.perf_counter()
    page, counts = await _search(ctx, query, facets=facets)
    body = ctx.presenter(request).search_json(
        page, sort=query.sort, facets=counts, started=start, fields=fields, exclude=exclude
    )
    return Response(body, media_type="application/json")


@router.get(
    "/api/search",
    response_model=s.SearchResponse,
    responses=GET_SEARCH_RESPONSES,
    tags=["search"],
    summary="Search by words and items (query string)",
    openapi_extra=SEARCH_OPENAPI,
)
async def search_get(ctx: Ctx, request: Request, params: Params) -> Response:
    """Search with words, items ('more like this') and filters given as query parameters.

    `q` is the text; `like`/`unlike` add items; `not` adds 'less of' words. Page with `cursor`.
    """
    return await _respond(ctx, request, params.query, facets=params.facets, fields=params.fields)


@router.post(
    "/api/search",
    response_model=s.SearchResponse,
    responses=SEARCH_RESPONSES,
    tags=["search"],
    summary="Search with weighted terms (JSON)",
)
async def search_post(ctx: Ctx, request: Request, body: s.SearchRequest) -> Response:
    """Search with weighted terms (text, image as base64, item id, image URL), filters and keywords."""
    query = query_from_body(body, ctx.settings.limits)
    return await _respond(ctx, request, query, facets=body.facets, fields=body.fields)


@router.post(
    "/api/search/image",
    response_model=s.SearchResponse,
    responses=IMAGE_SEARCH_RESPONSES,
    tags=["search"],
    openapi_extra={
        **SEARCH_OPENAPI,
        "requestBody": {"content": {"multipart/form-data": {"example": {"file": "(image bytes)"}}}},
    },
    summary="Search by an uploaded image",
)
async def search_image(
    ctx: Ctx,
    request: Request,
    params: Params,
    file: Annotated[UploadFile, File(description="The query image (JPEG, PNG, WebP, TIFF, GIF…).")],
    text: Annotated[
        str | None, Form(max_length=500, description="Optional words to add to the image.")
    ] = None,
) -> Response:
    """Search with an uploaded image (multipart `file`); filters and paging as query parameters."""
    limits = ctx.settings.limits
    content_type = (file.content_type or "").lower()
    if content_type and not content_type.startswith(("image/", "application/octet-stream")):
        raise ProblemError(415, "unsupported-media-type", f"expected an image upload, got {content_type}")
    data = await file.read(limits.upload_max_bytes + 1)
    check_image_bytes(data, limits)
    terms = (Term("image", data), *params.query.terms)
    if text and text.strip():
        terms = (*terms, Term("text", text.strip()))
    query = dataclasses.replace(params.query, terms=terms)
    return await _respond(ctx, request, query, facets=params.facets, fields=params.fields)


@router.get(
    "/api/search.iiif",
    responses={**_ok(MANIFEST_EXAMPLE, IIIF_JSON), **_problems(400, 404, 422, 503, 504)},
    response_class=JSONResponse,
    tags=["search"],
    summary="Search results as a IIIF manifest",
    openapi_extra=SEARCH_OPENAPI,
)
async def search_iiif(ctx: Ctx, request: Request, params: Params) -> Response:
    """The same search as `GET /api/search`, as a IIIF Presentation 3 Manifest (one canvas per result)."""
    page, _ = await _search(ctx, params.query)
    presenter = ctx.presenter(request)
    results = [
        presenter.result(h.record, h.score, h.duplicates, page.thresholds, matched_region=h.matched_region)
        for h in page.hits
    ]
    base = ctx.base_url(request)
    url = f"{base}{request.url.path}" + (f"?{request.url.query}" if request.url.query else "")
    next_url = None
    if page.next_cursor:
        others = [(k, v) for k, v in request.query_params.multi_items() if k != "cursor"]
        next_url = f"{base}{request.url.path}?{urlencode([*others, ('cursor', page.next_cursor)])}"
    label = (
        params.query.terms[0].value
        if params.query.terms and isinstance(params.query.terms[0].value, str)
        else "search"
    )
    doc = search_manifest(url, f"iconosearch: {label}", results, next_url=next_url)
    return JSONResponse(doc, media_type=IIIF_JSON)


def _item_id(item_id: str) -> str:
    item_id = item_id.lower()
    if not RECORD_ID.match(item_id):
        raise ProblemError(404, "unknown-item", f"no item {item_id[:40]!r}: item ids are 16 hex digits")
    return item_id


ItemId = Annotated[str, Path(description="Item id (16 hex digits).", examples=["3f2a9c0d41b7e615"])]


@router.get(
    "/api/items/{item_id}",
    response_model=s.Item,
    responses={**_ok(ITEM_EXAMPLE), **_problems(404, 503, 504)},
    tags=["items"],
    summary="One image with its metadata",
)
async def get_item(ctx: Ctx, request: Request, item_id: ItemId) -> s.Item:
    """One image: caption, full metadata, rights and attribution, links and viewer links."""
    rid = _item_id(item_id)
    record, duplicates, suggested = await ctx.call(_item_parts, ctx.engine, rid)
    if record is None:
        raise UnknownItemError(f"no item {rid} in the served index")
    return ctx.presenter(request).item(record, duplicates, suggested)


def _item_parts(
    engine: SearchEngine, rid: str
) -> tuple[ImageRecord | None, tuple[str, ...], list[SuggestedSubject]]:
    """An item's record, duplicates and suggested subjects: one trip to the worker thread, not three."""
    record = engine.get(rid)
    if record is None:
        return None, (), []
    return record, engine.duplicates(rid), engine.suggested_subjects(rid)


@router.get(
    "/api/items/{item_id}/similar",
    response_model=s.SearchResponse,
    responses=GET_SEARCH_RESPONSES,
    tags=["items"],
    summary="More like this image",
    openapi_extra=SEARCH_OPENAPI,
)
async def similar_items(ctx: Ctx, request: Request, item_id: ItemId, params: Params) -> Response:
    """More like this: images similar to the item (the item itself left out); filters and paging apply."""
    rid = _item_id(item_id)
    query = dataclasses.replace(params.query, terms=(Term("item", rid), *params.query.terms))
    return await _respond(ctx, request, query, facets=params.facets, fields=params.fields, exclude=rid)


@router.get(
    "/api/collections",
    response_model=s.CollectionsResponse,
    responses={**_ok(COLLECTIONS_EXAMPLE), **_problems(503, 504)},
    tags=["collections"],
    summary="What is indexed",
)
async def collections(ctx: Ctx) -> s.CollectionsResponse:
    """Configured and indexed collections: institution, counts, last harvest; the model and index version."""
    engine = ctx.engine
    try:
        info = await ctx.call(engine.info)
    except ProblemError as exc:
        if exc.status != 503:
            raise
        info = None
    names = list(dict.fromkeys([*(info.collections if info else ()), *ctx.settings.collections]))
    counts: dict[str, int] = {}
    institutions: dict[str, list[str]] = {}
    if info is not None:
        all_facets = await ctx.call(engine.facets, Filters())
        counts = dict(all_facets.get("collection", {}))
        for name in names:
            if counts.get(name):
                per = await ctx.call(engine.facets, Filters(collections=(name,)))
                institutions[name] = sorted(per.get("institution", {}))
    harvested = await ctx.call(_last_harvests, ctx, names)
    out = []
    for name in names:
        cfg = ctx.settings.collections.get(name)
        source = None
        if cfg is not None:
            source = cfg.url or (str(cfg.path) if cfg.path else None)
        out.append(
            s.CollectionOut(
                name=name,
                label=cfg.label if cfg else None,
                kind=cfg.kind if cfg else None,
                source=source,
                institutions=institutions.get(name, []),
                count=counts.get(name, 0),
                last_harvest=harvested.get(name),
                example_queries=list(cfg.example_queries) if cfg else [],
            )
        )
    return s.CollectionsResponse(
        collections=out,
        index_version=info.version if info else None,
        model=info.model_spec if info else None,
        model_fingerprint=info.model_fingerprint if info else None,
        dim=info.dim if info else None,
        count=info.count if info else 0,
        created=info.created if info else None,
    )


def _last_harvests(ctx: ApiContext, names: list[str]) -> dict[str, str]:
    from iconosearch.datadir import DataDir

    db = DataDir(ctx.settings.data_dir).state_db
    if not db.is_file():
        return {}
    try:
        from iconosearch.harvest.state import HarvestState

        state = HarvestState(db)
    except Exception:  # the state DB belongs to the harvester; a problem there must not fail this listing
        log.warning("cannot read harvest state %s", db, exc_info=True)
        return {}
    out: dict[str, str] = {}
    try:
        for name in names:
            when = state.last_harvest(name)
            if when is not None:
                out[name] = when.isoformat()
    except Exception:
        log.warning("cannot read last harvest times from %s", db, exc_info=True)
    finally:
        close = getattr(state, "close", None)
        if callable(close):
            close()
    return out


@router.get(
    "/api/facets",
    response_model=s.FacetsResponse,
    responses={
        **_ok({"facets": {"collection": {"demo": 40}, "rights": {"open": 38}}}),
        **_problems(400, 422, 503, 504),
    },
    tags=["search"],
    summary="Facet counts for filters",
    openapi_extra=SEARCH_OPENAPI,
)
async def facets(ctx: Ctx, params: Params) -> s.FacetsResponse:
    """Counts per collection, institution, rights class and century for the filters given."""
    counts = await ctx.call(ctx.engine.facets, params.query.filters)
    return s.FacetsResponse(facets=counts, index_version=_version(ctx))


ADMIN_RESPONSES = {**_problems(401, 403, 409, 429, 503, 504)}


@router.post(
    "/api/admin/reload",
    response_model=s.AdminResponse,
    responses={
        **_ok({"status": "reloaded", "detail": "now serving 20250101T000000Z", "index_version": "x"}),
        **ADMIN_RESPONSES,
    },
    tags=["admin"],
    summary="Reload the index now (admin)",
)
async def admin_reload(ctx: Ctx, request: Request) -> s.AdminResponse:
    """Pick up a new index version now (it is also picked up automatically). Needs an API key."""
    ctx.check_admin(request)
    changed = await ctx.call(ctx.engine.reload_if_changed)
    if changed:
        ctx.metrics.reloads.inc()
    version = _version(ctx)
    return s.AdminResponse(
        status="reloaded" if changed else "unchanged",
        detail=f"serving version {version}" if version else "no index version yet",
        index_version=version,
    )


@router.post(
    "/api/admin/reindex",
    response_model=s.AdminResponse,
    status_code=202,
    responses={
        202: {"content": {"application/json": {"example": {"status": "started", "detail": "reindexing"}}}},
        **ADMIN_RESPONSES,
    },
    tags=["admin"],
    summary="Rebuild the index (admin)",
)
async def admin_reindex(ctx: Ctx, request: Request) -> s.AdminResponse:
    """Rebuild the index from the harvested images in the background (incremental); needs an API key."""
    ctx.check_admin(request)
    job = ctx.reindex
    # The API writes an index only through the same per-index lock as the indexer: never two builders.
    holder = IndexStore(DataDir(ctx.settings.data_dir).indexes, "default").builder()
    with job.lock:
        if job.running or holder is not None:
            who = f" by {holder.describe()}" if holder is not None else ""
            raise ProblemError(409, "reindex-running", f"index 'default' is being built{who}")
        job.running = True
        job.last_status = "running"
    threading.Thread(target=_reindex, args=(ctx,), name="iconosearch-reindex", daemon=True).start()
    return s.AdminResponse(
        status="started", detail="reindexing in the background", index_version=_version(ctx)
    )


@router.get(
    "/api/admin/reindex",
    response_model=s.AdminResponse,
    responses={
        **_ok({"status": "done", "detail": "built 20250101T120000Z", "index_version": "x"}),
        **ADMIN_RESPONSES,
    },
    tags=["admin"],
    summary="State of the last rebuild (admin)",
)
async def admin_reindex_status(ctx: Ctx, request: Request) -> s.AdminResponse:
    """State of the last admin reindex: idle, running, done or failed (with why). Needs an API key."""
    ctx.check_admin(request)
    job = ctx.reindex
    return s.AdminResponse(status=job.last_status, detail=job.last_detail, index_version=job.last_version)


def _reindex(ctx: ApiContext) -> None:
    job = ctx.reindex
    try:
        from iconosearch.index.builder import build_index
        from iconosearch.models.embedder import load_embedder

        settings = ctx.settings
        embedder = load_embedder(settings.model)
        built = build_index(settings, "default", list(settings.collections), embedder, incremental=True)
        job.last_version = built.version
        job.last_status, job.last_detail = "done", f"built {job.last_version}"
        if ctx.engine.reload_if_changed():
            ctx.metrics.reloads.inc()
    except Exception as exc:  # a failed rebuild is reported; the served version keeps serving
        log.exception("reindex failed")
        job.last_status, job.last_detail = "failed", str(exc)
    finally:
        with job.lock:
            job.running = False


@router.get(
    "/api/relevance",
    response_model=s.RelevanceResponse,
    tags=["search"],
    summary="How results are banded into strong, possible and weak matches",
    responses=_problems(503),
)
async def relevance(ctx: Ctx) -> s.RelevanceResponse:
    """The served model's relevance thresholds (cosine similarity), per query kind, with the evaluation
    data they were measured on and the share of true matches that reach each band.

    A result is a **strong** match when it scores higher than all but 1 % of unrelated images did on
    that data, a **possible** match when higher than all but 10 %; otherwise it is **weak**. Queries that
    mix words and images, and keyword (hybrid) queries, get no band.
    """
    info = await ctx.call(ctx.engine.info)
    cal = await ctx.call(ctx.engine.calibration)

    def out(t: Thresholds | None) -> s.ThresholdsOut | None:
        return s.ThresholdsOut(**dataclasses.asdict(t)) if t is not None else None

    return s.RelevanceResponse(
        model=info.model_spec,
        calibrated=cal is not None,
        measured_on=cal.measured_on if cal else None,
        text=out(cal.text if cal else None),
        image=out(cal.image if cal else None),
        strong_fpr=STRONG_FPR,
        possible_fpr=POSSIBLE_FPR,
    )


def _version(ctx: ApiContext) -> str | None:
    try:
        return ctx.engine.info().version
    except IndexNotReadyError:
        return None


@router.get(
    "/healthz",
    response_model=s.Health,
    tags=["health"],
    responses=_ok({"status": "ok", "version": "0.2.0"}),
    summary="Liveness and version",
)
async def healthz() -> s.Health:
    """The process is up (says nothing about the index)."""
    return s.Health(status="ok", version=__version__)


@router.get(
    "/readyz",
    response_model=s.Health,
    tags=["health"],
    responses={
        **_ok({"status": "ok", "index_version": "20250101T000000Z", "count": 40}),
        503: {"content": {"application/json": {"example": {"status": "not-ready"}}}},
    },
    summary="Readiness",
)
async def readyz(ctx: Ctx) -> Response:
    """Ready (200) once an index version is loaded and the model has answered a warm-up query.

    A damaged current version served from its newest intact predecessor is still ready, with
    `status: degraded` and the `reason`; 503 while there is nothing to serve or the model warms up.
    """
    engine = ctx.engine
    try:
        info = engine.info()
    except IndexNotReadyError:
        body = s.Health(status="not-ready", version=__version__, reason=engine.degraded)
        return JSONResponse(body.model_dump(), status_code=503)
    if not ctx.warmed:
        body = s.Health(
            status="warming-up", version=__version__, index_version=info.version, count=info.count
        )
        return JSONResponse(body.model_dump(), status_code=503)
    status: Literal["ok", "degraded"] = "degraded" if engine.degraded else "ok"
    body = s.Health(
        status=status,
        version=__version__,
        index_version=info.version,
        count=info.count,
        reason=engine.degraded,
    )
    return JSONResponse(body.model_dump())


@router.get(
    "/metrics",
    tags=["health"],
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {"example": "iconosearch_http_requests_total{...} 1.0"}}},
        **_problems(401, 403, 429),
    },
    summary="Prometheus metrics",
)
async def metrics(ctx: Ctx, request: Request) -> Response:
    """Prometheus metrics: requests and latency by route, query embedding and search time, index size.

    With `server.metrics_require_key` the admin API key is required, as for `/api/admin/*`."""
    if ctx.settings.server.metrics_require_key:
        ctx.check_admin(request)
    return ctx.metrics.render()
