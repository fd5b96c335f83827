"""Who may use the Device API, and keeping the key out of the logs.

Every route except `GET /ping` needs the device's local API key (`Identity.local_api_key`), given as the
`X-API-Key` header, as `?apikey=` (balena's spelling) or as `Authorization: Bearer <key>` (what balena's
containers send). It is checked by an ASGI middleware before routing, so an unauthenticated caller learns
nothing, not even which paths exist or whether a body is valid. The comparison is constant-time (both sides are
hashed to a fixed length first, so not even the key's length shows in the timing).

The server binds to localhost by default (`DEVICE_API_HOST`); bound elsewhere, the key is the only way in.

The key must never reach a log: uvicorn's access log prints the query string, so `install_log_redaction()`
puts a filter on its loggers that replaces any `apikey=` value with `***`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from collections.abc import Callable
from typing import Any

from starlette.datastructures import Headers, QueryParams
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from iotistic.agent.api.errors import error_body

log = logging.getLogger(__name__)

#: Paths anyone may call (balena's supervisor leaves exactly this one open, for health checks).
OPEN_PATHS = frozenset({"/ping"})
API_KEY_HEADER = "x-api-key"
API_KEY_QUERY = "apikey"
#: Bodies larger than this are refused with 413 (a target state of 32 apps x 64 services fits easily).
MAX_BODY_BYTES = 2 * 1024 * 1024

_APIKEY_IN_TEXT = re.compile(r"(?i)([?&]apikey=)[^&\s\"']*")


def presented_key(headers: Headers, query: QueryParams) -> str | None:
    """The key the caller gave, from the header, the query or a bearer token (in that order)."""
    key = headers.get(API_KEY_HEADER) or query.get(API_KEY_QUERY)
    if not key:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            key = token.strip()
    return key or None


def key_matches(given: str | None, expected: str | None) -> bool:
    """Constant-time comparison; no key configured or none given never matches."""
    if not given or not expected:
        return False
    digest = hashlib.sha256
    return hmac.compare_digest(digest(given.encode("utf-8", "surrogateescape")).digest(),
                               digest(expected.encode("utf-8", "surrogateescape")).digest())


class ApiKeyMiddleware:
    """Refuses (401) every request to a path outside `open_paths` that lacks the current key.

    `current_key` is asked on every request, so a regenerated key takes effect at once.
    """

    def __init__(self, app: ASGIApp, current_key: Callable[[], str | None],
                 open_paths: frozenset[str] = OPEN_PATHS) -> None:
        self.app = app
        self.current_key = current_key
        self.open_paths = open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] in self.open_paths:
            await self.app(scope, receive, send)
            return
        given = presented_key(Headers(scope=scope), QueryParams(scope.get("query_string", b"")))
        try:
            expected = self.current_key()
        except Exception:
            log.exception("the Device API cannot read the local API key")
            expected = None
        if key_matches(given, expected):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        message = "a valid API key is required (X-API-Key header or ?apikey=)" if given is None \
            else "the API key is not valid"
        body = json.dumps(error_body("unauthorized", message)).encode()
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"www-authenticate", b'ApiKey realm="device"')]})
        await send({"type": "http.response.body", "body": body})


class BodyLimitMiddleware:
    """413 for a body over `max_bytes`: at once when Content-Length says so, while reading otherwise."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            body = json.dumps(error_body("payload_too_large",
                                         f"the body exceeds {self.max_bytes} bytes")).encode()
            await send({"type": "http.response.start", "status": 413,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(413, f"the body exceeds {self.max_bytes} bytes")
            return message

        await self.app(scope, limited, send)


# --- logs ------------------------------------------------------------------------------------------------------
def redact(text: str) -> str:
    """`/v1/device?apikey=secret&x=1` -> `/v1/device?apikey=***&x=1`."""
    return _APIKEY_IN_TEXT.sub(r"\1***", text)


def _redact_arg(value: Any) -> Any:
    return redact(value) if isinstance(value, str) else value


class RedactApiKey(logging.Filter):
    """Rewrites a record's message and arguments so no `apikey=` value is ever printed."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redact_arg(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: _redact_arg(v) for k, v in record.args.items()}
        return True


#: uvicorn's loggers: the access log prints each request's path with its query string.
SERVER_LOGGERS = ("uvicorn.access", "uvicorn.error")


def install_log_redaction(names: tuple[str, ...] = SERVER_LOGGERS) -> None:
    """Idempotent: at most one `RedactApiKey` filter per logger."""
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactApiKey) for f in logger.filters):
            logger.addFilter(RedactApiKey())
