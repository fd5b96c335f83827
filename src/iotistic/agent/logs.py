"""Container logs: a small in-memory ring for local viewers, and disk-backed batches for the cloud.

The runtime's log streams call `LogBuffer.append` (from any thread) with a `LogEntry` per line. Lines are
grouped into batches, and each batch becomes one "logs" item of the store's persistent outbox, which the cloud
sync ships in order (merging consecutive batches into larger NDJSON posts). The outbox is bounded (oldest
dropped first, counted) and survives restarts, so logs are not lost on reboot; only the lines of the batch still
being filled (at most `batch_interval` seconds' worth) are in memory, and they are written out on a clean stop.

The ring (the last `ring_size` lines) feeds `/v2/local/logs`: `subscribe()` yields the backlog, then live lines.
A slow subscriber loses its oldest unread lines rather than slowing the agent down.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from iotistic.agent.store import AgentStore

log = logging.getLogger(__name__)

#: The cloud's limits for one line (`iotistic.core.schemas.reports.LogLine`).
MAX_MESSAGE_CHARS = 16_000
MAX_SERVICE_CHARS = 64
OUTBOX_KIND = "logs"


def _clean(text: str, limit: int) -> str:
    """Text the cloud (and PostgreSQL) accepts: valid Unicode, no NUL, at most `limit` characters."""
    text = text.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One line of a service's output, as the runtime's log stream produces it."""

    timestamp: dt.datetime
    service_name: str | None
    message: str
    is_stderr: bool = False

    @classmethod
    def now(cls, service_name: str | None, message: str, is_stderr: bool = False) -> LogEntry:
        return cls(dt.datetime.now(dt.UTC), service_name, message, is_stderr)

    def to_wire(self) -> dict[str, Any]:
        """The NDJSON object the cloud's `POST /api/v1/device/{uuid}/logs` takes (a valid `LogLine`)."""
        ts = self.timestamp if self.timestamp.tzinfo else self.timestamp.replace(tzinfo=dt.UTC)
        line: dict[str, Any] = {"timestamp": ts.isoformat(), "message": _clean(self.message, MAX_MESSAGE_CHARS),
                                "isStderr": self.is_stderr}
        if self.service_name:
            line["serviceName"] = _clean(self.service_name, MAX_SERVICE_CHARS)
        return line

    @classmethod
    def from_wire(cls, line: dict[str, Any]) -> LogEntry:
        return cls(dt.datetime.fromisoformat(line["timestamp"]), line.get("serviceName"), line["message"],
                   bool(line.get("isStderr", False)))


class _Subscriber:
    def __init__(self, loop: asyncio.AbstractEventLoop, maxsize: int, service: str | None) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[LogEntry] = asyncio.Queue(maxsize)
        self.service = service
        self.lost = 0

    def offer(self, entry: LogEntry) -> None:
        """Runs in the subscriber's loop: a full queue drops its oldest line."""
        if self.queue.full():
            self.queue.get_nowait()
            self.lost += 1
        self.queue.put_nowait(entry)


class LogBuffer:
    """Batches lines into the outbox (if `store` is given and `persist`) and keeps a ring for local viewers.

    `on_batch` is called (from the appending thread) after a batch reached the outbox: give it the cloud
    sync's thread-safe `wake`.
    """

    def __init__(self, store: AgentStore | None, *, persist: bool = True, batch_lines: int = 500,
                 batch_bytes: int = 256 * 1024, batch_interval: float = 5.0, ring_size: int = 1000,
                 subscriber_queue: int = 1000, on_batch: Callable[[], None] | None = None) -> None:
        self._store = store if persist else None
        self.batch_lines = batch_lines
        self.batch_bytes = batch_bytes
        self.batch_interval = batch_interval
        self.on_batch = on_batch
        self._ring: deque[LogEntry] = deque(maxlen=ring_size)
        self._pending: list[dict[str, Any]] = []
        self._pending_bytes = 0
        self._lock = threading.Lock()
        self._subscribers: set[_Subscriber] = set()
        self._subscriber_queue = subscriber_queue
        self.lines_total = 0
        self.batches_written = 0
        self.lines_lost = 0  # could not be written to the outbox (store error)

    # --- input (any thread) --------------------------------------------------------------------------------
    def append(self, entry: LogEntry) -> None:
        self.extend((entry,))

    def extend(self, entries: Iterable[LogEntry]) -> None:
        full = False
        with self._lock:
            for entry in entries:
                self.lines_total += 1
                self._ring.append(entry)
                if self._store is not None:
                    wire = entry.to_wire()
                    self._pending.append(wire)
                    self._pending_bytes += len(wire["message"]) + 100
                    full = full or len(self._pending) >= self.batch_lines or self._pending_bytes >= self.batch_bytes
                for sub in self._subscribers:
                    if sub.service is None or sub.service == entry.service_name:
                        self._deliver(sub, entry)
        if full:
            self.flush()

    @staticmethod
    def _deliver(sub: _Subscriber, entry: LogEntry) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is sub.loop:
            sub.offer(entry)
        else:
            try:
                sub.loop.call_soon_threadsafe(sub.offer, entry)
            except RuntimeError:  # that loop is closed: the subscriber is gone
                pass

    # --- to the outbox -------------------------------------------------------------------------------------
    def flush(self) -> int:
        """Write the lines gathered so far as one outbox item; returns how many lines were written."""
        with self._lock:
            batch, self._pending, self._pending_bytes = self._pending, [], 0
        if not batch or self._store is None:
            return 0
        try:
            self._store.enqueue(OUTBOX_KIND, batch)
        except Exception:
            self.lines_lost += len(batch)
            log.exception("could not queue %d log lines", len(batch))
            return 0
        self.batches_written += 1
        if self.on_batch is not None:
            self.on_batch()
        return len(batch)

    async def run(self, stop: asyncio.Event) -> None:
        """Flush every `batch_interval` seconds until `stop`, then once more."""
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.batch_interval)
            except TimeoutError:
                pass
            try:
                await asyncio.to_thread(self.flush)
            except Exception:
                log.exception("log flush failed")
        self.flush()

    # --- local viewers -------------------------------------------------------------------------------------
    def recent(self, limit: int | None = None, service: str | None = None) -> list[LogEntry]:
        with self._lock:
            lines = [e for e in self._ring if service is None or e.service_name == service]
        return lines[-limit:] if limit else lines

    async def subscribe(self, *, backlog: bool = True, service: str | None = None) -> AsyncIterator[LogEntry]:
        """The ring's lines (if `backlog`), then every new line as it arrives, until the consumer stops."""
        sub = _Subscriber(asyncio.get_running_loop(), self._subscriber_queue, service)
        with self._lock:
            past = [e for e in self._ring if service is None or e.service_name == service] if backlog else []
            self._subscribers.add(sub)
        try:
            for entry in past:
                yield entry
            while True:
                yield await sub.queue.get()
        finally:
            with self._lock:
                self._subscribers.discard(sub)

    @property
    def subscriber_count(self) -> int:
        with self._lock:
            return len(self._subscribers)

    @property
    def pending_lines(self) -> int:
        with self._lock:
            return len(self._pending)
