"""A real Mosquitto with the project's config enforcing the real database through the sync, probed by paho.

Each test runs on SQLite and on PostgreSQL (the `app` fixture), with its own broker on its own port and folder
and the long-lived sync (`BrokerSync.run`, default 0.5 s interval) running beside it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from iotistic.broker.testing import MqttProbe, PrivateMosquitto, until
from tests.mqtt_env import Broker, Devices, add_service_account

REPO = Path(__file__).resolve().parents[2]
NOT_AUTHORIZED = "Not authorized"
ENFORCED_WITHIN = 2.0  # seconds from a change in the database to the broker enforcing it


def payloads(probe: MqttProbe) -> set[bytes]:
    return {payload for _topic, payload in probe.received()}


# Topics ----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("v5", [False, True], ids=["mqtt311", "mqtt5"])
async def test_a_device_reaches_its_own_topics_and_no_other_devices(broker: Broker, devices: Devices, v5: bool):
    (a, password_a), (b, password_b) = await devices(2)
    alice = await broker.connect(a, password_a, v5=v5)
    bob = await broker.connect(b, password_b, v5=v5)

    subscriptions = [alice.subscribe(f"iot/device/{a}/#"), alice.subscribe(f"iot/device/{b}/#"),
                     alice.subscribe("iot/device/#"), bob.subscribe(f"iot/device/{b}/#")]
    assert await until(lambda: all(mid in {**alice.subacks, **bob.subacks} for mid in subscriptions))
    # What really happens on Mosquitto 2.0.11: its acl_file check does not look at SUBSCRIBE at all, so even
    # another device's tree is granted (QoS 1, no 0x80); the ACL is applied to every message delivered instead.
    granted = [[reason.value for reason in {**alice.subacks, **bob.subacks}[mid]] for mid in subscriptions]
    assert granted == [[1], [1], [1], [1]]

    into_alice = bob.publish(f"iot/device/{a}/sensor/temperature", b"bob writes into alice's tree")
    bob.publish(f"iot/device/{b}/sensor/temperature", b"bob's own reading")
    alice.publish(f"iot/device/{a}/sensor/temperature", b"alice's own reading")
    assert await until(lambda: b"alice's own reading" in payloads(alice) and b"bob's own reading" in payloads(bob))
    assert await until(lambda: into_alice in bob.pubacks)
    await asyncio.sleep(0.3)  # anything wrongly routed would have arrived by now

    # Alice's subscriptions to bob's tree and to everything delivered her own messages only.
    assert payloads(alice) == {b"alice's own reading"}
    assert payloads(bob) == {b"bob's own reading"}
    # MQTT 5 tells the publisher (PUBACK 0x87 Not authorized); MQTT 3.1.1 cannot, so the message is acked and dropped.
    assert bob.pubacks[into_alice].value == (0x87 if v5 else 0)


async def test_wrong_password_unknown_user_and_anonymous_are_refused(broker: Broker, devices: Devices):
    [(a, password_a)] = await devices(1)
    await broker.connect(a, password_a)
    for username, password in [(a, "wrong-password"), (a, ""), (a, None), ("nobody", password_a), (None, None)]:
        probe = await broker.connack(username, password)
        assert str(probe.connack) == NOT_AUTHORIZED, (username, password)
        assert not probe.accepted
    v5 = await broker.connack(a, "wrong-password", v5=True)
    assert v5.connack.is_failure and v5.connack.value in (0x86, 0x87)  # bad user name or password / not authorized


async def test_a_new_device_can_connect_within_2_s_of_registering(broker: Broker, devices: Devices):
    start = time.monotonic()
    [(c, password_c)] = await devices(1)
    probe = await broker.connect(c, password_c, within=ENFORCED_WITHIN)
    assert time.monotonic() - start < ENFORCED_WITHIN
    probe.subscribe(f"iot/device/{c}/jobs/#")
    await asyncio.sleep(0.05)
    probe.publish(f"iot/device/{c}/jobs/1", b"job")
    assert await until(lambda: payloads(probe) == {b"job"})


# Revocation ------------------------------------------------------------------------------------------------------

async def _assert_kicked_and_refused(broker: Broker, probe: MqttProbe, username: str, password: str,
                                     start: float) -> None:
    assert await until(lambda: probe.disconnects, within=ENFORCED_WITHIN + 1)
    assert time.monotonic() - start < ENFORCED_WITHIN, "not disconnected within 2 s"
    again = await broker.connack(username, password)
    assert str(again.connack) == NOT_AUTHORIZED


async def _assert_untouched(bystander: MqttProbe, username: str) -> None:
    assert bystander.disconnects == [] and bystander.connected
    bystander.publish(f"iot/device/{username}/sensor/t", b"still here")
    assert await until(lambda: b"still here" in payloads(bystander))
    assert bystander.disconnects == []


async def test_a_deleted_device_is_disconnected_within_2_s_and_others_stay_connected(
        broker: Broker, devices: Devices, api: Any, owner: dict[str, str]):
    (a, password_a), (b, password_b) = await devices(2)
    alice = await broker.connect(a, password_a)
    bob = await broker.connect(b, password_b)
    bob.subscribe(f"iot/device/{b}/#")

    start = time.monotonic()
    r = await api.client.delete(f"/api/v1/devices/{a}", headers=owner)
    assert r.status_code == 204, r.text
    await _assert_kicked_and_refused(broker, alice, a, password_a, start)
    await _assert_untouched(bob, b)


async def test_a_disabled_device_is_disconnected_within_2_s_and_comes_back_when_enabled(
        broker: Broker, devices: Devices, api: Any, owner: dict[str, str]):
    (a, password_a), (b, password_b) = await devices(2)
    alice = await broker.connect(a, password_a)
    bob = await broker.connect(b, password_b)
    bob.subscribe(f"iot/device/{b}/#")

    start = time.monotonic()
    r = await api.client.patch(f"/api/v1/devices/{a}", json={"status": "disabled"}, headers=owner)
    assert r.status_code == 200, r.text
    await _assert_kicked_and_refused(broker, alice, a, password_a, start)
    await _assert_untouched(bob, b)

    start = time.monotonic()
    r = await api.client.patch(f"/api/v1/devices/{a}", json={"status": "active"}, headers=owner)
    assert r.status_code == 200, r.text
    await broker.connect(a, password_a, within=ENFORCED_WITHIN)
    assert time.monotonic() - start < ENFORCED_WITHIN


async def test_re_registering_rotates_the_password_and_drops_the_old_session(
        broker: Broker, api: Any, owner: dict[str, str]):
    key = (await api.provisioning_key(owner))["key"]
    first, _ = await api.register(key)
    device, old_password = first["mqtt"]["username"], first["mqtt"]["password"]
    old = await broker.connect(device, old_password)

    start = time.monotonic()
    again = {"uuid": device, "deviceName": "same device", "deviceType": "raspberrypi4",
             "deviceApiKey": "a-new-device-api-key-0123456789abcdef"}
    r = await api.client.post("/api/v1/device/register", json=again, headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200, r.text  # the same device again: new credentials
    new_password = r.json()["mqtt"]["password"]
    await _assert_kicked_and_refused(broker, old, device, old_password, start)
    await broker.connect(device, new_password, within=ENFORCED_WITHIN)


# Service accounts and bad rows -------------------------------------------------------------------------------------

async def test_a_service_account_reads_device_telemetry_through_a_shared_subscription(
        broker: Broker, devices: Devices, app: Any):
    [(a, password_a)] = await devices(1)
    await add_service_account(app, "ingest", "ingest-password-0123456789",
                              ("iot/device/+/sensor/#", "read"), ("iot/device/+/status", "read"))
    ingest = await broker.connect("ingest", "ingest-password-0123456789", v5=True, within=ENFORCED_WITHIN)
    device = await broker.connect(a, password_a, v5=True)
    ingest.subscribe("$share/ingest/iot/device/+/sensor/#")
    ingest.subscribe("$share/ingest/iot/device/+/metrics")  # not granted: nothing arrives from it
    await asyncio.sleep(0.1)

    device.publish(f"iot/device/{a}/metrics", b"cpu")
    device.publish(f"iot/device/{a}/sensor/temperature", b"21.5")
    assert await until(lambda: b"21.5" in payloads(ingest))
    await asyncio.sleep(0.2)
    assert ingest.received() == [(f"iot/device/{a}/sensor/temperature", b"21.5")]

    # Read-only: it cannot write into a device's tree, nor into the tree the device pattern would give it.
    denied = [ingest.publish(f"iot/device/{a}/sensor/temperature", b"forged"),
              ingest.publish("iot/device/ingest/sensor/x", b"forged")]
    assert await until(lambda: all(mid in ingest.pubacks for mid in denied))
    assert [ingest.pubacks[mid].value for mid in denied] == [0x87, 0x87]


async def test_rows_that_would_break_the_files_are_left_out_and_the_rest_is_enforced(
        broker: Broker, devices: Devices, app: Any, caplog: pytest.LogCaptureFixture):
    await add_service_account(app, "bad:name", "password-0123456789", ("x/#", "read"))
    await add_service_account(app, "svc", "password-0123456789", ("a/#/b", "read"), ("ok/#", "readwrite"))
    [(a, password_a)] = await devices(1)
    await broker.connect(a, password_a, within=ENFORCED_WITHIN)  # the broker reloaded fine
    svc = await broker.connect("svc", "password-0123456789")
    svc.subscribe("ok/#")
    await asyncio.sleep(0.05)
    svc.publish("ok/1", b"fine")
    assert await until(lambda: payloads(svc) == {b"fine"})
    assert "bad:name" not in broker.mosquitto.target.password_file.read_text()
    warnings = [r.getMessage() for r in caplog.records if r.name == "iotistic.broker.sync"]
    assert any("'bad:name'" in w and "password_file separator" in w for w in warnings)
    assert any("'a/#/b'" in w for w in warnings)
    assert all("$7$" not in w for w in warnings)


async def test_the_files_belong_to_the_broker_and_are_not_rewritten_without_a_change(broker: Broker):
    target = broker.mosquitto.target
    assert target.group is None or all(
        (p.stat().st_mode & 0o777, p.stat().st_uid) == (0o640, 0) for p in (target.password_file, target.acl_file))
    inodes = (target.password_file.stat().st_ino, target.acl_file.stat().st_ino)
    assert broker.sync is not None
    passes = broker.sync.passes
    await asyncio.sleep(1.2)
    assert broker.sync.passes == passes  # the marker did not move: no read, no render
    result = await broker.sync.sync_once()
    assert not result.changed and result.signal is None
    assert (target.password_file.stat().st_ino, target.acl_file.stat().st_ino) == inodes


# The command -------------------------------------------------------------------------------------------------------

def _cli_env(app: Any, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DB_", "MOSQUITTO_"))}
    env.update(DATABASE_URL=app.state.ctx.settings.sqlalchemy_url, IOTISTIC_DATA_DIR=str(tmp_path / "data"))
    return env


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "iotistic.cli", "broker", "sync", *args]


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as err:
        return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=err)


async def test_cli_once_and_long_lived(app: Any, devices: Devices, tmp_path: Path):
    [(a, password_a)] = await devices(1)
    with PrivateMosquitto() as mosquitto:
        target = mosquitto.target
        paths = ["--password-file", str(target.password_file), "--acl-file", str(target.acl_file),
                 "--pid-file", str(target.pid_file)]
        if target.group is None:
            paths += ["--group", ""]
        env = _cli_env(app, tmp_path)

        # --once before the broker runs: writes the files, nothing to signal.
        done = await asyncio.to_thread(subprocess.run, _cli("--once", *paths), env=env, capture_output=True,
                                       text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert "1 MQTT account(s)" in done.stdout and "no pid file" in done.stdout
        assert "$7$" not in done.stdout + done.stderr
        mosquitto.start()
        assert "reloaded" in (await asyncio.to_thread(
            subprocess.run, _cli("--once", *paths), env=env, capture_output=True, text=True, timeout=60)).stdout

        both = await asyncio.to_thread(subprocess.run, _cli("--once", *paths, "--pid", "12345"), env=env,
                                       capture_output=True, text=True, timeout=60)
        assert both.returncode == 2 and "--pid or --pid-file" in both.stderr

        # Long-lived: a device registered while it runs can connect within 2 s; SIGTERM ends it cleanly.
        log = tmp_path / "sync.log"
        service = _spawn(_cli(*paths), env, log)
        probes = Broker(mosquitto)
        try:
            assert await until(lambda: b"broker sync started" in log.read_bytes(), within=30), log.read_text()
            await probes.connect(a, password_a)
            start = time.monotonic()
            [(b, password_b)] = await devices(1)
            await probes.connect(b, password_b, within=ENFORCED_WITHIN)
            assert time.monotonic() - start < ENFORCED_WITHIN
        finally:
            for probe in probes.probes:
                probe.stop()
            service.send_signal(signal.SIGTERM)
            await asyncio.to_thread(service.wait, 15)
        assert service.returncode == 0, log.read_text()
        assert "broker sync stopped" in log.read_text()
        assert "$7$" not in log.read_text()
