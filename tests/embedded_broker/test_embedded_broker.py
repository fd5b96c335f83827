"""The embedded broker (amqtt) with the database's accounts: real paho clients against a broker started in the
test's event loop, devices registered through the real API on a migrated SQLite database."""

from __future__ import annotations

import asyncio
import queue
import threading
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from iotistic.embedded_broker import EmbeddedBroker
from tests.conftest import Api

TIMEOUT = 5.0


@pytest.fixture
def db_url(sqlite_url: str) -> str:
    return sqlite_url


@pytest.fixture
def broker(embedded_broker: EmbeddedBroker) -> EmbeddedBroker:
    return embedded_broker


async def wait_for(event: threading.Event, seconds: float = TIMEOUT) -> bool:
    return await asyncio.to_thread(event.wait, seconds)


class Client:
    """A paho client on its own network thread; the test awaits its events without blocking the broker's loop."""

    def __init__(self, username: str, password: str, client_id: str | None = None) -> None:
        client_id = client_id or f"{username}-{uuid.uuid4().hex[:6]}"
        self.paho = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
        self.paho.username_pw_set(username, password)
        self.connack = threading.Event()
        self.connected_ok = False
        self.disconnected = threading.Event()
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.subacks: dict[int, list[Any]] = {}
        self.suback_event = threading.Event()
        self.paho.on_connect = self._on_connect
        self.paho.on_disconnect = self._on_disconnect
        self.paho.on_message = lambda _c, _u, msg: self.messages.put((msg.topic, msg.payload))
        self.paho.on_subscribe = self._on_subscribe

    def _on_connect(self, _c: Any, _u: Any, _flags: Any, reason_code: Any, _props: Any) -> None:
        self.connected_ok = not reason_code.is_failure
        self.connack.set()

    def _on_disconnect(self, _c: Any, _u: Any, _flags: Any, _reason: Any, _props: Any) -> None:
        self.disconnected.set()
        self.connack.set()  # a refused login may just close the connection

    def _on_subscribe(self, _c: Any, _u: Any, mid: int, reason_codes: Any, _props: Any) -> None:
        self.subacks[mid] = list(reason_codes)
        self.suback_event.set()

    async def connect(self, port: int) -> bool:
        self.paho.reconnect_delay_set(60, 60)  # a refused client must not retry behind the test's back
        await asyncio.to_thread(self.paho.connect, "127.0.0.1", port, 30)
        self.paho.loop_start()
        assert await wait_for(self.connack), "no CONNACK"
        return self.connected_ok

    async def subscribe(self, topic: str) -> bool:
        self.suback_event.clear()
        _, mid = self.paho.subscribe(topic, qos=0)
        deadline = time.monotonic() + TIMEOUT
        while mid not in self.subacks:
            assert time.monotonic() < deadline, "no SUBACK"
            await asyncio.sleep(0.01)
        return not any(code.is_failure for code in self.subacks[mid])

    def publish(self, topic: str, payload: bytes) -> None:
        self.paho.publish(topic, payload, qos=0)

    async def next_message(self, seconds: float = TIMEOUT) -> tuple[str, bytes] | None:
        try:
            return await asyncio.to_thread(self.messages.get, True, seconds)
        except queue.Empty:
            return None

    def close(self) -> None:
        self.paho.disconnect()
        self.paho.loop_stop()


@pytest.fixture
async def clients() -> AsyncIterator[list[Client]]:
    made: list[Client] = []
    yield made
    for c in made:
        await asyncio.to_thread(c.close)


async def register(api: Api, owner: dict[str, str]) -> dict[str, Any]:
    key = await api.provisioning_key(owner)
    body, _ = await api.register(key["key"])
    return dict(body["mqtt"])


async def test_own_topic_delivered_other_device_topic_refused(api: Api, owner: dict[str, str],
                                                              broker: EmbeddedBroker, clients: list[Client]) -> None:
    a, b = await register(api, owner), await register(api, owner)
    ca, cb = Client(a["username"], a["password"]), Client(b["username"], b["password"])
    clients += [ca, cb]
    assert await ca.connect(broker.port) and await cb.connect(broker.port)

    own_a, own_b = f"iot/device/{a['username']}/#", f"iot/device/{b['username']}/#"
    assert await ca.subscribe(own_a)
    assert await cb.subscribe(own_b)
    # Another device's topics, and wildcards reaching over them, are refused at SUBSCRIBE.
    assert not await ca.subscribe(own_b)
    assert not await ca.subscribe("iot/device/+/sensor/temperature")
    assert not await ca.subscribe("#")

    # Publishing to another device's topic is dropped: b never sees it. a's next (allowed) message coming back to a
    # shows the broker has handled the forbidden one (one connection's packets are handled in order).
    ca.publish(f"iot/device/{b['username']}/sensor/temperature", b"spoofed")
    ca.publish(f"iot/device/{a['username']}/sensor/temperature", b"21.5")
    assert await ca.next_message() == (f"iot/device/{a['username']}/sensor/temperature", b"21.5")
    cb.publish(f"iot/device/{b['username']}/sensor/temperature", b"19.0")
    assert await cb.next_message() == (f"iot/device/{b['username']}/sensor/temperature", b"19.0")
    assert await cb.next_message(0.5) is None
    assert await ca.next_message(0.2) is None  # a's refused subscriptions delivered nothing either


async def test_wrong_password_unknown_user_and_foreign_will_refused(api: Api, owner: dict[str, str],
                                                                     broker: EmbeddedBroker,
                                                                     clients: list[Client]) -> None:
    a, b = await register(api, owner), await register(api, owner)
    wrong = Client(a["username"], a["password"] + "x")
    unknown = Client(uuid.uuid4().hex, a["password"])
    clients += [wrong, unknown]
    assert not await wrong.connect(broker.port)
    assert not await unknown.connect(broker.port)

    # A last will on another device's topic would be sent without any check by amqtt: the login is refused.
    spoofing_will = Client(a["username"], a["password"])
    spoofing_will.paho.will_set(f"iot/device/{b['username']}/status", b"offline")
    own_will = Client(a["username"], a["password"])
    own_will.paho.will_set(f"iot/device/{a['username']}/status", b"offline")
    clients += [spoofing_will, own_will]
    assert not await spoofing_will.connect(broker.port)
    assert await own_will.connect(broker.port)


async def test_deleted_device_loses_access_within_two_seconds(api: Api, owner: dict[str, str],
                                                              broker: EmbeddedBroker, clients: list[Client]) -> None:
    a = await register(api, owner)
    live = Client(a["username"], a["password"])
    clients.append(live)
    assert await live.connect(broker.port)
    assert await live.subscribe(f"iot/device/{a['username']}/#")

    r = await api.client.delete(f"/api/v1/devices/{a['username']}", headers=owner)
    assert r.status_code == 204, r.text
    deleted_at = time.monotonic()

    # The periodic reload (no explicit refresh here) closes the live session...
    assert await wait_for(live.disconnected, 2.5), "the deleted device's session is still open"
    assert time.monotonic() - deleted_at <= 2.0 + 0.5
    # ...and a new login is refused.
    again = Client(a["username"], a["password"])
    clients.append(again)
    assert not await again.connect(broker.port)
    assert time.monotonic() - deleted_at <= 2.0 + 1.0


async def test_disabled_account_refused_after_refresh(api: Api, owner: dict[str, str], broker: EmbeddedBroker,
                                                      clients: list[Client], app: Any) -> None:
    from sqlalchemy import update

    from iotistic.cloud.models import MqttAccount

    a = await register(api, owner)
    live = Client(a["username"], a["password"])
    clients.append(live)
    assert await live.connect(broker.port)
    async with app.state.ctx.sessions() as session:
        await session.execute(update(MqttAccount).where(MqttAccount.username == a["username"]).values(is_active=False))
        await session.commit()
    assert await broker.refresh() == 1  # on demand: immediately
    assert await wait_for(live.disconnected, 2)
    again = Client(a["username"], a["password"])
    clients.append(again)
    assert not await again.connect(broker.port)
