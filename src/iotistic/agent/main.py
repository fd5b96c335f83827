"""The running agent: wires the store, identity, runtime, executor, logs, cloud sync and Device API together.

`Agent(settings).run()` is what `iotistic agent` runs. It implements `AgentCore`, the interface the Device API
is written against (`iotistic.agent.api.contract`).

What runs, each as its own task, none of which can bring the others down:

* **Executor loop** (`Executor.run`): applies the target whenever it changes, when a backoff expires and every
  `reconcile_interval` seconds. On start the last persisted target is handed to it at once, so a restarted agent
  adopts the containers already running (the planner sees their config-hash labels match and plans nothing).
* **Watcher**: notices every new executor status snapshot. It derives the report (the cloud's `DeviceReport`:
  apps, status, `appliedVersion`, config), keeps the last known state and the executor's backoff persisted, offers
  the report to the cloud sync (which sends it only when it changed, throttled, through the outbox) and starts a
  log follower for every container that started since it was last followed.
* **Log followers**: one per container, `runtime.container_logs(follow=True, since=<cursor>)` into the
  `LogBuffer`. The cursor (the last line's timestamp per container) is persisted right after the lines up to it
  reached the outbox, so a restarted agent neither loses nor repeats lines (a crash may repeat the last few).
* **Cloud** (cloud mode): provisions first (retrying with backoff; the Device API is up meanwhile), then runs
  `CloudSync` (target polls, reports, metrics, log shipping, the persistent outbox).
* **VPN** (VPN_ENABLED): `iotistic.agent.vpn.supervisor` keeps an OpenVPN client running with the configuration
  from registration (or asks the cloud for it once provisioned), restarting it with backoff after a drop.
* **Device API** (when `iotistic.agent.api.app.create_device_api` is installed): uvicorn in the same event loop,
  on `DEVICE_API_HOST:DEVICE_API_PORT`. A port in use is retried, never fatal.

`appliedVersion` is the version of the target the device runs: it moves to a new version only after an apply
that *started* after that target was set has converged (a status of `applied` left over from the previous target
never counts).

Local mode (no `CLOUD_API_ENDPOINT`): the target comes from `/v2/local/target-state` (or `iotistic agent apply`)
and gets a local version number (the previous one + 1). A device provisioned at run time through `/v1/provision`
remembers its cloud endpoint in the store, so it stays in cloud mode after a restart without the environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import datetime as dt
import logging
import signal
import socket
import threading
import time
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import iotistic
from iotistic.agent import identity as identity_mod
from iotistic.agent.api.contract import HostActionRefused
from iotistic.agent.identity import (
    ProvisioningError,
    load_or_create_identity,
    provision_status,
    provision_until_done,
)
from iotistic.agent.instance import InstanceLock
from iotistic.agent.logs import LogBuffer, LogEntry
from iotistic.agent.reconcile.executor import ApplyStatus, Executor, ExecutorStatus
from iotistic.agent.runtime.base import ContainerNotFound, LogStream, Runtime
from iotistic.agent.settings import AgentSettings, load_agent_settings
from iotistic.agent.store import AgentStore, Identity
from iotistic.agent.sync.client import CloudSync, TargetDocument, load_target, read_status, save_target
from iotistic.agent.sync.http import CloudRejected, CloudUnavailable
from iotistic.agent.vpn.fetch import fetch_config
from iotistic.agent.vpn.supervisor import VpnSupervisor
from iotistic.core.schemas.target_state import TargetState
from iotistic.core.settings import ConfigError

if TYPE_CHECKING:
    import uvicorn

log = logging.getLogger(__name__)

# Store keys (besides the identity's and the cloud sync's own).
BACKOFF_KEY = "executor_backoff"
LOG_CURSORS_KEY = "log_cursors"
APPLIED_VERSION_KEY = "applied_version"
CURRENT_STATE_KEY = "current_state"
TAGS_KEY = "device_tags"
CLOUD_ENDPOINT_KEY = "cloud_endpoint"

#: How often the watcher looks at the executor's status snapshot (it only works when the snapshot changed).
WATCH_INTERVAL = 0.5
#: Log cursors are written at most this often in local mode (no outbox to keep them in step with).
LOCAL_CURSOR_SAVE_EVERY = 60.0
#: A follower that failed (engine hiccup) is started again after this long.
FOLLOW_RETRY_SECONDS = 5.0
#: Freed memory is handed back to the OS this often (glibc keeps it otherwise: the idle footprint).
TRIM_EVERY = 60.0
API_RETRY_SECONDS = 10.0
#: How long a stop waits for a cloud request in flight before cancelling it (the outbox keeps what was unsent).
CLOUD_STOP_SECONDS = 5.0
HOST_ACTION_TIMEOUT = 60.0
#: How long a starting agent waits for the data folder's instance lock (an `iotistic agent apply` may hold it).
INSTANCE_WAIT_SECONDS = 30.0
#: How long a stopping agent waits for the VPN client to close its tunnel.
VPN_STOP_SECONDS = 12.0
#: Worker threads for blocking calls (Docker SDK, SQLite, psutil); log streams have threads of their own.
MAX_WORKER_THREADS = 6


class NotInLocalMode(Exception):
    """A local target was given to an agent whose target comes from the cloud."""


class AgentAlreadyRunning(Exception):
    """Another process holds this data folder's instance lock (see `iotistic.agent.instance`)."""


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def _parse_iso(value: Any) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return dt.datetime.fromisoformat(value)
    except ValueError:
        return None


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


def malloc_trim() -> None:
    """Hand freed heap memory back to the OS (glibc's `malloc_trim(0)`; a no-op elsewhere, e.g. musl)."""
    trim = getattr(_libc(), "malloc_trim", None)
    if trim is not None:
        trim(0)


def limit_malloc_arenas(arenas: int = 2) -> None:
    """Cap glibc's malloc arenas (by default each thread gets its own and keeps its pages): the cheapest saving
    for a process with a few worker threads. Call before threads start; a no-op without glibc."""
    mallopt = getattr(_libc(), "mallopt", None)
    if mallopt is not None:
        mallopt(-8, arenas)  # M_ARENA_MAX


def _embedded_server(config: uvicorn.Config) -> uvicorn.Server:
    """uvicorn's Server without its signal handling: the agent owns SIGTERM/SIGINT and stops the server."""
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return Server(config)


class Agent:
    """The edge agent (implements `AgentCore`). Make it, then `await agent.run()`; `stop()` ends it."""

    def __init__(self, settings: AgentSettings, *, runtime: Runtime | None = None,
                 reconcile_interval: float = 10.0) -> None:
        self.store = AgentStore.for_settings(settings)
        self.settings = self._with_stored_endpoint(settings)
        self._identity = load_or_create_identity(self.store, self.settings)
        self.lock_root = self.settings.data_dir / "locks"
        self.runtime = runtime if runtime is not None else self._docker_runtime()
        self.executor = Executor(self.runtime, lock_root=self.lock_root)
        self.executor.import_backoff(self.store.get(BACKOFF_KEY))
        self.reconcile_interval = reconcile_interval
        self.logs = LogBuffer(self.store, persist=not self.local_mode,
                              batch_interval=self.settings.log_batch_interval, on_batch=self._on_log_batch)
        self.vpn = VpnSupervisor(self.settings)
        self._vpn_task: asyncio.Task[None] | None = None

        self._sync: CloudSync | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = asyncio.Event()
        self._cloud_stop = asyncio.Event()
        self._cloud_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._status_changed = asyncio.Event()
        self._api_server: uvicorn.Server | None = None
        self._api_bound: str | None = None

        # Target bookkeeping (see the module doc on appliedVersion).
        self._target: TargetDocument | None = None
        self._target_settled = False
        self._applied_version: int | None = self.store.get(APPLIED_VERSION_KEY)
        self._last_report: dict[str, Any] | None = None
        self._settled_status = ApplyStatus.idle
        self._saved_backoff: Any = self.store.get(BACKOFF_KEY)

        # Logs.
        self._followers: dict[str, asyncio.Task[None]] = {}
        self._followed_start: dict[str, dt.datetime] = {}
        self._follow_retry_at: dict[str, float] = {}
        saved = self.store.get(LOG_CURSORS_KEY) or {}
        self._cursors: dict[str, dt.datetime] = {
            cid: ts for cid, value in (saved.items() if isinstance(saved, dict) else ())
            if (ts := _parse_iso(value)) is not None
        }
        self._saved_cursors = dict(self._cursors)
        self._cursors_saved_at = 0.0

        self._runtime_info: dict[str, str] = {"runtime": self.runtime.name}
        self._started_at: float | None = None
        self._wiped = False
        self._resetting = False
        self._instance = InstanceLock(self.settings.data_dir)

    # --- construction helpers ------------------------------------------------------------------------------
    def _with_stored_endpoint(self, settings: AgentSettings) -> AgentSettings:
        """A device provisioned through `/v1/provision` keeps its cloud after a restart (module doc)."""
        if settings.cloud_api_endpoint is not None:
            return settings
        endpoint = self.store.get(CLOUD_ENDPOINT_KEY)
        identity = self.store.identity()
        if isinstance(endpoint, str) and identity is not None and (identity.provisioned or identity.provisioning_key):
            return settings.model_copy(update={"cloud_api_endpoint": endpoint})
        return settings

    def _docker_runtime(self) -> Runtime:
        from iotistic.agent.runtime.docker import DockerRuntime

        return DockerRuntime(lock_root=self.lock_root, base_url=self.settings.docker_host)

    # --- AgentCore: properties -------------------------------------------------------------------------------
    @property
    def identity(self) -> Identity:
        return self._identity

    @property
    def sync(self) -> CloudSync | None:
        return self._sync

    @property
    def local_mode(self) -> bool:
        return self.settings.cloud_api_endpoint is None

    @property
    def applied_version(self) -> int | None:
        return self._applied_version

    @property
    def target_version(self) -> int | None:
        return self._target.version if self._target else None

    @property
    def api_address(self) -> str | None:
        """`host:port` the Device API listens on, once it does."""
        return self._api_bound

    # --- lifecycle ---------------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask `run()` to finish. Safe from any thread and from a signal handler."""
        loop = self._loop
        if loop is None:
            self._stop.set()
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._stop.set()
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._stop.set)

    async def run(self) -> None:
        """Start everything and run until `stop()` (or SIGTERM/SIGINT); then stop cleanly and persist."""
        loop = asyncio.get_running_loop()
        await self._lock_instance()
        self._loop = loop
        self._started_at = time.time()
        signals = self._install_signals(loop)
        log.info("iotistic agent %s starting: device %s, %s mode, data in %s", iotistic.__version__,
                 self._identity.uuid, "local" if self.local_mode else "cloud", self.settings.data_dir)
        try:
            stored = load_target(self.store)
            if stored is not None:
                log.info("applying the last target (version %s) at once", stored.version)
                self._adopt(stored)
            self._spawn(self.executor.run(interval=self.reconcile_interval), "executor")
            self._spawn(self._watch(), "watch")
            self._spawn(self._logs_loop(), "logs")
            self._spawn(self._runtime_version(), "runtime-version")
            self._spawn(self._serve_api(), "device-api")
            if self.settings.vpn_enabled:
                self._vpn_task = self._spawn(self.vpn.run(self._stop), "vpn")
            if not self.local_mode:
                self._start_cloud()
            await self._stop.wait()
        finally:
            await self._shutdown()
            for sig in signals:
                with contextlib.suppress(Exception):
                    loop.remove_signal_handler(sig)
            self._loop = None
            self._instance.release()
            log.info("agent stopped")

    async def _lock_instance(self) -> None:
        """One agent per data folder. An `iotistic agent` command working on the store is waited for."""
        deadline = time.monotonic() + INSTANCE_WAIT_SECONDS
        waited = False
        while not self._instance.acquire(uuid=self._identity.uuid, api=None):
            holder = self._instance.holder() or {}
            if not holder.get("command") or time.monotonic() > deadline:
                self.store.close()
                raise AgentAlreadyRunning(f"another agent (pid {holder.get('pid')}) uses {self.settings.data_dir}")
            if not waited:
                log.warning("waiting for `iotistic agent` (pid %s) to finish with %s", holder.get("pid"),
                            self.settings.data_dir)
                waited = True
            await asyncio.sleep(0.5)

    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> list[int]:
        if threading.current_thread() is not threading.main_thread():
            return []
        installed: list[int] = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self.stop)
                installed.append(sig)
            except (NotImplementedError, RuntimeError, ValueError):
                pass
        return installed

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=f"agent-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("agent task %s failed", task.get_name(), exc_info=task.exception())

    async def _shutdown(self) -> None:
        self._cloud_stop.set()
        if self._api_server is not None:
            self._api_server.should_exit = True
        cloud = self._cloud_task
        if cloud is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(cloud), CLOUD_STOP_SECONDS)
        await self._stop_followers()
        if self._vpn_task is not None:
            # The VPN client is given its time to close the tunnel (and tell the server) before tasks are cancelled.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._vpn_task), VPN_STOP_SECONDS)
        for task in list(self._tasks):
            if task.get_name() != "agent-device-api":
                task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if not self._wiped:
            try:
                self._save_backoff()
                await asyncio.to_thread(self.logs.flush)
                self._save_cursors(force=True)
                if self._sync is not None:
                    self._sync.wake()
            except Exception:
                log.exception("could not persist the agent's state at stop")
        with contextlib.suppress(Exception):
            await self.runtime.close()
        self._sync = None
        self.store.close()

    # --- targets -----------------------------------------------------------------------------------------------
    def _adopt(self, target: TargetDocument) -> None:
        """Hand a target to the executor and apply it now (in the background)."""
        self._target = target
        self._target_settled = False
        self.executor.set_target(target.state)
        self._spawn(self._apply_adopted(target), f"apply-{target.version}")

    async def _apply_adopted(self, target: TargetDocument) -> None:
        try:
            report = await self.executor.apply()
            log.info("target version %s: %s after %d round(s)%s", target.version, report.status.value,
                     report.rounds, f" ({len(report.failed)} step(s) failed)" if report.failed else "")
        except Exception:
            log.exception("applying target version %s failed", target.version)
        finally:
            if self._target is target:
                self._target_settled = True
            self._status_changed.set()

    async def _on_cloud_target(self, target: TargetDocument) -> None:
        self._adopt(target)  # poll_target has persisted it already

    async def set_local_target(self, target: TargetState) -> None:
        if not self.local_mode:
            raise NotInLocalMode("this device takes its target from the cloud; deprovision it to set one locally")
        previous = load_target(self.store)
        document = TargetDocument((previous.version if previous else 0) + 1, target)
        await asyncio.to_thread(save_target, self.store, document)
        log.info("new local target: version %s", document.version)
        self._adopt(document)

    def local_target(self) -> TargetState | None:
        if self._target is not None:
            return self._target.state
        stored = load_target(self.store) if not self._wiped else None
        return stored.state if stored else None

    # --- watching the executor -----------------------------------------------------------------------------------
    async def _watch(self) -> None:
        last: ExecutorStatus | None = None
        last_trim = time.monotonic()
        while True:
            self._status_changed.clear()
            status = self.executor.status()
            if status is not last:
                last = status
                try:
                    await self._on_status(status)
                except Exception:
                    log.exception("could not process the executor's status")
            if time.monotonic() - last_trim > TRIM_EVERY:
                last_trim = time.monotonic()
                malloc_trim()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._status_changed.wait(), WATCH_INTERVAL)
            if self._status_changed.is_set():
                last = None  # something outside the snapshot changed (applied version, a new sync): look again

    async def _on_status(self, status: ExecutorStatus) -> None:
        if self._resetting or self._wiped:
            return
        self._update_applied_version(status)
        report = self.current_report(status)
        if report != self._last_report:
            self._last_report = report
            await asyncio.to_thread(self.store.set, CURRENT_STATE_KEY,
                                    {**report, "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")})
        sync = self._sync
        if sync is not None:
            try:
                await sync.report(report)
            except Exception:
                log.exception("could not queue the state report")
        self._save_backoff()
        self._follow_containers(status)

    def _update_applied_version(self, status: ExecutorStatus) -> None:
        target = self._target
        if status.status is not ApplyStatus.applying:
            self._settled_status = status.status
        if (target is None or not self._target_settled or status.status is not ApplyStatus.applied
                or self.executor.target is not target.state):
            return
        if self._applied_version != target.version:
            self._applied_version = target.version
            self.store.set(APPLIED_VERSION_KEY, target.version)
            log.info("target version %s applied", target.version)

    def _reported_status(self, status: ExecutorStatus) -> str:
        """The periodic re-check of a settled device flips the status to `applying` for a moment; with nothing
        pending, that is not news: report the settled status."""
        if status.status is ApplyStatus.applying and not status.update_pending and self._target_settled:
            return self._settled_status.value
        return status.status.value

    def current_report(self, status: ExecutorStatus | None = None) -> dict[str, Any]:
        """The device's current state in the cloud's `DeviceReport` shape."""
        status = status or self.executor.status()
        report: dict[str, Any] = {"apps": status.report_apps(), "status": self._reported_status(status)}
        if self._applied_version is not None:
            report["appliedVersion"] = self._applied_version
        target = self._target
        if target is not None and target.version == self._applied_version:
            report["config"] = dict(target.state.config)
        return report

    def _save_backoff(self) -> None:
        backoff = self.executor.export_backoff()
        if backoff != self._saved_backoff:
            self.store.set(BACKOFF_KEY, backoff)
            self._saved_backoff = backoff

    # --- logs ----------------------------------------------------------------------------------------------------
    def _on_log_batch(self) -> None:
        sync = self._sync
        if sync is not None:
            sync.wake()

    def _follow_containers(self, status: ExecutorStatus) -> None:
        present: dict[str, str] = {}
        now = time.monotonic()
        for service in status.services:
            cid = service.container_id
            if cid is None:
                continue
            present[cid] = service.service_name
            if cid in self._followers or service.started_at is None:
                continue
            if self._followed_start.get(cid) == service.started_at:
                continue  # already read up to this start; the stream ended when the container stopped
            if self._follow_retry_at.get(cid, 0.0) > now:
                continue
            self._followed_start[cid] = service.started_at
            self._followers[cid] = self._spawn(self._follow(cid, service.service_name), f"logs-{cid[:12]}")
        if status.last_apply_at is not None:
            for cid in [c for c in self._followers if c not in present]:
                self._followers[cid].cancel()
            for table in (self._cursors, self._followed_start, self._follow_retry_at):
                for cid in [c for c in table if c not in present and c not in self._followers]:
                    del table[cid]

    async def _follow(self, container_id: str, service_name: str) -> None:
        since = self._cursors.get(container_id)
        try:
            lines = self.runtime.container_logs(container_id, follow=True, since=since)
            try:
                async for line in lines:
                    if since is not None and line.timestamp <= since:
                        continue  # Docker's `since` is inclusive: the line at the cursor was shipped already
                    self.logs.append(LogEntry(line.timestamp, service_name, line.line,
                                              line.stream is LogStream.stderr))
                    cursor = self._cursors.get(container_id)
                    if cursor is None or line.timestamp > cursor:
                        self._cursors[container_id] = line.timestamp
            finally:
                close = getattr(lines, "aclose", None)  # frees the engine's stream (and its reader thread)
                if close is not None:
                    await close()
        except asyncio.CancelledError:
            raise
        except ContainerNotFound:
            pass
        except Exception as exc:
            log.warning("log stream of container %s broke (%s); following it again soon", container_id[:12], exc)
            self._followed_start.pop(container_id, None)
            self._follow_retry_at[container_id] = time.monotonic() + FOLLOW_RETRY_SECONDS
        finally:
            self._followers.pop(container_id, None)

    async def _stop_followers(self) -> None:
        followers = list(self._followers.values())
        for task in followers:
            task.cancel()
        await asyncio.gather(*followers, return_exceptions=True)

    async def _logs_loop(self) -> None:
        """Flush the log batch every `log_batch_interval`, then persist the cursors it covers."""
        while True:
            await asyncio.sleep(self.logs.batch_interval)
            if self._wiped or self._resetting:
                continue
            try:
                covered = dict(self._cursors)  # every line up to these is in the buffer: the flush takes it
                await asyncio.to_thread(self.logs.flush)
                self._save_cursors(covered)
            except Exception:
                log.exception("could not flush the logs")

    def _save_cursors(self, cursors: dict[str, dt.datetime] | None = None, *, force: bool = False) -> None:
        cursors = dict(self._cursors) if cursors is None else cursors
        if cursors == self._saved_cursors:
            return
        if not force and self.local_mode and time.monotonic() - self._cursors_saved_at < LOCAL_CURSOR_SAVE_EVERY:
            return
        self.store.set(LOG_CURSORS_KEY, {cid: ts.isoformat() for cid, ts in cursors.items()})
        self._saved_cursors = cursors
        self._cursors_saved_at = time.monotonic()

    def _persist_logs(self, on: bool) -> None:
        """Whether log batches go to the outbox (cloud mode) or only to the ring (local mode)."""
        self.logs._store = self.store if on else None

    # --- cloud ---------------------------------------------------------------------------------------------------
    def _start_cloud(self) -> None:
        if self._cloud_task is not None and not self._cloud_task.done():
            return
        self._cloud_stop = asyncio.Event()
        self._cloud_task = self._spawn(self._cloud(self._cloud_stop), "cloud")

    async def _cloud(self, stop: asyncio.Event) -> None:
        identity = await provision_until_done(self.store, self.settings, stop)
        if identity is None or stop.is_set():
            return
        self._identity = identity
        self.vpn.set_fetcher(self._fetch_vpn_config)
        sync = CloudSync(self.settings, self.store, identity)
        self._sync = sync
        self._persist_logs(True)
        self._status_changed.set()  # offer the current state to the new sync at once
        try:
            await sync.run(stop, self._on_cloud_target)
        finally:
            if self._sync is sync:
                self._sync = None
            await sync.aclose()

    async def _fetch_vpn_config(self) -> str:
        """The VPN configuration from the cloud, with the device's current key (it may have been rotated)."""
        identity = self.store.identity() or self._identity
        endpoint = self.settings.cloud_api_endpoint
        if endpoint is None:
            raise CloudRejected("local mode: no cloud to ask for a VPN configuration")
        return await fetch_config(endpoint, self.settings.http_timeout, identity.uuid, identity.device_api_key)

    async def _stop_cloud(self) -> None:
        self._cloud_stop.set()
        task = self._cloud_task
        if task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(task), CLOUD_STOP_SECONDS)
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._cloud_task = None

    async def provision(self, *, cloud_endpoint: str, provisioning_key: str, device_name: str | None = None,
                        device_type: str | None = None) -> dict[str, Any]:
        values = self.settings.model_dump(by_alias=True)
        values.update({"CLOUD_API_ENDPOINT": cloud_endpoint, "PROVISIONING_KEY": provisioning_key})
        if device_name:
            values["DEVICE_NAME"] = device_name
        if device_type:
            values["DEVICE_TYPE"] = device_type
        try:
            settings = load_agent_settings(**values)
        except ConfigError as exc:  # a bad endpoint, key or name
            raise ProvisioningError(str(exc)) from None
        current = self.store.identity()
        if current is not None and current.provisioned:
            if settings.cloud_api_endpoint == self.settings.cloud_api_endpoint:
                return self.provision_status()
            raise ProvisioningError(f"already provisioned with {self.settings.cloud_api_endpoint}; "
                                    "deprovision first")
        await self._stop_cloud()
        previous = self.settings
        self.settings = settings
        self._identity = load_or_create_identity(self.store, settings)
        try:
            self._identity = await identity_mod.provision(self.store, settings)
        except CloudUnavailable:
            self.store.set(CLOUD_ENDPOINT_KEY, settings.cloud_api_endpoint)
            self._start_cloud()  # keeps trying in the background
            raise
        except BaseException:
            self.settings = previous
            if not previous.local_mode:
                self._start_cloud()
            raise
        self.store.set(CLOUD_ENDPOINT_KEY, settings.cloud_api_endpoint)
        self._start_cloud()
        return self.provision_status()

    def provision_status(self) -> dict[str, Any]:
        status = provision_status(self.store)
        status["cloudEndpoint"] = self.settings.cloud_api_endpoint
        return status

    async def deprovision(self) -> None:
        await self._stop_cloud()
        self.vpn.set_fetcher(None)
        # The VPN certificate was the old identity's: the next provisioning brings the new one's.
        await asyncio.to_thread(self.settings.vpn_config_file.unlink, missing_ok=True)
        self.vpn.config_changed()
        identity_mod.deprovision(self.store)
        self.store.delete(CLOUD_ENDPOINT_KEY)
        self.settings = self.settings.model_copy(update={"cloud_api_endpoint": None, "provisioning_key": None})
        self._identity = load_or_create_identity(self.store, self.settings)
        self._persist_logs(False)
        self._status_changed.set()

    async def factory_reset(self) -> None:
        """Remove every managed workload, wipe the data, stop the agent. If the workloads cannot be removed,
        nothing is wiped and the agent carries on (with the cloud sync restarted)."""
        self._resetting = True
        await self._stop_cloud()
        await self._stop_followers()
        previous = self.executor.target

        async def remove_workloads() -> None:
            report = await self.executor.apply(TargetState(), force=True)
            if report.error or report.failed or report.plan.steps:
                problems = report.error or "; ".join(o.error or "" for o in report.failed) or "steps left"
                raise RuntimeError(problems)

        try:
            await identity_mod.factory_reset(self.store, self.settings.data_dir, remove_workloads)
        except BaseException:
            self._resetting = False
            if previous is not None:
                self.executor.set_target(previous)
            if not self.local_mode:
                self._start_cloud()
            raise
        # VPN_CONFIG_PATH may lie outside the data folder: the device's VPN key goes with the rest.
        await asyncio.to_thread(self.settings.vpn_config_file.unlink, missing_ok=True)
        self._wiped = True
        self._target = None
        self.stop()

    # --- host actions --------------------------------------------------------------------------------------------
    async def reboot(self, *, force: bool = False) -> None:
        await self._host_action("reboot", self.settings.reboot_argv, "HOST_REBOOT_COMMAND", force)

    async def shutdown(self, *, force: bool = False) -> None:
        await self._host_action("shutdown", self.settings.shutdown_argv, "HOST_SHUTDOWN_COMMAND", force)

    async def _host_action(self, what: str, argv: list[str] | None, variable: str, force: bool) -> None:
        if argv is None:
            raise HostActionRefused(f"{what} is not configured on this device (set {variable})")
        held = self.executor.locks_held()
        if held and not force:
            names = ", ".join(sorted(str(k) for k in held))
            raise HostActionRefused(f"update lock held by {names}; use force to {what} anyway")
        log.warning("%s requested%s: running %s", what, " (forced)" if force else "", argv[0])
        # A reboot may cut the power: what is in memory goes to disk first.
        await asyncio.to_thread(self.logs.flush)
        self._save_cursors(force=True)
        self._save_backoff()
        process = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL,
                                                       stdout=asyncio.subprocess.DEVNULL,
                                                       stderr=asyncio.subprocess.PIPE)
        try:
            _, stderr = await asyncio.wait_for(process.communicate(), HOST_ACTION_TIMEOUT)
        except TimeoutError:
            return  # still running: the host is going down
        if process.returncode:
            detail = " ".join(stderr.decode(errors="replace").split())[:300]
            raise RuntimeError(f"{what} command failed with exit code {process.returncode}: {detail}")

    # --- device name, tags, keys ---------------------------------------------------------------------------------
    def regenerate_local_api_key(self) -> str:
        key = identity_mod.regenerate_local_api_key(self.store)
        self._identity.local_api_key = key
        return key

    def device_name(self) -> str:
        return self._identity.device_name or ""

    async def set_device_name(self, name: str) -> None:
        self._identity.device_name = name
        stored = self.store.identity()
        if stored is not None:
            stored.device_name = name
            await asyncio.to_thread(self.store.save_identity, stored)

    def tags(self) -> dict[str, str]:
        value = self.store.get(TAGS_KEY) if not self._wiped else None
        return dict(value) if isinstance(value, dict) else {}

    async def set_tags(self, tags: dict[str, str]) -> None:
        await asyncio.to_thread(self.store.set, TAGS_KEY, dict(tags))

    # --- status ----------------------------------------------------------------------------------------------------
    async def _runtime_version(self) -> None:
        while True:
            try:
                self._runtime_info = {**dict(await self.runtime.version()), "runtime": self.runtime.name}
                return
            except Exception as exc:
                log.warning("container engine not answering (%s)", exc)
            await asyncio.sleep(30)

    def status_summary(self) -> dict[str, Any]:
        status = self.executor.status()
        sync = self._sync
        summary: dict[str, Any] = {
            "uuid": self._identity.uuid,
            "deviceName": self._identity.device_name,
            "deviceType": self._identity.device_type,
            "mode": "local" if self.local_mode else "cloud",
            "agentVersion": iotistic.__version__,
            "runtime": dict(self._runtime_info),
            "running": True,
            "startedAt": dt.datetime.fromtimestamp(self._started_at, dt.UTC).isoformat() if self._started_at else None,
            "deviceApi": self._api_bound,
            "status": self._reported_status(status),
            "updatePending": status.update_pending,
            "appliedVersion": self._applied_version,
            "targetVersion": self.target_version,
            "apply": status.to_json(),
            "locks": sorted(str(k) for k in self.executor.locks_held()),
            "provisioning": self.provision_status(),
            "sync": sync.status().as_dict() if sync is not None else (None if self._wiped else read_status(self.store)),
            "logs": {"lines": self.logs.lines_total, "lost": self.logs.lines_lost, "followed": len(self._followers)},
            "vpn": self.vpn_status(),
        }
        return summary

    def vpn_status(self) -> dict[str, Any]:
        return self.vpn.status()

    # --- Device API ------------------------------------------------------------------------------------------------
    async def _serve_api(self) -> None:
        try:
            from iotistic.agent.api.app import create_device_api
        except ImportError as exc:
            log.warning("the Device API is not available (%s); running without it", exc)
            return
        import uvicorn

        app = create_device_api(self)
        host, port = self.settings.device_api_host, self.settings.device_api_port
        while not self._stop.is_set():
            try:
                sock = _bind(host, port)
            except OSError as exc:
                log.error("Device API: cannot listen on %s:%s (%s); retrying in %.0f s", host, port, exc,
                          API_RETRY_SECONDS)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), API_RETRY_SECONDS)
                continue
            config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="auto", ws="none",
                                    timeout_graceful_shutdown=3, server_header=False)
            server = _embedded_server(config)
            self._api_server = server
            bound = sock.getsockname()
            self._api_bound = f"[{bound[0]}]:{bound[1]}" if ":" in bound[0] else f"{bound[0]}:{bound[1]}"
            self._instance.update(uuid=self._identity.uuid, api=self._api_bound)
            log.info("Device API on http://%s", self._api_bound)
            try:
                await server.serve(sockets=[sock])
            except (Exception, SystemExit):
                log.exception("the Device API server failed")
            finally:
                sock.close()
                self._api_bound = None
                if not self._wiped:
                    self._instance.update(uuid=self._identity.uuid, api=None)
            if not self._stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), API_RETRY_SECONDS)


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket for the Device API (bound here, so a port in use is an error the agent survives)."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def configure_agent_logging(level: str) -> None:
    """Plain lines on stderr (journald adds the time); the agent has no JSON log dependency."""
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    logging.getLogger("docker").setLevel(logging.WARNING)


def run_agent(settings: AgentSettings) -> None:
    """Run the agent until SIGTERM/SIGINT: what `iotistic agent` does."""
    limit_malloc_arenas()
    configure_agent_logging(settings.log_level)

    async def main() -> None:
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(MAX_WORKER_THREADS, thread_name_prefix="agent"))
        await Agent(settings).run()

    asyncio.run(main())


__all__ = [
    "Agent",
    "AgentAlreadyRunning",
    "NotInLocalMode",
    "configure_agent_logging",
    "limit_malloc_arenas",
    "run_agent",
]
