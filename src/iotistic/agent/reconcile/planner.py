"""The pure reconcile planner: (current, target) -> the next round of steps.

The executor runs one round, re-reads reality and calls `plan` again, until a plan has no steps. Nothing here
does I/O or reads a clock; time comes in as `now`, so the planner is deterministic and exhaustively testable.

Design rules (the "why" behind the code below):

* **One round = independent steps.** Every step of a round is valid against the state that was observed, and no
  step depends on another step of the same round. So a failed step never strands a dependent one, the executor
  may carry on past a failure (or run steps concurrently), and each step is re-justified by fresh observation.
  The price is a few more rounds (each one a cheap listing): a missing service goes create -> start -> pause
  over three rounds, a container goes unpause -> stop -> remove, and a service waits one round for the network
  created in the round before. Consequences: at most one step per container per round, a `create` only when the
  image is present and every network and volume it needs exists, a network or volume removal only when no
  observed container uses it. Within a round the order is still canonical (create networks, create volumes,
  pull images, service steps by app and service, remove networks, remove volumes) for readable logs.
* **Recreate is not an action**; it is the sequence (unpause) -> stop -> remove -> (pull) -> create -> start
  spread over rounds, each step carrying the reason (which config fields changed). The update strategy decides
  where the pull goes: `download-then-kill` (default) pulls first while the old container keeps running and
  kills it only once the image and every network and volume the new one needs are there; `kill-then-download`
  stops and removes first (frees memory on small devices), then pulls.
* **Unchanged services get no steps at all.** Change is detected with the config-hash label (see
  `iotistic.agent.state`), so what the runtime adds (management labels, the image's environment) never causes a
  recreate.
* **Paused containers are unpaused before they are stopped**: Docker refuses to stop a paused container.
* **Update locks** (a service's lock file, given as `locks`) defer every step that would interrupt or delete the
  service (stop, remove, and the unpause that only precedes a stop) unless `force`. Pausing, starting and pulling
  are not blocked. Deferred work is reported in `Plan.deferred`, never dropped silently.
* **Backoff.** A start is planned only once the service's crash backoff has expired and a pull only once the
  image's pull backoff has; the executor owns the failure counts and uses `next_backoff` to set retry times.
  A container the runtime's own restart policy is restarting is left to it (deferred as `restarting`).
* **Ownership.** Only objects with `io.iotistic.managed=true` are touched. When a name the agent needs is taken
  by something it does not own (a container, network or volume), nothing is done for it: the collision is
  reported as deferred and the services that need that name are not created; an old version of such a service
  is not killed either, so a collision never turns into downtime.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple

from iotistic.agent.state import (
    BUILTIN_NETWORKS,
    LABEL_UPDATE_STRATEGY,
    ComparableConfig,
    ContainerStatus,
    CurrentState,
    ObservedResource,
    ObservedService,
    ServiceKey,
    container_labels,
    container_name,
    network_name,
    resource_labels,
    volume_name,
)
from iotistic.core.schemas.target_state import Service, ServiceState, TargetState


class Action(StrEnum):
    create_network = "create_network"
    remove_network = "remove_network"
    create_volume = "create_volume"
    remove_volume = "remove_volume"
    pull_image = "pull_image"
    create = "create"
    start = "start"
    stop = "stop"
    pause = "pause"
    unpause = "unpause"
    remove = "remove"


class UpdateStrategy(StrEnum):
    download_then_kill = "download-then-kill"
    kill_then_download = "kill-then-download"


class DeferReason(StrEnum):
    update_lock = "update-lock"
    pull_backoff = "pull-backoff"
    crash_backoff = "crash-backoff"
    name_collision = "name-collision"
    restarting = "restarting"


@dataclass(frozen=True)
class Step:
    """One runtime operation. Which fields are set depends on the action:

    * service steps: `app_id`, `service_name`, `service_id`; `container_id` for all but `create`;
    * `create`: `name` (container name), `image`, `labels` (all of them, management ones included) and `service`
      (the target service, for the rest of its config);
    * `pull_image`: `image`;
    * network and volume steps: `name` (the Docker name), `app_id`, and `labels` on create.
    """

    action: Action
    reason: str
    app_id: int | None = None
    service_name: str | None = None
    service_id: int | None = None
    container_id: str | None = None
    image: str | None = None
    name: str | None = None
    labels: tuple[tuple[str, str], ...] = ()
    service: Service | None = field(default=None, compare=False, repr=False)

    @property
    def key(self) -> ServiceKey | None:
        if self.app_id is None or self.service_name is None:
            return None
        return ServiceKey(self.app_id, self.service_name)

    def __str__(self) -> str:
        subject = self.name or self.image or ""
        if self.key is not None:
            subject = f"{self.key}" + (f" ({self.container_id})" if self.container_id else "")
        return f"{self.action.value} {subject}: {self.reason}"


@dataclass(frozen=True)
class Deferred:
    """Work the planner knows is needed but may not do yet, and why. `retry_at` is set for backoffs."""

    subject: str
    reason: DeferReason
    detail: str
    key: ServiceKey | None = None
    retry_at: float | None = None


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...] = ()
    deferred: tuple[Deferred, ...] = ()

    @property
    def converged(self) -> bool:
        """Nothing to do and nothing waiting: the device runs its target."""
        return not self.steps and not self.deferred

    @property
    def wake_at(self) -> float | None:
        """When an idle executor should plan again even without news (the earliest backoff expiry)."""
        times = [d.retry_at for d in self.deferred if d.retry_at is not None]
        return min(times) if times else None


@dataclass(frozen=True)
class BackoffState:
    """Retry-at times on the executor's clock (the same clock as `plan(now=...)`)."""

    pull_retry_at: Mapping[str, float] = field(default_factory=dict)
    start_retry_at: Mapping[ServiceKey, float] = field(default_factory=dict)


def next_backoff(failures: int, base: float = 2.0, cap: float = 300.0) -> float:
    """Seconds to wait after `failures` consecutive failures: base, 2*base, 4*base, ... capped; 0 before any.

    Deterministic (no jitter) so tests and reports can state exact times; add jitter where many devices could
    synchronise (cloud polling), not here where the failures are local.
    """
    if failures <= 0:
        return 0.0
    exponent = min(failures - 1, 62)  # 2**62 * base is past any cap; avoids float overflow for huge counts
    return float(min(cap, base * 2**exponent))


def plan(
    current: CurrentState,
    target: TargetState,
    *,
    images_present: AbstractSet[str] = frozenset(),
    locks: AbstractSet[ServiceKey] = frozenset(),
    force: bool = False,
    backoff: BackoffState | None = None,
    now: float = 0.0,
    default_strategy: UpdateStrategy = UpdateStrategy.download_then_kill,
    strategies: Mapping[ServiceKey, UpdateStrategy] | None = None,
) -> Plan:
    """The next round of steps that moves `current` toward `target`, plus what is deferred and why.

    A service's update strategy is `strategies[key]` if given, else its target label `io.iotistic.update-strategy`
    (an unknown value is ignored), else `default_strategy`.
    """
    round_ = _Round(
        current=current,
        target=target,
        images_present=images_present,
        locks=frozenset() if force else locks,
        backoff=backoff or BackoffState(),
        now=now,
        default_strategy=default_strategy,
        strategies=strategies or {},
    )
    return round_.run()


# --- internals -------------------------------------------------------------------------------------------------
class _Kind(StrEnum):
    network = "network"
    volume = "volume"


class _Resource(NamedTuple):
    kind: _Kind
    name: str  # the Docker name
    app_id: int
    logical: str  # the name in the target

    @property
    def ident(self) -> tuple[_Kind, str]:
        return (self.kind, self.name)


@dataclass(frozen=True)
class _Wanted:
    """A target service, with what the planner derives from it once."""

    key: ServiceKey
    service: Service
    config: ComparableConfig
    config_hash: str

    @property
    def app_id(self) -> int:
        return self.key.app_id

    @property
    def image(self) -> str:
        return self.config.image

    def resources(self) -> list[_Resource]:
        """Every network and volume this service needs the agent to provide (built-in networks need nothing)."""
        networks = [
            _Resource(_Kind.network, network_name(self.app_id, n), self.app_id, n)
            for n in self.config.networks
            if n not in BUILTIN_NETWORKS
        ]
        volumes = [
            _Resource(_Kind.volume, volume_name(self.app_id, v), self.app_id, v) for v in self.config.named_volumes()
        ]
        return networks + volumes


# What a config-matching container needs to reach its target state: an action, None (nothing), or a deferral.
_WAIT = "wait"
_TRANSITIONS: dict[tuple[ContainerStatus, ServiceState], Action | str | None] = {
    (ContainerStatus.running, ServiceState.running): None,
    (ContainerStatus.paused, ServiceState.running): Action.unpause,
    (ContainerStatus.created, ServiceState.running): Action.start,
    (ContainerStatus.exited, ServiceState.running): Action.start,
    (ContainerStatus.restarting, ServiceState.running): _WAIT,
    (ContainerStatus.dead, ServiceState.running): Action.remove,
    (ContainerStatus.running, ServiceState.stopped): Action.stop,
    (ContainerStatus.paused, ServiceState.stopped): Action.unpause,  # Docker cannot stop a paused container
    (ContainerStatus.created, ServiceState.stopped): None,
    (ContainerStatus.exited, ServiceState.stopped): None,
    (ContainerStatus.restarting, ServiceState.stopped): Action.stop,
    (ContainerStatus.dead, ServiceState.stopped): Action.remove,
    (ContainerStatus.running, ServiceState.paused): Action.pause,
    (ContainerStatus.paused, ServiceState.paused): None,
    (ContainerStatus.created, ServiceState.paused): Action.start,
    (ContainerStatus.exited, ServiceState.paused): Action.start,
    (ContainerStatus.restarting, ServiceState.paused): _WAIT,  # Docker cannot pause a restarting container
    (ContainerStatus.dead, ServiceState.paused): Action.remove,
}

# Which container of a service to keep when there are several: the most alive one.
_STATUS_RANK = {
    ContainerStatus.running: 0,
    ContainerStatus.paused: 1,
    ContainerStatus.restarting: 2,
    ContainerStatus.created: 3,
    ContainerStatus.exited: 4,
    ContainerStatus.dead: 5,
}


@dataclass
class _Round:
    current: CurrentState
    target: TargetState
    images_present: AbstractSet[str]
    locks: AbstractSet[ServiceKey]
    backoff: BackoffState
    now: float
    default_strategy: UpdateStrategy
    strategies: Mapping[ServiceKey, UpdateStrategy]
    # outputs, by bucket so the round comes out in canonical order
    resource_creates: list[Step] = field(default_factory=list)
    pulls: dict[str, Step] = field(default_factory=dict)
    service_steps: list[Step] = field(default_factory=list)
    resource_removals: list[Step] = field(default_factory=list)
    deferred: list[Deferred] = field(default_factory=list)
    # resource readiness, by (kind, Docker name)
    ready: set[tuple[_Kind, str]] = field(default_factory=set)
    blocked: set[tuple[_Kind, str]] = field(default_factory=set)
    pull_deferred: set[str] = field(default_factory=set)

    def run(self) -> Plan:
        wanted = self._wanted()
        self._plan_resources(wanted)
        self._plan_services(wanted)
        self._plan_resource_removals(wanted)
        steps = (*self.resource_creates, *self.pulls.values(), *self.service_steps, *self.resource_removals)
        return Plan(steps=steps, deferred=tuple(self.deferred))

    def _wanted(self) -> dict[ServiceKey, _Wanted]:
        wanted: dict[ServiceKey, _Wanted] = {}
        for app in sorted(self.target.apps.values(), key=lambda a: a.app_id):
            for service in app.services:
                key = ServiceKey(app.app_id, service.service_name)
                config = ComparableConfig.from_target(service.config)
                wanted[key] = _Wanted(key, service, config, config.config_hash())
        return wanted

    # --- networks and volumes ----------------------------------------------------------------------------------
    def _observed(self, kind: _Kind) -> dict[str, ObservedResource]:
        objects: Iterable[ObservedResource] = self.current.networks if kind is _Kind.network else self.current.volumes
        return {o.name: o for o in objects}

    def _plan_resources(self, wanted: Mapping[ServiceKey, _Wanted]) -> None:
        """Create what targets need; note what is ready and what a foreign object blocks."""
        needed = sorted({r for w in wanted.values() for r in w.resources()})
        for resource in needed:
            existing = self._observed(resource.kind).get(resource.name)
            if existing is None:
                self.resource_creates.append(_create_resource(resource))
            elif existing.managed:
                self.ready.add(resource.ident)
            else:
                self.blocked.add(resource.ident)
                kind = resource.kind.value
                self.deferred.append(
                    Deferred(
                        f"{kind} {resource.name}",
                        DeferReason.name_collision,
                        f"a {kind} named {resource.name} exists but is not managed by the agent; it is left alone",
                    )
                )

    def _plan_resource_removals(self, wanted: Mapping[ServiceKey, _Wanted]) -> None:
        """Remove managed networks and volumes no target needs, once no container of theirs uses them."""
        needed = {r.ident for w in wanted.values() for r in w.resources()}
        containers = self.current.managed_services()
        for kind in (_Kind.network, _Kind.volume):
            for name, resource in sorted(self._observed(kind).items()):
                if not resource.managed or (kind, name) in needed or name in BUILTIN_NETWORKS:
                    continue
                if resource.app_id is None or resource.logical_name is None:
                    continue  # ours but unlabelled: we cannot tell who uses it, so it is safer to leave it
                if any(_uses(c, kind, resource) for c in containers):
                    continue  # removed in a later round, after the containers using it are gone
                action = Action.remove_network if kind is _Kind.network else Action.remove_volume
                self.resource_removals.append(
                    Step(action, "no longer in the target", app_id=resource.app_id, name=name)
                )

    def _resources_ready(self, w: _Wanted) -> bool:
        return all(r.ident in self.ready for r in w.resources())

    def _blocked_resources(self, w: _Wanted) -> list[str]:
        return [f"{r.kind.value} {r.name}" for r in w.resources() if r.ident in self.blocked]

    # --- services ----------------------------------------------------------------------------------------------
    def _plan_services(self, wanted: Mapping[ServiceKey, _Wanted]) -> None:
        observed: dict[ServiceKey, list[ObservedService]] = defaultdict(list)
        for container in self.current.managed_services():
            observed[container.key].append(container)
        for key in sorted(set(observed) | set(wanted)):
            w = wanted.get(key)
            if w is None:
                for container in sorted(observed[key], key=lambda c: c.container_id):
                    self._kill(container, "service removed from the target")
            else:
                self._plan_service(w, observed.get(key, []))

    def _plan_service(self, w: _Wanted, containers: list[ObservedService]) -> None:
        if not containers:
            self._bring_up(w)
            return
        primary, *extras = sorted(containers, key=lambda c: self._keep_rank(c, w))
        for extra in extras:
            self._kill(extra, "duplicate container for the service")
        changes = self._changes(primary, w)
        if changes:
            self._update(w, primary, changes)
        else:
            self._transition(w, primary)

    def _keep_rank(self, c: ObservedService, w: _Wanted) -> tuple[bool, int, float, str]:
        created = c.created_at.timestamp() if c.created_at else 0.0
        return (bool(self._changes(c, w)), _STATUS_RANK[c.status], -created, c.container_id)

    @staticmethod
    def _changes(c: ObservedService, w: _Wanted) -> list[str]:
        """Why the container no longer matches the target (empty: it matches)."""
        if c.service_id != w.service.service_id:
            return ["service id"]
        if c.config_hash is not None:
            if c.config_hash == w.config_hash:
                return []
            return w.config.differences(c.config) or ["config hash"]
        return w.config.differences(c.config)

    def _bring_up(self, w: _Wanted) -> None:
        """No container: pull if needed, then create once the image and every resource are there."""
        name = container_name(w.app_id, w.key.service_name)
        if self._defer_if_blocked(w):
            return
        if w.image not in self.images_present:
            self._pull(w)
            return
        if not self._resources_ready(w):
            return  # its networks and volumes are being created in this round
        labels = container_labels(
            w.app_id, w.service.service_id, w.key.service_name, w.config_hash, w.service.config.labels
        )
        self.service_steps.append(
            Step(
                Action.create,
                "missing",
                app_id=w.app_id,
                service_name=w.key.service_name,
                service_id=w.service.service_id,
                image=w.image,
                name=name,
                labels=tuple(sorted(labels.items())),
                service=w.service,
            )
        )

    def _update(self, w: _Wanted, old: ObservedService, changes: list[str]) -> None:
        """The container differs from the target: replace it, in the order the update strategy says."""
        if self._defer_if_blocked(w):
            return
        reason = f"recreate: {', '.join(changes)} changed"
        if self._strategy(w) is UpdateStrategy.kill_then_download:
            self._kill(old, reason)  # the pull follows once the old container is gone
            return
        if w.image not in self.images_present:
            self._pull(w)  # downloading interrupts nothing, so it goes ahead even under an update lock
            if old.key in self.locks:
                self._defer_lock(old, reason)
            return
        if not self._resources_ready(w):
            return  # keep the old one running until the new one can be created at once
        self._kill(old, reason)

    def _transition(self, w: _Wanted, c: ObservedService) -> None:
        """The container matches its config: move it to the target's running, stopped or paused."""
        action = _TRANSITIONS[(c.status, w.service.state)]
        if action is None:
            return
        if action == _WAIT:
            self.deferred.append(
                Deferred(
                    f"service {c.key}",
                    DeferReason.restarting,
                    f"the runtime's restart policy is restarting it (restarts: {c.restart_count}, "
                    f"last exit code: {c.exit_code})",
                    key=c.key,
                )
            )
        elif action is Action.start:
            self._start(c, f"target {w.service.state.value}")
        elif action is Action.remove:
            self._kill(c, "dead container cannot be started; recreate")
        elif action is Action.stop or (action is Action.unpause and w.service.state is ServiceState.stopped):
            self._kill_step(c, action, f"target {w.service.state.value}")
        else:
            self._service_step(c, Action(action), f"target {w.service.state.value}")

    # --- step helpers ------------------------------------------------------------------------------------------
    def _kill(self, c: ObservedService, reason: str) -> None:
        """Next step toward the container being gone: unpause, stop, then remove."""
        if c.status is ContainerStatus.paused:
            action = Action.unpause
            reason += " (unpause first: a paused container cannot be stopped)"
        elif c.status in (ContainerStatus.running, ContainerStatus.restarting):
            action = Action.stop
        else:
            action = Action.remove
        self._kill_step(c, action, reason)

    def _kill_step(self, c: ObservedService, action: Action, reason: str) -> None:
        """A step that interrupts or deletes the service: held back while the service holds its update lock."""
        if c.key in self.locks:
            self._defer_lock(c, reason)
        else:
            self._service_step(c, action, reason)

    def _defer_lock(self, c: ObservedService, reason: str) -> None:
        self.deferred.append(
            Deferred(f"service {c.key}", DeferReason.update_lock, f"holds its update lock; deferred: {reason}", c.key)
        )

    def _start(self, c: ObservedService, reason: str) -> None:
        retry_at = self.backoff.start_retry_at.get(c.key)
        if retry_at is not None and retry_at > self.now:
            detail = f"crash backoff (restarts: {c.restart_count}, last exit code: {c.exit_code})"
            self.deferred.append(Deferred(f"service {c.key}", DeferReason.crash_backoff, detail, c.key, retry_at))
        else:
            self._service_step(c, Action.start, reason)

    def _service_step(self, c: ObservedService, action: Action, reason: str) -> None:
        self.service_steps.append(
            Step(
                action,
                reason,
                app_id=c.app_id,
                service_name=c.service_name,
                service_id=c.service_id,
                container_id=c.container_id,
            )
        )

    def _pull(self, w: _Wanted) -> None:
        image = w.image
        if image in self.pulls or image in self.pull_deferred:
            return
        retry_at = self.backoff.pull_retry_at.get(image)
        if retry_at is not None and retry_at > self.now:
            self.pull_deferred.add(image)
            detail = f"last pull failed; needed by {w.key}"
            self.deferred.append(Deferred(f"image {image}", DeferReason.pull_backoff, detail, None, retry_at))
        else:
            self.pulls[image] = Step(Action.pull_image, f"needed by {w.key}", image=image)

    def _defer_if_blocked(self, w: _Wanted) -> bool:
        """Defer a service whose container name or resources are held by objects the agent does not own."""
        blocked = self._blocked_resources(w)
        name = container_name(w.app_id, w.key.service_name)
        if name in self.current.foreign_container_names():
            blocked.append(f"container {name}")
        if not blocked:
            return False
        detail = f"needs {', '.join(blocked)}, which exist but are not managed by the agent"
        self.deferred.append(Deferred(f"service {w.key}", DeferReason.name_collision, detail, w.key))
        return True

    def _strategy(self, w: _Wanted) -> UpdateStrategy:
        if w.key in self.strategies:
            return self.strategies[w.key]
        label = w.service.config.labels.get(LABEL_UPDATE_STRATEGY)
        try:
            return UpdateStrategy(label) if label else self.default_strategy
        except ValueError:
            return self.default_strategy


def _create_resource(resource: _Resource) -> Step:
    action = Action.create_network if resource.kind is _Kind.network else Action.create_volume
    labels = tuple(sorted(resource_labels(resource.app_id, resource.logical).items()))
    return Step(action, f"needed by app {resource.app_id}", app_id=resource.app_id, name=resource.name, labels=labels)


def _uses(c: ObservedService, kind: _Kind, resource: ObservedResource) -> bool:
    """Whether a container uses a network or volume, judged by app and logical name as the runtime reported."""
    if c.app_id != resource.app_id:
        return False
    names = c.config.networks if kind is _Kind.network else c.config.named_volumes()
    return resource.logical_name in names
