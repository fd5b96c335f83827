"""From decoded messages to committed batches: the heart of ingest, independent of how messages arrive.

`handle(topic, payload)` returns once the message is durably stored (or deliberately dropped), so the MQTT
side acknowledges a QoS 1 message only then: whatever was not acknowledged is redelivered by the broker after
a crash or a restart, and nothing is lost. Messages wait in the current batch until it holds `batch_size`
messages or `flush_interval` has passed; one writer task commits batches one after the other while the next
one fills. A failed write (database away) is retried with backoff, holding the acknowledgements: the broker
stops sending when its in-flight window is full, which is the back-pressure we want.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections import Counter
from dataclasses import dataclass, field

from iotistic.core.db import utcnow
from iotistic.core.schemas.telemetry import BadPayload
from iotistic.core.tasks import cancel_and_wait
from iotistic.ingest.devices import DeviceDirectory
from iotistic.ingest.live import LiveBus, LiveReading
from iotistic.ingest.messages import (
    LogsMessage,
    MetricsMessage,
    SensorMessage,
    StateMessage,
    StatusMessage,
    decode,
)
from iotistic.ingest.store import Batch, TelemetryStore

log = logging.getLogger(__name__)

BAD_PAYLOAD_LOG_SECONDS = 60.0
PRESENCE_WRITE_SECONDS = 10.0
_AGENT_METRICS = ("cpu", "memory", "memory_total", "storage", "storage_total", "temperature", "uptime")


@dataclass
class IngestStats:
    received: int = 0
    stored_readings: int = 0
    stored_messages: int = 0
    batches: int = 0
    write_failures: int = 0
    rejected: Counter[str] = field(default_factory=Counter)  # reason -> count
    last_batch_seconds: float = 0.0


class IngestPipeline:
    def __init__(self, store: TelemetryStore, devices: DeviceDirectory, live: LiveBus | None, *,
                 batch_size: int = 5000, flush_interval: float = 0.2, retention_days: int = 30) -> None:
        self.store = store
        self.devices = devices
        self.live = live
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.retention_days = retention_days
        self.stats = IngestStats()
        self._batch = Batch()
        self._done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._live: list[LiveReading] = []
        self._full = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._warned: dict[str, float] = {}
        self._closing = False
        self._released: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._presence_written: dict[int, float] = {}

    # -- lifecycle ------------------------------------------------------------------------------------------------
    def start(self) -> None:
        self._writer = asyncio.create_task(self._write_loop(), name="ingest-writer")

    async def close(self, wait_seconds: float = 30.0) -> None:
        """Stop taking messages and write the pending batch, so what arrived so far gets acknowledged.

        Messages arriving from now on are neither stored nor acknowledged: they wait in `handle` until
        `release()`, which the MQTT side calls after it disconnected, so the broker redelivers them later.
        """
        self._closing = True
        self._full.set()
        if self._writer is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._writer), timeout=wait_seconds)
        except TimeoutError:
            log.warning("ingest: pending batch not written within %.0f s; the broker will redeliver it", wait_seconds)
        await cancel_and_wait(self._writer)
        self._writer = None

    def release(self) -> None:
        """Let the handlers that arrived after `close()` return (their connection is gone: nothing is acked)."""
        if not self._released.done():
            self._released.set_result(None)

    # -- the hot path ---------------------------------------------------------------------------------------------
    async def handle(self, topic: str, payload: bytes) -> None:
        """Store one message; returns when it is committed, dropped as bad, or ingest is stopping."""
        if self._closing:
            await asyncio.shield(self._released)
            return
        self.stats.received += 1
        now = utcnow()
        try:
            message = decode(topic, payload, now)
        except BadPayload as exc:
            self._reject(topic, "bad_payload", str(exc))
            return
        device_id = await self.devices.lookup(message.device_uuid)
        if self._closing:  # closed while we looked the device up: the writer is gone
            await asyncio.shield(self._released)
            return
        if device_id is None:
            self._reject(topic, "unknown_device", "device unknown or disabled")
            return
        batch = self._batch
        if isinstance(message, SensorMessage):
            oldest = now - dt.timedelta(days=self.retention_days)
            readings = [r for r in message.readings if r.ts >= oldest]
            if len(readings) < len(message.readings):
                self._reject(topic, "expired", f"reading older than the plan's {self.retention_days}-day retention")
            for r in readings:
                batch.add_reading(device_id, r.metric, r.ts, r.value, r.unit)
                self._live.append(LiveReading(message.device_uuid, r.metric, r.ts, r.value, r.unit))
        elif isinstance(message, MetricsMessage):
            m = message.metrics
            batch.metrics.append((device_id, m, now))
            at = m.recorded_at or now
            for name in _AGENT_METRICS:
                value = getattr(m, name)
                if value is not None:
                    self._live.append(LiveReading(message.device_uuid, f"system.{name}", at, float(value)))
        elif isinstance(message, StateMessage):
            batch.states.append((device_id, message.report))
        elif isinstance(message, LogsMessage):
            batch.logs.append((device_id, message.lines))
        elif isinstance(message, StatusMessage):
            batch.statuses[device_id] = (message.online, now)
        if not (isinstance(message, StatusMessage) and not message.online):
            self._note_presence(batch, device_id, now)
        batch.messages += 1
        if batch.messages >= self.batch_size:
            self._full.set()
        done = self._done
        await asyncio.shield(done)  # a cancelled handler (connection lost) must not cancel the batch

    def _note_presence(self, batch: Batch, device_id: int, now: dt.datetime) -> None:
        mono = time.monotonic()
        if mono - self._presence_written.get(device_id, float("-inf")) >= PRESENCE_WRITE_SECONDS:
            self._presence_written[device_id] = mono
            batch.seen[device_id] = now

    def _reject(self, topic: str, reason: str, detail: str) -> None:
        self.stats.rejected[reason] += 1
        parts = topic.split("/", 3)
        who = parts[2] if len(parts) > 2 else topic
        now = time.monotonic()
        if now - self._warned.get(who, float("-inf")) >= BAD_PAYLOAD_LOG_SECONDS:
            self._warned[who] = now
            if len(self._warned) > 100_000:  # bounded: forget the oldest half
                for key in list(self._warned)[:50_000]:
                    del self._warned[key]
            log.warning("ingest: dropped message on %s (%s: %s); further drops of this device are counted, "
                        "logged again in %.0f s", topic[:200], reason, detail, BAD_PAYLOAD_LOG_SECONDS)

    # -- the writer -----------------------------------------------------------------------------------------------
    async def _write_loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._full.wait(), timeout=self.flush_interval)
            except TimeoutError:
                pass
            self._full.clear()
            if self._batch.messages:
                await self._commit_current()
            if self._closing and not self._batch.messages:
                return

    async def _commit_current(self) -> None:
        batch, done, live = self._batch, self._done, self._live
        self._batch, self._live = Batch(), []
        self._done = asyncio.get_running_loop().create_future()
        delay = 0.1
        while True:
            started = time.perf_counter()
            try:
                await self.store.write(batch)
                break
            except Exception as exc:
                self.stats.write_failures += 1
                log.warning("ingest: writing a batch of %d messages failed (%s: %s); retrying in %.1f s",
                            batch.messages, type(exc).__name__, str(exc).splitlines()[0][:200] if str(exc) else "",
                            delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        self.stats.last_batch_seconds = time.perf_counter() - started
        self.stats.batches += 1
        self.stats.stored_messages += batch.messages
        self.stats.stored_readings += len(batch.readings)
        done.set_result(None)
        if live and self.live is not None:
            try:
                await self.live.publish(live)
            except Exception as exc:  # the live view is best effort; the readings are stored
                log.warning("ingest: live stream publish failed: %s", type(exc).__name__)
