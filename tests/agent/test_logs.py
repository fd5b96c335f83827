"""The log buffer: batches into the persistent outbox, the in-memory ring and live subscribers."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from pathlib import Path

import pytest

from iotistic.agent.logs import MAX_MESSAGE_CHARS, LogBuffer, LogEntry
from iotistic.agent.store import AgentStore
from iotistic.core.schemas.reports import LogLine

T0 = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


def entry(i: int, service: str = "web", message: str | None = None) -> LogEntry:
    return LogEntry(T0 + dt.timedelta(seconds=i), service, message if message is not None else f"line {i}")


@pytest.fixture
def store(tmp_path: Path):
    s = AgentStore(tmp_path / "agent.db")
    yield s
    s.close()


def _queued_messages(store: AgentStore) -> list[list[str]]:
    return [[line["message"] for line in batch] for _, kind, batch in store.peek() if kind == "logs"]


def test_lines_become_outbox_batches_that_survive_a_restart(tmp_path: Path):
    path = tmp_path / "agent.db"
    store = AgentStore(path)
    batches: list[int] = []
    buffer = LogBuffer(store, batch_lines=3, on_batch=lambda: batches.append(1))
    for i in range(7):
        buffer.append(entry(i))
    assert _queued_messages(store) == [["line 0", "line 1", "line 2"], ["line 3", "line 4", "line 5"]]
    assert buffer.pending_lines == 1 and len(batches) == 2
    assert buffer.flush() == 1 and buffer.flush() == 0
    store.close()

    store = AgentStore(path)
    assert _queued_messages(store)[-1] == ["line 6"]
    store.close()


def test_batches_are_bounded_in_size_too(store: AgentStore):
    buffer = LogBuffer(store, batch_lines=10_000, batch_bytes=10_000)
    for i in range(20):
        buffer.append(entry(i, message="x" * 1000))
    assert [len(batch) for batch in _queued_messages(store)] == [10, 10]


def test_wire_lines_are_what_the_cloud_accepts():
    naive = LogEntry(dt.datetime(2025, 1, 1, 12, 0), "s" * 100, "a\x00b\ud800c" + "x" * 20_000, is_stderr=True)
    wire = naive.to_wire()
    line = LogLine.model_validate(wire)
    assert line.timestamp.tzinfo is not None and line.is_stderr
    assert len(line.message) == MAX_MESSAGE_CHARS and line.message.endswith("\u2026")
    assert "\x00" not in line.message and line.message.startswith("a\ufffdb?c")
    assert line.service_name == "s" * 63 + "\u2026"
    assert LogEntry.from_wire(entry(1).to_wire()) == entry(1)
    assert "serviceName" not in LogEntry(T0, None, "host line").to_wire()


async def test_run_flushes_on_its_interval_and_when_stopped(store: AgentStore):
    buffer = LogBuffer(store, batch_interval=0.05)
    stop = asyncio.Event()
    task = asyncio.create_task(buffer.run(stop))
    buffer.append(entry(1))
    await asyncio.sleep(0.2)
    assert _queued_messages(store) == [["line 1"]]
    buffer.append(entry(2))
    stop.set()
    await asyncio.wait_for(task, 5)
    assert _queued_messages(store) == [["line 1"], ["line 2"]]


def test_local_mode_keeps_logs_in_memory_only(store: AgentStore):
    buffer = LogBuffer(store, persist=False, batch_lines=1)
    buffer.append(entry(1))
    assert buffer.flush() == 0 and store.outbox_size() == 0
    assert [e.message for e in buffer.recent()] == ["line 1"]


def test_the_ring_is_bounded_and_filterable(store: AgentStore):
    buffer = LogBuffer(store, ring_size=5)
    for i in range(8):
        buffer.append(entry(i, "web" if i % 2 else "db"))
    assert [e.message for e in buffer.recent()] == [f"line {i}" for i in range(3, 8)]
    assert [e.message for e in buffer.recent(limit=2)] == ["line 6", "line 7"]
    assert [e.message for e in buffer.recent(service="db")] == ["line 4", "line 6"]
    assert buffer.lines_total == 8


async def test_subscribers_get_the_backlog_then_live_lines_from_any_thread(store: AgentStore):
    buffer = LogBuffer(store)
    buffer.append(entry(0))
    buffer.append(entry(1, "db"))
    received: list[str] = []

    async def consume(service: str | None, count: int, out: list[str]) -> None:
        async for e in buffer.subscribe(service=service):
            out.append(e.message)
            if len(out) == count:
                return

    web_only: list[str] = []
    everything = asyncio.create_task(consume(None, 5, received))
    web = asyncio.create_task(consume("web", 3, web_only))
    await asyncio.sleep(0.05)
    assert buffer.subscriber_count == 2

    def produce() -> None:  # the runtime's log readers run in threads
        for i in range(2, 5):
            buffer.append(entry(i))

    thread = threading.Thread(target=produce)
    thread.start()
    thread.join()
    await asyncio.wait_for(asyncio.gather(everything, web), 5)
    assert received == [f"line {i}" for i in range(5)]
    assert web_only == ["line 0", "line 2", "line 3"]
    await asyncio.sleep(0)
    assert buffer.subscriber_count == 0


async def test_a_slow_subscriber_loses_its_oldest_lines_not_the_agent(store: AgentStore):
    buffer = LogBuffer(store, subscriber_queue=3)
    stream = buffer.subscribe(backlog=False)
    first = asyncio.ensure_future(stream.__anext__())
    await asyncio.sleep(0.01)
    for i in range(10):
        buffer.append(entry(i))
    got = [(await first).message]
    for _ in range(2):
        got.append((await stream.__anext__()).message)
    assert got[-1] == "line 9" and len(got) == 3
    await stream.aclose()
    assert buffer.subscriber_count == 0
