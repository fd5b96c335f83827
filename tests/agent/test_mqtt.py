"""The agent over MQTT: a real Mosquitto (the project's config) enforcing the real cloud's accounts through the
broker sync, the real cloud API (HTTP fallback, registration handing out the broker), and a service account
subscribed to `iot/device/+/#` that sees what the agent publishes.

The agent side is the real `CloudSync` with its `MqttLink`, run in the test's event loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from iotistic.agent.settings import load_agent_settings, parse_broker_url
from iotistic.agent.store import Identity
from iotistic.agent.sync.client import CloudSync, read_status
from iotistic.agent.sync.mqtt import mqtt_endpoint
from iotistic.broker.sync import BrokerSync
from iotistic.broker.testing import MqttProbe, PrivateMosquitto, until
from iotistic.core import topics
from iotistic.core.db import make_engine
from iotistic.core.schemas.reports import DeviceReport, Metrics
from iotistic.core.settings import ConfigError
from tests.agent.conftest_cloud import CloudAdmin, CloudServer, Device, free_port
from tests.conftest import LicenseKeys, make_settings

pytest_plugins = ["tests.agent.conftest_cloud"]

SERVICE_USER = "ingest-test"
SERVICE_PASSWORD = "service-password-0123456789"


def state(n: int) -> dict[str, Any]:
    return {"status": "idle", "appliedVersion": n, "apps": {"1": {"appId": 1, "appName": "web", "services": [
        {"serviceName": "nginx", "image": "nginx:1.27", "status": "running"}]}}}


# --- fixtures ---------------------------------------------------------------------------------------------------
@pytest.fixture
def mosquitto() -> Iterator[PrivateMosquitto]:
    broker = PrivateMosquitto()
    yield broker
    broker.close()


@pytest.fixture
def cloud(cloud_template_db: Path, tmp_path: Path, license_keys: LicenseKeys,
          mosquitto: PrivateMosquitto) -> Iterator[CloudServer]:
    """The cloud API (as in conftest_cloud) handing out the private Mosquitto's URL at registration."""
    data = tmp_path / "cloud"
    data.mkdir()
    db = data / "cloud.db"
    shutil.copy(cloud_template_db, db)
    settings = make_settings(f"sqlite+aiosqlite:///{db}", data, license_keys,
                             MQTT_BROKER_URL=f"mqtt://127.0.0.1:{mosquitto.port}")
    server = CloudServer(settings, free_port())
    server.start()
    yield server
    server.stop()


@dataclass
class Broker:
    mosquitto: PrivateMosquitto
    sync: BrokerSync
    probes: list[MqttProbe]

    async def subscriber(self) -> MqttProbe:
        """The service account, connected (once the broker knows it) and subscribed to every device's topics."""
        await self.sync.sync_once()
        deadline = time.monotonic() + 5
        while True:
            probe = MqttProbe(self.mosquitto.port, SERVICE_USER, SERVICE_PASSWORD, v5=True).start()
            self.probes.append(probe)
            assert await until(lambda p=probe: p.connack is not None)
            if probe.accepted:
                break
            assert time.monotonic() < deadline, f"service account refused: {probe.connack}"
            await asyncio.sleep(0.05)
        mid = probe.subscribe("iot/device/+/#", qos=1)
        assert await until(lambda: mid in probe.subacks)
        return probe


@pytest.fixture
async def broker(cloud: CloudServer, admin: CloudAdmin, mosquitto: PrivateMosquitto) -> AsyncIterator[Broker]:
    """Mosquitto enforcing the cloud database's accounts (the broker sync, long-lived beside it), with a service
    account made through the cloud's API as an admin would."""
    created = await admin._ok("POST", "/api/v1/mqtt/accounts", 201, json={
        "username": SERVICE_USER, "kind": "service", "password": SERVICE_PASSWORD,
        "rules": [{"topic": topics.INGEST_READ_FILTER, "access": "read"}]})
    assert created["username"] == SERVICE_USER
    engine = make_engine(cloud.settings.sqlalchemy_url)
    sync = BrokerSync(engine, mosquitto.target)
    stop = asyncio.Event()
    env = Broker(mosquitto, sync, [])
    await sync.sync_once()  # as in production: the files exist before the broker starts
    mosquitto.start()
    task = asyncio.create_task(sync.run(stop))
    try:
        yield env
    finally:
        for probe in env.probes:
            probe.stop()
        stop.set()
        await task
        await engine.dispose()


Running = Callable[..., Awaitable[CloudSync]]


@pytest.fixture
async def run_sync(device: Device, broker: Broker) -> AsyncIterator[Running]:
    """Starts the provisioned device's cloud sync (HTTP + MQTT) in the background; stopped cleanly at the end."""
    started: list[tuple[CloudSync, asyncio.Event, asyncio.Task[None]]] = []

    async def start(identity: Identity | None = None, **settings: Any) -> CloudSync:
        await broker.sync.sync_once()  # the device's account is enforced before it connects
        config = device.settings.model_copy(update={"mqtt_enabled": None, "mqtt_ack_timeout": 2.0, "mqtt_keepalive": 5,
                                                    **settings})
        sync = CloudSync(config, device.store, identity or device.identity)
        stop = asyncio.Event()
        started.append((sync, stop, asyncio.create_task(sync.run(stop))))
        return sync

    yield start
    for sync, stop, task in started:
        stop.set()
        await asyncio.wait_for(task, 15)
        await sync.aclose()


def messages(probe: MqttProbe, uuid: str, channel: str) -> list[bytes]:
    return [payload for topic, payload in probe.received(f"iot/device/{uuid}/{channel}")]


def patches(cloud: CloudServer) -> list[dict[str, Any]]:
    """Reports that reached the cloud over HTTP."""
    return [next(iter(c.json().values())) for c in cloud.device_calls("PATCH", "/state") if c.status == 204]


def applied_over_http(cloud: CloudServer) -> list[int]:
    """The applied versions of the state reports that reached the cloud over HTTP (metrics reports left out)."""
    return [r["appliedVersion"] for r in patches(cloud) if "metrics" not in r]


async def connected(sync: CloudSync, within: float = 10.0) -> None:
    link = sync.mqtt
    assert link is not None
    assert await until(lambda: link.connected, within), f"MQTT never connected: {link.status()}"


# --- the tests --------------------------------------------------------------------------------------------------
async def test_registration_credentials_are_stored_and_never_shown(device: Device, mosquitto: PrivateMosquitto):
    identity = device.store.identity()
    assert identity is not None and identity.mqtt_username and identity.mqtt_password
    assert identity.mqtt_broker == f"mqtt://127.0.0.1:{mosquitto.port}"
    assert (device.settings.store_path.stat().st_mode & 0o777) == 0o600
    assert identity.mqtt_password not in repr(identity) and identity.device_api_key not in repr(identity)
    # conftest_cloud turns MQTT off for the HTTP tests; unset, it is on because the registration gave credentials.
    assert mqtt_endpoint(device.settings, identity) is None
    endpoint = mqtt_endpoint(device.settings.model_copy(update={"mqtt_enabled": None}), identity)
    assert endpoint is not None and endpoint.port == mosquitto.port
    assert identity.mqtt_password not in repr(endpoint) + endpoint.describe()


async def test_online_is_retained_and_reports_arrive_on_the_devices_topics(run_sync: Running, broker: Broker,
                                                                          device: Device, cloud: CloudServer):
    uuid = device.identity.uuid
    sync = await run_sync()
    await connected(sync)
    link = sync.mqtt
    assert link is not None
    # The metrics loop measures once at start (over HTTP if that was before MQTT was up): let it settle.
    assert await until(lambda: sync.store.outbox_size() == 0
                       and bool(patches(cloud) or link.status()["reportsPublished"]))
    over_http = len(patches(cloud))
    # Subscribed only now: `online` can only arrive because the broker retained it.
    ingest = await broker.subscriber()
    assert await until(lambda: messages(ingest, uuid, "status") == [b"online"])

    assert await sync.report(state(1))
    report = await sync.report_metrics()
    assert await until(lambda: len(messages(ingest, uuid, "state")) == 2 and messages(ingest, uuid, "metrics"))

    applied, versions = (DeviceReport.model_validate_json(p) for p in messages(ingest, uuid, "state"))
    assert applied.applied_version == 1 and applied.apps is not None
    assert applied.apps["1"].services[0].status == "running" and applied.metrics is None
    # The rest of the metrics report, as a partial report: what HTTP would have sent beside the metrics.
    assert versions.model_dump(by_alias=True, exclude_none=True) == {
        "osVersion": report["osVersion"], "agentVersion": report["agentVersion"]}
    (raw,) = messages(ingest, uuid, "metrics")
    metrics = Metrics.model_validate_json(raw)
    assert metrics.model_dump(mode="json", by_alias=True, exclude_none=True) == report["metrics"]
    assert metrics.recorded_at is not None and abs(time.time() - metrics.recorded_at.timestamp()) < 60
    # Over MQTT, and only over MQTT: the cloud's HTTP route saw none of it.
    assert await until(lambda: sync.store.outbox_size() == 0)
    assert len(patches(cloud)) == over_http
    status = sync.status().as_dict()["mqtt"]
    assert status["connected"] and status["protocol"] == "5" and status["reportsPublished"] >= 2
    assert status["broker"] == f"mqtt://127.0.0.1:{broker.mosquitto.port}"
    assert device.identity.mqtt_password not in str(sync.status().as_dict())


async def test_an_abrupt_drop_makes_the_broker_deliver_the_will_and_the_agent_comes_back(
        run_sync: Running, broker: Broker, device: Device):
    uuid = device.identity.uuid
    sync = await run_sync()
    await connected(sync)
    ingest = await broker.subscriber()
    assert await until(lambda: messages(ingest, uuid, "status") == [b"online"])

    assert sync.mqtt is not None
    sync.mqtt.drop()  # the socket closes without DISCONNECT: the agent itself says nothing
    assert await until(lambda: messages(ingest, uuid, "status")[1:2] == [b"offline"], 10), \
        messages(ingest, uuid, "status")
    # ... and it reconnects with its backoff, announcing itself again.
    assert await until(lambda: messages(ingest, uuid, "status")[2:] == [b"online"], 10)
    await connected(sync)


async def test_a_clean_stop_says_offline_itself(broker: Broker, device: Device, caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO, "iotistic.agent.sync.mqtt")
    uuid = device.identity.uuid
    sync = CloudSync(device.settings.model_copy(update={"mqtt_enabled": True}), device.store, device.identity)
    await broker.sync.sync_once()
    stop = asyncio.Event()
    task = asyncio.create_task(sync.run(stop))
    await connected(sync)
    stop.set()
    await asyncio.wait_for(task, 10)
    await sync.aclose()
    assert "MQTT disconnected from" in caplog.text  # a clean DISCONNECT (no will) after `offline`
    ingest = await broker.subscriber()
    assert await until(lambda: messages(ingest, uuid, "status") == [b"offline"])  # retained
    saved = read_status(device.store)
    assert saved is not None and saved["mqtt"]["connected"] is False


async def test_with_the_broker_down_reports_go_over_http_and_mqtt_comes_back(
        run_sync: Running, broker: Broker, device: Device, cloud: CloudServer, admin: CloudAdmin):
    uuid = device.identity.uuid
    sync = await run_sync()
    await connected(sync)
    link = sync.mqtt
    assert link is not None

    broker.mosquitto.stop()
    assert await until(lambda: not link.connected, 10)
    assert await sync.report(state(2))
    assert await until(lambda: sync.store.outbox_size() == 0, 10)
    assert applied_over_http(cloud) == [2]
    current = await admin.current_state(uuid)
    assert current is not None and current["appliedVersion"] == 2
    assert link.status()["lastError"]

    broker.mosquitto.start()
    await connected(sync, 15)
    ingest = await broker.subscriber()
    assert await sync.report(state(3))
    assert await until(lambda: any(b'"appliedVersion":3' in p for p in messages(ingest, uuid, "state")), 10)
    assert applied_over_http(cloud) == [2]  # 3 went over MQTT only


async def test_a_report_the_broker_does_not_acknowledge_goes_over_http(
        run_sync: Running, broker: Broker, device: Device, cloud: CloudServer, admin: CloudAdmin):
    sync = await run_sync(mqtt_ack_timeout=1.0)
    await connected(sync)
    pid = broker.mosquitto.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # the broker hangs: the TCP connection stays up, nothing is acknowledged
    try:
        assert await sync.report(state(4))
        assert await until(lambda: sync.store.outbox_size() == 0, 10)
        assert applied_over_http(cloud) == [4]
    finally:
        os.kill(pid, signal.SIGCONT)
    current = await admin.current_state(device.identity.uuid)
    assert current is not None and current["appliedVersion"] == 4
    assert sync.mqtt is not None and sync.mqtt.status()["reportsNotDelivered"] == 1
    await connected(sync, 15)  # the silent link was dropped and replaced


async def test_wrong_credentials_fall_back_to_http_with_a_clear_log_line(
        run_sync: Running, device: Device, cloud: CloudServer, admin: CloudAdmin,
        caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO, "iotistic.agent.sync.mqtt")
    wrong = Identity.from_dict({**device.identity.to_dict(), "mqtt_password": "not-the-password-at-all"})
    sync = await run_sync(wrong)
    assert await until(lambda: "refuses this device's credentials" in caplog.text, 10)
    assert await sync.report(state(5))
    assert await until(lambda: sync.store.outbox_size() == 0, 10)
    current = await admin.current_state(device.identity.uuid)
    assert current is not None and current["appliedVersion"] == 5
    link = sync.mqtt
    assert link is not None and not link.connected and "not authorised" in (link.status()["lastError"] or "")
    assert "not-the-password-at-all" not in caplog.text
    refusals = [r for r in caplog.records if "refuses this device's credentials" in r.getMessage()]
    await asyncio.sleep(1.0)  # several retries (BACKOFF_MAX_SECONDS=0.4) later: still one log line, no crash
    assert len([r for r in caplog.records if "refuses this device's credentials" in r.getMessage()]) == \
        len(refusals) == 1


async def test_mqtt_disabled_sends_over_http_only(run_sync: Running, device: Device, cloud: CloudServer):
    sync = await run_sync(mqtt_enabled=False)
    assert sync.mqtt is None and sync.status().mqtt == {"enabled": False}
    assert await sync.report(state(6))
    assert await until(lambda: sync.store.outbox_size() == 0, 10)
    assert applied_over_http(cloud) == [6]


async def test_a_broker_without_mqtt5_gets_311(run_sync: Running, device: Device, cloud: CloudServer):
    """The embedded broker (amqtt) speaks 3.1.1 only; MQTT_BROKER_URL points the agent at it."""
    from iotistic.embedded_broker.broker import start_embedded_broker

    embedded = await start_embedded_broker(cloud.settings, port=0)
    try:
        sync = await run_sync(mqtt_broker_url=embedded.url)
        await connected(sync, 15)
        link = sync.mqtt
        assert link is not None
        assert link.status()["protocol"] == "3.1.1" and link.status()["broker"] == embedded.url
        assert await sync.report(state(7))
        assert await until(lambda: sync.store.outbox_size() == 0, 10)
        assert link.status()["reportsPublished"] == 1
    finally:
        await embedded.stop()


def test_broker_urls():
    assert parse_broker_url("mqtt://broker.example.com") == ("broker.example.com", 1883, False)
    assert parse_broker_url("mqtts://10.0.0.1:9999") == ("10.0.0.1", 9999, True)
    for bad in ("http://x:1883", "mqtt://", "mqtt://x:99999"):
        with pytest.raises(ValueError):
            parse_broker_url(bad)
    with pytest.raises(ConfigError, match="MQTT_BROKER_URL"):
        load_agent_settings(MQTT_BROKER_URL="broker:1883")
    assert load_agent_settings(MQTT_ENABLED="", MQTT_BROKER_URL="").mqtt_enabled is None
