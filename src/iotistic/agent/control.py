"""Operating the agent from the command line: `iotistic agent status | apply | deprovision | factory-reset`.

Whether an agent runs is known from its instance lock (`iotistic.agent.instance`), never guessed from a port:

* **An agent runs**: every operation goes through its Device API (at the address it wrote into its lock file),
  with the local API key from the store. The agent owns the containers and its store; working beside it would
  race its executor.
* **None runs**: the operation works directly on the store and the container engine, holding the instance lock
  meanwhile (an agent starting then waits for it). `apply` persists the target, so the agent adopts it when it
  starts, and applies it right away with the same executor the agent uses; `status` reads the store and plans
  from what the engine shows (what runs, what an agent would still do).

Every failure the operator can act on is a `ControlError` with a one-line message.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from iotistic.agent import identity as identity_mod
from iotistic.agent.instance import InstanceLock
from iotistic.agent.main import (
    APPLIED_VERSION_KEY,
    BACKOFF_KEY,
    CLOUD_ENDPOINT_KEY,
    CURRENT_STATE_KEY,
)
from iotistic.agent.reconcile.executor import ApplyStatus, Executor
from iotistic.agent.reconcile.locks import UpdateLocks
from iotistic.agent.reconcile.planner import plan
from iotistic.agent.store import AgentStore
from iotistic.agent.sync.client import TargetDocument, load_target, read_status, save_target
from iotistic.core.schemas.target_state import TargetState

if TYPE_CHECKING:
    import httpx

    from iotistic.agent.runtime.base import Runtime
    from iotistic.agent.settings import AgentSettings

API_TIMEOUT = 10.0
POLL_SECONDS = 0.5


def _after(summary: dict[str, Any], moment: float) -> bool:
    """Whether the agent finished an apply after `moment` (so its status is about the new target)."""
    finished = (summary.get("apply") or {}).get("lastApplyAt")
    try:
        return finished is not None and dt.datetime.fromisoformat(finished).timestamp() >= moment
    except (TypeError, ValueError):
        return False


class ControlError(Exception):
    """The operation cannot be done as asked; one line for the operator."""


class Control:
    """The operations, for one agent configuration (the same environment as the agent's)."""

    def __init__(self, settings: AgentSettings) -> None:
        self.settings = settings
        self.instance = InstanceLock(settings.data_dir)

    # --- plumbing ----------------------------------------------------------------------------------------------
    def running(self) -> dict[str, Any] | None:
        """The running agent's lock information (`pid`, `api`, `uuid`), or None when none runs."""
        return self.instance.holder()

    def _store(self, *, create: bool = False) -> AgentStore | None:
        if not create and not self.settings.store_path.exists():
            return None
        try:
            return AgentStore.for_settings(self.settings)
        except OSError as exc:
            raise ControlError(f"cannot open the agent's store {self.settings.store_path}: "
                               f"{exc.strerror or exc} (run as the agent's user)") from None

    def _api_url(self, holder: dict[str, Any]) -> str:
        api = holder.get("api")
        if not api:
            raise ControlError(f"the agent runs (pid {holder.get('pid')}) but its Device API is not listening "
                               "(see the agent's log)")
        return f"http://{api}"

    def _client(self, holder: dict[str, Any]) -> httpx.AsyncClient:
        import httpx

        store = self._store()
        identity = store.identity() if store is not None else None
        if store is not None:
            store.close()
        if identity is None:
            raise ControlError("the agent runs but its store has no identity yet; try again in a moment")
        return httpx.AsyncClient(base_url=self._api_url(holder), timeout=API_TIMEOUT,
                                 headers={"X-API-Key": identity.local_api_key})

    async def _call(self, holder: dict[str, Any], method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        try:
            async with self._client(holder) as client:
                response = await client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ControlError(f"the agent (pid {holder.get('pid')}) does not answer at {holder.get('api')}: "
                               f"{' '.join(str(exc).split()) or type(exc).__name__}") from None
        if response.status_code >= 400:
            try:
                message = response.json().get("message") or response.text
            except ValueError:
                message = response.text
            raise ControlError(f"the agent refused: HTTP {response.status_code}: {' '.join(str(message).split())}")
        return response.json() if response.content else None

    def _lock(self) -> InstanceLock:
        """Hold the instance lock for a direct operation (no agent runs)."""
        if not self.instance.acquire(command=True):
            holder = self.running() or {}
            raise ControlError(f"an agent started meanwhile (pid {holder.get('pid')}); run the command again")
        return self.instance

    def _runtime(self) -> Runtime:
        from iotistic.agent.runtime.docker import DockerRuntime

        return DockerRuntime(lock_root=self.settings.data_dir / "locks", base_url=self.settings.docker_host)

    def _cloud_endpoint(self, store: AgentStore | None) -> str | None:
        if self.settings.cloud_api_endpoint:
            return self.settings.cloud_api_endpoint
        if store is None:
            return None
        identity = store.identity()
        endpoint = store.get(CLOUD_ENDPOINT_KEY)
        if isinstance(endpoint, str) and identity is not None and (identity.provisioned or identity.provisioning_key):
            return endpoint
        return None

    # --- status --------------------------------------------------------------------------------------------------
    async def status(self) -> dict[str, Any]:
        """The running agent's `status_summary()`; or, when none runs (or it does not answer), what the store
        and the engine show."""
        holder = self.running()
        api_error = None
        if holder is not None:
            try:
                device = await self._call(holder, "GET", "/v1/device")
                summary: dict[str, Any] = dict(device.get("agent") or {})
                summary["pid"] = holder.get("pid")
                return summary
            except ControlError as exc:
                api_error = str(exc)
        summary = await self._offline_status()
        if holder is not None:
            summary.update(running=True, pid=holder.get("pid"), apiError=api_error)
        return summary

    async def _offline_status(self) -> dict[str, Any]:
        import iotistic

        store = self._store()
        summary: dict[str, Any] = {"running": False, "agentVersion": iotistic.__version__, "dataDir":
                                   str(self.settings.data_dir)}
        target: TargetDocument | None = None
        backoff: Any = None
        try:
            if store is not None:
                identity = store.identity()
                target = load_target(store)
                backoff = store.get(BACKOFF_KEY)
                last = store.get(CURRENT_STATE_KEY)
                provisioning = identity_mod.provision_status(store)
                provisioning["cloudEndpoint"] = self._cloud_endpoint(store)
                summary.update(
                    uuid=identity.uuid if identity else None,
                    deviceName=identity.device_name if identity else None,
                    deviceType=identity.device_type if identity else None,
                    mode="cloud" if self._cloud_endpoint(store) else "local",
                    appliedVersion=store.get(APPLIED_VERSION_KEY),
                    targetVersion=target.version if target else None,
                    lastKnownState=last,
                    status=last.get("status") if isinstance(last, dict) else None,
                    provisioning=provisioning,
                    sync=read_status(store),
                )
            else:
                summary.update(mode="cloud" if self.settings.cloud_api_endpoint else "local", status=None,
                               note=f"no agent data in {self.settings.data_dir} yet")
        finally:
            if store is not None:
                store.close()
        summary["apply"], summary["runtime"], summary["locks"] = await self._engine_view(target, backoff)
        return summary

    async def _engine_view(self, target: TargetDocument | None, backoff: Any
                           ) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
        """What runs (managed containers) and what an agent would still do, read from the engine."""
        runtime = self._runtime()
        locks = UpdateLocks(self.settings.data_dir / "locks").held()
        try:
            version = dict(await runtime.version())
            current = await runtime.read_state()
            images = await runtime.images_present()
        except Exception as exc:
            return ({"services": [], "pending": [], "deferred": []},
                    {"runtime": runtime.name, "error": " ".join(str(exc).split())}, sorted(map(str, locks)))
        finally:
            await runtime.close()
        executor = Executor(runtime, lock_root=self.settings.data_dir / "locks")
        executor.import_backoff(backoff)
        wanted = {(app.app_id, s.service_name): s for app in (target.state.apps.values() if target else ())
                  for s in app.services}
        services = []
        for c in sorted(current.managed_services(), key=lambda c: (c.app_id, c.service_name)):
            service = wanted.get((c.app_id, c.service_name))
            services.append({
                "appId": c.app_id, "serviceName": c.service_name, "serviceId": c.service_id, "image": c.image,
                "status": c.status.value, "containerId": c.container_id, "restartCount": c.restart_count,
                "targetState": service.state.value if service else None, "exitCode": c.exit_code,
                "startedAt": c.started_at.isoformat() if c.started_at else None, "error": c.error or None,
                "locked": c.key in locks,
            })
        running = {(s["appId"], s["serviceName"]) for s in services}
        for (app_id, name), service in sorted(wanted.items()):
            if (app_id, name) not in running:
                services.append({"appId": app_id, "serviceName": name, "serviceId": service.service_id,
                                 "image": service.config.image, "status": "missing", "containerId": None,
                                 "restartCount": 0, "targetState": service.state.value})
        pending: list[str] = []
        deferred: list[dict[str, Any]] = []
        if target is not None:
            p = plan(current, target.state, images_present=images, locks=locks, backoff=executor.backoff_state(),
                     now=time.time())
            pending = [str(s) for s in p.steps]
            deferred = [{"subject": d.subject, "reason": d.reason.value, "detail": d.detail} for d in p.deferred]
        return ({"services": services, "pending": pending, "deferred": deferred},
                {**version, "runtime": runtime.name}, sorted(map(str, locks)))

    # --- apply ---------------------------------------------------------------------------------------------------
    async def apply(self, target: TargetState, *, wait: bool = True, wait_seconds: float = 300.0,
                    progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Local mode: make `target` the device's target and apply it (see the module doc). Returns the status
        summary at the end (`result`: applied | error | applying when the timeout came first | accepted)."""
        holder = self.running()
        if holder is not None:
            return await self._apply_through_agent(holder, target, wait=wait, wait_seconds=wait_seconds,
                                                   progress=progress)
        with self._lock():
            return await self._apply_directly(target, wait_seconds=wait_seconds, progress=progress)

    async def _apply_through_agent(self, holder: dict[str, Any], target: TargetState, *, wait: bool,
                                   wait_seconds: float, progress: Callable[[dict[str, Any]], None] | None
                                   ) -> dict[str, Any]:
        before = await self._call(holder, "GET", "/v1/device")
        old_version = (before.get("agent") or {}).get("targetVersion") or 0
        posted_at = time.time()
        await self._call(holder, "POST", "/v2/local/target-state", json=target.document())
        deadline = time.monotonic() + wait_seconds
        while True:
            summary = dict((await self._call(holder, "GET", "/v1/device")).get("agent") or {})
            summary["pid"] = holder.get("pid")
            if not wait:
                summary["result"] = "accepted"
                return summary
            new_target = (summary.get("targetVersion") or 0) > old_version
            if progress is not None:
                progress(summary)
            if new_target and summary.get("appliedVersion") == summary.get("targetVersion") \
                    and summary.get("status") == ApplyStatus.applied.value:
                summary["result"] = "applied"
                return summary
            if new_target and summary.get("status") == ApplyStatus.error.value and _after(summary, posted_at):
                summary["result"] = "error"
                return summary
            if time.monotonic() > deadline:
                summary["result"] = "applying"
                return summary
            await asyncio.sleep(POLL_SECONDS)

    async def _apply_directly(self, target: TargetState, *, wait_seconds: float,
                              progress: Callable[[dict[str, Any]], None] | None) -> dict[str, Any]:
        store = self._store(create=True)
        assert store is not None
        try:
            if self._cloud_endpoint(store):
                raise ControlError("this device takes its target from the cloud; a local target needs local mode "
                                   "(deprovision it first)")
            identity_mod.load_or_create_identity(store, self.settings)
            previous = load_target(store)
            document = TargetDocument((previous.version if previous else 0) + 1, target)
            save_target(store, document)
            runtime = self._runtime()
            executor = Executor(runtime, lock_root=self.settings.data_dir / "locks")
            executor.import_backoff(store.get(BACKOFF_KEY))
            deadline = time.monotonic() + wait_seconds
            try:
                while True:
                    report = await executor.apply(target)
                    status = executor.status()
                    if progress is not None:
                        progress({"apply": status.to_json(), "status": status.status.value})
                    if report.status is not ApplyStatus.applying or time.monotonic() > deadline:
                        break
                    await asyncio.sleep(1.0)  # waiting on an update lock or a backoff
            finally:
                await runtime.close()
            store.set(BACKOFF_KEY, executor.export_backoff())
            applied = report.status is ApplyStatus.applied
            if applied:
                store.set(APPLIED_VERSION_KEY, document.version)
            state: dict[str, Any] = {"apps": status.report_apps(), "status": status.status.value,
                                     "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
            if store.get(APPLIED_VERSION_KEY) is not None:
                state["appliedVersion"] = store.get(APPLIED_VERSION_KEY)
            store.set(CURRENT_STATE_KEY, state)
            return {
                "running": False,
                "result": report.status.value,
                "status": status.status.value,
                "targetVersion": document.version,
                "appliedVersion": store.get(APPLIED_VERSION_KEY),
                "apply": status.to_json(),
                "failed": [f"{o.step}: {o.error}" for o in report.failed],
                "error": report.error,
            }
        finally:
            store.close()

    # --- deprovision and factory reset ---------------------------------------------------------------------------
    async def deprovision(self) -> dict[str, Any]:
        """Forget the cloud identity (the containers keep running). Returns the provisioning status."""
        holder = self.running()
        if holder is not None:
            result: dict[str, Any] = await self._call(holder, "POST", "/v1/deprovision")
            return result
        with self._lock():
            store = self._store()
            if store is None:
                raise ControlError(f"no agent data in {self.settings.data_dir}: nothing to deprovision")
            try:
                identity_mod.deprovision(store)
                store.delete(CLOUD_ENDPOINT_KEY)
                return identity_mod.provision_status(store)
            finally:
                store.close()

    async def factory_reset(self, *, wait_seconds: float = 120.0) -> dict[str, Any]:
        """Remove every managed container, network and volume, then the agent's identity and data."""
        holder = self.running()
        if holder is not None:
            await self._call(holder, "POST", "/v1/factory-reset", json={"confirm": True})
            deadline = time.monotonic() + wait_seconds
            while self.running() is not None:
                if time.monotonic() > deadline:
                    raise ControlError(f"the agent (pid {holder.get('pid')}) reset the device but did not exit")
                await asyncio.sleep(POLL_SECONDS)
            return {"reset": True, "through": "agent", "pid": holder.get("pid")}
        with self._lock():
            store = self._store(create=True)
            assert store is not None
            runtime = self._runtime()
            executor = Executor(runtime, lock_root=self.settings.data_dir / "locks")

            async def remove_workloads() -> None:
                report = await executor.apply(TargetState(), force=True)
                if report.error or report.failed or report.plan.steps:
                    raise RuntimeError(report.error or "; ".join(f"{o.step}: {o.error}" for o in report.failed)
                                       or "steps were left")

            try:
                await identity_mod.factory_reset(store, self.settings.data_dir, remove_workloads)
            except identity_mod.FactoryResetError as exc:
                raise ControlError(str(exc)) from None
            finally:
                await runtime.close()
                store.close()
            return {"reset": True, "through": "cli"}
