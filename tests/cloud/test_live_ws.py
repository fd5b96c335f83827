"""`/ws` against the real app served by uvicorn on a loopback port, with a real WebSocket client.

Runs on both databases and both live buses: in-process, and Redis Streams at 127.0.0.1:6379 (where the readings
are published by a separate RedisBus, as an ingest process would). Streams are the test's own devices' and are
deleted afterwards.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
import uvicorn
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from iotistic.cloud.models import Role
from iotistic.cloud.routers import live as live_router
from iotistic.ingest.live import LiveBus, LiveReading, RedisBus, stream_key
from tests.conftest import PASSWORD

REDIS_URL = "redis://127.0.0.1:6379/0"
T0 = dt.datetime(2026, 11, 27, 10, 0, tzinfo=dt.UTC)


@pytest.fixture(params=["inprocess", "redis"])
def settings_env(request: pytest.FixtureRequest) -> dict[str, Any]:
    return {"REDIS_URL": REDIS_URL, "LIVE_STREAM_MAXLEN": 100} if request.param == "redis" else {}


@pytest.fixture
async def ws_url(app: Any) -> AsyncIterator[str]:
    """The app (its lifespan already running, from the `app` fixture) served by uvicorn on a free port."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "uvicorn did not start"
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"ws://127.0.0.1:{port}/ws"
    server.should_exit = True
    await asyncio.wait_for(task, 10)


@pytest.fixture
async def publisher(app: Any, settings_env: dict[str, Any]) -> AsyncIterator[LiveBus]:
    """What ingest would publish through: the app's own bus in-process, a second RedisBus with Redis."""
    if not settings_env:
        yield app.state.ctx.live
        return
    bus = RedisBus(REDIS_URL, 100)
    yield bus
    await bus.close()


@pytest.fixture
async def devices(api: Any, owner: dict[str, str]) -> AsyncIterator[list[str]]:
    """Three devices; their Redis streams (if any) are removed after the test."""
    made = []
    for _ in range(3):
        r = await api.client.post("/api/v1/devices", json={"name": f"ws-{uuid.uuid4().hex[:6]}"}, headers=owner)
        assert r.status_code == 201, r.text
        made.append(r.json()["uuid"])
    yield made
    client = aioredis.Redis.from_url(REDIS_URL)
    await client.delete(*(stream_key(d) for d in made))
    await client.aclose()


def reading(device: str, i: int, metric: str = "temp") -> LiveReading:
    return LiveReading(device_uuid=device, metric=metric, ts=T0 + dt.timedelta(seconds=i), value=float(i), unit="C")


async def token_for(api: Any, role: Role = Role.viewer) -> str:
    return (await api.headers_for(role))["Authorization"].removeprefix("Bearer ")


async def recv(ws: ClientConnection, within: float = 5) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), within))


async def send(ws: ClientConnection, body: Any) -> None:
    await ws.send(json.dumps(body))


async def authed(url: str, token: str) -> ClientConnection:
    ws = await connect(url)
    await send(ws, {"type": "auth", "token": token})
    assert await recv(ws) == {"type": "authenticated", "role": "viewer"}
    return ws


async def closed_with(ws: ClientConnection) -> tuple[int, str]:
    with pytest.raises(ConnectionClosed) as info:
        while True:
            await asyncio.wait_for(ws.recv(), 5)
    assert info.value.rcvd is not None
    return info.value.rcvd.code, info.value.rcvd.reason


# Authentication -----------------------------------------------------------------------------------------------

async def test_unauthenticated_sockets_are_closed_with_4401(ws_url, api, devices, monkeypatch):
    async with connect(ws_url) as ws:
        await send(ws, {"type": "subscribe", "devices": devices})
        assert await closed_with(ws) == (4401, "first message must be {type: auth, token}")
    async with connect(ws_url) as ws:
        await send(ws, {"type": "auth", "token": "not-a-jwt"})
        assert await closed_with(ws) == (4401, "access token invalid or expired")
    async with connect(ws_url) as ws:
        await ws.send(b"\x00binary")
        code, reason = await closed_with(ws)
        assert code == 4401 and "JSON text frames" in reason
    async with connect(ws_url) as ws:
        await ws.send("{not json")
        code, reason = await closed_with(ws)
        assert code == 4401 and "first message must be auth" in reason
    monkeypatch.setattr(live_router, "AUTH_TIMEOUT", 0.3)
    async with connect(ws_url) as ws:
        code, reason = await closed_with(ws)
        assert code == 4401 and reason.startswith("authentication timeout")


async def test_a_logged_out_session_cannot_open_a_socket(ws_url, api):
    email = f"gone-{uuid.uuid4().hex[:6]}@example.com"
    await api.create_user(email, Role.viewer)
    token = (await api.login(email))["access_token"]
    r = await api.client.post("/api/v1/auth/logout", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 204
    async with connect(ws_url) as ws:
        await send(ws, {"type": "auth", "token": token})
        assert await closed_with(ws) == (4401, "session ended")


async def test_logging_out_closes_an_open_socket(ws_url, api, monkeypatch):
    monkeypatch.setattr(live_router, "SESSION_RECHECK_SECONDS", 0.2)
    email = f"leaver-{uuid.uuid4().hex[:6]}@example.com"
    await api.create_user(email, Role.viewer, PASSWORD)
    token = (await api.login(email))["access_token"]
    ws = await authed(ws_url, token)
    r = await api.client.post("/api/v1/auth/logout", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 204
    assert await closed_with(ws) == (4401, "session ended")


# Readings -----------------------------------------------------------------------------------------------------

async def test_readings_of_subscribed_devices_arrive_and_others_do_not(ws_url, api, devices, publisher):
    a, b, c = devices
    ws = await authed(ws_url, await token_for(api))  # a viewer may watch
    await send(ws, {"type": "subscribe", "devices": [a, b]})
    assert await recv(ws) == {"type": "subscribed", "devices": sorted([a, b])}

    await publisher.publish([reading(c, 1), reading(a, 2), reading(b, 3, metric="hum")])
    assert await recv(ws) == {"type": "reading", "device": a, "metric": "temp", "ts": "2026-11-27T10:00:02Z",
                              "value": 2.0, "unit": "C"}
    assert (await recv(ws))["device"] == b

    # Unsubscribing b: its readings stop; c's never came (a's sentinel arrives next, nothing before it).
    await send(ws, {"type": "unsubscribe", "devices": [b]})
    assert await recv(ws) == {"type": "subscribed", "devices": [a]}
    await publisher.publish([reading(b, 4), reading(c, 5), reading(a, 6)])
    got = await recv(ws)
    assert (got["device"], got["value"]) == (a, 6.0)
    await ws.close()


async def test_metric_filter(ws_url, api, devices, publisher):
    a, b, _ = devices
    ws = await authed(ws_url, await token_for(api))
    await send(ws, {"type": "subscribe", "devices": [a], "metrics": ["hum"]})
    await send(ws, {"type": "subscribe", "devices": [b]})
    assert (await recv(ws))["devices"] == [a]
    assert (await recv(ws))["devices"] == sorted([a, b])
    await publisher.publish([reading(a, 1, "temp"), reading(a, 2, "hum"), reading(b, 3, "temp")])
    assert [((m := await recv(ws))["device"], m["metric"]) for _ in range(2)] == [(a, "hum"), (b, "temp")]
    await ws.close()


async def test_unknown_devices_and_bad_messages_are_errors_not_crashes(ws_url, api, devices, publisher):
    a, _, _ = devices
    ws = await authed(ws_url, await token_for(api))
    await send(ws, {"type": "subscribe", "devices": [a, "no-such-device"]})
    assert await recv(ws) == {"type": "subscribed", "devices": [a]}
    assert await recv(ws) == {"type": "error", "message": "unknown devices (not subscribed): no-such-device"}

    for bad, expected in [
        ({"type": "subscribe", "devices": ["../etc"]}, "subscribe.devices.0"),
        ({"type": "subscribe", "devices": []}, "subscribe.devices"),
        ({"type": "subscribe", "devices": [f"dev-{i:06d}" for i in range(201)]}, "at most 200 items"),
        ({"type": "dance"}, "does not match any of the expected tags"),
        ({"type": "auth", "token": "again"}, "already authenticated"),
        ([1, 2], "Input should be an object"),
    ]:
        await send(ws, bad)
        message = await recv(ws)
        assert message["type"] == "error" and expected in message["message"], (bad, message)
    await ws.send("x" * (live_router.MAX_MESSAGE_CHARS + 1))
    assert "too long" in (await recv(ws))["message"]

    # Still open and still delivering.
    await publisher.publish([reading(a, 1)])
    assert (await recv(ws))["device"] == a
    await ws.close()


async def test_devices_per_connection_are_capped(ws_url, api, devices, monkeypatch):
    monkeypatch.setattr(live_router, "MAX_DEVICES", 2)
    a, b, c = devices
    ws = await authed(ws_url, await token_for(api))
    await send(ws, {"type": "subscribe", "devices": [a, b]})
    assert (await recv(ws))["devices"] == sorted([a, b])
    await send(ws, {"type": "subscribe", "devices": [a, c]})
    assert await recv(ws) == {"type": "error",
                              "message": "at most 2 devices per connection (watching 2, asked for 1 more)"}
    await send(ws, {"type": "unsubscribe"})
    assert await recv(ws) == {"type": "subscribed", "devices": []}
    await send(ws, {"type": "subscribe", "devices": [c]})
    assert await recv(ws) == {"type": "subscribed", "devices": [c]}
    await ws.close()


async def test_two_sockets_watching_one_device_both_get_it(ws_url, api, devices, publisher):
    a, _, _ = devices
    token = await token_for(api)
    first, second = await authed(ws_url, token), await authed(ws_url, token)
    for ws in (first, second):
        await send(ws, {"type": "subscribe", "devices": [a]})
        assert (await recv(ws))["type"] == "subscribed"
    await publisher.publish([reading(a, 7)])
    assert (await recv(first))["value"] == 7.0
    assert (await recv(second))["value"] == 7.0
    await first.close()
    await second.close()
