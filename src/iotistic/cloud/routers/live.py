"""`/ws`: live readings over a WebSocket, for the dashboard.

Protocol (JSON text frames):

- client, first, within 5 s: `{"type": "auth", "token": "<access token>"}`. Browsers cannot set headers on a
  WebSocket and tokens in URLs end up in logs, so the token travels as the first message. No cookie is involved,
  so a page on another origin cannot ride on the user's login (cross-site WebSocket hijacking).
  Server: `{"type": "authenticated", "role": ...}`, or a close with code 4401 and the reason.
- client: `{"type": "subscribe", "devices": [uuid, ...], "metrics": [optional filter]}` (the filter applies to
  those devices; without it, all their metrics), `{"type": "unsubscribe", "devices": [...]}` (all if omitted).
  Server: `{"type": "subscribed", "devices": [every device now watched]}`.
- server: `{"type": "reading", "device", "metric", "ts", "value", "unit"}` for each reading ingested after
  subscribing; `{"type": "error", "message"}` for a message it could not act on (the connection stays open).

The login session is re-checked every minute: logging out, disabling the user or the session's end closes the
socket with 4401 (the access token itself may expire meanwhile; it only proves who opened the socket).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, ValidationError
from redis.exceptions import RedisError
from sqlalchemy import select

from iotistic.cloud.context import CloudContext
from iotistic.cloud.deps import Principal, authenticate, load_principal
from iotistic.cloud.errors import ApiError
from iotistic.cloud.models import Device, Role
from iotistic.cloud.schemas import UUID_PATTERN
from iotistic.ingest.live import LiveReading, Subscription

log = logging.getLogger(__name__)
router = APIRouter(tags=["live"])

AUTH_TIMEOUT = 5.0
SESSION_RECHECK_SECONDS = 60.0
MAX_DEVICES = 200  # per connection: a dashboard page, not a firehose
MAX_METRICS = 100
MAX_MESSAGE_CHARS = 64 * 1024
CLOSE_UNAUTHORIZED = 4401  # 4000-4999 are the application's; 4401 mirrors HTTP 401
CLOSE_FORBIDDEN = 4403
CLOSE_GOING_AWAY = 1001

DeviceUuid = Annotated[str, StringConstraints(pattern=UUID_PATTERN)]
MetricName = Annotated[str, StringConstraints(min_length=1, max_length=128)]


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AuthMessage(_Message):
    type: Literal["auth"]
    token: str = Field(min_length=1, max_length=4096)


class SubscribeMessage(_Message):
    type: Literal["subscribe"]
    devices: list[DeviceUuid] = Field(min_length=1, max_length=MAX_DEVICES)
    metrics: list[MetricName] | None = Field(default=None, min_length=1, max_length=MAX_METRICS)


class UnsubscribeMessage(_Message):
    type: Literal["unsubscribe"]
    devices: list[DeviceUuid] | None = Field(default=None, max_length=MAX_DEVICES)


_client_message: TypeAdapter[AuthMessage | SubscribeMessage | UnsubscribeMessage] = TypeAdapter(
    Annotated[AuthMessage | SubscribeMessage | UnsubscribeMessage, Field(discriminator="type")]
)


class BadMessage(Exception):
    """A client message we cannot act on; its text goes back as an error message."""


async def _receive(websocket: WebSocket) -> AuthMessage | SubscribeMessage | UnsubscribeMessage:
    """The next client message, validated. Raises WebSocketDisconnect when the client is gone."""
    message = await websocket.receive()
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    raw = message.get("text")
    if raw is None:
        raise BadMessage("messages must be JSON text frames")
    if len(raw) > MAX_MESSAGE_CHARS:
        raise BadMessage(f"message too long (at most {MAX_MESSAGE_CHARS} characters)")
    try:
        return _client_message.validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "message"
        raise BadMessage(f"{where}: {first['msg']}") from None


def reading_message(reading: LiveReading) -> dict[str, Any]:
    return {"type": "reading", "device": reading.device_uuid, "metric": reading.metric,
            "ts": reading.ts.isoformat().replace("+00:00", "Z"), "value": reading.value, "unit": reading.unit}


class _Connection:
    """One authenticated socket: its subscription, its filters, and one lock so frames are never interleaved."""

    def __init__(self, websocket: WebSocket, ctx: CloudContext, principal: Principal, sub: Subscription) -> None:
        self.websocket = websocket
        self.ctx = ctx
        self.principal = principal
        self.sub = sub
        self.filters: dict[str, frozenset[str] | None] = {}  # device -> metrics wanted (None: all)
        self._send_lock = asyncio.Lock()

    async def send(self, body: dict[str, Any]) -> None:
        async with self._send_lock:
            await self.websocket.send_text(json.dumps(body))

    async def error(self, message: str) -> None:
        await self.send({"type": "error", "message": message})

    async def pump(self) -> None:
        """Forward the subscription's readings that pass the filters, until the bus closes."""
        async for reading in self.sub:
            # A device just unsubscribed may still have readings queued: an empty filter drops them.
            wanted = self.filters.get(reading.device_uuid, frozenset())
            if wanted is None or reading.metric in wanted:
                await self.send(reading_message(reading))

    async def control(self) -> None:
        """Act on the client's messages until it goes away."""
        while True:
            try:
                message = await _receive(self.websocket)
                if isinstance(message, SubscribeMessage):
                    await self._subscribe(message)
                elif isinstance(message, UnsubscribeMessage):
                    await self._unsubscribe(message)
                else:
                    raise BadMessage("already authenticated")
            except BadMessage as exc:
                await self.error(str(exc))

    async def recheck(self) -> str:
        """Returns (ends) with the reason once the login session is no longer valid."""
        while True:
            await asyncio.sleep(SESSION_RECHECK_SECONDS)
            try:
                async with self.ctx.read_sessions() as session:
                    await load_principal(session, self.principal.user.id, self.principal.session_id,
                                         self.principal.ip)
            except ApiError as exc:
                return exc.message

    async def _subscribe(self, message: SubscribeMessage) -> None:
        requested = list(dict.fromkeys(message.devices))
        new = [d for d in requested if d not in self.filters]
        if len(self.filters) + len(new) > MAX_DEVICES:
            raise BadMessage(f"at most {MAX_DEVICES} devices per connection "
                             f"(watching {len(self.filters)}, asked for {len(new)} more)")
        async with self.ctx.read_sessions() as session:
            known = set(await session.scalars(select(Device.uuid).where(Device.uuid.in_(requested))))
        metrics = frozenset(message.metrics) if message.metrics is not None else None
        for device in requested:
            if device in known:
                self.filters[device] = metrics
        await self._apply()
        unknown = [d for d in requested if d not in known]
        if unknown:
            await self.error(f"unknown devices (not subscribed): {', '.join(unknown)}")

    async def _unsubscribe(self, message: UnsubscribeMessage) -> None:
        for device in message.devices if message.devices is not None else list(self.filters):
            self.filters.pop(device, None)
        await self._apply()

    async def _apply(self) -> None:
        try:
            await self.sub.set_devices(self.filters.keys())
        except RedisError as exc:
            log.warning("live: subscription change failed: %s", exc)
            raise BadMessage("the live stream is unavailable right now; try again") from None
        await self.send({"type": "subscribed", "devices": sorted(self.filters)})


async def _authenticate(websocket: WebSocket, ctx: CloudContext) -> Principal | None:
    """Wait for the auth message; on failure close the socket (4401 + reason) and return None."""
    try:
        message = await asyncio.wait_for(_receive(websocket), AUTH_TIMEOUT)
    except TimeoutError:
        await websocket.close(CLOSE_UNAUTHORIZED, "authentication timeout: send {type: auth, token} first")
        return None
    except BadMessage as exc:
        await websocket.close(CLOSE_UNAUTHORIZED, f"first message must be auth ({exc})"[:120])
        return None
    if not isinstance(message, AuthMessage):
        await websocket.close(CLOSE_UNAUTHORIZED, "first message must be {type: auth, token}")
        return None
    ip = websocket.client.host if websocket.client else None
    try:
        async with ctx.read_sessions() as session:
            principal = await authenticate(ctx, session, message.token, ip)
    except ApiError as exc:
        await websocket.close(CLOSE_UNAUTHORIZED, exc.message[:120])
        return None
    if not principal.role.at_least(Role.viewer):  # reading devices is the viewer's right, as on HTTP
        await websocket.close(CLOSE_FORBIDDEN, "the viewer role or higher is needed")
        return None
    return principal


@router.websocket("/ws")
async def live_readings(websocket: WebSocket) -> None:
    ctx: CloudContext = websocket.app.state.ctx
    await websocket.accept()
    try:
        principal = await _authenticate(websocket, ctx)
        if principal is None:
            return
        await websocket.send_text(json.dumps({"type": "authenticated", "role": principal.role.value}))
        async with ctx.live.subscribe(()) as sub:
            conn = _Connection(websocket, ctx, principal, sub)
            tasks = {asyncio.create_task(conn.control()), asyncio.create_task(conn.pump()),
                     asyncio.create_task(conn.recheck())}
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            finished = done.pop()
            error = finished.exception()
            if error is not None:
                raise error  # WebSocketDisconnect when the client left
            reason = finished.result()
            if isinstance(reason, str):  # recheck: the login session ended
                await websocket.close(CLOSE_UNAUTHORIZED, reason[:120])
            else:  # the bus closed: the server is shutting down
                await websocket.close(CLOSE_GOING_AWAY, "server shutting down")
    except WebSocketDisconnect:
        pass
