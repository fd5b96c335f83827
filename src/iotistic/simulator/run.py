"""Simulated devices on MQTT: one gmqtt client per device, logged in with that device's own credentials.

- `DeviceClient`: connect (MQTT 5 or 3.1.1, or auto: 5 first, then 3.1.1 for brokers that only speak that, such
  as the embedded one), persistent session (clean_session False), last will `offline` (retained, QoS 1) on the
  device's `status` topic and `online` (retained) once connected; QoS 1 publishes with at most `max_unacked`
  messages waiting for their PUBACK (capped by the broker's Receive Maximum); a clean `stop()` publishes
  `offline` itself (a clean DISCONNECT suppresses the will); `kill()` drops the connection abruptly, so the broker
  sends the will.
- `run_simulation(devices, interval_s, ...)`: every device publishes one BME688 sample (one QoS 1 message per
  metric on `iot/device/<uuid>/sensor/<metric>`) every interval, starts spread over the first interval so that
  many devices do not publish in lock-step, until `stop` is set or `duration_s` has passed.
- `publish_burst(devices, readings_per_device, ...)`: every device publishes its readings as fast as the broker
  acknowledges them (timestamps one `sample_step_s` apart, ending now, so they are distinct and in the past).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from gmqtt import Client, Message
from gmqtt.mqtt.constants import MQTTv50, MQTTv311
from gmqtt.mqtt.handler import MQTTConnectError
from gmqtt.storage import PersistentStorage

from iotistic.simulator.bme688 import METRICS, Bme688
from iotistic.simulator.provision import SimulatedDevice
from iotistic.simulator.wire import (
    STATUS_OFFLINE,
    STATUS_ONLINE,
    BrokerAddress,
    mqtt5_probe_connect,
    parse_broker_url,
    sample_messages,
    status_topic,
    version_from_connack,
)

log = logging.getLogger(__name__)

DEFAULT_MAX_UNACKED = 1000
DEFAULT_CONNECT_CONCURRENCY = 50
DEFAULT_CONNECT_TIMEOUT = 10.0
SESSION_EXPIRY_SECONDS = 3600  # MQTT 5: keep the session (clean start off) for an hour after a disconnect


class MqttVersion(StrEnum):
    auto = "auto"
    v5 = "5"
    v311 = "3.1.1"


class SimulatorError(Exception):
    """A simulated device could not do its job; the message is one line meant for people."""


@dataclass
class Counters:
    """What the simulated devices did, summed over all of them (one event loop: no locking needed)."""

    devices: int = 0
    connected: int = 0
    published: int = 0  # sensor readings handed to the client
    acked: int = 0  # sensor readings the broker acknowledged (PUBACK)
    errors: int = 0  # failed connects, lost connections, timed-out drains
    status_published: int = 0
    first_error: str | None = None

    def error(self, message: str) -> None:
        self.errors += 1
        if self.first_error is None:
            self.first_error = message
        log.warning("simulator: %s", message)

    @property
    def unacked(self) -> int:
        return self.published - self.acked

    def line(self) -> str:
        return (f"{self.connected}/{self.devices} connected, {self.published} published, {self.acked} acked, "
                f"{self.errors} error(s)")


class _AckWindow(PersistentStorage):
    """gmqtt's store of unacknowledged QoS 1 messages, counting the PUBACKs and telling when there is room."""

    def __init__(self, counters: Counters, limit: int) -> None:
        super().__init__()
        self.counters = counters
        self.limit = limit
        self.next_is_reading = True  # what the message being published is (set just before `publish`)
        self._readings: set[int] = set()
        self.room = asyncio.Event()
        self.room.set()

    def push_message(self, mid: int, raw_package: bytes) -> None:
        super().push_message(mid, raw_package)
        if self.next_is_reading:
            self._readings.add(mid)
        if len(self._messages) >= self.limit:
            self.room.clear()

    def remove_message_by_mid(self, mid: int) -> None:
        if mid in self._messages:
            if mid in self._readings:
                self._readings.discard(mid)
                self.counters.acked += 1
        super().remove_message_by_mid(mid)
        if len(self._messages) < self.limit:
            self.room.set()

    def clear(self) -> None:
        # The broker had no session for us: what was waiting for a PUBACK is lost.
        if self._readings:
            self.counters.error(f"{len(self._readings)} unacknowledged reading(s) lost with the broker session")
            self._readings.clear()
        super().clear()
        self.room.set()

    @property
    def pending(self) -> int:
        return len(self._messages)


class _ClosedBeforeConnack(Exception):
    pass


class _CoalescingTransport:
    """Wraps a connection's transport so that the packets written during one turn of the event loop leave in one
    `send()`: gmqtt writes every packet on its own, and one system call per ~100-byte PUBLISH cost more than
    everything else when a device publishes as fast as it can. `close()` flushes first; `abort()` does not."""

    def __init__(self, transport: Any) -> None:
        self._transport = transport
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            asyncio.get_running_loop().call_soon(self._flush)
        self._pending.append(bytes(data))

    def _flush(self) -> None:
        data, self._pending = b"".join(self._pending), []
        if data and not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:  # is_closing, abort, get_extra_info, ...
        return getattr(self._transport, name)


def _coalesce_writes(client: Any) -> None:
    """Route a gmqtt client's current connection through `_CoalescingTransport` (after each CONNACK: a reconnect
    makes a new connection)."""
    connection = client._connection  # gmqtt has no public hook for its transport
    if connection is None or isinstance(connection._transport, _CoalescingTransport):
        return
    wrapped = _CoalescingTransport(connection._transport)
    connection._transport = wrapped
    connection._protocol._transport = wrapped


async def detect_version(broker: BrokerAddress, timeout_s: float = DEFAULT_CONNECT_TIMEOUT) -> MqttVersion:
    """Which MQTT version the broker speaks: one anonymous MQTT 5 CONNECT (no will, no session) and its CONNACK.

    A broker that speaks only 3.1.1 (amqtt, the embedded broker) answers "unacceptable protocol version", or hangs
    up; an MQTT 5 broker answers in MQTT 5 (typically refusing the anonymous login). Raises SimulatorError when the
    broker cannot be reached or does not answer."""
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(broker.host, broker.port, ssl=broker.tls or None)
            try:
                writer.write(mqtt5_probe_connect(f"iotistic-probe-{os.getpid()}-{id(broker):x}"))
                await writer.drain()
                answer = await reader.read(64)
                if answer and version_from_connack(answer) == MqttVersion.v5:
                    writer.write(b"\xe0\x00")  # DISCONNECT
                    await writer.drain()
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
    except TimeoutError:
        raise SimulatorError(f"the MQTT broker at {broker} did not answer within {timeout_s:g} s") from None
    except OSError as exc:
        raise SimulatorError(f"cannot connect to {broker}: {exc.strerror or exc}") from None
    return MqttVersion(version_from_connack(answer))


class DeviceClient:
    """One simulated device's MQTT connection."""

    def __init__(self, device: SimulatedDevice, counters: Counters, *, broker: BrokerAddress | None = None,
                 version: MqttVersion = MqttVersion.auto, max_unacked: int = DEFAULT_MAX_UNACKED,
                 keepalive: int = 60, client_id: str | None = None) -> None:
        if max_unacked < 1:
            raise ValueError("max_unacked must be at least 1")
        self.device = device
        self.counters = counters
        self.broker = broker or parse_broker_url(device.broker_url)
        self.requested_version = version
        self.version: MqttVersion | None = None  # the one in use once connected
        self.max_unacked = max_unacked
        self.keepalive = keepalive
        self.client_id = client_id or f"sim-{device.uuid}"
        self.status_topic = status_topic(device.uuid)
        self.window = _AckWindow(counters, max_unacked)
        self._client: Any = None  # the connected gmqtt client
        self._attempt_closed: asyncio.Event | None = None
        self._stopping = False

    # connecting ---------------------------------------------------------------------------------------------------

    def _make_client(self, version: MqttVersion) -> Any:
        properties: dict[str, Any] = {}
        if version == MqttVersion.v5:
            properties["session_expiry_interval"] = SESSION_EXPIRY_SECONDS
        will = Message(self.status_topic, STATUS_OFFLINE, qos=1, retain=True)
        client = Client(self.client_id, clean_session=False, will_message=will, persistent_storage=self.window,
                        logger=log, **properties)
        client.set_auth_credentials(self.device.mqtt_username, self.device.mqtt_password)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        return client

    def _on_connect(self, client: Any, _flags: Any, _rc: Any, properties: Any) -> None:
        _coalesce_writes(client)
        maximum = (properties or {}).get("receive_maximum")
        if maximum:  # MQTT 5: never more in flight than the broker accepts (gmqtt keeps one id spare)
            value = maximum[0] if isinstance(maximum, list) else maximum
            self.window.limit = max(1, min(self.max_unacked, int(value) - 1))

    def _on_disconnect(self, client: Any, _packet: Any, _exc: Any = None) -> None:
        if client is not self._client:  # an attempt still waiting for its CONNACK, or one given up
            if self._attempt_closed is not None:
                self._attempt_closed.set()
            return
        if not self._stopping:
            self.counters.error(f"device {self.device.uuid}: connection to {self.broker} lost")

    async def _try_connect(self, version: MqttVersion, timeout_s: float) -> None:
        """Connect with this protocol version. Raises _ClosedBeforeConnack when the broker hangs up instead of
        answering (what a broker without MQTT 5 does), TimeoutError, OSError, or gmqtt's refused CONNACK."""
        client = self._make_client(version)
        self._attempt_closed = closed = asyncio.Event()
        connecting = asyncio.ensure_future(client.connect(
            self.broker.host, self.broker.port, ssl=self.broker.tls, keepalive=self.keepalive,
            version=MQTTv50 if version == MqttVersion.v5 else MQTTv311))
        hung_up = asyncio.ensure_future(closed.wait())
        try:
            done, _ = await asyncio.wait({connecting, hung_up}, timeout=timeout_s,
                                         return_when=asyncio.FIRST_COMPLETED)
            if connecting in done:
                connecting.result()
            elif hung_up in done:
                raise _ClosedBeforeConnack
            else:
                raise TimeoutError
        except BaseException:
            connecting.cancel()
            await self._abandon(client)
            raise
        finally:
            hung_up.cancel()
        self._client = client
        self.version = version

    async def connect(self, timeout_s: float = DEFAULT_CONNECT_TIMEOUT) -> None:
        """Connect and publish `online` (retained, QoS 1). Raises SimulatorError with a one-line reason.

        With version auto, asks the broker first which version it speaks (`detect_version`)."""
        version = self.requested_version
        if version == MqttVersion.auto:
            version = await detect_version(self.broker, timeout_s)
        failed = f"device {self.device.uuid} could not connect to {self.broker} (MQTT {version})"
        try:
            await self._try_connect(version, timeout_s)
        except _ClosedBeforeConnack:
            raise SimulatorError(f"{failed}: the broker closed the connection without answering") from None
        except TimeoutError:
            raise SimulatorError(f"{failed}: no answer within {timeout_s:g} s") from None
        except OSError as exc:
            raise SimulatorError(f"cannot connect to {self.broker}: {exc.strerror or exc}") from None
        except MQTTConnectError as exc:
            raise SimulatorError(f"{failed}: refused, {exc}") from None
        self.counters.connected += 1
        await self.publish_status(STATUS_ONLINE)

    async def _abandon(self, client: Any) -> None:
        client.stop_reconnect()
        with contextlib.suppress(Exception):
            client._is_active = False  # gmqtt has no public "give up" switch
            if client._connection is not None:
                client._connection._transport.abort()

    # publishing ---------------------------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._client is not None and bool(self._client.is_connected)

    async def publish(self, topic: str, payload: bytes, *, retain: bool = False, reading: bool = True) -> None:
        """Publish with QoS 1, first waiting while `max_unacked` messages wait for their PUBACK."""
        if self._client is None:
            raise SimulatorError(f"device {self.device.uuid} is not connected")
        while self.window.pending >= self.window.limit:
            self.window.room.clear()
            await self.window.room.wait()
        self.window.next_is_reading = reading
        self._client.publish(topic, payload, qos=1, retain=retain)
        if reading:
            self.counters.published += 1
        else:
            self.counters.status_published += 1

    async def publish_status(self, status: str) -> None:
        await self.publish(self.status_topic, status.encode(), retain=True, reading=False)

    async def drain(self, timeout_s: float) -> bool:
        """Wait until every published message is acknowledged; False if that took longer than `timeout_s`."""
        try:
            await asyncio.wait_for(self.window.wait_empty(), timeout_s)
            return True
        except TimeoutError:
            return False

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Publish `offline` (retained), wait for the acknowledgements, then disconnect cleanly."""
        client, self._client = self._client, None
        if client is None:
            return
        self._client = client
        try:
            if client.is_connected:
                await self.publish_status(STATUS_OFFLINE)
                if not await self.drain(timeout_s):
                    self.counters.error(f"device {self.device.uuid}: {self.window.pending} message(s) not "
                                        f"acknowledged within {timeout_s:g} s")
        finally:
            self._stopping = True
            self._client = None
            try:
                await asyncio.wait_for(client.disconnect(), 5)
            except Exception:  # the connection is gone either way
                await self._abandon(client)
            self.counters.connected -= 1

    def kill(self) -> None:
        """Drop the connection without DISCONNECT, as a crash or a pulled cable would: the broker sends the will."""
        client, self._client = self._client, None
        if client is None:
            return
        self._stopping = True
        client.stop_reconnect()
        client._is_active = False  # no reconnect
        client._connection._transport.abort()  # gmqtt has no public abrupt close
        self.counters.connected -= 1


# Many devices -----------------------------------------------------------------------------------------------------

def _broker_for(device: SimulatedDevice, override: str | None) -> BrokerAddress:
    try:
        return parse_broker_url(override or device.broker_url)
    except ValueError as exc:
        raise SimulatorError(str(exc)) from None


async def connect_all(devices: Sequence[SimulatedDevice], counters: Counters, *, broker_url: str | None = None,
                      version: MqttVersion = MqttVersion.auto, max_unacked: int = DEFAULT_MAX_UNACKED,
                      concurrency: int = DEFAULT_CONNECT_CONCURRENCY, timeout_s: float = DEFAULT_CONNECT_TIMEOUT,
                      ) -> list[DeviceClient]:
    """Connect every device (`concurrency` at a time); the clients that connected. Raises SimulatorError when
    none did (with the first reason); other failures are counted in `counters`."""
    counters.devices += len(devices)
    clients = [DeviceClient(d, counters, broker=_broker_for(d, broker_url), version=version,
                            max_unacked=max_unacked) for d in devices]
    if version == MqttVersion.auto:  # ask each broker once, not once per device
        detected = {b: await detect_version(b, timeout_s) for b in {c.broker for c in clients}}
        for c in clients:
            c.requested_version = detected[c.broker]
    semaphore = asyncio.Semaphore(concurrency)

    async def connect(client: DeviceClient) -> bool:
        async with semaphore:
            try:
                await client.connect(timeout_s)
                return True
            except SimulatorError as exc:
                counters.error(str(exc))
                return False

    results = await asyncio.gather(*(connect(c) for c in clients))
    connected = [c for c, ok in zip(clients, results, strict=True) if ok]
    if devices and not connected:
        raise SimulatorError(counters.first_error or "no device could connect")
    return connected


async def stop_all(clients: Sequence[DeviceClient], timeout_s: float = 10.0) -> None:
    await asyncio.gather(*(c.stop(timeout_s) for c in clients), return_exceptions=True)


StatusCallback = Callable[[Counters], None]


async def _report_every(counters: Counters, every: float, on_status: StatusCallback) -> None:
    while True:
        await asyncio.sleep(every)
        on_status(counters)


async def _run_device(client: DeviceClient, model: Bme688, offset_s: float, interval_s: float,
                      stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time() + offset_s
    tick = 0
    while not stop.is_set():
        due = start + tick * interval_s
        delay = due - loop.time()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            if stop.is_set():
                return
        now = dt.datetime.now(dt.UTC)
        for topic, payload in sample_messages(client.device.uuid, model.sample(now), now):
            await client.publish(topic, payload)
        # Behind schedule (a slow broker): skip the missed ticks rather than bursting to catch up.
        tick = max(tick + 1, math.floor((loop.time() - start) / interval_s) + 1)


async def run_simulation(
    devices: Sequence[SimulatedDevice], interval_s: float, *, duration_s: float | None = None,
    stop: asyncio.Event | None = None, broker_url: str | None = None, version: MqttVersion = MqttVersion.auto,
    max_unacked: int = DEFAULT_MAX_UNACKED, connect_concurrency: int = DEFAULT_CONNECT_CONCURRENCY,
    on_connected: Callable[[list[DeviceClient]], None] | None = None,
    on_status: StatusCallback | None = None, status_every_s: float = 5.0, counters: Counters | None = None,
) -> Counters:
    """Publish a BME688 sample from every device every `interval_s` until `stop` is set or `duration_s` passed;
    then every device publishes `offline` and disconnects. Returns the counts."""
    if interval_s <= 0:
        raise ValueError("interval_s must be positive")
    counters = counters or Counters()
    stop = stop or asyncio.Event()
    clients = await connect_all(devices, counters, broker_url=broker_url, version=version, max_unacked=max_unacked,
                                concurrency=connect_concurrency)
    if on_connected is not None:
        on_connected(clients)
    tasks = [asyncio.create_task(_run_device(c, Bme688(c.device.uuid), interval_s * i / len(clients), interval_s,
                                             stop), name=f"sim-{c.device.uuid}")
             for i, c in enumerate(clients)]
    reporter = (asyncio.create_task(_report_every(counters, status_every_s, on_status))
                if on_status is not None else None)
    try:
        if duration_s is None:
            await stop.wait()
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), duration_s)
    finally:
        stop.set()
        if reporter is not None:
            reporter.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):
                counters.error(f"a simulated device failed: {type(result).__name__}: {result}")
        await stop_all(clients)
    return counters


@dataclass(frozen=True)
class BurstResult:
    devices: int
    published: int
    acked: int
    errors: int
    connect_seconds: float
    publish_seconds: float  # from the first publish to the last PUBACK
    first_error: str | None = None

    @property
    def rate(self) -> float:
        """Acknowledged readings per second."""
        return self.acked / self.publish_seconds if self.publish_seconds > 0 else 0.0


def burst_timestamps(count: int, end: dt.datetime, step_s: float) -> list[dt.datetime]:
    """`count` times `step_s` apart, the last one at `end`."""
    return [end - dt.timedelta(seconds=step_s * (count - 1 - k)) for k in range(count)]


async def _burst_device(client: DeviceClient, readings: int, end: dt.datetime, step_s: float) -> None:
    model = Bme688(client.device.uuid)
    samples = math.ceil(readings / len(METRICS))
    left = readings
    for at in burst_timestamps(samples, end, step_s):
        messages = sample_messages(client.device.uuid, model.sample(at), at)
        for topic, payload in messages[:left]:
            await client.publish(topic, payload)
        left -= len(messages)


async def publish_burst(
    devices: Sequence[SimulatedDevice], readings_per_device: int, *, broker_url: str | None = None,
    version: MqttVersion = MqttVersion.auto, max_unacked: int = DEFAULT_MAX_UNACKED,
    connect_concurrency: int = DEFAULT_CONNECT_CONCURRENCY, sample_step_s: float = 1.0,
    end: dt.datetime | None = None, drain_timeout_s: float = 120.0,
) -> BurstResult:
    """Connect every device, publish `readings_per_device` sensor readings from each as fast as the broker
    acknowledges them (at most `max_unacked` unacknowledged per client), wait for the last PUBACKs, disconnect.

    A reading is one message (one metric); each device cycles through temperature, humidity, pressure and
    gas_resistance, one sample every `sample_step_s` seconds of simulated time ending at `end` (default now)."""
    if readings_per_device < 0:
        raise ValueError("readings_per_device must not be negative")
    counters = Counters()
    started = time.perf_counter()
    clients = await connect_all(devices, counters, broker_url=broker_url, version=version, max_unacked=max_unacked,
                                concurrency=connect_concurrency)
    connect_seconds = time.perf_counter() - started
    for client in clients:  # the retained `online` is not part of the measurement
        await client.drain(30)
    end = end or dt.datetime.now(dt.UTC)
    started = time.perf_counter()
    try:
        results = await asyncio.gather(*(_burst_device(c, readings_per_device, end, sample_step_s) for c in clients),
                                       return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):
                counters.error(f"a simulated device failed: {type(result).__name__}: {result}")
        drained = await asyncio.gather(*(c.drain(drain_timeout_s) for c in clients))
        publish_seconds = time.perf_counter() - started
        if not all(drained):
            counters.error(f"{counters.unacked} reading(s) not acknowledged within {drain_timeout_s:g} s")
    finally:
        await stop_all(clients)
    return BurstResult(devices=len(devices), published=counters.published, acked=counters.acked,
                       errors=counters.errors, connect_seconds=connect_seconds, publish_seconds=publish_seconds,
                       first_error=counters.first_error)

