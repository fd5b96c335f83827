"""The executor: makes reality match the target by running the planner's rounds on a runtime.

One apply: read the state, plan, run the round's steps in order (a failing step is recorded and the rest of the
round still runs, which is safe because the planner's steps within a round are independent), re-read, plan
again, until a plan has no steps left (converged, or only waiting), at most `max_rounds` rounds. A step that
failed is not retried within the same apply: the next apply (the run loop's next tick) tries it again, so one
broken service cannot spin an apply to its round limit.

What the planner leaves to the executor, because it needs memory and a clock:

* **Update locks**: read from the lock folders (`iotistic.agent.reconcile.locks`) before each round; `force`
  overrides them for one apply.
* **Pull backoff**: consecutive failed pulls per image set `BackoffState.pull_retry_at` via `next_backoff`; a
  successful pull forgets them.
* **Crash-loop backoff**: a service the target wants up that is seen exited again (an exit this executor has
  not counted yet, not caused by its own stop) or restarted by the engine's restart policy (its restart count
  grew) counts as a failure; `start_retry_at` is set via `next_backoff`, so the planner starts it again only
  then. A service that stays up for `stable_after` seconds (or ran that long before it exited) starts afresh.
  With a Docker restart policy of `always`/`unless-stopped` Docker restarts the container itself (with its own
  backoff, 100 ms doubling to a minute); the executor then only reports the crash loop.
* **Status**: a snapshot for the Device API and the cloud report: each service's container status and error,
  pending steps, deferrals with their reasons, and `applying | applied | error` overall.

Backoff is kept on the wall clock (`time.time`) so that `export_backoff()` can be persisted by the store and
`import_backoff()` restores it after an agent restart: a crash-looping service is not restarted at once just
because the agent was.

Adoption after an agent restart needs nothing here: the planner compares each container's config-hash label with
the target, so a new executor on an unchanged device plans no step at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from iotistic.agent.reconcile.locks import UpdateLocks
from iotistic.agent.reconcile.planner import (
    Action,
    BackoffState,
    DeferReason,
    Deferred,
    Plan,
    Step,
    UpdateStrategy,
    next_backoff,
    plan,
)
from iotistic.agent.runtime.base import Runtime, RuntimeUnavailable, StepFailed
from iotistic.agent.state import ContainerStatus, CurrentState, ObservedService, ServiceKey
from iotistic.core.schemas.target_state import Service, ServiceState, TargetState

log = logging.getLogger(__name__)

BACKOFF_FORMAT_VERSION = 1
_ERROR_REASONS = frozenset({DeferReason.pull_backoff, DeferReason.crash_backoff, DeferReason.name_collision})
_DOWN = frozenset({ContainerStatus.exited, ContainerStatus.dead})
_MAX_ERROR_CHARS = 1000


class ApplyStatus(StrEnum):
    idle = "idle"  # no target yet
    applying = "applying"  # an apply runs, or work waits on a lock or on the engine's restart policy
    applied = "applied"  # the device runs its target
    error = "error"  # something failed or is backing off; see the services' errors


class ServiceLocked(Exception):
    """The service holds its update lock and the request was not forced."""


class ServiceNotFound(Exception):
    """No container for that service."""


@dataclass
class _Failures:
    """Consecutive failures of one image pull or one service's runs."""

    count: int = 0
    retry_at: float = 0.0
    error: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"failures": self.count, "retryAt": self.retry_at, "error": self.error}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> _Failures:
        return cls(int(data.get("failures", 0)), float(data.get("retryAt", 0.0)), str(data.get("error", "")))


@dataclass(frozen=True)
class StepOutcome:
    step: Step
    error: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class ApplyReport:
    """What one `apply` did. `plan` is the last plan (empty steps unless the round limit was hit)."""

    status: ApplyStatus
    rounds: int = 0
    outcomes: list[StepOutcome] = field(default_factory=list)
    plan: Plan = field(default_factory=Plan)
    error: str | None = None

    @property
    def steps(self) -> list[Step]:
        return [o.step for o in self.outcomes]

    @property
    def failed(self) -> list[StepOutcome]:
        return [o for o in self.outcomes if not o.ok]


@dataclass(frozen=True)
class ServiceStatus:
    """One service as the Device API and the cloud report show it."""

    app_id: int
    service_name: str
    service_id: int | None
    image: str | None
    target_state: str | None  # None: no longer in the target (being removed)
    status: str  # the container's status, or "missing" / "downloading" when there is no container yet
    container_id: str | None = None
    restart_count: int = 0
    exit_code: int | None = None
    started_at: datetime | None = None
    failures: int = 0
    retry_at: float | None = None
    error: str | None = None
    locked: bool = False
    pending: tuple[str, ...] = ()
    deferred: tuple[str, ...] = ()

    def to_report(self) -> dict[str, Any]:
        """The `ServiceReport` shape of the cloud's device report."""
        report: dict[str, Any] = {
            "serviceName": self.service_name,
            "serviceId": self.service_id,
            "image": self.image,
            "status": self.status,
            "containerId": self.container_id,
            "restartCount": self.restart_count,
        }
        if self.error:
            report["error"] = self.error[:_MAX_ERROR_CHARS]
        return report

    def to_json(self) -> dict[str, Any]:
        return {
            **self.to_report(),
            "appId": self.app_id,
            "targetState": self.target_state,
            "exitCode": self.exit_code,
            "startedAt": self.started_at.isoformat() if self.started_at else None,
            "failures": self.failures,
            "retryAt": _iso(self.retry_at),
            "error": self.error,
            "locked": self.locked,
            "pending": list(self.pending),
            "deferred": list(self.deferred),
        }


@dataclass(frozen=True)
class DeferredInfo:
    subject: str
    reason: str
    detail: str
    retry_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"subject": self.subject, "reason": self.reason, "detail": self.detail, "retryAt": _iso(self.retry_at)}


@dataclass(frozen=True)
class ExecutorStatus:
    """A snapshot: safe to hand to another task, never mutated."""

    status: ApplyStatus = ApplyStatus.idle
    services: tuple[ServiceStatus, ...] = ()
    pending: tuple[str, ...] = ()
    deferred: tuple[DeferredInfo, ...] = ()
    last_error: str | None = None
    last_apply_at: float | None = None
    last_applied_at: float | None = None
    wake_at: float | None = None
    app_names: Mapping[int, str] = field(default_factory=dict)

    @property
    def update_pending(self) -> bool:
        return bool(self.pending or self.deferred)

    def service(self, app_id: int, service_name: str) -> ServiceStatus | None:
        return next((s for s in self.services if (s.app_id, s.service_name) == (app_id, service_name)), None)

    def report_apps(self) -> dict[str, dict[str, Any]]:
        """`{appId: AppReport}` for the cloud's device report (`PATCH /api/v1/device/state`)."""
        apps: dict[str, dict[str, Any]] = {}
        for s in self.services:
            app = apps.setdefault(
                str(s.app_id), {"appId": s.app_id, "appName": self.app_names.get(s.app_id), "services": []}
            )
            app["services"].append(s.to_report())
        return apps

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "services": [s.to_json() for s in self.services],
            "pending": list(self.pending),
            "deferred": [d.to_json() for d in self.deferred],
            "lastError": self.last_error,
            "lastApplyAt": _iso(self.last_apply_at),
            "lastAppliedAt": _iso(self.last_applied_at),
            "wakeAt": _iso(self.wake_at),
        }


class Executor:
    """Applies a target through a runtime; owns locks, backoff, local state holds and the status snapshot.

    Use: `set_target(target)` and run `run()` as a task (it applies on every change, when a backoff expires and
    every `interval` seconds), or call `apply(target)` directly. Only one apply runs at a time.
    """

    def __init__(
        self,
        runtime: Runtime,
        *,
        lock_root: Path,
        clock: Callable[[], float] = time.time,
        max_rounds: int = 12,
        pull_backoff: tuple[float, float] = (2.0, 300.0),
        crash_backoff: tuple[float, float] = (2.0, 300.0),
        stable_after: float = 30.0,
        default_strategy: UpdateStrategy = UpdateStrategy.download_then_kill,
    ) -> None:
        self.runtime = runtime
        self.locks = UpdateLocks(lock_root)
        self.clock = clock
        self.max_rounds = max_rounds
        self.pull_backoff = pull_backoff
        self.crash_backoff = crash_backoff
        self.stable_after = stable_after
        self.default_strategy = default_strategy
        self._target: TargetState | None = None
        self._holds: dict[ServiceKey, ServiceState] = {}
        self._pulls: dict[str, _Failures] = {}
        self._crashes: dict[ServiceKey, _Failures] = {}
        self._step_errors: dict[ServiceKey, str] = {}
        self._counted_exits: dict[str, datetime] = {}  # container id -> FinishedAt already counted
        self._restart_counts: dict[str, int] = {}  # container id -> restart count last seen
        self._stopped_by_us: set[str] = set()
        self._started_at = clock()  # exits older than this agent are history, not crashes
        self._apply_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._force_next = False
        self._status = ExecutorStatus()
        self._applying = False
        self._last_error: str | None = None
        self._last_apply_at: float | None = None
        self._last_applied_at: float | None = None

    # --- target and requests -------------------------------------------------------------------------------
    @property
    def target(self) -> TargetState | None:
        return self._target

    def set_target(self, target: TargetState) -> None:
        """Adopt a new target and wake the run loop. A different target drops the local holds (a deploy wins)."""
        if self._target is None or self._target.document() != target.document():
            self._holds.clear()
        self._target = target
        self._wake.set()

    def request_apply(self, *, force: bool = False) -> None:
        """Wake the run loop for an apply now (`/v1/update`); `force` overrides update locks for that apply."""
        self._force_next = self._force_next or force
        self._wake.set()

    def hold(self, key: ServiceKey, state: ServiceState | None) -> None:
        """Keep a service in `state` whatever the target says (Device API stop/start), until a new target;
        `None` releases the hold. Takes effect at the next apply."""
        if state is None:
            self._holds.pop(key, None)
        else:
            self._holds[key] = state
        self._wake.set()

    def holds(self) -> dict[ServiceKey, ServiceState]:
        return dict(self._holds)

    def locks_held(self) -> frozenset[ServiceKey]:
        """Services holding their update lock now (reboot and shutdown respect these unless forced)."""
        return self.locks.held()

    def status(self) -> ExecutorStatus:
        return self._status

    # --- the loop ------------------------------------------------------------------------------------------
    async def run(self, *, interval: float = 10.0) -> None:
        """Apply whenever woken, when the earliest backoff expires, and at least every `interval` seconds (to
        notice crashes and drift). Never returns on its own; cancel the task to stop it."""
        while True:
            self._wake.clear()
            force, self._force_next = self._force_next, False
            if self._target is not None:
                try:
                    await self.apply(force=force)
                except Exception:  # the loop must survive anything one apply can throw
                    log.exception("apply failed")
            delay = interval
            if self._status.wake_at is not None:
                delay = min(delay, max(0.05, self._status.wake_at - self.clock()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    async def apply(self, target: TargetState | None = None, *, force: bool = False) -> ApplyReport:
        """Bring the device to `target` (default: the current one, with holds applied). See the module doc."""
        async with self._apply_lock:
            if target is not None:
                self.set_target(target)
            if self._target is None:
                return ApplyReport(ApplyStatus.idle)
            effective = self._effective_target()
            self._applying = True
            self._status = replace(self._status, status=ApplyStatus.applying)
            try:
                report = await self._apply(effective, force)
            finally:
                self._applying = False
            self._last_apply_at = self.clock()
            self._finish(report)
            return report

    async def _apply(self, target: TargetState, force: bool) -> ApplyReport:
        report = ApplyReport(ApplyStatus.applying)
        failed: set[tuple[Any, ...]] = set()
        for _ in range(self.max_rounds + 1):
            try:
                current = await self.runtime.read_state()
                images = await self.runtime.images_present()
            except RuntimeUnavailable as exc:
                report.error = str(exc)
                return report
            now = self.clock()
            self._observe(current, target, now)
            report.plan = self._plan(current, target, images, force, now)
            self._snapshot(current, target, report.plan)
            steps = [s for s in report.plan.steps if _identity(s) not in failed]
            if not steps or report.rounds == self.max_rounds:
                return report
            report.rounds += 1
            for step in steps:
                outcome = await self._execute(step)
                report.outcomes.append(outcome)
                if not outcome.ok:
                    failed.add(_identity(step))
        return report

    def _plan(
        self, current: CurrentState, target: TargetState, images: frozenset[str], force: bool, now: float
    ) -> Plan:
        return plan(
            current,
            target,
            images_present=images,
            locks=self.locks.held(),
            force=force,
            backoff=self.backoff_state(),
            now=now,
            default_strategy=self.default_strategy,
        )

    async def _execute(self, step: Step) -> StepOutcome:
        started = time.monotonic()
        try:
            await self.runtime.execute(step)
        except (StepFailed, RuntimeUnavailable) as exc:
            message = exc.message if isinstance(exc, StepFailed) else str(exc)
            log.warning("step failed: %s: %s", step, message)
            self._on_failure(step, message)
            return StepOutcome(step, message, time.monotonic() - started)
        log.info("step done: %s", step)
        self._on_success(step)
        return StepOutcome(step, None, time.monotonic() - started)

    def _on_success(self, step: Step) -> None:
        if step.action is Action.pull_image and step.image:
            self._pulls.pop(step.image, None)
        if step.action is Action.stop and step.container_id:
            self._stopped_by_us.add(step.container_id)
        if step.action is Action.start and step.container_id:
            self._stopped_by_us.discard(step.container_id)  # from now on, an exit is the service's own
        if step.action is Action.create and step.key is not None:
            self._crashes.pop(step.key, None)  # a new container (new config) starts with a clean slate
        if step.key is not None:
            self._step_errors.pop(step.key, None)

    def _on_failure(self, step: Step, message: str) -> None:
        now = self.clock()
        if step.action is Action.pull_image and step.image:
            self._count(self._pulls.setdefault(step.image, _Failures()), now, self.pull_backoff, message)
        elif step.action is Action.start and step.key is not None:
            self._count(self._crashes.setdefault(step.key, _Failures()), now, self.crash_backoff, message)
        if step.key is not None:
            self._step_errors[step.key] = f"{step.action.value} failed: {message}"
        else:
            self._last_error = f"{step}: {message}"

    @staticmethod
    def _count(failures: _Failures, now: float, backoff: tuple[float, float], error: str, times: int = 1) -> None:
        failures.count += times
        failures.retry_at = now + next_backoff(failures.count, *backoff)
        failures.error = error

    # --- crash detection -----------------------------------------------------------------------------------
    def _observe(self, current: CurrentState, target: TargetState, now: float) -> None:
        """Count crashes of services the target wants up, and forgive services that stayed up long enough."""
        wanted_up = {key for key, service in _services(target).items() if service.state is not ServiceState.stopped}
        for key in [k for k in self._crashes if k not in wanted_up]:
            del self._crashes[key]  # stopped or gone from the target: nothing left to back off
        present = set()
        for c in current.managed_services():
            present.add(c.container_id)
            if c.key in wanted_up:
                self._observe_container(c, now)
        for table in (self._counted_exits, self._restart_counts):
            for cid in [cid for cid in table if cid not in present]:
                del table[cid]
        self._stopped_by_us &= present

    def _observe_container(self, c: ObservedService, now: float) -> None:
        previous_restarts = self._restart_counts.get(c.container_id)
        self._restart_counts[c.container_id] = c.restart_count
        if previous_restarts is not None and c.restart_count > previous_restarts:
            error = f"restarted {c.restart_count} times by its restart policy; last exit code {c.exit_code}"
            self._crash(c, now, error, c.restart_count - previous_restarts)
        elif c.status in _DOWN and self._is_new_crash(c):
            assert c.finished_at is not None
            self._counted_exits[c.container_id] = c.finished_at
            ran = c.finished_at.timestamp() - c.started_at.timestamp() if c.started_at else 0.0
            if ran >= self.stable_after:
                self._crashes.pop(c.key, None)  # it had been fine for a while: a fresh failure, not a loop
            self._crash(c, now, f"exited with code {c.exit_code}" + (f": {c.error}" if c.error else ""))
        elif c.status is ContainerStatus.running and c.started_at is not None:
            if now - c.started_at.timestamp() >= self.stable_after:
                self._crashes.pop(c.key, None)

    def _is_new_crash(self, c: ObservedService) -> bool:
        if c.finished_at is None or c.container_id in self._stopped_by_us:
            return False
        if c.finished_at.timestamp() < self._started_at:
            return False  # exited before this agent ran: not something it can call a crash loop
        return self._counted_exits.get(c.container_id) != c.finished_at

    def _crash(self, c: ObservedService, now: float, error: str, times: int = 1) -> None:
        failures = self._crashes.setdefault(c.key, _Failures())
        self._count(failures, now, self.crash_backoff, error, times)
        log.warning("service %s crashed (%d in a row): %s", c.key, failures.count, error)

    # --- backoff persistence -------------------------------------------------------------------------------
    def backoff_state(self) -> BackoffState:
        return BackoffState(
            pull_retry_at={image: f.retry_at for image, f in self._pulls.items()},
            start_retry_at={key: f.retry_at for key, f in self._crashes.items()},
        )

    def export_backoff(self) -> dict[str, Any]:
        """Failure counts and retry times as plain JSON (wall-clock times), for the store to persist."""
        return {
            "version": BACKOFF_FORMAT_VERSION,
            "pulls": {image: f.to_json() for image, f in self._pulls.items()},
            "crashes": {str(key): f.to_json() for key, f in self._crashes.items()},
        }

    def import_backoff(self, data: Mapping[str, Any] | None) -> None:
        """Restore what `export_backoff` gave; anything unreadable is ignored (backoff is an optimisation)."""
        if not data or data.get("version") != BACKOFF_FORMAT_VERSION:
            return
        with contextlib.suppress(TypeError, ValueError, AttributeError):
            self._pulls = {str(k): _Failures.from_json(v) for k, v in (data.get("pulls") or {}).items()}
            crashes: dict[ServiceKey, _Failures] = {}
            for text, value in (data.get("crashes") or {}).items():
                app_id, _, name = str(text).partition("/")
                crashes[ServiceKey(int(app_id), name)] = _Failures.from_json(value)
            self._crashes = crashes

    # --- Device API helpers --------------------------------------------------------------------------------
    async def restart_service(self, key: ServiceKey, *, force: bool = False) -> None:
        """Restart a service's container in place (it keeps its id). Raises `ServiceLocked`, `ServiceNotFound`,
        `StepFailed`. A deliberate restart also clears the service's crash backoff."""
        if not force and self.locks.is_held(key):
            raise ServiceLocked(f"service {key} holds its update lock")
        async with self._apply_lock:
            current = await self.runtime.read_state()
            containers = [c for c in current.managed_services() if c.key == key]
            if not containers:
                raise ServiceNotFound(f"no container for service {key}")
            for c in containers:
                await self.runtime.restart(c.container_id)
            self._crashes.pop(key, None)
        self._wake.set()

    # --- status --------------------------------------------------------------------------------------------
    def _effective_target(self) -> TargetState:
        """The target with the local holds (Device API stop/start) applied; `state` is not in the config hash,
        so a hold never recreates a container."""
        assert self._target is not None
        if not self._holds:
            return self._target
        apps = {}
        for key, app in self._target.apps.items():
            services = [
                s.model_copy(update={"state": self._holds[ServiceKey(app.app_id, s.service_name)]})
                if ServiceKey(app.app_id, s.service_name) in self._holds
                else s
                for s in app.services
            ]
            apps[key] = app.model_copy(update={"services": services})
        return self._target.model_copy(update={"apps": apps})

    def _finish(self, report: ApplyReport) -> None:
        report.status = self._overall(report)
        if report.error:
            self._last_error = report.error
        elif report.status is ApplyStatus.applied:
            self._last_error = None
            self._last_applied_at = self._last_apply_at
        self._status = replace(
            self._status,
            status=report.status,
            last_error=self._last_error,
            last_apply_at=self._last_apply_at,
            last_applied_at=self._last_applied_at,
        )

    def _overall(self, report: ApplyReport) -> ApplyStatus:
        if report.error or report.failed:
            return ApplyStatus.error
        if report.plan.steps:
            return ApplyStatus.error  # the round limit was reached with work left
        if any(d.reason in _ERROR_REASONS for d in report.plan.deferred):
            return ApplyStatus.error
        if any(s.error for s in self._status.services):
            return ApplyStatus.error
        return ApplyStatus.applied if report.plan.converged else ApplyStatus.applying

    def _snapshot(self, current: CurrentState, target: TargetState, p: Plan) -> None:
        services = _services(target)
        keys = sorted(set(services) | {c.key for c in current.managed_services()})
        locked = self.locks.held()
        self._status = ExecutorStatus(
            status=ApplyStatus.applying if self._applying else self._status.status,
            services=tuple(self._service_status(k, services.get(k), current, p, locked) for k in keys),
            pending=tuple(str(s) for s in p.steps),
            deferred=tuple(DeferredInfo(d.subject, d.reason.value, d.detail, d.retry_at) for d in p.deferred),
            last_error=self._last_error,
            last_apply_at=self._last_apply_at,
            last_applied_at=self._last_applied_at,
            wake_at=_earliest(p.wake_at, self._next_stability_check(current, self.clock())),
            app_names={app.app_id: app.app_name for app in target.apps.values()},
        )

    def _service_status(
        self,
        key: ServiceKey,
        service: Service | None,
        current: CurrentState,
        p: Plan,
        locked: frozenset[ServiceKey],
    ) -> ServiceStatus:
        containers = sorted(
            (c for c in current.managed_services() if c.key == key), key=lambda c: _RANK.get(c.status, 9)
        )
        c = containers[0] if containers else None
        image = service.config.image if service else (c.image if c else None)
        pulling = any(s.action is Action.pull_image and s.image == image for s in p.steps)
        pending = tuple(str(s) for s in p.steps if s.key == key or (s.action is Action.pull_image and s.image == image))
        deferred = tuple(f"{d.reason.value}: {d.detail}" for d in p.deferred if _concerns(d, key, image))
        crash = self._crashes.get(key)
        pull = self._pulls.get(image) if image else None
        return ServiceStatus(
            app_id=key.app_id,
            service_name=key.service_name,
            service_id=service.service_id if service else (c.service_id if c else None),
            image=image,
            target_state=service.state.value if service else None,
            status=c.status.value if c else ("downloading" if pulling else "missing"),
            container_id=c.container_id if c else None,
            restart_count=c.restart_count if c else 0,
            exit_code=c.exit_code if c else None,
            started_at=c.started_at if c else None,
            failures=crash.count if crash else 0,
            retry_at=crash.retry_at if crash else (pull.retry_at if pull else None),
            error=self._service_error(key, crash, pull, image),
            locked=key in locked,
            pending=pending,
            deferred=deferred,
        )

    def _service_error(
        self, key: ServiceKey, crash: _Failures | None, pull: _Failures | None, image: str | None
    ) -> str | None:
        if crash and crash.count:
            return (
                f"crash-looping: {crash.count} failure(s) in a row, {crash.error}; "
                f"next start not before {_iso(crash.retry_at)}"
            )
        if pull and pull.count:
            return f"image {image}: {pull.count} failed pull(s), {pull.error}; next try at {_iso(pull.retry_at)}"
        return self._step_errors.get(key)

    def _next_stability_check(self, current: CurrentState, now: float) -> float | None:
        """When a crash-counted service that is running now will have been up long enough to be forgiven."""
        times = [
            c.started_at.timestamp() + self.stable_after
            for c in current.managed_services()
            if c.key in self._crashes and c.status is ContainerStatus.running and c.started_at is not None
        ]
        future = [t for t in times if t > now]
        return min(future) if future else None


_RANK = {
    ContainerStatus.running: 0,
    ContainerStatus.paused: 1,
    ContainerStatus.restarting: 2,
    ContainerStatus.created: 3,
    ContainerStatus.exited: 4,
    ContainerStatus.dead: 5,
}


def _services(target: TargetState) -> dict[ServiceKey, Service]:
    return {ServiceKey(app.app_id, s.service_name): s for app in target.apps.values() for s in app.services}


def _identity(step: Step) -> tuple[Any, ...]:
    """What makes two steps of different rounds 'the same step' (for not retrying a failure within an apply)."""
    return (step.action, step.key, step.container_id, step.name, step.image)


def _concerns(d: Deferred, key: ServiceKey, image: str | None) -> bool:
    return d.key == key or (image is not None and d.subject == f"image {image}")


def _earliest(*times: float | None) -> float | None:
    present = [t for t in times if t is not None]
    return min(present) if present else None


def _iso(timestamp: float | None) -> str | None:
    return datetime.fromtimestamp(timestamp, UTC).isoformat() if timestamp else None


def service_keys(target: TargetState, app_id: int | None = None) -> list[ServiceKey]:
    """The services of a target (of one app when `app_id` is given), e.g. to hold a whole app stopped."""
    return [key for key in _services(target) if app_id is None or key.app_id == app_id]
