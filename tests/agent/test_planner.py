"""Tests of the pure reconcile planner: every state transition, every change kind, strategies, locks, backoff,
networks and volumes, ownership, and convergence of plan -> apply -> plan against an in-memory Docker.

`FakeDocker` below is deliberately strict: it refuses every operation Docker would refuse (stop a paused
container, remove a running one, create without the image or a network, remove a network in use, touch an
unmanaged object), so a planner bug shows up as an exception, not as a silently wrong state.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iotistic.agent.reconcile import (
    Action,
    BackoffState,
    DeferReason,
    Plan,
    Step,
    UpdateStrategy,
    next_backoff,
    plan,
)
from iotistic.agent.state import (
    LABEL_APP_ID,
    LABEL_CONFIG_HASH,
    LABEL_MANAGED,
    LABEL_SERVICE_NAME,
    LABEL_UPDATE_STRATEGY,
    ComparableConfig,
    ContainerStatus,
    CurrentState,
    ObservedNetwork,
    ObservedService,
    ObservedVolume,
    ServiceKey,
    container_labels,
    container_name,
    network_name,
    resource_labels,
    volume_name,
)
from iotistic.core.schemas.target_state import Service, ServiceState, TargetState

WEB = ServiceKey(1, "web")
IMAGE = "registry.example/web:1"
IMAGE2 = "registry.example/web:2"


# --- builders --------------------------------------------------------------------------------------------------
def svc(name: str = "web", *, sid: int = 1, state: str = "running", **config: Any) -> dict[str, Any]:
    config.setdefault("image", IMAGE)
    return {"serviceId": sid, "serviceName": name, "state": state, "config": config}


def target_apps(apps: Mapping[int, Sequence[dict[str, Any]]]) -> TargetState:
    return TargetState.model_validate(
        {"apps": {str(a): {"appId": a, "appName": f"app{a}", "services": list(s)} for a, s in apps.items()}}
    )


def target(*services: dict[str, Any], app_id: int = 1) -> TargetState:
    return target_apps({app_id: services}) if services else TargetState()


def find(t: TargetState, app_id: int, name: str) -> Service:
    return next(s for s in t.apps[str(app_id)].services if s.service_name == name)


def container_for(
    t: TargetState,
    app_id: int = 1,
    name: str = "web",
    status: str = "running",
    *,
    cid: str | None = None,
    hash_label: bool = True,
    created_at: datetime | None = None,
    **fields: Any,
) -> ObservedService:
    """A container exactly as the agent would have created it from service `name` of target `t`."""
    service = find(t, app_id, name)
    config = ComparableConfig.from_target(service.config)
    labels = container_labels(app_id, service.service_id, name, config.config_hash(), service.config.labels)
    if not hash_label:
        del labels[LABEL_CONFIG_HASH]
    container = ObservedService(
        app_id=app_id,
        service_id=service.service_id,
        service_name=name,
        container_id=cid or f"c-{app_id}-{name}",
        status=ContainerStatus(status),
        config=config,
        labels=labels,
        name=container_name(app_id, name),
        created_at=created_at,
    )
    return replace(container, **fields)


def managed_network(app_id: int, name: str) -> ObservedNetwork:
    return ObservedNetwork(network_name(app_id, name), resource_labels(app_id, name))


def managed_volume(app_id: int, name: str) -> ObservedVolume:
    return ObservedVolume(volume_name(app_id, name), resource_labels(app_id, name))


def with_resources(t: TargetState, *containers: ObservedService) -> CurrentState:
    """Current state holding `containers` and every network and volume `t` needs (so nothing waits for them)."""
    networks, volumes = set(), set()
    for app in t.apps.values():
        for service in app.services:
            config = ComparableConfig.from_target(service.config)
            networks |= {(app.app_id, n) for n in config.networks if n not in ("bridge", "host", "none")}
            volumes |= {(app.app_id, v) for v in config.named_volumes()}
    return CurrentState(
        services=containers,
        networks=[managed_network(*n) for n in sorted(networks)],
        volumes=[managed_volume(*v) for v in sorted(volumes)],
    )


def actions(p: Plan) -> list[tuple[Action, str | None]]:
    """(action, service name / image / resource name) of each step, for compact assertions."""
    return [(s.action, s.service_name or s.image or s.name) for s in p.steps]


def reasons(p: Plan) -> list[DeferReason]:
    return [d.reason for d in p.deferred]


# --- an in-memory Docker ---------------------------------------------------------------------------------------
class DockerRefused(AssertionError):
    """Docker would have refused this step: the planner produced an invalid round."""


@dataclass
class FakeDocker:
    containers: dict[str, ObservedService] = field(default_factory=dict)
    networks: dict[str, ObservedNetwork] = field(default_factory=dict)
    volumes: dict[str, ObservedVolume] = field(default_factory=dict)
    images: set[str] = field(default_factory=set)
    created: int = 0

    @classmethod
    def from_state(cls, current: CurrentState, images: Iterable[str] = ()) -> FakeDocker:
        return cls(
            containers={c.container_id: c for c in current.services},
            networks={n.name: n for n in current.networks},
            volumes={v.name: v for v in current.volumes},
            images=set(images),
        )

    def current(self) -> CurrentState:
        return CurrentState(
            services=list(self.containers.values()),
            networks=list(self.networks.values()),
            volumes=list(self.volumes.values()),
        )

    def tick(self) -> None:
        """Time passes: the runtime's restart policy brings restarting containers back up."""
        for cid, c in self.containers.items():
            if c.status is ContainerStatus.restarting:
                self.containers[cid] = replace(c, status=ContainerStatus.running)

    def apply(self, step: Step) -> None:
        handler = getattr(self, f"_{step.action.value}")
        handler(step)

    # resources
    def _create_network(self, step: Step) -> None:
        assert step.name is not None
        self._refuse(step.name in self.networks, f"network {step.name} exists")
        self.networks[step.name] = ObservedNetwork(step.name, dict(step.labels))

    def _remove_network(self, step: Step) -> None:
        assert step.name is not None
        network = self.networks.get(step.name)
        self._refuse(network is None, f"no network {step.name}")
        assert network is not None
        self._refuse(not network.managed, f"network {step.name} is not the agent's")
        self._refuse(any(step.name in self._attached(c)[0] for c in self.containers.values()), "network in use")
        del self.networks[step.name]

    def _create_volume(self, step: Step) -> None:
        assert step.name is not None
        self._refuse(step.name in self.volumes, f"volume {step.name} exists")
        self.volumes[step.name] = ObservedVolume(step.name, dict(step.labels))

    def _remove_volume(self, step: Step) -> None:
        assert step.name is not None
        volume = self.volumes.get(step.name)
        self._refuse(volume is None, f"no volume {step.name}")
        assert volume is not None
        self._refuse(not volume.managed, f"volume {step.name} is not the agent's")
        self._refuse(any(step.name in self._attached(c)[1] for c in self.containers.values()), "volume in use")
        del self.volumes[step.name]

    def _pull_image(self, step: Step) -> None:
        assert step.image is not None
        self.images.add(step.image)

    # containers
    def _create(self, step: Step) -> None:
        assert step.service is not None and step.name is not None and step.app_id is not None
        self._refuse(step.image not in self.images, f"no image {step.image}")
        self._refuse(any(c.name == step.name for c in self.containers.values()), f"name {step.name} in use")
        config = ComparableConfig.from_target(step.service.config)
        self.created += 1
        container = ObservedService(
            app_id=step.app_id,
            service_id=step.service.service_id,
            service_name=step.service.service_name,
            container_id=f"new-{self.created}",
            status=ContainerStatus.created,
            config=config,
            labels=dict(step.labels),
            name=step.name,
        )
        networks, volumes = self._attached(container)
        self._refuse(not networks <= set(self.networks) | {"bridge", "host", "none"}, "missing network")
        self._refuse(not volumes <= set(self.volumes), "missing volume")
        self.containers[container.container_id] = container

    def _start(self, step: Step) -> None:
        self._transition(step, {ContainerStatus.created, ContainerStatus.exited}, ContainerStatus.running)

    def _stop(self, step: Step) -> None:
        self._transition(step, {ContainerStatus.running, ContainerStatus.restarting}, ContainerStatus.exited)

    def _pause(self, step: Step) -> None:
        self._transition(step, {ContainerStatus.running}, ContainerStatus.paused)

    def _unpause(self, step: Step) -> None:
        self._transition(step, {ContainerStatus.paused}, ContainerStatus.running)

    def _remove(self, step: Step) -> None:
        container = self._container(step)
        allowed = {ContainerStatus.created, ContainerStatus.exited, ContainerStatus.dead}
        self._refuse(container.status not in allowed, f"cannot remove a {container.status} container")
        del self.containers[container.container_id]

    # helpers
    def _container(self, step: Step) -> ObservedService:
        container = self.containers.get(step.container_id or "")
        self._refuse(container is None, f"no container {step.container_id}")
        assert container is not None
        self._refuse(not container.managed, f"container {container.name} is not the agent's")
        return container

    def _transition(self, step: Step, allowed: set[ContainerStatus], to: ContainerStatus) -> None:
        container = self._container(step)
        self._refuse(container.status not in allowed, f"cannot {step.action.value} a {container.status} container")
        self.containers[container.container_id] = replace(container, status=to)

    @staticmethod
    def _attached(c: ObservedService) -> tuple[set[str], set[str]]:
        """Docker names of the networks and volumes a container uses."""
        return (
            {network_name(c.app_id, n) for n in c.config.networks},
            {volume_name(c.app_id, v) for v in c.config.named_volumes()},
        )

    @staticmethod
    def _refuse(condition: bool, message: str) -> None:
        if condition:
            raise DockerRefused(message)


def run_rounds(
    docker: FakeDocker,
    t: TargetState,
    max_rounds: int = 12,
    shuffle: random.Random | None = None,
    **kwargs: Any,
) -> list[Plan]:
    """plan -> apply -> plan until a plan is converged or has only waiting left; returns the plans with steps.

    With `shuffle`, each round's steps run in a random order: that proves the steps of a round are independent.
    """
    plans: list[Plan] = []
    for _ in range(max_rounds):
        p = plan(docker.current(), t, images_present=frozenset(docker.images), **kwargs)
        if not p.steps and all(d.reason is not DeferReason.restarting for d in p.deferred):
            return plans
        touched = [s.container_id for s in p.steps if s.container_id]
        assert len(touched) == len(set(touched)), f"two steps on one container in a round: {p.steps}"
        plans.append(p)
        steps = list(p.steps)
        if shuffle is not None:
            shuffle.shuffle(steps)
        for step in steps:
            docker.apply(step)
        docker.tick()
    raise AssertionError(f"no convergence in {max_rounds} rounds; last plan: {plans[-1]}")


def assert_runs_target(docker: FakeDocker, t: TargetState, skip: Iterable[ServiceKey] = ()) -> None:
    """Each target service has one container of the target config in the target state; nothing else is ours."""
    skip = set(skip)
    ours = [c for c in docker.containers.values() if c.managed]
    expected_status = {
        ServiceState.running: {ContainerStatus.running},
        ServiceState.stopped: {ContainerStatus.created, ContainerStatus.exited},
        ServiceState.paused: {ContainerStatus.paused},
    }
    wanted: set[ServiceKey] = set()
    for app in t.apps.values():
        for service in app.services:
            key = ServiceKey(app.app_id, service.service_name)
            wanted.add(key)
            if key in skip:
                continue
            mine = [c for c in ours if c.key == key]
            assert len(mine) == 1, f"{key}: {mine}"
            config = ComparableConfig.from_target(service.config)
            if mine[0].config_hash is None:  # adopted from an agent that did not label the hash
                assert mine[0].config == config, key
            else:
                assert mine[0].config_hash == config.config_hash(), key
            assert mine[0].service_id == service.service_id
            assert mine[0].status in expected_status[service.state], (key, mine[0].status)
    assert {c.key for c in ours} - skip <= wanted


def first_round(current: CurrentState, t: TargetState, **kwargs: Any) -> Plan:
    kwargs.setdefault("images_present", frozenset({IMAGE, IMAGE2}))
    return plan(current, t, **kwargs)


# === state transitions =========================================================================================
# observed status x target state -> the one step of the first round (None: nothing to do)
TRANSITIONS: list[tuple[str, str, Action | None]] = [
    ("running", "running", None),
    ("running", "stopped", Action.stop),
    ("running", "paused", Action.pause),
    ("paused", "running", Action.unpause),
    ("paused", "stopped", Action.unpause),  # then stop: Docker refuses to stop a paused container
    ("paused", "paused", None),
    ("created", "running", Action.start),
    ("created", "stopped", None),
    ("created", "paused", Action.start),  # then pause
    ("exited", "running", Action.start),
    ("exited", "stopped", None),
    ("exited", "paused", Action.start),
    ("restarting", "stopped", Action.stop),
    ("dead", "running", Action.remove),  # then create, start
    ("dead", "stopped", Action.remove),
    ("dead", "paused", Action.remove),
]


@pytest.mark.parametrize(("status", "state", "expected"), TRANSITIONS)
def test_transition_first_step(status: str, state: str, expected: Action | None) -> None:
    t = target(svc(state=state))
    p = first_round(CurrentState([container_for(t, status=status)]), t)
    assert [s.action for s in p.steps] == ([expected] if expected else [])
    assert p.deferred == ()
    for step in p.steps:
        assert step.container_id == "c-1-web" and step.key == WEB


def test_transition_table_covers_every_status_and_target() -> None:
    covered = {(status, state) for status, state, _ in TRANSITIONS}
    covered |= {("restarting", "running"), ("restarting", "paused")}  # waits, tested below
    assert covered == {(s.value, t.value) for s in ContainerStatus for t in ServiceState}


@pytest.mark.parametrize("state", ["running", "paused"])
def test_restarting_container_is_left_to_the_runtime_restart_policy(state: str) -> None:
    t = target(svc(state=state))
    p = first_round(CurrentState([container_for(t, status="restarting", restart_count=4, exit_code=1)]), t)
    assert p.steps == ()
    assert reasons(p) == [DeferReason.restarting]
    assert "restarts: 4" in p.deferred[0].detail and p.deferred[0].key == WEB


# observed status x target state -> every round's steps until converged (from the strict simulator)
SEQUENCES: list[tuple[str | None, str, list[list[Action]]]] = [
    (None, "running", [[Action.create], [Action.start]]),
    (None, "stopped", [[Action.create]]),
    (None, "paused", [[Action.create], [Action.start], [Action.pause]]),
    ("running", "running", []),
    ("running", "stopped", [[Action.stop]]),
    ("running", "paused", [[Action.pause]]),
    ("paused", "running", [[Action.unpause]]),
    ("paused", "stopped", [[Action.unpause], [Action.stop]]),
    ("paused", "paused", []),
    ("created", "running", [[Action.start]]),
    ("created", "stopped", []),
    ("created", "paused", [[Action.start], [Action.pause]]),
    ("exited", "running", [[Action.start]]),
    ("exited", "stopped", []),
    ("exited", "paused", [[Action.start], [Action.pause]]),
    ("restarting", "running", []),  # the runtime brings it back (FakeDocker.tick)
    ("restarting", "stopped", [[Action.stop]]),
    ("restarting", "paused", [[Action.pause]]),  # after waiting one tick for the restart
    ("dead", "running", [[Action.remove], [Action.create], [Action.start]]),
    ("dead", "stopped", [[Action.remove], [Action.create]]),
    ("dead", "paused", [[Action.remove], [Action.create], [Action.start], [Action.pause]]),
]


@pytest.mark.parametrize(("status", "state", "rounds"), SEQUENCES)
def test_transition_converges_through_valid_docker_steps(
    status: str | None, state: str, rounds: list[list[Action]]
) -> None:
    t = target(svc(state=state))
    current = CurrentState([container_for(t, status=status)] if status else [])
    docker = FakeDocker.from_state(current, images=[IMAGE])
    plans = run_rounds(docker, t)
    assert [[s.action for s in p.steps] for p in plans if p.steps] == rounds
    assert_runs_target(docker, t)


REMOVALS: list[tuple[str, list[list[Action]]]] = [
    ("running", [[Action.stop], [Action.remove]]),
    ("paused", [[Action.unpause], [Action.stop], [Action.remove]]),
    ("restarting", [[Action.stop], [Action.remove]]),
    ("created", [[Action.remove]]),
    ("exited", [[Action.remove]]),
    ("dead", [[Action.remove]]),
]


@pytest.mark.parametrize(("status", "rounds"), REMOVALS)
@pytest.mark.parametrize("whole_app", [True, False])
def test_removed_service_is_stopped_then_removed(status: str, rounds: list[list[Action]], whole_app: bool) -> None:
    old = target(svc("web"), svc("db", sid=2))
    new = TargetState() if whole_app else target(svc("db", sid=2))
    containers = [container_for(old, name="web", status=status)]
    if not whole_app:
        containers.append(container_for(old, name="db"))
    docker = FakeDocker.from_state(CurrentState(containers), images=[IMAGE])
    plans = run_rounds(docker, new)
    assert [[s.action for s in p.steps] for p in plans] == rounds
    assert all(s.service_name == "web" for p in plans for s in p.steps)
    assert all(s.reason.startswith("service removed from the target") for p in plans for s in p.steps)
    assert [c.service_name for c in docker.containers.values()] == ([] if whole_app else ["db"])


def test_missing_service_pulls_its_image_first() -> None:
    t = target(svc(state="running"))
    p = plan(CurrentState(), t, images_present=frozenset())
    assert actions(p) == [(Action.pull_image, IMAGE)]
    docker = FakeDocker()
    rounds = run_rounds(docker, t)
    assert [[s.action for s in p.steps] for p in rounds] == [[Action.pull_image], [Action.create], [Action.start]]


def test_create_step_carries_everything_the_runtime_needs() -> None:
    t = target(svc(labels={"team": "edge", LABEL_MANAGED: "false"}, environment={"A": "1"}))
    (step,) = first_round(CurrentState(), t).steps
    assert step.action is Action.create
    assert step.name == "iotistic_1_web" and step.image == IMAGE and step.service_id == 1
    labels = dict(step.labels)
    assert labels[LABEL_MANAGED] == "true"  # the management labels win over the user's
    assert labels["team"] == "edge" and labels[LABEL_APP_ID] == "1" and labels[LABEL_SERVICE_NAME] == "web"
    assert labels[LABEL_CONFIG_HASH] == ComparableConfig.from_target(find(t, 1, "web").config).config_hash()
    assert step.service is not None and step.service.config.environment == {"A": "1"}
    assert str(step) == "create 1/web: missing"


# === change detection ==========================================================================================
CHANGES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("image", {"image": IMAGE}, {"image": IMAGE2}),
    ("command", {"command": ["serve"]}, {"command": ["serve", "--verbose"]}),
    ("command", {}, {"command": "serve"}),
    ("entrypoint", {"entrypoint": ["/init"]}, {"entrypoint": ["/bin/sh", "-c"]}),
    ("environment", {"environment": {"A": "1"}}, {"environment": {"A": "2"}}),
    ("environment", {"environment": {"A": "1"}}, {"environment": {"A": "1", "B": "1"}}),
    ("ports", {"ports": ["80:80"]}, {"ports": ["8080:80"]}),
    ("ports", {"ports": ["80:80"]}, {"ports": ["80:80/udp"]}),
    ("volumes", {"volumes": ["data:/data"]}, {"volumes": ["data:/data:ro"]}),
    ("volumes", {"volumes": []}, {"volumes": ["/srv:/srv"]}),
    ("networks", {"networks": ["front"]}, {"networks": ["front", "back"]}),
    ("restart", {"restart": "always"}, {"restart": "no"}),
    ("labels", {"labels": {"team": "a"}}, {"labels": {"team": "b"}}),
    ("cpus", {}, {"resources": {"cpus": 0.5}}),
    ("memory", {"resources": {"memory": "256m"}}, {"resources": {"memory": "512m"}}),
]


@pytest.mark.parametrize("hash_label", [True, False], ids=["by-hash", "by-fields"])
@pytest.mark.parametrize(("field_name", "before", "after"), CHANGES)
def test_every_change_kind_recreates(
    field_name: str, before: dict[str, Any], after: dict[str, Any], hash_label: bool
) -> None:
    old, new = target(svc(**before)), target(svc(**after))
    current = with_resources(new, container_for(old, hash_label=hash_label))
    p = first_round(current, new)
    assert actions(p) == [(Action.stop, "web")]
    assert p.steps[0].reason == f"recreate: {field_name} changed"
    docker = FakeDocker.from_state(current, images=[IMAGE, IMAGE2])
    plans = run_rounds(docker, new)
    assert [[s.action for s in p.steps] for p in plans] == [
        [Action.stop],
        [Action.remove],
        [Action.create],
        [Action.start],
    ]
    assert_runs_target(docker, new)


def test_service_id_change_recreates() -> None:
    old, new = target(svc(sid=1)), target(svc(sid=7))
    p = first_round(CurrentState([container_for(old)]), new)
    assert actions(p) == [(Action.stop, "web")] and p.steps[0].reason == "recreate: service id changed"


EQUIVALENT: list[tuple[dict[str, Any], dict[str, Any]]] = [
    ({"command": "serve --port 80"}, {"command": ["serve", "--port", "80"]}),
    ({"entrypoint": "/bin/sh -c"}, {"entrypoint": ["/bin/sh", "-c"]}),
    ({"ports": ["80:80", "443:443"]}, {"ports": ["443:443/tcp", "80:80/tcp"]}),
    ({"volumes": ["data:/data", "/srv:/srv"]}, {"volumes": ["/srv:/srv", "data:/data:rw"]}),
    ({"networks": ["a", "b"]}, {"networks": ["b", "a"]}),
    ({"environment": {"A": "1", "B": "2"}}, {"environment": {"B": "2", "A": "1"}}),
    ({"labels": {}}, {"labels": {LABEL_UPDATE_STRATEGY: "kill-then-download", "io.iotistic.note": "x"}}),
    ({"resources": {"memory": "1g"}}, {"resources": {"memory": "1024M"}}),
    ({"probes": None}, {"probes": {"liveness": {"command": ["true"]}}}),
]


@pytest.mark.parametrize("hash_label", [True, False], ids=["by-hash", "by-fields"])
@pytest.mark.parametrize(("before", "after"), EQUIVALENT)
def test_equivalent_configs_do_not_recreate(before: dict[str, Any], after: dict[str, Any], hash_label: bool) -> None:
    old, new = target(svc(**before)), target(svc(**after))
    assert first_round(with_resources(new, container_for(old, hash_label=hash_label)), new).converged


def test_runtime_additions_do_not_recreate_when_the_hash_matches() -> None:
    """Docker reports the image's own environment, extra labels, ...: the config-hash label makes that harmless."""
    t = target(svc(environment={"A": "1"}, labels={"team": "a"}))
    container = container_for(t)
    seen_by_docker = ComparableConfig.build(
        IMAGE,
        command=["nginx", "-g", "daemon off;"],
        environment={"A": "1", "PATH": "/usr/bin", "NGINX_VERSION": "1.27"},
        labels={"team": "a", "maintainer": "NGINX", "io.iotistic.managed": "true"},
        restart="unless-stopped",
    )
    current = CurrentState([replace(container, config=seen_by_docker)])
    assert first_round(current, t).converged


def test_unchanged_services_are_never_touched() -> None:
    t = target_apps(
        {
            1: [svc("web", networks=["front"], volumes=["data:/data"]), svc("db", sid=2, state="stopped")],
            2: [svc("cache", state="paused", ports=["6379:6379"])],
        }
    )
    current = with_resources(
        t,
        container_for(t, 1, "web"),
        container_for(t, 1, "db", status="exited"),
        container_for(t, 2, "cache", status="paused"),
    )
    # images absent, locks held, backoffs pending: none of it matters for services that already match
    p = plan(
        current,
        t,
        images_present=frozenset(),
        locks={WEB},
        backoff=BackoffState(pull_retry_at={IMAGE: 100.0}, start_retry_at={ServiceKey(1, "db"): 100.0}),
        now=0.0,
    )
    assert p.converged and p.wake_at is None


def test_one_changed_service_leaves_its_siblings_alone() -> None:
    old = target(svc("web"), svc("db", sid=2, image="db:1"))
    new = target(svc("web"), svc("db", sid=2, image="db:2"))
    p = first_round(CurrentState([container_for(old, name="web"), container_for(old, name="db")]), new)
    assert actions(p) == [(Action.pull_image, "db:2")]


# === update strategies =========================================================================================
def _strategy_rounds(old_config: dict[str, Any], new_config: dict[str, Any], **kwargs: Any) -> list[list[Action]]:
    old, new = target(svc(**old_config)), target(svc(**new_config))
    docker = FakeDocker.from_state(CurrentState([container_for(old)]), images=[IMAGE])
    plans = run_rounds(docker, new, **kwargs)
    assert_runs_target(docker, new)
    return [[s.action for s in p.steps] for p in plans]


def test_download_then_kill_is_the_default_and_pulls_while_the_old_one_runs() -> None:
    assert _strategy_rounds({}, {"image": IMAGE2}) == [
        [Action.pull_image],
        [Action.stop],
        [Action.remove],
        [Action.create],
        [Action.start],
    ]


def test_kill_then_download_stops_and_removes_before_pulling() -> None:
    labels = {LABEL_UPDATE_STRATEGY: "kill-then-download"}
    assert _strategy_rounds({"labels": labels}, {"image": IMAGE2, "labels": labels}) == [
        [Action.stop],
        [Action.remove],
        [Action.pull_image],
        [Action.create],
        [Action.start],
    ]


def test_kill_then_download_with_the_image_present_skips_the_pull() -> None:
    labels = {LABEL_UPDATE_STRATEGY: "kill-then-download"}
    assert _strategy_rounds({"environment": {"A": "1"}, "labels": labels}, {"labels": labels}) == [
        [Action.stop],
        [Action.remove],
        [Action.create],
        [Action.start],
    ]


def test_strategy_argument_and_default() -> None:
    kill_first = [[Action.stop], [Action.remove], [Action.pull_image], [Action.create], [Action.start]]
    assert _strategy_rounds({}, {"image": IMAGE2}, strategies={WEB: UpdateStrategy.kill_then_download}) == kill_first
    assert _strategy_rounds({}, {"image": IMAGE2}, default_strategy=UpdateStrategy.kill_then_download) == kill_first
    # the per-service argument beats the label; an unknown label value falls back to the default
    labels = {LABEL_UPDATE_STRATEGY: "kill-then-download"}
    explicit = {WEB: UpdateStrategy.download_then_kill}
    assert _strategy_rounds({}, {"image": IMAGE2, "labels": labels}, strategies=explicit)[0] == [Action.pull_image]
    bogus = {LABEL_UPDATE_STRATEGY: "hand-over"}
    assert _strategy_rounds({}, {"image": IMAGE2, "labels": bogus})[0] == [Action.pull_image]


def test_download_then_kill_waits_for_new_networks_before_killing() -> None:
    old, new = target(svc()), target(svc(networks=["back"]))
    docker = FakeDocker.from_state(CurrentState([container_for(old)]), images=[IMAGE])
    plans = run_rounds(docker, new)
    assert [actions(p) for p in plans] == [
        [(Action.create_network, "iotistic_1_back")],
        [(Action.stop, "web")],
        [(Action.remove, "web")],
        [(Action.create, "web")],
        [(Action.start, "web")],
    ]


def test_paused_service_is_unpaused_before_it_is_stopped_for_an_update() -> None:
    old, new = target(svc(state="paused")), target(svc(state="paused", image=IMAGE2))
    docker = FakeDocker.from_state(CurrentState([container_for(old, status="paused")]), images=[IMAGE, IMAGE2])
    plans = run_rounds(docker, new)
    assert [[s.action for s in p.steps] for p in plans] == [
        [Action.unpause],
        [Action.stop],
        [Action.remove],
        [Action.create],
        [Action.start],
        [Action.pause],
    ]


# === update locks ==============================================================================================
def test_locked_service_is_not_killed_for_an_update_but_its_image_is_downloaded() -> None:
    old, new = target(svc()), target(svc(image=IMAGE2))
    current = CurrentState([container_for(old)])
    p = plan(current, new, images_present=frozenset({IMAGE}), locks={WEB})
    assert actions(p) == [(Action.pull_image, IMAGE2)]
    assert reasons(p) == [DeferReason.update_lock] and p.deferred[0].key == WEB
    assert "recreate: image changed" in p.deferred[0].detail
    p = plan(current, new, images_present=frozenset({IMAGE, IMAGE2}), locks={WEB})
    assert p.steps == () and reasons(p) == [DeferReason.update_lock]


def test_force_overrides_the_update_lock() -> None:
    old, new = target(svc()), target(svc(image=IMAGE2))
    docker = FakeDocker.from_state(CurrentState([container_for(old)]), images=[IMAGE, IMAGE2])
    plans = run_rounds(docker, new, locks={WEB}, force=True)
    assert [[s.action for s in p.steps] for p in plans] == [
        [Action.stop],
        [Action.remove],
        [Action.create],
        [Action.start],
    ]
    assert_runs_target(docker, new)


def test_locked_service_under_kill_then_download_does_nothing() -> None:
    old = target(svc())
    new = target(svc(image=IMAGE2, labels={LABEL_UPDATE_STRATEGY: "kill-then-download"}))
    p = plan(CurrentState([container_for(old)]), new, images_present=frozenset({IMAGE}), locks={WEB})
    assert p.steps == () and reasons(p) == [DeferReason.update_lock]


@pytest.mark.parametrize(
    ("status", "state", "allowed"),
    [
        ("running", "stopped", None),
        ("paused", "stopped", None),  # the unpause only precedes a stop
        ("restarting", "stopped", None),
        ("dead", "running", None),
        ("running", "paused", Action.pause),  # pausing interrupts nothing for good
        ("paused", "running", Action.unpause),
        ("exited", "running", Action.start),
        ("created", "paused", Action.start),
    ],
)
def test_lock_blocks_only_stop_and_remove(status: str, state: str, allowed: Action | None) -> None:
    t = target(svc(state=state))
    current = CurrentState([container_for(t, status=status)])
    locked = first_round(current, t, locks={WEB})
    assert [s.action for s in locked.steps] == ([allowed] if allowed else [])
    assert reasons(locked) == ([] if allowed else [DeferReason.update_lock])
    forced = first_round(current, t, locks={WEB}, force=True)
    assert forced.deferred == () and len(forced.steps) == 1


def test_locked_removed_service_is_kept_until_forced() -> None:
    old = target(svc())
    current = CurrentState([container_for(old)])
    p = first_round(current, TargetState(), locks={WEB})
    assert p.steps == () and reasons(p) == [DeferReason.update_lock]
    assert "service removed from the target" in p.deferred[0].detail
    assert actions(first_round(current, TargetState(), locks={WEB}, force=True)) == [(Action.stop, "web")]


def test_lock_of_one_service_does_not_hold_back_others() -> None:
    old = target(svc("web"), svc("db", sid=2))
    new = target(svc("web", image=IMAGE2), svc("db", sid=2, image=IMAGE2))
    p = first_round(CurrentState([container_for(old, name="web"), container_for(old, name="db")]), new, locks={WEB})
    assert actions(p) == [(Action.stop, "db")]
    assert [d.key for d in p.deferred] == [WEB]


# === pull backoff ==============================================================================================
def test_pull_in_backoff_is_deferred_until_its_retry_time() -> None:
    t = target(svc())
    backoff = BackoffState(pull_retry_at={IMAGE: 50.0})
    p = plan(CurrentState(), t, backoff=backoff, now=10.0)
    assert p.steps == () and reasons(p) == [DeferReason.pull_backoff]
    assert p.deferred[0].retry_at == 50.0 and p.wake_at == 50.0 and p.deferred[0].subject == f"image {IMAGE}"
    assert actions(plan(CurrentState(), t, backoff=backoff, now=50.0)) == [(Action.pull_image, IMAGE)]


def test_pull_backoff_of_an_update_keeps_the_old_service_running() -> None:
    old, new = target(svc()), target(svc(image=IMAGE2))
    p = plan(
        CurrentState([container_for(old)]),
        new,
        images_present=frozenset({IMAGE}),
        backoff=BackoffState(pull_retry_at={IMAGE2: 30.0}),
        now=0.0,
    )
    assert p.steps == () and reasons(p) == [DeferReason.pull_backoff]


def test_an_image_shared_by_services_is_pulled_once() -> None:
    t = target_apps({1: [svc("web"), svc("worker", sid=2)], 2: [svc("web")]})
    p = plan(CurrentState(), t)
    assert actions(p) == [(Action.pull_image, IMAGE)]
    p = plan(CurrentState(), t, backoff=BackoffState(pull_retry_at={IMAGE: 9.0}))
    assert reasons(p) == [DeferReason.pull_backoff]


def test_only_missing_images_are_pulled() -> None:
    t = target(svc("web"), svc("db", sid=2, image="db:1"))
    assert actions(plan(CurrentState(), t, images_present=frozenset({IMAGE}))) == [
        (Action.pull_image, "db:1"),
        (Action.create, "web"),
    ]


# === crash-loop backoff ========================================================================================
@pytest.mark.parametrize("state", ["running", "paused"])
def test_crashed_service_is_started_only_after_its_backoff(state: str) -> None:
    t = target(svc(state=state))
    crashed = container_for(t, status="exited", exit_code=137, restart_count=5)
    backoff = BackoffState(start_retry_at={WEB: 64.0})
    waiting = first_round(CurrentState([crashed]), t, backoff=backoff, now=63.9)
    assert waiting.steps == () and reasons(waiting) == [DeferReason.crash_backoff]
    assert waiting.deferred[0].retry_at == 64.0 and waiting.wake_at == 64.0
    assert "exit code: 137" in waiting.deferred[0].detail
    assert actions(first_round(CurrentState([crashed]), t, backoff=backoff, now=64.0)) == [(Action.start, "web")]


def test_crash_backoff_is_per_service() -> None:
    t = target(svc("web"), svc("db", sid=2))
    current = CurrentState(
        [container_for(t, name="web", status="exited"), container_for(t, name="db", status="exited")]
    )
    p = first_round(current, t, backoff=BackoffState(start_retry_at={WEB: 10.0}), now=0.0)
    assert actions(p) == [(Action.start, "db")] and [d.key for d in p.deferred] == [WEB]


def test_crash_backoff_does_not_block_stopping() -> None:
    t = target(svc(state="stopped"))
    p = first_round(CurrentState([container_for(t)]), t, backoff=BackoffState(start_retry_at={WEB: 99.0}))
    assert actions(p) == [(Action.stop, "web")]


@pytest.mark.parametrize(
    ("failures", "expected"),
    [(-1, 0.0), (0, 0.0), (1, 2.0), (2, 4.0), (3, 8.0), (5, 32.0), (8, 256.0), (9, 300.0), (50, 300.0), (10**6, 300.0)],
)
def test_next_backoff(failures: int, expected: float) -> None:
    assert next_backoff(failures) == expected


def test_next_backoff_custom_base_and_cap() -> None:
    assert [next_backoff(n, base=0.5, cap=3.0) for n in range(6)] == [0.0, 0.5, 1.0, 2.0, 3.0, 3.0]


@given(st.integers(min_value=0, max_value=10_000))
def test_next_backoff_is_monotonic_and_capped(failures: int) -> None:
    assert next_backoff(failures) <= next_backoff(failures + 1) <= 300.0


# === networks and volumes ======================================================================================
def test_networks_and_volumes_are_created_before_the_services_that_need_them() -> None:
    t = target(svc(networks=["front", "host"], volumes=["data:/data", "/etc/x:/x:ro"]))
    docker = FakeDocker(images={IMAGE})
    plans = run_rounds(docker, t)
    assert [actions(p) for p in plans] == [
        [(Action.create_network, "iotistic_1_front"), (Action.create_volume, "iotistic_1_data")],
        [(Action.create, "web")],
        [(Action.start, "web")],
    ]
    assert plans[0].steps[0].labels == tuple(sorted(resource_labels(1, "front").items()))
    assert set(docker.networks) == {"iotistic_1_front"}  # `host` is built in, never created


def test_resources_are_app_scoped() -> None:
    t = target_apps({1: [svc(volumes=["data:/d"])], 2: [svc(volumes=["data:/d"])]})
    p = first_round(CurrentState(), t)
    assert actions(p)[:2] == [(Action.create_volume, "iotistic_1_data"), (Action.create_volume, "iotistic_2_data")]


def test_unused_managed_resources_are_removed_after_their_containers() -> None:
    old = target(svc(networks=["front"], volumes=["data:/data"]))
    docker = FakeDocker.from_state(with_resources(old, container_for(old)), images=[IMAGE])
    plans = run_rounds(docker, TargetState())
    assert [actions(p) for p in plans] == [
        [(Action.stop, "web")],
        [(Action.remove, "web")],
        [(Action.remove_network, "iotistic_1_front"), (Action.remove_volume, "iotistic_1_data")],
    ]
    assert not docker.networks and not docker.volumes


def test_a_resource_dropped_by_one_service_stays_while_another_uses_it() -> None:
    old = target(svc("web", networks=["front"]), svc("api", sid=2, networks=["front"]))
    new = target(svc("web"), svc("api", sid=2, networks=["front"]))
    current = with_resources(old, container_for(old, name="web"), container_for(old, name="api"))
    docker = FakeDocker.from_state(current, images=[IMAGE])
    plans = run_rounds(docker, new)
    assert all(s.action is not Action.remove_network for p in plans for s in p.steps)
    assert set(docker.networks) == {"iotistic_1_front"}
    assert_runs_target(docker, new)


def test_a_network_leaving_the_target_goes_once_the_recreated_service_left_it() -> None:
    old, new = target(svc(networks=["front"])), target(svc(networks=["back"]))
    docker = FakeDocker.from_state(with_resources(old, container_for(old)), images=[IMAGE])
    plans = run_rounds(docker, new)
    assert [actions(p) for p in plans] == [
        [(Action.create_network, "iotistic_1_back")],
        [(Action.stop, "web")],
        [(Action.remove, "web")],
        [(Action.create, "web"), (Action.remove_network, "iotistic_1_front")],
        [(Action.start, "web")],
    ]


def test_round_order_is_canonical() -> None:
    t = target_apps({1: [svc("web", networks=["front"], volumes=["data:/data"], image=IMAGE2), svc("db", sid=2)]})
    current = CurrentState(
        [container_for(t, name="db", status="exited")],
        networks=[managed_network(1, "gone")],
        volumes=[managed_volume(1, "gone")],
    )
    p = plan(current, t, images_present=frozenset({IMAGE}))
    assert [s.action for s in p.steps] == [
        Action.create_network,
        Action.create_volume,
        Action.pull_image,
        Action.start,
        Action.remove_network,
        Action.remove_volume,
    ]


def test_managed_resource_without_its_labels_is_left_alone() -> None:
    stray = ObservedNetwork("iotistic_1_stray", {LABEL_MANAGED: "true"})
    assert first_round(CurrentState(networks=[stray]), TargetState()).converged


# === ownership: unmanaged objects ==============================================================================
def test_unmanaged_objects_are_ignored_entirely() -> None:
    t = target(svc())
    foreign_labels = {LABEL_APP_ID: "1", LABEL_SERVICE_NAME: "web"}  # looks like ours, but not managed
    foreign = [
        replace(container_for(t, status="exited"), labels=foreign_labels, name="someone_else", container_id="f1"),
        replace(container_for(t, status="paused"), labels={}, name="other", container_id="f2"),
    ]
    current = CurrentState(
        [*foreign, container_for(t)],
        networks=[ObservedNetwork("iotistic_1_old"), ObservedNetwork("bridge")],
        volumes=[ObservedVolume("iotistic_1_data", {"owner": "me"})],
    )
    assert first_round(current, t).converged
    p = first_round(current, TargetState())
    assert actions(p) == [(Action.stop, "web")] and p.steps[0].container_id == "c-1-web"


def test_container_name_collision_is_reported_not_touched() -> None:
    t = target(svc())
    squatter = replace(container_for(t), labels={}, container_id="f1")  # named iotistic_1_web, not ours
    p = first_round(CurrentState([squatter]), t)
    assert p.steps == () and reasons(p) == [DeferReason.name_collision]
    assert "container iotistic_1_web" in p.deferred[0].detail and p.deferred[0].key == WEB


def test_network_name_collision_blocks_creation_and_keeps_the_old_version_running() -> None:
    old, new = target(svc()), target(svc(networks=["front"], image=IMAGE2))
    foreign = ObservedNetwork("iotistic_1_front", {"com.docker.compose.project": "x"})
    p = first_round(CurrentState([container_for(old)], networks=[foreign]), new)
    assert p.steps == ()  # no pull, no kill, no network step
    assert sorted(reasons(p)) == [DeferReason.name_collision, DeferReason.name_collision]
    assert {d.subject for d in p.deferred} == {"network iotistic_1_front", "service 1/web"}
    missing = first_round(CurrentState(networks=[foreign]), target(svc(networks=["front"])))
    assert missing.steps == () and len(missing.deferred) == 2


def test_volume_name_collision_is_reported() -> None:
    t = target(svc(volumes=["data:/data"]))
    p = first_round(CurrentState(volumes=[ObservedVolume("iotistic_1_data")]), t)
    assert p.steps == () and {d.subject for d in p.deferred} == {"volume iotistic_1_data", "service 1/web"}


# === duplicates ================================================================================================
def test_duplicate_containers_keep_the_best_one() -> None:
    t = target(svc())
    older = datetime(2024, 1, 1, tzinfo=UTC)
    newer = datetime(2024, 6, 1, tzinfo=UTC)
    keep = container_for(t, cid="a", created_at=older)
    stale = replace(container_for(target(svc(image=IMAGE2)), cid="b", created_at=newer), name="iotistic_1_web_old")
    exited = replace(container_for(t, status="exited", cid="c", created_at=newer), name="x")
    p = first_round(CurrentState([stale, exited, keep]), t)
    assert sorted((s.action, s.container_id) for s in p.steps) == [(Action.remove, "c"), (Action.stop, "b")]
    assert all(s.reason == "duplicate container for the service" for s in p.steps)


# === convergence: plan -> apply -> plan ========================================================================
APP_IDS = [1, 2]
SERVICE_IDS = {"web": 1, "db": 2, "cache": 3}
IMAGES = ["img/a:1", "img/a:2", "img/b:1"]
ENVIRONMENTS: list[dict[str, str]] = [{}, {"A": "1"}, {"A": "2"}]
NETWORK_SETS: list[list[str]] = [[], ["front"], ["back"], ["front", "back"], ["host"]]
VOLUME_SETS: list[list[str]] = [[], ["data:/data"], ["/srv:/srv:ro"], ["logs:/logs", "data:/data"]]
STRATEGY_LABELS: list[dict[str, str]] = [{}, {LABEL_UPDATE_STRATEGY: "kill-then-download"}]


@st.composite
def service_dicts(draw: st.DrawFn, name: str) -> dict[str, Any]:
    return svc(
        name,
        sid=draw(st.sampled_from([SERVICE_IDS[name], SERVICE_IDS[name], SERVICE_IDS[name] + 10])),
        state=draw(st.sampled_from(["running", "stopped", "paused"])),
        image=draw(st.sampled_from(IMAGES)),
        environment=draw(st.sampled_from(ENVIRONMENTS)),
        networks=draw(st.sampled_from(NETWORK_SETS)),
        volumes=draw(st.sampled_from(VOLUME_SETS)),
        labels=draw(st.sampled_from(STRATEGY_LABELS)),
    )


@st.composite
def targets(draw: st.DrawFn) -> TargetState:
    apps: dict[int, list[dict[str, Any]]] = {}
    for app_id in draw(st.lists(st.sampled_from(APP_IDS), unique=True)):
        names = draw(st.lists(st.sampled_from(sorted(SERVICE_IDS)), unique=True))
        apps[app_id] = [draw(service_dicts(n)) for n in names]
    return target_apps(apps)


@st.composite
def worlds(draw: st.DrawFn, colliding_foreigners: bool = False) -> FakeDocker:
    """A device as an earlier agent (or a crash halfway through an update) may have left it."""
    containers: list[ObservedService] = []
    for i in range(draw(st.integers(0, 6))):
        app_id = draw(st.sampled_from(APP_IDS))
        name = draw(st.sampled_from(sorted(SERVICE_IDS)))
        old = target_apps({app_id: [draw(service_dicts(name))]})
        status = draw(st.sampled_from(list(ContainerStatus)))
        container = container_for(old, app_id, name, status.value, cid=f"old-{i}", hash_label=draw(st.booleans()))
        if any(c.name == container.name for c in containers):  # a leftover duplicate under another name
            container = replace(container, name=f"{container.name}_{i}")
        containers.append(container)
    networks = {network_name(c.app_id, n): managed_network(c.app_id, n) for c in containers for n in c.config.networks}
    volumes = {
        volume_name(c.app_id, v): managed_volume(c.app_id, v) for c in containers for v in c.config.named_volumes()
    }
    for app_id, name in draw(st.lists(st.tuples(st.sampled_from(APP_IDS), st.sampled_from(["front", "back", "x"])))):
        networks.setdefault(network_name(app_id, name), managed_network(app_id, name))
    networks.pop("host", None)
    foreign_names = ["someone", "iotistic_1_web", "iotistic_2_front"] if colliding_foreigners else ["someone", "x"]
    for j, name in enumerate(draw(st.lists(st.sampled_from(foreign_names), unique=True))):
        if any(c.name == name for c in containers):
            continue  # Docker container names are unique
        status = draw(st.sampled_from(list(ContainerStatus)))
        base = container_for(target(svc()), status=status.value)
        containers.append(replace(base, labels={"owner": "other"}, name=name, container_id=f"foreign-{j}"))
        if name not in networks:
            networks[name] = ObservedNetwork(name, {"owner": "other"})
        volumes.setdefault(name, ObservedVolume(name))
    images = draw(st.sets(st.sampled_from(IMAGES)))
    return FakeDocker.from_state(CurrentState(containers, list(networks.values()), list(volumes.values())), images)


def foreign_objects(docker: FakeDocker) -> tuple[list[Any], list[Any], list[Any]]:
    return (
        sorted(c.container_id for c in docker.containers.values() if not c.managed),
        sorted(n.name for n in docker.networks.values() if not n.managed),
        sorted(v.name for v in docker.volumes.values() if not v.managed),
    )


# Worst case: unpause, stop, remove, pull (kill-then-download), create, start, pause; plus one wait for a restart.
MAX_ROUNDS = 8


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(docker=worlds(), t=targets(), rnd=st.randoms(use_true_random=False))
def test_plan_apply_converges_to_the_target(docker: FakeDocker, t: TargetState, rnd: random.Random) -> None:
    foreign_before = foreign_objects(docker)
    plans = run_rounds(docker, t, max_rounds=MAX_ROUNDS, shuffle=rnd)
    assert len(plans) <= MAX_ROUNDS
    final = plan(docker.current(), t, images_present=frozenset(docker.images))
    assert final.converged, final
    assert_runs_target(docker, t)
    needed_networks = {
        network_name(app.app_id, n)
        for app in t.apps.values()
        for s in app.services
        for n in s.config.networks
        if n != "host"
    }
    assert {n.name for n in docker.networks.values() if n.managed} == needed_networks
    assert foreign_objects(docker) == foreign_before


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    docker=worlds(colliding_foreigners=True),
    t=targets(),
    locked=st.sets(st.tuples(st.sampled_from(APP_IDS), st.sampled_from(sorted(SERVICE_IDS)))),
    rnd=st.randoms(use_true_random=False),
)
def test_locks_and_collisions_are_honoured_and_planning_still_settles(
    docker: FakeDocker, t: TargetState, locked: set[tuple[int, str]], rnd: random.Random
) -> None:
    """Whatever the locks and name collisions, no locked service is stopped or removed, no foreign object is
    touched (FakeDocker refuses it), and the planner settles on a plan with nothing but waiting left."""
    locks = {ServiceKey(*k) for k in locked}
    foreign_before = foreign_objects(docker)
    plans = run_rounds(docker, t, max_rounds=MAX_ROUNDS + 2, shuffle=rnd, locks=locks)
    for p in plans:
        for step in p.steps:
            if step.key in locks:
                assert step.action not in (Action.stop, Action.remove), step
    final = plan(docker.current(), t, images_present=frozenset(docker.images), locks=locks)
    assert final.steps == ()
    assert {d.reason for d in final.deferred} <= {DeferReason.update_lock, DeferReason.name_collision}
    assert foreign_objects(docker) == foreign_before
    blocked = {d.key for d in final.deferred if d.key is not None}
    assert_runs_target(docker, t, skip=blocked)
