"""Errors as RFC 9457 ``application/problem+json``: one shape for every 4xx/5xx the API answers.

Each problem carries ``type`` (a URN naming the problem), ``title``, ``status``, ``detail`` (for the user)
and ``code`` (the same name, short, for programs). Validation problems add ``errors`` (where and why).
Query errors from the engine (``iconosearch.query.QueryError``) and rejected images map to 4xx here, so
no bad input can surface as a 500.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from iconosearch import query as q
from iconosearch.images import ImageRejectedError

log = logging.getLogger(__name__)

PROBLEM_JSON: Final = "application/problem+json"
TYPE_PREFIX: Final = "urn:iconosearch:problem:"


class ProblemError(Exception):
    """Raise anywhere in a request to answer with a problem document."""

    def __init__(self, status: int, code: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.extra = extra


QUERY_ERROR_STATUS: Final[dict[type[q.QueryError], int]] = {
    q.EmptyQueryError: 400,
    q.InvalidFilterError: 400,
    q.UnknownCollectionError: 400,
    q.UnknownItemError: 404,
    q.LimitExceededError: 400,
    q.InvalidCursorError: 400,
    q.InvalidImageError: 422,
    q.UrlNotAllowedError: 400,
    q.InvalidRegionError: 400,
}

IMAGE_REASON_STATUS: Final[dict[str, int]] = {
    "not-an-image": 415,
    "too-large": 413,
    "too-many-pixels": 413,
    "empty": 422,
}


def query_error_status(exc: q.QueryError) -> int:
    for cls in type(exc).__mro__:
        if cls in QUERY_ERROR_STATUS:
            return QUERY_ERROR_STATUS[cls]
    return 400


def problem_body(status: int, code: str, detail: str, *, instance: str | None = None, **extra: Any) -> dict:
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    body: dict[str, Any] = {
        "type": TYPE_PREFIX + code,
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if instance is not None:
        body["instance"] = instance
    body.update(extra)
    return body


def problem_response(
    status: int, code: str, detail: str, *, instance: str | None = None, **extra: Any
) -> JSONResponse:
    headers = {"Retry-After": str(extra.get("retry_after", 5))} if status in (429, 503) else None
    return JSONResponse(
        problem_body(status, code, detail, instance=instance, **extra),
        status_code=status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


def image_problem(exc: ImageRejectedError) -> ProblemError:
    status = IMAGE_REASON_STATUS.get(exc.reason, 422)
    code = "upload-too-large" if exc.reason == "too-large" else "invalid-image"
    message = Exception.__str__(exc)
    return ProblemError(status, code, f"the image was rejected ({exc.reason}): {message}", reason=exc.reason)


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors():
        out.append(
            {
                "location": ".".join(str(p) for p in err.get("loc", ())),
                "message": str(err.get("msg", "")),
                "type": str(err.get("type", "")),
            }
        )
    return out


def install_problem_handlers(app: FastAPI) -> None:
    """Answer every error, including FastAPI's own, as problem+json."""

    async def on_problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ProblemError)
        return problem_response(exc.status, exc.code, exc.detail, instance=request.url.path, **exc.extra)

    async def on_query_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, q.QueryError)
        return problem_response(query_error_status(exc), exc.code, str(exc), instance=request.url.path)

    async def on_image_rejected(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ImageRejectedError)
        p = image_problem(exc)
        return problem_response(p.status, p.code, p.detail, instance=request.url.path, **p.extra)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = _validation_errors(exc)
        if any(e["type"] == "json_invalid" for e in errors):
            return problem_response(
                400, "malformed-json", "the request body is not valid JSON", instance=request.url.path
            )
        summary = "; ".join(f"{e['location']}: {e['message']}" for e in errors[:5])
        return problem_response(
            422,
            "invalid-request",
            f"the request is not valid: {summary}",
            instance=request.url.path,
            errors=errors,
        )

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = {404: "not-found", 405: "method-not-allowed", 401: "unauthorized"}.get(
            exc.status_code, "http-error"
        )
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        resp = problem_response(exc.status_code, code, detail, instance=request.url.path)
        if exc.headers:
            resp.headers.update(exc.headers)
        return resp

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(
            500,
            "internal-error",
            "the server failed to answer; the error has been logged",
            instance=request.url.path,
        )

    app.add_exception_handler(ProblemError, on_problem)
    app.add_exception_handler(q.QueryError, on_query_error)
    app.add_exception_handler(ImageRejectedError, on_image_rejected)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
