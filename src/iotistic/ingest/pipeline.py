"""From MQTT messages to committed batches: the heart of ingest, independent of how messages arrive.

`submit(topic, payload, ack)` takes a message; `ack` is called once the message is durably stored, or at once
when it is dropped as bad. The MQTT side acknowledges a QoS 1 message only then, so whatever was not
acknowledged is redelivered by the broker after a crash or a restart, and nothing is lost. Messages wait in the
current batch until it holds `batch_size` messages or `flush_interval` has passed; one writer task commits
batches one after the other while the next one fills. A failed write (database away) is retried with backoff,
holding the acknowledgements: the broker stops sending once its in-flight window is full, which is the
back-pressure we want.

`submit` is synchronous on purpose: at tens of thousands of messages a second, a task or a future per message
would cost more than decoding and batching it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from iotistic.core.db import utcnow
from iotistic.core.schemas.telemetry import BadPayload
from iotistic.core.tasks import cancel_and_wait
from iotistic.ingest.devices import DeviceDirectory, Missing
from iotistic.ingest.live import LiveBus, LiveReading
from iotistic.ingest.messages import (
    LogsMessage,
    Message,
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

Ack = Callable[[], None]


@dataclass
class IngestStats:
    received: int = 0
    stored_readings: int = 0
    stored_messages: int = 0
    batches: int = 0
    write_failures: int = 0
    rejected: Counter[str] = field(default_factory=Counter)  # reason -> count
    last_batch_seconds: float = 0.0
    write_seconds: float = 0.0  # time spent committing batches, in all


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
        self._acks: list[Ack] = []
        self._live: list[LiveReading] = []
        self._full = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._lookups: set[asyncio.Task[None]] = set()
        # Messages of a device being looked up, in arrival order (its status changes must not swap places).
        self._waiting: dict[str, list[tuple[str, Message, dt.datetime, Ack | None]]] = {}
        self._warned: dict[str, float] = {}
        self._presence_written: dict[int, float] = {}
        self._oldest = utcnow()
        self._oldest_at = float("-inf")
        self._closing = False

    # -- lifecycle ------------------------------------------------------------------------------------------------
    def start(self) -> None:
        self._writer = asyncio.create_task(self._write_loop(), name="ingest-writer")

    async def close(self, wait_seconds: float = 30.0) -> None:
        """Stop taking messages and commit the pending batch, so what arrived so far gets acknowledged.

        Messages submitted from now on are neither stored nor acknowledged: the broker redelivers them later.
        """
        self._closing = True
        for task in list(self._lookups):
            await cancel_and_wait(task)
        self._full.set()
        if self._writer is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._writer), timeout=wait_seconds)
        except TimeoutError:
            log.warning("ingest: pending batch not written within %.0f s; the broker will redeliver it", wait_seconds)
        await cancel_and_wait(self._writer)
        self._writer = None

    def abandon(self) -> None:
        """Stop at once, dropping the pending batch unwritten and unacknowledged (a crash, for tests)."""
        self._closing = True
        for task in [*self._lookups, self._writer]:
            if task is not None:
                task.cancel()
        self._writer = None
        self._batch, self._acks, self._live = Batch(), [], []

    @property
    def pending(self) -> int:
        """Messages taken but not yet committed (nor acknowledged)."""
        return self._batch.messages

    # -- the hot path ---------------------------------------------------------------------------------------------
    def submit(self, topic: str, payload: bytes, ack: Ack | None) -> None:
        """Take one message; `ack` runs once it is committed, or at once when it is dropped."""
        if self._closing:
            return
        self.stats.received += 1
        now = utcnow()
        try:
            message = decode(topic, payload, now)
        except BadPayload as exc:
            self._reject(topic, "bad_payload", str(exc), ack)
            return
        uuid = message.device_uuid
        waiting = self._waiting.get(uuid)
        if waiting is not None:  # its device is being looked up: keep the device's messages in order
            waiting.append((topic, message, now, ack))
            return
        device_id = self.devices.cached(uuid)
        if isinstance(device_id, Missing):  # registered since the directory was read: one query, off the hot path
            self._waiting[uuid] = [(topic, message, now, ack)]
            task = asyncio.create_task(self._add_after_lookup(uuid))
            self._lookups.add(task)
            task.add_done_callback(self._lookups.discard)
            return
        self._add(topic, message, device_id, now, ack)

    async def _add_after_lookup(self, uuid: str) -> None:
        try:
            device_id = await self.devices.lookup(uuid)
        finally:
            waiting = self._waiting.pop(uuid, [])
        if not self._closing:
            for topic, message, now, ack in waiting:
                self._add(topic, message, device_id, now, ack)

    def _add(self, topic: str, message: Message, device_id: int | None, now: dt.datetime, ack: Ack | None) -> None:
        if device_id is None:
            self._reject(topic, "unknown_device", "device unknown or disabled", ack)
            return
        batch = self._batch
        if isinstance(message, SensorMessage):
            oldest = self._oldest_kept
            uuid = message.device_uuid
            streamed = self.live is not None
            for r in message.readings:
                if r.ts < oldest:
                    self.stats.rejected["expired"] += 1
                    continue
                batch.add_reading(device_id, r.metric, r.ts, r.value, r.unit)
                if streamed:
                    self._live.append(LiveReading(uuid, r.metric, r.ts, r.value, r.unit))
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
            batch.seen[device_id] = now  # written at most every PRESENCE_WRITE_SECONDS (see _commit_current)
        batch.messages += 1
        if ack is not None:
            self._acks.append(ack)
        if batch.messages >= self.batch_size:
            self._full.set()

    def _throttle_presence(self, batch: Batch) -> None:
        """Last contact is worth one UPDATE per device every PRESENCE_WRITE_SECONDS, not one per batch."""
        mono = time.monotonic()
        written = self._presence_written
        for device_id in [d for d in batch.seen if mono - written.get(d, float("-inf")) < PRESENCE_WRITE_SECONDS]:
            del batch.seen[device_id]
        for device_id in batch.seen:
            written[device_id] = mono

    @property
    def _oldest_kept(self) -> dt.datetime:
        """Readings older than this are outside the plan's retention (their partition may be gone already)."""
        mono = time.monotonic()
        if mono - self._oldest_at >= 1.0:
            self._oldest = utcnow() - dt.timedelta(days=self.retention_days)
            self._oldest_at = mono
        return self._oldest

    def _reject(self, topic: str, reason: str, detail: str, ack: Ack | None) -> None:
        """Count and drop (and acknowledge: a bad message redelivered stays bad)."""
        self.stats.rejected[reason] += 1
        if ack is not None:
            ack()
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
        batch, acks, live = self._batch, self._acks, self._live
        self._batch, self._acks, self._live = Batch(), [], []
        self._throttle_presence(batch)
        delay = 0.1
        while True:
            started = time.perf_counter()
            try:
                await self.store.write(batch)
                break
            except Exception as exc:
                self.stats.write_failures += 1
                first_line = str(exc).splitlines()[0][:200] if str(exc) else ""
                log.warning("ingest: writing a batch of %d messages failed (%s: %s); retrying in %.1f s",
                            batch.messages, type(exc).__name__, first_line, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        self.stats.last_batch_seconds = time.perf_counter() - started
        self.stats.write_seconds += self.stats.last_batch_seconds
        self.stats.batches += 1
        self.stats.stored_messages += batch.messages
        self.stats.stored_readings += len(batch.readings)
        for ack in acks:
            ack()
        if live and self.live is not None:
            try:
                await self.live.publish(live)
            except Exception as exc:  # the live view is best effort; the readings are stored
                log.warning("ingest: live stream publish failed: %s", type(exc).__name__)
