"""Ingest as a running thing: an MQTT service account feeding the pipeline, plus retention.

The subscription is shared (`$share/<group>/...`, MQTT v5) so several workers split the load, and the session
is persistent (clean start off, no expiry) under a stable client id: while a worker is stopped, the broker
queues its share of the readings and hands them over when it returns. The broker's in-flight window for this
client is `receive_maximum`; it bounds what sits in memory unacknowledged and is what lets a batch fill up.

A QoS 1 message is acknowledged only once it is committed. gmqtt can do that itself
(`optimistic_acknowledgement=False`), but only by running a coroutine per message and sending the PUBACK when it
returns; measured here that task per message cost more than everything else ingest does with it. So this client's
QoS 1 handler is replaced by `_AckAfterCommit`, which hands the message to the pipeline with a callback that sends
the PUBACK after the batch commits. It relies on internals of gmqtt 0.8 (the package handler's
`_handle_qos_1_publish_packet`, the client's `_connection` and its protocol's `write_data`); the pin in
pyproject.toml and the restart-without-loss tests guard it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
import socket
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from iotistic.cloud.services.license import LicenseService
from iotistic.core.broker_url import parse_broker_url
from iotistic.core.db import utcnow
from iotistic.core.settings import CloudSettings
from iotistic.core.tasks import cancel_and_wait
from iotistic.core.topics import INGEST_FILTERS
from iotistic.ingest.devices import DeviceDirectory
from iotistic.ingest.live import LiveBus
from iotistic.ingest.partitions import apply_retention, ensure_partitions, retention_days
from iotistic.ingest.pipeline import IngestPipeline
from iotistic.ingest.store import TelemetryStore

log = logging.getLogger(__name__)

RECEIVE_MAXIMUM = 20_000  # messages in flight to one worker: a few batches' worth
RETENTION_EVERY_SECONDS = 3600.0
SESSION_NEVER_EXPIRES = 0xFFFFFFFF
PARTITIONS_AHEAD = 2  # days made in advance, so a write at midnight does not wait for DDL


class _ClosedSocketWrites(logging.Filter):
    """After `stop()` gmqtt may try to acknowledge messages we deliberately left unacknowledged on a closed
    connection; it says so once per message. That is the intended outcome (the broker redelivers them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "WRITE TO CLOSED SOCKET" not in record.getMessage()


logging.getLogger("gmqtt.mqtt.protocol").addFilter(_ClosedSocketWrites())


class _AckAfterCommit:
    """Takes over a gmqtt client's QoS 1 deliveries: each goes to the pipeline with its PUBACK as the callback.

    The PUBACKs of a committed batch leave together: they are collected during one turn of the event loop and
    written with one system call (gmqtt would make one per message, which measured more than the decoding).
    A PUBACK is only sent on the connection the message came in on. After a reconnect the broker redelivers
    what we had not acknowledged (same session); the old callbacks then do nothing, and the redelivered copies
    are stored as no-ops (the readings' key) and acknowledged on the new connection.
    """

    def __init__(self, client: Any, pipeline: IngestPipeline) -> None:
        from gmqtt.mqtt.constants import MQTTCommands
        from gmqtt.mqtt.package import CommandWithMidPacket

        self.client = client
        self.pipeline = pipeline
        self._puback = functools.partial(CommandWithMidPacket.build_package, MQTTCommands.PUBACK, dup=False)
        self._pending: dict[Any, list[int]] = {}
        self._flush_scheduled = False
        client._package_handler._handle_qos_1_publish_packet = self._on_qos1

    def _on_qos1(self, mid: int, payload: bytes, topic: str, _properties: Any) -> None:
        self.pipeline.submit(topic, payload, functools.partial(self._ack, self.client._connection, mid))

    def _ack(self, connection: Any, mid: int) -> None:
        self._pending.setdefault(connection, []).append(mid)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        pending, self._pending = self._pending, {}
        for connection, mids in pending.items():
            if connection is not self.client._connection or connection.is_closing():
                continue  # that connection is gone: the broker redelivers these
            protocol = connection._protocol
            version = protocol.proto_ver
            protocol.write_data(b"".join(self._puback(mid, proto_ver=version) for mid in mids))


def default_client_id() -> str:
    return f"iotistic-ingest-{socket.gethostname()}"[:128]


class IngestService:
    def __init__(self, settings: CloudSettings, engine: AsyncEngine, live: LiveBus | None, *,
                 username: str, password: str, licenses: LicenseService | None = None,
                 client_id: str | None = None, shared: bool | None = None,
                 mqtt_version: int | None = None) -> None:
        self.settings = settings
        self.engine = engine
        self.broker = parse_broker_url(settings.mqtt_broker_url)
        self.username = username
        self.password = password
        self.client_id = client_id or settings.ingest_client_id or default_client_id()
        self.shared = settings.ingest_shared_subscription if shared is None else shared
        self.mqtt_version = mqtt_version
        self.licenses = licenses or LicenseService(settings.license_public_key_pem(), settings.license_key)
        self.store = TelemetryStore(engine)
        self.devices = DeviceDirectory(engine)
        self.live = live
        self.pipeline: IngestPipeline | None = None
        self._client: Any = None
        self._connected = asyncio.Event()
        self._retention_task: asyncio.Task[None] | None = None
        self._stopping = False

    def filters(self) -> list[str]:
        group = self.settings.ingest_share_group
        return [f"$share/{group}/{f}" if self.shared else f for f in INGEST_FILTERS]

    async def start(self, *, connect_timeout: float = 30.0) -> None:
        """Connect and subscribe. Raises when the broker refuses us or cannot be reached within the timeout."""
        from gmqtt import Client, Subscription
        from gmqtt.mqtt.constants import MQTTv50, MQTTv311

        await self.devices.reload()
        await self.run_retention()
        days = await self.refresh_retention()
        self.pipeline = IngestPipeline(self.store, self.devices, self.live, batch_size=self.settings.ingest_batch_size,
                                       flush_interval=self.settings.ingest_flush_ms / 1000, retention_days=days)
        self.pipeline.start()
        version = self.mqtt_version or (MQTTv50 if self.shared else MQTTv311)
        properties: dict[str, Any] = {}
        if version == MQTTv50:
            properties = {"session_expiry_interval": SESSION_NEVER_EXPIRES, "receive_maximum": RECEIVE_MAXIMUM}
        client = Client(self.client_id, clean_session=False, optimistic_acknowledgement=False, **properties)
        client.set_auth_credentials(self.username, self.password)
        client.set_config({"reconnect_retries": -1, "reconnect_delay": 2})
        pipeline = self.pipeline
        _AckAfterCommit(client, pipeline)

        def on_message(_client: Any, topic: str, payload: bytes, _qos: int, _properties: Any) -> None:
            pipeline.submit(topic, payload, None)  # QoS 0: nothing to acknowledge (QoS 1 goes to `acks`)

        subscriptions = [Subscription(f, qos=1) for f in self.filters()]

        def on_connect(_client: Any, _flags: Any, _rc: Any, _properties: Any) -> None:
            # Also after every reconnect: a broker that lost its state (no persistence) forgot our subscriptions.
            client.subscribe(subscriptions)
            self._connected.set()
            log.info("ingest: connected to %s as %s (client id %s)", self.broker, self.username, self.client_id)

        def on_disconnect(_client: Any, _packet: Any, _exc: Any = None) -> None:
            self._connected.clear()
            if not self._stopping:
                log.warning("ingest: disconnected from %s; reconnecting", self.broker)

        client.on_message = on_message
        client.on_connect = on_connect
        client.on_disconnect = on_disconnect
        self._client = client
        ssl = self.broker.tls
        await asyncio.wait_for(client.connect(self.broker.host, self.broker.port, ssl=ssl, version=version,
                                              keepalive=30), timeout=connect_timeout)
        self._retention_task = asyncio.create_task(self._retention_loop(), name="ingest-retention")

    async def stop(self) -> None:
        """Write and acknowledge what arrived, then leave; the persistent session keeps queueing for us."""
        self._stopping = True
        await cancel_and_wait(self._retention_task)
        if self.pipeline is not None:
            await self.pipeline.close()
        if self._client is not None:
            try:
                await asyncio.wait_for(self._client.disconnect(), timeout=10)
            except (TimeoutError, OSError) as exc:
                log.warning("ingest: disconnect did not complete cleanly: %s", type(exc).__name__)
        await self.devices.close()

    async def crash(self) -> None:
        """Die as a killed process would: drop the connection without writing or acknowledging anything.
        For tests of what the broker's persistent session guarantees; never used in normal operation."""
        self._stopping = True
        await cancel_and_wait(self._retention_task)
        if self.pipeline is not None:
            self.pipeline.abandon()
        if self._client is not None:
            self._client._is_active = False  # no reconnect
            self._client._connection._transport.abort()
            self._client = None
        await self.devices.close()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def wait_connected(self, seconds: float) -> None:
        await asyncio.wait_for(self._connected.wait(), seconds)

    async def refresh_retention(self) -> int:
        sessions = async_sessionmaker(self.engine)
        async with sessions() as session:
            state = await self.licenses.current(session)
        days = retention_days(state)
        if self.pipeline is not None:
            self.pipeline.retention_days = days
        return days

    async def run_retention(self, today: dt.date | None = None) -> int:
        """Drop what the plan no longer keeps; make the next days' partitions before readings need them."""
        days = await self.refresh_retention()
        today = today or utcnow().date()
        async with self.engine.begin() as conn:
            removed = await apply_retention(conn, today, days)
        self.store.forget_partitions()
        async with self.engine.begin() as conn:
            await ensure_partitions(conn, [today + dt.timedelta(days=n) for n in range(PARTITIONS_AHEAD + 1)])
        return removed

    async def _retention_loop(self) -> None:
        while True:
            await asyncio.sleep(RETENTION_EVERY_SECONDS)
            try:
                await self.run_retention()
            except Exception as exc:  # database away: try again next round
                log.warning("ingest: retention pass failed: %s", type(exc).__name__)
