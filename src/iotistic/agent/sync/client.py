"""The cloud sync: polls the target state, reports current state and metrics, ships logs, survives outages.

The device <-> cloud contract (ARCHITECTURE.md):

- Target: `GET /api/v1/device/{uuid}/state` with `If-None-Match` -> 304, or 200 `{uuid: {apps, config, version}}`
  with an `ETag`. Polled every `poll_interval` +/- jitter; errors back off exponentially (jittered too).
- Reports: `PATCH /api/v1/device/state` with `{uuid: DeviceReport}`. A state report is queued only when the
  state changed since the last one, and at most once per `report_throttle` seconds (the newest state wins
  within a window). Metrics go as their own reports every `metrics_interval` seconds.
- Logs: `POST /api/v1/device/{uuid}/logs`, NDJSON; consecutive batches are merged into one post.

Everything sent goes through the store's persistent outbox first, and leaves it only once the cloud accepted it,
oldest first: an outage (or a reboot during one) loses nothing unless the outbox overflows, in which case the
oldest items are dropped and counted. An item the cloud refuses outright (4xx other than 401/403/429) is dropped
and counted too, so one bad item can never block the queue. 401/403 means the device's credentials were
revoked (or the device deleted or disabled): it is reported once, clearly, and retried only at the slowest
rate; the agent keeps running its last target meanwhile.

Every request has a timeout and every loop catches its errors: the cloud being away never stops the agent.

Transport (MQTT or HTTP). With MQTT credentials from registration (and MQTT_ENABLED not false) an `MqttLink`
(`iotistic.agent.sync.mqtt`) keeps a connection to the broker. The outbox stays the single queue for everything,
and the choice is made per item, at delivery, oldest first: a report goes over MQTT (QoS 1, acknowledged by the
broker) when the link is connected; when it is not, or the broker does not acknowledge the item in time, that
same item goes over HTTP at once, exactly as without MQTT. An item leaves the outbox only after one transport
acknowledged it, and is handed to one transport at a time (gmqtt keeps no copy to replay), so nothing is lost
and nothing is sent twice by design. What remains is the at-least-once window every acknowledged protocol has,
HTTP included: an acknowledgement lost (or later than MQTT_ACK_TIMEOUT_SECONDS) after the message was accepted
means it is sent again. Log batches always go over HTTP. While HTTP backs off
after failures, reports at the head of the outbox still go over MQTT (a log batch ahead of them waits for HTTP,
and so do the reports behind it: order is kept). A metrics report carries `recordedAt`, the time it was measured.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

import iotistic
from iotistic.agent.identity import os_version, recover_key_rotation, rotate_device_key
from iotistic.agent.logs import OUTBOX_KIND as LOGS_KIND
from iotistic.agent.logs import LogEntry
from iotistic.agent.store import AgentStore, Identity
from iotistic.agent.sync.backoff import backoff_delay, jittered
from iotistic.agent.sync.http import (
    CloudError,
    CloudRejected,
    CloudUnauthorized,
    CloudUnavailable,
    make_client,
    send,
)
from iotistic.agent.sync.metrics import collect_metrics
from iotistic.agent.sync.mqtt import MqttLink, MqttNotDelivered, mqtt_endpoint
from iotistic.core.schemas.reports import DeviceReport
from iotistic.core.schemas.target_state import TargetState
from iotistic.core.settings import describe_validation_error

if TYPE_CHECKING:
    import httpx

    from iotistic.agent.settings import AgentSettings

log = logging.getLogger(__name__)

REPORT_KIND = "report"
TARGET_KEY = "target"
ETAG_KEY = "target_etag"
LAST_REPORT_KEY = "last_report"
STATUS_KEY = "sync_status"

#: One log post carries at most this much (the cloud takes up to 5,000 lines and 4 MiB).
MAX_POST_LINES = 5_000
MAX_POST_BYTES = 1024 * 1024
LOG_ITEM_LINES = 500
#: The persisted status snapshot is written at most this often (flash wear), and on every change of health.
STATUS_SAVE_EVERY = 30.0

MetricsFn = Callable[[Path, float | None], dict[str, float]]
OnTarget = Callable[["TargetDocument"], Awaitable[None]]


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


# --- target state ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TargetDocument:
    """A deployed target: its version and the validated `{apps, config}` state."""

    version: int
    state: TargetState
    etag: str | None = None

    @property
    def document(self) -> dict[str, Any]:
        """`{apps, config}` in canonical JSON form (what `/v2/local/target-state` shows)."""
        return self.state.document()


def load_target(store: AgentStore) -> TargetDocument | None:
    """The last target the agent accepted (from the cloud, or the Device API in local mode), if any."""
    data = store.get(TARGET_KEY)
    if not isinstance(data, dict):
        return None
    try:
        return TargetDocument(int(data["version"]), TargetState.model_validate(data["document"]),
                              data.get("etag"))
    except (KeyError, TypeError, ValueError):  # pydantic's ValidationError is a ValueError
        log.warning("the stored target state is no longer valid; ignoring it")
        return None


def save_target(store: AgentStore, target: TargetDocument) -> None:
    store.set(TARGET_KEY, {"version": target.version, "document": target.document, "etag": target.etag})


def _etag(value: str | None) -> str | None:
    if not value:
        return None
    return value.strip().removeprefix("W/").strip('"') or None


# --- status ----------------------------------------------------------------------------------------------------
@dataclass
class SyncStatus:
    """What `iotistic agent status` and the Device API show about the cloud link. Times are UTC ISO 8601."""

    uuid: str
    endpoint: str
    online: bool = False
    unauthorized: bool = False
    last_poll_at: str | None = None
    last_sync_at: str | None = None
    last_report_at: str | None = None
    last_error: str | None = None
    last_error_at: str | None = None
    consecutive_failures: int = 0
    target_version: int | None = None
    outbox_size: int = 0
    outbox_dropped: int = 0
    rejected: int = 0
    #: The MQTT link (`MqttLink.status()`), or `{"enabled": False}` when reports go over HTTP only.
    mqtt: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        def camel(name: str) -> str:
            head, *rest = name.split("_")
            return head + "".join(part.title() for part in rest)

        return {camel(k): v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SyncStatus:
        names = {f.name for f in fields(cls)}
        snake = {"".join("_" + c.lower() if c.isupper() else c for c in k): v for k, v in data.items()}
        return cls(**{k: v for k, v in snake.items() if k in names})


def read_status(store: AgentStore) -> dict[str, Any] | None:
    """The last persisted sync status (for `iotistic agent status`, which runs in another process)."""
    data = store.get(STATUS_KEY)
    if not isinstance(data, dict):
        return None
    data = {**data, "outboxSize": store.outbox_size(), "outboxDropped": store.outbox_dropped()}
    return data


# --- the sync ---------------------------------------------------------------------------------------------------
class _WaitForHttp(Exception):
    """`flush_outbox(http=False)`: the next item needs HTTP, which is backing off."""


class CloudSync:
    """The agent's link to the cloud. Use `run(stop, on_target)` for the loops, or the single steps:

    `poll_target()`, `report(state)`, `report_metrics()`, `ship_logs(lines)`, `flush_outbox()`; `status()`.
    `wake()` and `poll_soon()` may be called from any thread.
    """

    def __init__(self, settings: AgentSettings, store: AgentStore, identity: Identity, *,
                 http: httpx.AsyncClient | None = None, rng: random.Random | None = None,
                 clock: Callable[[], float] = time.monotonic, metrics: MetricsFn | None = None) -> None:
        if settings.cloud_api_endpoint is None:
            raise ValueError("CloudSync needs CLOUD_API_ENDPOINT (local mode has no cloud)")
        self.settings = settings
        self.store = store
        self.identity = identity
        self._http = http or make_client(settings.cloud_api_endpoint, settings.http_timeout)
        self._own_http = http is None
        self._rng = rng or random.Random()
        self._clock = clock
        self._collect: MetricsFn = metrics or (lambda path, sample: collect_metrics(path, cpu_sample_seconds=sample))
        self._deadline = settings.http_timeout * 2

        self._pending_report: dict[str, Any] | None = None
        self._last_report: dict[str, Any] | None = store.get(LAST_REPORT_KEY)
        self._last_report_queued_at: float | None = None
        self._metrics_sampled = False

        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._poll_now = asyncio.Event()
        self._cloud_back = False
        self._flush_lock = asyncio.Lock()

        saved = store.get(STATUS_KEY)
        self._status = SyncStatus.from_dict(saved) if isinstance(saved, dict) else SyncStatus("", "")
        self._status.uuid = identity.uuid
        self._status.endpoint = settings.cloud_api_endpoint
        self._status.online = False
        stored = load_target(store)
        self._status.target_version = stored.version if stored else None
        self._status_saved_at: float | None = None

        endpoint = mqtt_endpoint(settings, identity)
        self._mqtt = MqttLink(settings, identity, endpoint, on_change=self._mqtt_changed, rng=self._rng) \
            if endpoint is not None else None

    async def aclose(self) -> None:
        if self._own_http:
            await self._http.aclose()

    async def __aenter__(self) -> CloudSync:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    # --- status ----------------------------------------------------------------------------------------------
    @property
    def mqtt(self) -> MqttLink | None:
        """The MQTT link, or None when reports go over HTTP only."""
        return self._mqtt

    def status(self) -> SyncStatus:
        self._status.outbox_size = self.store.outbox_size()
        self._status.outbox_dropped = self.store.outbox_dropped()
        self._status.mqtt = self._mqtt.status() if self._mqtt is not None else {"enabled": False}
        return SyncStatus(**asdict(self._status))

    def _mqtt_changed(self) -> None:
        """The MQTT link came up or went down: show it, and deliver what waits (it may go over MQTT now)."""
        self._save_status(force=True)
        self.wake()

    def _save_status(self, force: bool = False) -> None:
        now = self._clock()
        if not force and self._status_saved_at is not None and now - self._status_saved_at < STATUS_SAVE_EVERY:
            return
        try:
            self.store.set(STATUS_KEY, self.status().as_dict())
            self._status_saved_at = now
        except Exception:
            log.exception("could not save the sync status")

    def _ok(self) -> None:
        s = self._status
        changed = not s.online or s.unauthorized
        if s.unauthorized:
            log.warning("the cloud accepts the device's credentials again")
        elif not s.online and s.consecutive_failures:
            log.info("cloud reachable again")
        if s.consecutive_failures:
            self._cloud_back = True
            self.wake()
        s.online, s.unauthorized, s.consecutive_failures = True, False, 0
        s.last_sync_at = _now_iso()
        self._save_status(force=changed)

    def _failed(self, exc: CloudError) -> None:
        s = self._status
        changed = s.last_error != str(exc) or s.online
        s.last_error, s.last_error_at = str(exc), _now_iso()
        if isinstance(exc, CloudRejected):  # the link works; this one request was refused
            self._save_status(force=changed)
            return
        s.consecutive_failures += 1
        if isinstance(exc, CloudUnauthorized):
            if not s.unauthorized:
                log.error("the cloud refuses this device's credentials (%s): the API key was revoked, or the device "
                          "was disabled or deleted. The agent keeps running its last target and retries every "
                          "%.0f s; re-enable the device in the cloud, or deprovision and provision it again.",
                          exc, self.settings.backoff_max)
                changed = True
            s.unauthorized = True
        s.online = False
        self._save_status(force=changed)

    def _auth(self) -> dict[str, str]:
        return {"X-Device-API-Key": self.identity.device_api_key}

    # --- target ----------------------------------------------------------------------------------------------
    def stored_target(self) -> TargetDocument | None:
        return load_target(self.store)

    async def poll_target(self) -> TargetDocument | None:
        """Ask for the target state; None when unchanged (304). A new target is validated and saved (with its
        ETag) before it is returned. Raises `CloudError`."""
        headers = self._auth()
        etag = self.store.get(ETAG_KEY)
        if etag and load_target(self.store) is not None:
            headers["If-None-Match"] = f'"{etag}"'
        uuid = self.identity.uuid
        try:
            response = await send(self._http, "GET", f"/api/v1/device/{uuid}/state", "poll target state",
                                  headers=headers, deadline=self._deadline)
            self._status.last_poll_at = _now_iso()
            if response.status_code == 304:
                self._ok()
                return None
            target = self._parse_target(response)
        except CloudError as exc:
            self._failed(exc)
            raise
        save_target(self.store, target)
        self.store.set(ETAG_KEY, target.etag)
        self._status.target_version = target.version
        self._ok()
        log.info("new target state: version %s", target.version)
        return target

    def _parse_target(self, response: httpx.Response) -> TargetDocument:
        what = "poll target state"
        if response.status_code != 200:
            raise CloudRejected(f"{what}: unexpected HTTP {response.status_code}", response.status_code)
        try:
            body = response.json()
        except ValueError:
            raise CloudRejected(f"{what}: the reply is not JSON") from None
        entry = body.get(self.identity.uuid) if isinstance(body, dict) else None
        if not isinstance(entry, dict) or not isinstance(entry.get("version"), int):
            raise CloudRejected(f"{what}: the reply has no versioned target for this device")
        document = {k: v for k, v in entry.items() if k != "version"}
        try:
            state = TargetState.model_validate(document)
        except ValidationError as exc:
            raise CloudRejected(f"{what}: target refused, {describe_validation_error(exc)}") from None
        return TargetDocument(entry["version"], state, _etag(response.headers.get("ETag")))

    # --- reports ---------------------------------------------------------------------------------------------
    @staticmethod
    def _validated(report: dict[str, Any]) -> dict[str, Any]:
        """The report in canonical wire form; raises ValueError for what the cloud would refuse."""
        model = DeviceReport.model_validate(report)
        return model.model_dump(mode="json", by_alias=True, exclude_none=True)

    async def report(self, state: dict[str, Any]) -> bool:
        """Offer the current state (a `DeviceReport` dict: apps, config, appliedVersion, status...).

        Returns False when it equals what was last reported (nothing is sent). Otherwise it is queued now, or
        when the throttle window ends (a newer state offered meanwhile replaces it), and delivered by `run()` or
        `flush_outbox()`.
        """
        canonical = self._validated(state)
        if canonical == self._last_report:
            self._pending_report = None
            return False
        if canonical == self._pending_report:
            return False
        self._pending_report = canonical
        self._queue_report_if_due()
        return True

    def _queue_report_if_due(self, force: bool = False) -> float | None:
        """Queue the pending report if the throttle allows; returns seconds until it will, or None."""
        if self._pending_report is None:
            return None
        now = self._clock()
        last = self._last_report_queued_at
        if not force and last is not None and now - last < self.settings.report_throttle:
            return last + self.settings.report_throttle - now
        report, self._pending_report = self._pending_report, None
        self.store.enqueue(REPORT_KIND, report)
        self.store.set(LAST_REPORT_KEY, report)
        self._last_report, self._last_report_queued_at = report, now
        self.wake()
        return None

    @property
    def last_report(self) -> dict[str, Any] | None:
        """The last state queued for the cloud (persisted: the device's last known reported state)."""
        return self._last_report

    async def report_metrics(self) -> dict[str, Any]:
        """Measure and queue a metrics report (with the OS and agent versions); returns it."""
        sample = None if self._metrics_sampled else 0.5
        recorded_at = _now_iso()
        metrics = await asyncio.to_thread(self._collect, self.settings.data_dir, sample)
        self._metrics_sampled = True
        # The time of measurement travels with the sample: it may wait in the outbox for hours.
        report = self._validated({"metrics": {**metrics, "recordedAt": recorded_at}, "osVersion": os_version(),
                                  "agentVersion": iotistic.__version__})
        self.store.enqueue(REPORT_KIND, report)
        self.wake()
        return report

    async def ship_logs(self, lines: Iterable[LogEntry | dict[str, Any]]) -> int:
        """Queue log lines (`LogEntry`, or wire dicts) for the cloud; returns how many."""
        wire = [line.to_wire() if isinstance(line, LogEntry) else line for line in lines]
        for start in range(0, len(wire), LOG_ITEM_LINES):
            self.store.enqueue(LOGS_KIND, wire[start:start + LOG_ITEM_LINES])
        if wire:
            self.wake()
        return len(wire)

    # --- delivery --------------------------------------------------------------------------------------------
    async def flush_outbox(self, *, http: bool = True) -> int:
        """Deliver queued items, oldest first, until the outbox is empty; returns how many were delivered.

        Raises `CloudUnavailable` / `CloudUnauthorized` (the rest stays queued). Items the cloud refuses are
        dropped and counted in `status().rejected`. A throttled report whose window has ended is queued first.
        With `http=False` only MQTT is used: delivery stops (without error) at the first item MQTT cannot take.
        """
        self._queue_report_if_due()
        async with self._flush_lock:
            delivered = 0
            one_at_a_time = False
            while items := self.store.peek(limit=200):
                while items:
                    group = self._next_group(items, one_at_a_time)
                    try:
                        over_http = await self._deliver(group, http=http)
                    except _WaitForHttp:
                        return delivered
                    except CloudRejected as exc:
                        if len(group) > 1:
                            one_at_a_time = True  # find the bad batch; deliver the good ones
                            continue
                        self.store.ack([group[0][0]])
                        items = items[1:]
                        self._status.rejected += 1
                        log.warning("the cloud refused a queued %s; dropped it: %s", group[0][1], exc)
                        self._failed(exc)
                        continue
                    except CloudError as exc:
                        self._failed(exc)
                        raise
                    self.store.ack([item_id for item_id, _, _ in group])
                    items = items[len(group):]
                    delivered += len(group)
                    one_at_a_time = False
                    self._status.last_report_at = _now_iso()
                    if over_http:  # the HTTP link's health; MQTT's is the link's own
                        self._ok()
            return delivered

    @staticmethod
    def _next_group(items: list[tuple[int, str, Any]], single: bool) -> list[tuple[int, str, Any]]:
        """The first item, and for log batches the consecutive ones that fit in one post."""
        first = items[0]
        if single or first[1] != LOGS_KIND:
            return [first]
        group, lines, size = [first], len(first[2]), len(json.dumps(first[2]))
        for item in items[1:]:
            if item[1] != LOGS_KIND:
                break
            item_size = len(json.dumps(item[2]))
            if lines + len(item[2]) > MAX_POST_LINES or size + item_size > MAX_POST_BYTES:
                break
            group.append(item)
            lines, size = lines + len(item[2]), size + item_size
        return group

    async def _deliver(self, group: list[tuple[int, str, Any]], *, http: bool = True) -> bool:
        """Deliver one group over MQTT or HTTP (module doc); returns whether it went over HTTP."""
        kind = group[0][1]
        uuid = self.identity.uuid
        mqtt = self._mqtt
        if kind == REPORT_KIND and mqtt is not None and mqtt.connected:
            try:
                await mqtt.publish_report(group[0][2])
                return False
            except MqttNotDelivered as exc:
                if http:
                    log.warning("a report was not delivered over MQTT (%s); sending it over HTTP", exc)
        if not http:
            raise _WaitForHttp
        if kind == REPORT_KIND:
            await send(self._http, "PATCH", "/api/v1/device/state", "report state", json={uuid: group[0][2]},
                       headers=self._auth(), deadline=self._deadline)
        elif kind == LOGS_KIND:
            body = "".join(json.dumps(line, separators=(",", ":")) + "\n" for _, _, lines in group for line in lines)
            await send(self._http, "POST", f"/api/v1/device/{uuid}/logs", "ship logs", content=body.encode(),
                       headers={**self._auth(), "Content-Type": "application/x-ndjson"}, deadline=self._deadline)
        else:
            raise CloudRejected(f"unknown outbox item kind {kind!r}")
        return True

    # --- credentials -----------------------------------------------------------------------------------------
    async def rotate_key(self) -> None:
        """Replace the device API key (safe against a lost reply; see `identity.rotate_device_key`)."""
        self.identity = await rotate_device_key(self.store, self.settings, self._http)

    async def _recover_rotation(self) -> bool:
        """After a 401: if a key rotation was interrupted, settle it. Returns whether the key changed."""
        if not self.identity.pending_device_api_key:
            return False
        before = self.identity.device_api_key
        try:
            self.identity = await recover_key_rotation(self.store, self._http)
        except CloudError:
            return False
        return self.identity.device_api_key != before

    # --- loops -----------------------------------------------------------------------------------------------
    def wake(self) -> None:
        """New items are in the outbox: deliver them soon. Safe from any thread."""
        self._set_threadsafe(self._wake)

    def poll_soon(self) -> None:
        """Poll the target state now (e.g. `/v1/update`). Safe from any thread."""
        self._set_threadsafe(self._poll_now)

    def _set_threadsafe(self, event: asyncio.Event) -> None:
        loop = self._loop
        if loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            event.set()
        else:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # the loop is closed
                pass

    @staticmethod
    async def _wait(stop: asyncio.Event, event: asyncio.Event | None, seconds: float | None) -> None:
        """Until `stop` or `event` is set, or `seconds` passed (None: no limit)."""
        waiters = [asyncio.ensure_future(stop.wait())]
        if event is not None:
            waiters.append(asyncio.ensure_future(event.wait()))
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def run(self, stop: asyncio.Event, on_target: OnTarget | None = None) -> None:
        """Poll, report, ship and measure until `stop` is set. `on_target` gets each new target document (it
        should hand it to the reconciler and return). Never raises because of the cloud."""
        self._loop = asyncio.get_running_loop()
        tasks = [asyncio.create_task(self._poll_loop(stop, on_target), name="cloud-poll"),
                 asyncio.create_task(self._send_loop(stop), name="cloud-send"),
                 asyncio.create_task(self._metrics_loop(stop), name="cloud-metrics")]
        if self._mqtt is not None:
            tasks.append(asyncio.create_task(self._mqtt.run(stop), name="cloud-mqtt"))
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            try:
                self._queue_report_if_due(force=True)  # a throttled report must survive the restart
            except Exception:
                log.exception("could not queue the last report")
            self._save_status(force=True)
            self._loop = None

    async def _poll_loop(self, stop: asyncio.Event, on_target: OnTarget | None) -> None:
        s = self.settings
        failures = 0
        while not stop.is_set():
            self._poll_now.clear()
            try:
                target = await self.poll_target()
                failures = 0
                delay = jittered(s.poll_interval, s.poll_jitter, self._rng)
                if target is not None and on_target is not None:
                    try:
                        await on_target(target)
                    except Exception:
                        log.exception("handling target version %s failed", target.version)
            except CloudUnauthorized:
                failures += 1
                delay = 0.0 if await self._recover_rotation() else s.backoff_max
            except CloudError as exc:
                failures += 1
                delay = backoff_delay(failures, s.backoff_base, s.backoff_max, self._rng)
                log.warning("target poll failed (%s); next try in %.0f s", exc, delay)
            except Exception:
                failures += 1
                delay = backoff_delay(failures, s.backoff_base, s.backoff_max, self._rng)
                log.exception("target poll failed unexpectedly; next try in %.0f s", delay)
            await self._wait(stop, self._poll_now, delay)

    async def _send_loop(self, stop: asyncio.Event) -> None:
        s = self.settings
        failures = 0
        retry_at = 0.0
        while not stop.is_set():
            self._wake.clear()
            if self._cloud_back:  # a poll just got through: stop backing off
                self._cloud_back, retry_at = False, 0.0
            try:
                report_due_in = self._queue_report_if_due()
            except Exception:
                log.exception("could not queue a report")
                report_due_in = s.report_throttle or 1.0
            now = self._clock()
            if now < retry_at and self.store.outbox_size() and self._mqtt is not None and self._mqtt.connected:
                # HTTP backs off, but the reports at the head of the outbox can go over MQTT now.
                try:
                    await self.flush_outbox(http=False)
                except Exception:
                    log.exception("delivery over MQTT failed unexpectedly")
            elif now >= retry_at and self.store.outbox_size():
                try:
                    await self.flush_outbox()
                    failures, retry_at = 0, 0.0
                except CloudUnauthorized:
                    failures += 1
                    retry_at = now + s.backoff_max
                except CloudError as exc:
                    failures += 1
                    retry_at = now + backoff_delay(failures, s.backoff_base, s.backoff_max, self._rng)
                    log.warning("delivery failed (%s); %d items wait in the outbox", exc, self.store.outbox_size())
                except Exception:
                    failures += 1
                    retry_at = now + backoff_delay(failures, s.backoff_base, s.backoff_max, self._rng)
                    log.exception("delivery failed unexpectedly")
            now = self._clock()
            waits = [w for w in (report_due_in, retry_at - now if retry_at > now else None) if w is not None]
            await self._wait(stop, self._wake, min(waits) if waits else None)

    async def _metrics_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.report_metrics()
            except Exception:
                log.exception("could not measure or queue metrics")
            await self._wait(stop, None, self.settings.metrics_interval)


__all__ = [
    "CloudError",
    "CloudRejected",
    "CloudSync",
    "CloudUnauthorized",
    "CloudUnavailable",
    "SyncStatus",
    "TargetDocument",
    "load_target",
    "read_status",
    "save_target",
]
