"""One error shape for the Device API: `{"error": <code>, "message": <text>}` with a 4xx status (503 when the
container engine does not answer, 502 when the cloud does not).

The same shape as the cloud API's, written again here because the agent never imports the cloud.
Bad input is never a 500: malformed JSON is a 400, a body or query that does not validate a 422 naming the field.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from iotistic.agent.runtime.base import RuntimeUnavailable

log = logging.getLogger(__name__)

_STATUS_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
    406: "not_acceptable", 409: "conflict", 413: "payload_too_large", 415: "unsupported_media_type",
    422: "validation_error", 423: "locked", 429: "too_many_requests",
}


class ApiError(Exception):
    """Raised by routes; rendered as `{error, message}` with `status`."""

    def __init__(self, status: int, error: str, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.headers = headers


def not_found(message: str) -> ApiError:
    return ApiError(404, "not_found", message)


def conflict(message: str, error: str = "conflict") -> ApiError:
    return ApiError(409, error, message)


def locked(message: str) -> ApiError:
    """423 Locked: an update lock blocks the action (balena's supervisor answers the same)."""
    return ApiError(423, "locked", message)


def error_body(error: str, message: str, details: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"error": error, "message": message}
    if details is not None:
        body["details"] = details
    return body


def _describe(exc: RequestValidationError) -> tuple[int, str, str, list[dict[str, Any]]]:
    details = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        details.append({"loc": loc, "msg": str(err.get("msg", "invalid")), "type": str(err.get("type", ""))})
    if any(d["type"] == "json_invalid" for d in details):
        return 400, "bad_request", "the body is not valid JSON", details
    first = details[0] if details else {"loc": [], "msg": "invalid request"}
    where = ".".join(first["loc"]) or "request"
    more = f" (and {len(details) - 1} more)" if len(details) > 1 else ""
    return 422, "validation_error", f"{where}: {first['msg']}{more}", details


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.error, exc.message), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        status, error, message, details = _describe(exc)
        return JSONResponse(error_body(error, message, details), status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        error = _STATUS_CODES.get(exc.status_code, "error")
        return JSONResponse(error_body(error, str(exc.detail)), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(RuntimeUnavailable)
    async def _engine_down(_request: Request, exc: RuntimeUnavailable) -> JSONResponse:
        return JSONResponse(error_body("runtime_unavailable", str(exc)), status_code=503)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # The path only: the query string may carry the API key.
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(error_body("internal_error", "internal server error"), status_code=500)
