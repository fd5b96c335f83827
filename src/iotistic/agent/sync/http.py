"""HTTP to the cloud: one client with timeouts on everything, and errors sorted by what the caller should do.

- `CloudUnavailable`: network error, timeout, 5xx, 429. Transient: keep the data, retry with backoff.
- `CloudUnauthorized`: 401/403. The device's credentials are not (or no longer) accepted: retrying quickly
  cannot help, so callers slow right down and say so clearly.
- `CloudRejected`: any other 4xx. The request itself is wrong; sending it again will fail again.

httpx is imported when a client is made, not when this module is imported (the agent's idle footprint).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import iotistic

if TYPE_CHECKING:
    import httpx

USER_AGENT = f"iotistic-agent/{iotistic.__version__}"


class CloudError(Exception):
    """A request to the cloud failed; the message is one line, fit for a status page."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class CloudUnavailable(CloudError):
    """Network error, timeout, 5xx or 429: try again later."""


class CloudUnauthorized(CloudError):
    """401/403: the credentials were refused (revoked key, deleted or disabled device)."""


class CloudRejected(CloudError):
    """Another 4xx: the cloud refuses this request as it is."""


def make_client(base_url: str, timeout: float) -> httpx.AsyncClient:
    """An async client for the cloud: every request has a timeout (connect capped at 10 s)."""
    import httpx

    return httpx.AsyncClient(
        base_url=base_url,
        timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
        headers={"User-Agent": USER_AGENT},
        follow_redirects=False,
    )


def _reason(response: httpx.Response) -> str:
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        text = body["message"]
    elif isinstance(body, dict) and isinstance(body.get("detail"), str):
        text = body["detail"]
    else:
        text = response.reason_phrase or "error"
    return " ".join(text.split())[:300]


def error_for(response: httpx.Response, what: str) -> CloudError:
    status = response.status_code
    message = f"{what}: HTTP {status}: {_reason(response)}"
    if status in (401, 403):
        return CloudUnauthorized(message, status)
    if status == 429 or status >= 500:
        return CloudUnavailable(message, status)
    return CloudRejected(message, status)


async def send(http: httpx.AsyncClient, method: str, url: str, what: str, *, deadline: float | None = None,
               **kwargs: Any) -> httpx.Response:
    """Send one request; return 2xx/3xx responses, raise a `CloudError` for everything else.

    httpx's timeouts bound each phase (connect, each read, ...); `deadline` bounds the whole exchange, so a
    server that trickles bytes cannot hold the agent either.
    """
    import httpx

    try:
        async with asyncio.timeout(deadline):
            response = await http.request(method, url, **kwargs)
    except (httpx.TimeoutException, TimeoutError):
        raise CloudUnavailable(f"{what}: timed out") from None
    except httpx.HTTPError as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise CloudUnavailable(f"{what}: {reason}") from None
    if response.status_code >= 400:
        raise error_for(response, what)
    return response
