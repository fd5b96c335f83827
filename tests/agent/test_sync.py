"""The cloud sync against the real cloud API: ETag polls, throttled reports, metrics, logs, the outbox through
an outage and an agent restart, refusals and revoked credentials. Jitter and backoff are tested as pure functions.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import socket
import time
from collections import namedtuple
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from iotistic.agent.logs import LogBuffer, LogEntry
from iotistic.agent.store import AgentStore
from iotistic.agent.sync.backoff import backoff_delay, jittered
from iotistic.agent.sync.client import CloudSync, SyncStatus, TargetDocument, load_target, read_status
from iotistic.agent.sync.http import CloudRejected, CloudUnauthorized, CloudUnavailable
from iotistic.agent.sync.metrics import collect_metrics, read_temperature
from iotistic.core.schemas.reports import Metrics

pytest_plugins = ["tests.agent.conftest_cloud"]

TARGET = {"apps": {"1": {"appId": 1, "appName": "web", "services": [
    {"serviceId": 1, "serviceName": "nginx", "config": {"image": "nginx:1.27"}}]}}, "config": {"LOG_LEVEL": "info"}}


def state(n: int, status: str = "running") -> dict[str, Any]:
    return {"status": "idle", "appliedVersion": n, "apps": {"1": {"appId": 1, "appName": "web", "services": [
        {"serviceName": "nginx", "image": "nginx:1.27", "status": status}]}}}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def eventually(check: Callable[[], Awaitable[bool] | bool], within: float = 15.0, what: str = "") -> None:
    deadline = time.monotonic() + within
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        await asyncio.sleep(0.05)


def _sync(device: Any, store: AgentStore | None = None, **settings: Any) -> CloudSync:
    config = device.settings.model_copy(update=settings)
    return CloudSync(config, store or device.store, device.identity,
                     metrics=lambda path, sample: {"cpu": 1.0, "uptime": 5.0})


def _reported(cloud: Any) -> list[dict[str, Any]]:
    """State reports the cloud accepted, in arrival order (metrics-only reports left out)."""
    out = []
    for call in cloud.device_calls("PATCH", "/state"):
        (report,) = call.json().values()
        if call.status == 204 and "metrics" not in report:
            out.append(report)
    return out


# --- pure timing rules ------------------------------------------------------------------------------------------
def test_jitter_stays_within_its_band_and_averages_the_interval():
    rng = random.Random(7)
    samples = [jittered(60, 0.2, rng) for _ in range(5000)]
    assert all(48 <= s <= 72 for s in samples)
    assert abs(sum(samples) / len(samples) - 60) < 1
    assert max(samples) - min(samples) > 20  # actually spread
    assert jittered(60, 0, rng) == 60
    with pytest.raises(ValueError):
        jittered(60, 1.0)


@pytest.mark.parametrize(("failures", "ceiling"), [(1, 2), (2, 4), (3, 8), (5, 32), (8, 256), (9, 300), (50, 300)])
def test_backoff_doubles_up_to_the_cap_with_jitter(failures, ceiling):
    rng = random.Random(failures)
    delays = [backoff_delay(failures, 2, 300, rng) for _ in range(500)]
    assert all(ceiling / 2 <= d <= ceiling for d in delays)
    assert len(set(delays)) > 1


def test_backoff_without_failures_is_zero_and_never_overflows():
    assert backoff_delay(0, 2, 300) == 0
    assert 150 <= backoff_delay(10**6, 2, 300) <= 300


# --- target state -----------------------------------------------------------------------------------------------
async def test_poll_gets_200_then_304_and_picks_up_a_new_deploy(device, admin, cloud):
    uuid = device.identity.uuid
    async with _sync(device) as sync:
        first = await sync.poll_target()
        assert isinstance(first, TargetDocument) and first.version == 0 and first.document["apps"] == {}
        assert await sync.poll_target() is None
        polls = cloud.device_calls("GET", f"/{uuid}/state")
        assert [c.status for c in polls] == [200, 304]
        assert "if-none-match" not in polls[0].headers and polls[1].headers["if-none-match"] == f'"{first.etag}"'

        version = await admin.deploy(uuid, TARGET)
        new = await sync.poll_target()
        assert new is not None and new.version == version == 1
        assert new.document == TARGET | {"apps": {"1": new.document["apps"]["1"]}}
        assert new.state.apps["1"].services[0].config.image == "nginx:1.27"
        assert new.etag != first.etag
        assert await sync.poll_target() is None
        assert sync.status().target_version == 1

    # After a restart the stored target and ETag are used: still 304, and the target is known without a poll.
    store = AgentStore(device.settings.store_path)
    try:
        assert load_target(store) == new
        async with _sync(device, store) as sync:
            assert sync.stored_target() == new
            assert await sync.poll_target() is None
    finally:
        store.close()


async def test_bad_replies_are_errors_and_never_replace_the_stored_target(device):
    replies = iter([
        httpx.Response(200, json={device.identity.uuid: {"apps": {"x": {}}, "config": {}, "version": 9}}),
        httpx.Response(200, json={"someone-else": {}}),
        httpx.Response(503, json={"error": "unavailable", "message": "database is restarting"}),
    ])
    mock = httpx.AsyncClient(base_url="http://cloud.test", transport=httpx.MockTransport(lambda r: next(replies)))
    sync = CloudSync(device.settings, device.store, device.identity, http=mock)
    with pytest.raises(CloudRejected, match="target refused"):
        await sync.poll_target()
    with pytest.raises(CloudRejected, match="no versioned target"):
        await sync.poll_target()
    with pytest.raises(CloudUnavailable, match="503: database is restarting"):
        await sync.poll_target()
    assert load_target(device.store) is None
    status = sync.status()
    assert not status.online and status.consecutive_failures == 1 and "503" in status.last_error
    await mock.aclose()


async def test_every_request_has_a_timeout(device):
    """A cloud that accepts connections and never answers costs one timeout, not a hung agent."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        settings = device.settings.model_copy(update={"cloud_api_endpoint": url, "http_timeout": 0.3})
        async with CloudSync(settings, device.store, device.identity) as sync:
            started = time.monotonic()
            with pytest.raises(CloudUnavailable, match="timed out"):
                await sync.poll_target()
            assert time.monotonic() - started < 2


# --- reports ----------------------------------------------------------------------------------------------------
async def test_reports_are_sent_only_on_change_and_throttled(device, admin, cloud):
    clock = Clock()
    config = device.settings.model_copy(update={"report_throttle": 10})
    async with CloudSync(config, device.store, device.identity, clock=clock) as sync:
        assert await sync.report(state(1)) is True  # first: queued at once
        assert await sync.report(state(1)) is False  # unchanged: nothing
        assert await sync.report(state(2)) is True  # changed, but within 10 s: held back
        assert await sync.report(state(3)) is True  # ... and replaced by a newer state
        assert device.store.outbox_size() == 1
        assert await sync.flush_outbox() == 1
        clock.now += 9.9
        assert await sync.flush_outbox() == 0
        clock.now += 0.1
        assert await sync.flush_outbox() == 1
        assert await sync.report(state(3)) is False
        assert [r["appliedVersion"] for r in _reported(cloud)] == [1, 3]  # state 2 never went out
        current = await admin.current_state(device.identity.uuid)
        assert current["appliedVersion"] == 3 and current["apps"]["1"]["services"][0]["status"] == "running"

        # Going back to the reported state cancels a held-back one.
        clock.now += 1
        assert await sync.report(state(4)) is True
        assert await sync.report(state(3)) is False
        clock.now += 20
        assert await sync.flush_outbox() == 0
        assert sync.last_report is not None and sync.last_report["appliedVersion"] == 3

    # The last reported state is remembered across a restart: the same state is not sent again.
    async with CloudSync(config, device.store, device.identity, clock=clock) as sync:
        assert await sync.report(state(3)) is False


async def test_a_report_the_cloud_would_refuse_is_refused_here(device):
    async with _sync(device) as sync:
        with pytest.raises(ValueError):
            await sync.report({"status": "idle", "unknownField": 1})
        with pytest.raises(ValueError):
            await sync.report({"metrics": {"cpu": 250}})
    assert device.store.outbox_size() == 0


def test_metrics_have_the_clouds_shape(tmp_path: Path):
    collect_metrics(tmp_path)  # primes the CPU counter
    metrics = collect_metrics(tmp_path / "not" / "yet" / "created")
    assert {"cpu", "memory", "memoryTotal", "storage", "storageTotal", "uptime"} <= set(metrics)
    assert set(metrics) <= {"cpu", "memory", "memoryTotal", "storage", "storageTotal", "uptime", "temperature"}
    assert all(isinstance(v, float) for v in metrics.values())
    assert 0 <= metrics["cpu"] <= 100
    assert 0 < metrics["memory"] <= metrics["memoryTotal"]
    assert 0 < metrics["storage"] <= metrics["storageTotal"]
    assert metrics["uptime"] > 0
    Metrics.model_validate(metrics)


def test_temperature_comes_from_the_cpu_sensor_when_there_is_one():
    T = namedtuple("T", "label current high critical")
    assert read_temperature({}) is None
    assert read_temperature({"nvme": [T("", 41.0, None, None)],
                             "cpu_thermal": [T("", 52.34, None, None)]}) == 52.3
    assert read_temperature({"coretemp": [T("Package", 60.0, 0, 0), T("Core 0", 64.5, 0, 0)]}) == 64.5
    assert read_temperature({"acpitz": [T("", -273.0, 0, 0)], "nvme": [T("", 38.0, 0, 0)]}) == 38.0
    assert read_temperature({"broken": [T("", 3000.0, 0, 0)]}) is None


async def test_metrics_reports_reach_the_cloud(device, admin):
    uuid = device.identity.uuid
    async with CloudSync(device.settings, device.store, device.identity) as sync:  # real psutil
        report = await sync.report_metrics()
        assert await sync.flush_outbox() == 1
    assert report["agentVersion"] and report["osVersion"]
    (row,) = await admin.metrics(uuid)
    assert row["cpu"] == report["metrics"]["cpu"] and row["memoryTotal"] == report["metrics"]["memoryTotal"]
    assert (await admin.device(uuid))["agentVersion"] == report["agentVersion"]


# --- logs -------------------------------------------------------------------------------------------------------
async def test_log_batches_are_merged_into_one_post_in_order(device, admin, cloud):
    t0 = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    async with _sync(device) as sync:
        buffer = LogBuffer(device.store, batch_lines=2, on_batch=sync.wake)
        for i in range(5):
            buffer.append(LogEntry(t0 + dt.timedelta(seconds=i), "web", f"line {i}", is_stderr=i == 3))
        buffer.flush()
        assert device.store.outbox_size() == 3
        assert await sync.flush_outbox() == 3
    (post,) = cloud.device_calls("POST", "/logs")
    assert post.status == 200 and post.headers["content-type"] == "application/x-ndjson"
    assert [line["message"] for line in post.ndjson()] == [f"line {i}" for i in range(5)]
    logs = await admin.logs(device.identity.uuid)
    assert [(entry["message"], entry["serviceName"], entry["isStderr"]) for entry in logs] == [
        (f"line {i}", "web", i == 3) for i in range(5)]


async def test_refused_items_are_dropped_and_counted_and_the_rest_delivered(device, admin, cloud):
    store = device.store
    async with _sync(device) as sync:
        await sync.report(state(1))
        store.enqueue("report", {"appliedVersion": -5})  # the cloud refuses it (422)
        store.enqueue("logs", [{"timestamp": "2025-01-01T00:00:00+00:00", "message": "good 1"}])
        store.enqueue("logs", [{"message": "no timestamp"}])  # a bad batch inside a merged post
        store.enqueue("logs", [{"timestamp": "2025-01-01T00:00:01+00:00", "message": "good 2"}])
        await sync.report(state(2))
        assert await sync.flush_outbox() == 4
        assert store.outbox_size() == 0 and sync.status().rejected == 2
        assert sync.status().online
    assert [c.status for c in cloud.device_calls("PATCH", "/state")] == [204, 422, 204]
    assert [r["appliedVersion"] for r in _reported(cloud)] == [1, 2]
    assert [e["message"] for e in await admin.logs(device.identity.uuid)] == ["good 1", "good 2"]


# --- outages ----------------------------------------------------------------------------------------------------
async def test_a_cloud_outage_loses_no_queued_report_or_log(device, admin, cloud):
    """Stop the cloud, keep reporting and logging (the agent does not crash or stall), start the cloud again on
    the same port: every report and log line arrives, in order."""
    sync = _sync(device)
    logs = LogBuffer(device.store, batch_interval=0.1, on_batch=sync.wake)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(sync.run(stop)), asyncio.create_task(logs.run(stop))]
    t0 = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    try:
        await sync.report(state(0))
        await eventually(lambda: device.store.outbox_size() == 0 and len(_reported(cloud)) == 1, what="first report")

        cloud.stop()
        for i in range(1, 9):
            await sync.report(state(i, "running" if i % 2 else "stopped"))
            logs.append(LogEntry(t0 + dt.timedelta(seconds=i), "web", f"during outage {i}"))
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)
        assert not any(t.done() for t in tasks)  # still running
        assert device.store.outbox_size() >= 9  # 8 reports and at least one log batch wait
        status = sync.status()
        assert not status.online and status.last_error and status.outbox_size >= 9

        cloud.start()
        await eventually(lambda: device.store.outbox_size() == 0, what="outbox drained")
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
        await sync.aclose()

    assert [r["appliedVersion"] for r in _reported(cloud)] == list(range(9))
    messages = [e["message"] for e in await admin.logs(device.identity.uuid)]
    assert messages == [f"during outage {i}" for i in range(1, 9)]
    current = await admin.current_state(device.identity.uuid)
    assert current["appliedVersion"] == 8 and current["apps"]["1"]["services"][0]["status"] == "stopped"
    assert sync.status().online and sync.status().outbox_dropped == 0


async def test_queued_reports_survive_an_agent_restart_during_an_outage(device, cloud):
    cloud.stop()
    sync = _sync(device, report_throttle=30)
    await sync.report(state(1))
    await sync.report(state(2))  # held back by the throttle ...
    stop = asyncio.Event()
    task = asyncio.create_task(sync.run(stop))
    await asyncio.sleep(0.2)
    stop.set()
    await asyncio.wait_for(task, 10)  # ... and queued when the agent stops
    await sync.aclose()
    device.store.close()

    store = AgentStore(device.settings.store_path)  # the agent starts again
    device.store = store
    assert [p.get("appliedVersion") for _, k, p in store.peek() if k == "report" and "metrics" not in p] == [1, 2]
    cloud.start()
    async with _sync(device, store) as sync:
        await sync.flush_outbox()
    assert [r["appliedVersion"] for r in _reported(cloud)] == [1, 2]


async def test_a_full_outbox_drops_the_oldest_and_counts_them(device, cloud):
    device.store.close()
    store = AgentStore(device.settings.store_path, outbox_max_items=10)
    device.store = store
    cloud.stop()
    async with _sync(device, store) as sync:
        for i in range(15):
            await sync.report(state(i))
        assert store.outbox_size() == 10
        assert sync.status().outbox_dropped == 5
        cloud.start()
        assert await sync.flush_outbox() == 10
    assert [r["appliedVersion"] for r in _reported(cloud)] == list(range(5, 15))


# --- credentials ------------------------------------------------------------------------------------------------
async def test_revoked_credentials_are_reported_clearly_and_not_hammered(device, admin, cloud, caplog):
    uuid = device.identity.uuid
    await admin.set_status(uuid, "disabled")
    sync = _sync(device, poll_interval=1, backoff_base=0.05, backoff_max=1.0)
    with pytest.raises(CloudUnauthorized):
        await sync.poll_target()
    status = sync.status()
    assert status.unauthorized and not status.online and "401" in status.last_error

    stop = asyncio.Event()
    task = asyncio.create_task(sync.run(stop))
    await sync.report(state(1))
    await asyncio.sleep(1.5)
    polls = [c for c in cloud.device_calls("GET", f"/{uuid}/state") if c.status == 401]
    assert 2 <= len(polls) <= 4  # about one a second (backoff_max), not one every few milliseconds
    assert device.store.outbox_size() >= 1  # the report waits; nothing is dropped
    assert sum("refuses this device's credentials" in r.getMessage() for r in caplog.records) == 1

    await admin.set_status(uuid, "active")  # an operator re-enables the device
    await eventually(lambda: sync.status().online and device.store.outbox_size() == 0, what="recovery")
    assert not sync.status().unauthorized
    stop.set()
    await asyncio.wait_for(task, 10)
    await sync.aclose()
    assert [r["appliedVersion"] for r in _reported(cloud)] == [1]


# --- the loop ---------------------------------------------------------------------------------------------------
async def test_run_hands_new_targets_over_and_polls_on_request(device, admin):
    seen: list[int] = []

    async def on_target(target: TargetDocument) -> None:
        seen.append(target.version)
        if target.version == 0:
            raise RuntimeError("a broken handler does not stop the loop")

    sync = _sync(device, poll_interval=3600)
    stop = asyncio.Event()
    task = asyncio.create_task(sync.run(stop, on_target))
    try:
        await eventually(lambda: seen == [0], what="first target")
        await admin.deploy(device.identity.uuid, TARGET)
        sync.poll_soon()
        await eventually(lambda: seen == [0, 1], within=5, what="target after poll_soon")
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await sync.aclose()


async def test_status_snapshot_is_persisted_for_the_cli(device):
    async with _sync(device) as sync:
        await sync.poll_target()
        await sync.report(state(1))
        status = sync.status()
        assert status.online and status.last_sync_at and status.last_poll_at and status.outbox_size == 1
        stop = asyncio.Event()
        stop.set()
        await sync.run(stop)
    saved = read_status(device.store)
    assert saved is not None
    assert saved["uuid"] == device.identity.uuid and saved["online"] is True
    assert set(saved) == set(SyncStatus("", "").as_dict())
    assert device.identity.device_api_key not in str(saved)
