"""The Docker runtime and the executor against a real Docker engine (see conftest.py for the engine and images).

Each test uses its own app id and the `engine` fixture removes whatever it made. Backoffs are shortened (half
a second instead of two) so the crash-loop and pull tests take seconds; the logic is the production one.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from iotistic.agent.reconcile.executor import ApplyReport, ApplyStatus, Executor, ExecutorStatus, ServiceLocked
from iotistic.agent.reconcile.locks import LOCK_FILE_NAME
from iotistic.agent.reconcile.planner import Action, DeferReason, Step
from iotistic.agent.runtime.base import ContainerNotFound, LogStream, Runtime, StepFailed
from iotistic.agent.runtime.docker import (
    DockerRuntime,
    image_aliases,
    observe_container,
    parse_time,
    port_bindings,
)
from iotistic.agent.state import (
    LABEL_APP_ID,
    LABEL_CONFIG_HASH,
    LABEL_MANAGED,
    LABEL_RESOURCE_NAME,
    LABEL_SERVICE_NAME,
    LABEL_UPDATE_STRATEGY,
    ComparableConfig,
    ContainerStatus,
    ServiceKey,
)
from iotistic.core.schemas.reports import AppReport
from iotistic.core.schemas.target_state import TargetState
from tests.agent.conftest import TEST_LABEL, DockerEngine, free_port

SLEEP = ["sleep", "100000"]
TALK = "echo hello; echo oops >&2; i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done"


# --- helpers ---------------------------------------------------------------------------------------------------
def svc(name: str, sid: int, image: str, *, state: str = "running", **config: Any) -> dict[str, Any]:
    return {"serviceId": sid, "serviceName": name, "state": state, "config": {"image": image, **config}}


def make_target(apps: dict[int, list[dict[str, Any]]]) -> TargetState:
    return TargetState.model_validate(
        {"apps": {str(a): {"appId": a, "appName": f"app{a}", "services": s} for a, s in apps.items()}}
    )


def containers(engine: DockerEngine, app_id: int) -> dict[str, dict[str, Any]]:
    """The app's containers by service name, fully inspected."""
    found = engine.api.containers(all=True, filters={"label": f"{LABEL_APP_ID}={app_id}"})
    inspected = [engine.api.inspect_container(c["Id"]) for c in found]
    return {c["Config"]["Labels"][LABEL_SERVICE_NAME]: c for c in inspected}


def ids_and_starts(engine: DockerEngine, app_id: int) -> dict[str, tuple[str, str]]:
    return {name: (c["Id"], c["State"]["StartedAt"]) for name, c in containers(engine, app_id).items()}


def actions(report: ApplyReport) -> list[tuple[Action, str | None]]:
    return [(o.step.action, o.step.service_name or o.step.image or o.step.name) for o in report.outcomes]


def _starts_of(engine: DockerEngine, container_id: str, since: float, until: float) -> list[float]:
    """When the engine started the container (Docker's own event log), between `since` and `until`."""
    events = engine.api.events(
        since=int(since),
        until=int(until) + 1,
        filters={"type": "container", "event": "start", "container": container_id},
        decode=True,
    )
    return sorted(t for t in (e["timeNano"] / 1e9 for e in events) if since <= t <= until)


def http_get(port: int, timeout: float = 10.0) -> str:
    """GET / from a published port (busybox wget crashes in containers; the host has no curl)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
                conn.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
                data = b""
                while chunk := conn.recv(4096):
                    data += chunk
            if b"200 OK" in data:
                return data.decode(errors="replace")
        except OSError as exc:
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"no HTTP answer on port {port}: {last}")


def exec_in(engine: DockerEngine, container_id: str, command: list[str]) -> tuple[int, str]:
    exec_id = engine.api.exec_create(container_id, command)["Id"]
    output = engine.api.exec_start(exec_id).decode(errors="replace")
    return int(engine.api.exec_inspect(exec_id)["ExitCode"]), output


class Clock:
    """A wall clock the test moves by hand (starts at the real time, so Docker's timestamps compare)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def lock_root(tmp_path: Path) -> Path:
    return tmp_path / "locks"


@pytest.fixture
async def runtime(engine: DockerEngine, lock_root: Path) -> AsyncIterator[DockerRuntime]:
    rt = DockerRuntime(lock_root=lock_root, base_url=engine.base_url)
    yield rt
    await rt.close()


def new_executor(runtime: Runtime, lock_root: Path, **kwargs: Any) -> Executor:
    kwargs.setdefault("crash_backoff", (0.5, 8.0))
    kwargs.setdefault("pull_backoff", (1.0, 8.0))
    kwargs.setdefault("stable_after", 3.0)
    return Executor(runtime, lock_root=lock_root, **kwargs)


@contextlib.asynccontextmanager
async def running(executor: Executor, interval: float = 0.2) -> AsyncIterator[None]:
    task = asyncio.create_task(executor.run(interval=interval))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# --- pure helpers (no engine) ----------------------------------------------------------------------------------
def test_port_specs_map_to_docker_bindings() -> None:
    exposed, bindings = port_bindings(["127.0.0.1:8080:80", "53:53/udp", "9000", "[::1]:8443:443", "10.0.0.1:81"])
    assert exposed == [(80, "tcp"), (53, "udp"), (9000, "tcp"), (443, "tcp"), (81, "tcp")]
    assert bindings == {
        "80/tcp": [("127.0.0.1", 8080)],
        "53/udp": [("", 53)],
        "9000/tcp": [("", None)],
        "443/tcp": [("::1", 8443)],
        "81/tcp": [("10.0.0.1", None)],
    }


def test_docker_times_parse_with_nanoseconds_and_zero_means_never() -> None:
    assert parse_time("2024-05-01T10:20:30.123456789Z") == datetime(2024, 5, 1, 10, 20, 30, 123456, tzinfo=UTC)
    assert parse_time("2024-05-01T10:20:30Z") == datetime(2024, 5, 1, 10, 20, 30, tzinfo=UTC)
    assert parse_time("0001-01-01T00:00:00Z") is None
    assert parse_time("garbage") is None and parse_time(None) is None


def test_image_aliases_cover_docker_hub_spellings() -> None:
    assert {"nginx", "nginx:latest", "docker.io/library/nginx:latest", "library/nginx"} <= image_aliases("nginx:latest")
    assert image_aliases("127.0.0.1:5000/app:2") == {"127.0.0.1:5000/app:2"}


def test_a_managed_label_without_ids_is_treated_as_foreign() -> None:
    """Someone labelled a container managed but gave no app or service: the agent must not adopt (and delete) it."""
    attrs = {
        "Id": "abc",
        "Name": "/impostor",
        "Config": {"Image": "x", "Labels": {LABEL_MANAGED: "true"}},
        "State": {"Status": "running"},
    }
    observed = observe_container(attrs)
    assert not observed.managed and observed.name == "impostor"


# --- runtime ---------------------------------------------------------------------------------------------------
async def test_ping_version_and_images(runtime: DockerRuntime, engine: DockerEngine) -> None:
    assert await runtime.ping()
    assert (await runtime.version())["runtime"] == "docker"
    images = await runtime.images_present()
    assert {engine.image, engine.image2, engine.crash_image} <= images
    assert not await DockerRuntime(lock_root=Path("/nonexistent"), base_url="unix:///nonexistent.sock").ping()


async def test_run_two_services_with_a_network_a_volume_and_every_config_field(
    engine: DockerEngine, runtime: DockerRuntime, lock_root: Path
) -> None:
    port = free_port()
    web = svc(
        "web",
        1,
        engine.image,
        command=["httpd", "-f", "-p", "80", "-h", "/data"],
        environment={"GREETING": "hi"},
        ports=[f"127.0.0.1:{port}:80"],
        volumes=["data:/data", f"{lock_root.parent}:/host:ro"],
        networks=["front"],
        restart="always",
        labels={"team": "edge"},
        resources={"cpus": 0.5, "memory": "64m"},
    )
    db = svc(
        "db",
        2,
        engine.image,
        command="sh -c 'echo hello > /data/index.html; exec sleep 100000'",
        volumes=["data:/data"],
        networks=["front", "back"],
    )
    target = make_target({101: [web, db]})
    executor = new_executor(runtime, lock_root)
    report = await executor.apply(target)

    assert report.status is ApplyStatus.applied, executor.status().to_json()
    assert report.rounds == 3  # networks and volume; both creates; both starts
    assert sorted(a for a, _ in actions(report)) == sorted(
        [Action.create_network, Action.create_network, Action.create_volume, *[Action.create, Action.start] * 2]
    )
    found = containers(engine, 101)
    assert set(found) == {"web", "db"}
    w = found["web"]
    assert w["Name"] == "/iotistic_101_web" and w["State"]["Status"] == "running"
    labels = w["Config"]["Labels"]
    assert labels[LABEL_MANAGED] == "true" and labels["team"] == "edge" and labels[LABEL_CONFIG_HASH]
    assert "GREETING=hi" in w["Config"]["Env"]
    host = w["HostConfig"]
    assert host["Init"] is True and host["Memory"] == 64 * 1024**2 and host["NanoCpus"] == 500_000_000
    assert host["RestartPolicy"]["Name"] == "always"
    assert host["PortBindings"] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}
    assert f"{lock_root / '101' / 'web'}:/tmp/iotistic:rw" in host["Binds"]
    assert (lock_root / "101" / "web").is_dir() and (lock_root / "101" / "db").is_dir()
    assert set(found["db"]["NetworkSettings"]["Networks"]) == {"iotistic_101_front", "iotistic_101_back"}

    for name in ("iotistic_101_front", "iotistic_101_back"):
        net_labels = engine.api.inspect_network(name)["Labels"]
        assert net_labels[LABEL_MANAGED] == "true" and net_labels[LABEL_APP_ID] == "101"
    vol_labels = engine.api.inspect_volume("iotistic_101_data")["Labels"]
    assert vol_labels == {LABEL_MANAGED: "true", LABEL_APP_ID: "101", LABEL_RESOURCE_NAME: "data"}

    # the published port serves what the sibling wrote into the shared named volume
    assert "hello" in http_get(port)
    # siblings reach each other by service name on the app's network
    code, output = exec_in(engine, found["db"]["Id"], ["sh", "-c", "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc web 80"])
    assert code == 0 and "hello" in output, output

    status = executor.status()
    assert status.status is ApplyStatus.applied and not status.update_pending and status.last_applied_at
    assert {(s.service_name, s.status, s.error) for s in status.services} == {
        ("web", "running", None),
        ("db", "running", None),
    }
    assert AppReport.model_validate(status.report_apps()["101"]).services[0].status == "running"
    again = await executor.apply()
    assert again.outcomes == [] and again.status is ApplyStatus.applied


async def test_read_state_reports_the_config_in_target_terms(
    engine: DockerEngine, runtime: DockerRuntime, lock_root: Path
) -> None:
    """The observed config (used for containers without a hash label) matches the target, networks and volumes
    by logical name; only the environment differs, by the image's own PATH."""
    service = svc(
        "web",
        1,
        engine.image,
        command=SLEEP,
        entrypoint=["/bin/sh", "-c", 'exec "$@"', "--"],
        environment={"A": "1"},
        ports=["127.0.0.1:9999:80/udp"],
        volumes=["data:/data:ro", "/etc:/hostetc"],
        networks=["front"],
        restart="on-failure",
        labels={"k": "v"},
        resources={"cpus": 0.25, "memory": "32m"},
    )
    target = make_target({102: [service]})
    await new_executor(runtime, lock_root).apply(target)
    (observed,) = [s for s in (await runtime.read_state()).services if s.app_id == 102]
    expected = ComparableConfig.from_target(target.apps["102"].services[0].config)
    assert observed.config.differences(expected) == ["environment"]
    assert dict(observed.config.environment) == {"A": "1", "PATH": "/bin"}
    assert observed.status is ContainerStatus.running and observed.started_at and observed.created_at
    assert observed.config_hash == expected.config_hash()


async def test_pause_unpause_stop_and_start_again(
    engine: DockerEngine, runtime: DockerRuntime, lock_root: Path
) -> None:
    executor = new_executor(runtime, lock_root)
    await executor.apply(make_target({103: [svc("web", 1, engine.image, command=SLEEP)]}))
    ((cid, _),) = ids_and_starts(engine, 103).values()
    for state, action, docker_status in [
        ("paused", Action.pause, "paused"),
        ("running", Action.unpause, "running"),
        ("stopped", Action.stop, "exited"),
        ("running", Action.start, "running"),
    ]:
        started = time.monotonic()
        report = await executor.apply(make_target({103: [svc("web", 1, engine.image, state=state, command=SLEEP)]}))
        assert actions(report) == [(action, "web")], state
        assert report.status is ApplyStatus.applied
        assert time.monotonic() - started < 5, "stop must be instant (init forwards SIGTERM)"
        found = containers(engine, 103)["web"]
        assert found["Id"] == cid and found["State"]["Status"] == docker_status
        assert executor.status().service(103, "web").status == docker_status  # type: ignore[union-attr]


async def test_env_change_recreates_that_service_only(
    engine: DockerEngine, runtime: DockerRuntime, lock_root: Path
) -> None:
    executor = new_executor(runtime, lock_root)
    await executor.apply(make_target({104: [svc("web", 1, engine.image, command=SLEEP), svc("db", 2, engine.image)]}))
    before = ids_and_starts(engine, 104)
    changed = make_target(
        {104: [svc("web", 1, engine.image, command=SLEEP, environment={"V": "2"}), svc("db", 2, engine.image)]}
    )
    report = await executor.apply(changed)
    assert actions(report) == [
        (Action.stop, "web"),
        (Action.remove, "web"),
        (Action.create, "web"),
        (Action.start, "web"),
    ]
    assert report.outcomes[0].step.reason == "recreate: environment changed"
    after = ids_and_starts(engine, 104)
    assert after["web"][0] != before["web"][0]
    assert after["db"] == before["db"]  # same container, never restarted
    assert "V=2" in containers(engine, 104)["web"]["Config"]["Env"]


async def test_image_change_with_the_image_present_recreates(
    engine: DockerEngine, runtime: DockerRuntime, lock_root: Path
) -> None:
    executor = new_executor(runtime, lock_root)
    await executor.apply(make_target({105: [svc("web", 1, engine.image)]}))
    report = await executor.apply(make_target({105: [svc("web", 1, engine.image2)]}))
    assert [a for a, _ in actions(report)] == [Action.stop, Action.remove, Action.create, Action.start]
    web = containers(engine, 105)["web"]
    assert web["Config"]["Image"] == engine.image2
    assert exec_in(engine, web["Id"], ["cat", "/etc/version"]) == (0, "2\n")


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        ("download-then-kill", [Action.pull_image, Action.stop, Action.remove, Action.create, Action.start]),
        ("kill-then-download", [Action.stop, Action.remove, Action.pull_image, Action.create, Action.start]),
    ],
)
async def test_image_change_follows_the_update_strategy(
    engine: DockerEngine, runtime: DockerRuntime, lock_root: Path, strategy: str, expected: list[Action]
) -> None:
    """A real pull from the local registry; the order of pull and kill is the strategy's."""
    new_image = engine.registry_image()
    labels = {LABEL_UPDATE_STRATEGY: strategy}
    executor = new_executor(runtime, lock_root)
    await executor.apply(make_target({106: [svc("web", 1, engine.image, command=SLEEP, labels=labels)]}))
    assert new_image not in await runtime.images_present()
    report = await executor.apply(make_target({106: [svc("web", 1, new_image, command=SLEEP, labels=labels)]}))
    assert [a for a, _ in actions(report)] == expected
    assert report.status is ApplyStatus.applied
    assert containers(engine, 106)["web"]["Config"]["Image"] == new_image


async def test_default_strategy_of_the_executor_applies_without_a_label(
    engine: DockerEngine, runtime: DockerRuntime, lock_root: Path
) -> None:
    from iotistic.agent.reconcile.planner import UpdateStrategy

    new_image = engine.registry_image()
    executor = new_executor(runtime, lock_root, default_strategy=UpdateStrategy.kill_then_download)
    await executor.apply(make_target({107: [svc("web", 1, engine.image, command=SLEEP)]}))
    report = await executor.apply(make_target({107: [svc("web", 1, new_image, command=SLEEP)]}))
    assert [a for a, _ in actions(report)][:3] == [Action.stop, Action.remove, Action.pull_image]


# --- crash loops -----------------------------------------------------------------------------------------------
async def test_crash_loop_is_backed_off_and_reported(
    engine: DockerEngine, runtime: DockerRuntime, lock_root: Path
) -> None:
    """restart=no: the agent restarts the service itself, at least 0.5, 1, 2, 4 s apart, not in a tight loop."""
    executor = new_executor(runtime, lock_root, crash_backoff=(0.5, 8.0))
    target = make_target({108: [svc("crasher", 1, engine.crash_image, restart="no"), svc("ok", 2, engine.image)]})
    executor.set_target(target)
    seen: list[ExecutorStatus] = []
    t0 = time.time()
    async with running(executor, interval=0.1):  # polling every 0.1 s: a tight loop would start ~60 times
        for _ in range(60):
            await asyncio.sleep(0.1)
            seen.append(executor.status())
    t1 = time.time()
    found = containers(engine, 108)
    assert len(_starts_of(engine, found["ok"]["Id"], t0, t1)) == 1  # the healthy sibling: started once
    own = _starts_of(engine, found["crasher"]["Id"], t0, t1)
    assert 3 <= len(own) <= 5, own  # 0, 0.5, 1.5, 3.5 s (+ overhead); fewer on a loaded machine
    gaps = [b - a for a, b in itertools.pairwise(own)]
    assert all(gap >= 0.9 * 0.5 * 2**i for i, gap in enumerate(gaps)), gaps  # each wait at least its backoff

    crasher = seen[-1].service(108, "crasher")
    assert crasher is not None and crasher.failures >= 2 and crasher.exit_code == 3
    assert crasher.error is not None and "crash-looping" in crasher.error and "exited with code 3" in crasher.error
    assert ApplyStatus.error in {s.status for s in seen}
    assert any(d.reason == DeferReason.crash_backoff.value for s in seen for d in s.deferred)
    ok = seen[-1].service(108, "ok")
    assert ok is not None and ok.status == "running" and ok.error is None
    report = AppReport.model_validate(seen[-1].report_apps()["108"])
    assert any(s.error and "exited with code 3" in s.error for s in report.services)
    assert executor.export_backoff()["crashes"]["108/crasher"]["failures"] >= 2


async def test_crash_loop_under_a_restart_policy_is_reported_and_left_to_the_engine(
    engine: DockerEngine, runtime: DockerRuntime, lock_root: Path
) -> None:
    """restart=unless-stopped (the default): Docker restarts it with its own backoff; the agent does not add
    starts of its own, and reports the loop with the restart count and exit code."""
    recording = RecordingRuntime(lock_root=lock_root, base_url=engine.base_url)
    executor = new_executor(recording, lock_root)
    executor.set_target(make_target({109: [svc("crasher", 1, engine.crash_image)]}))
    seen: list[ExecutorStatus] = []
    t0 = time.time()
    async with running(executor, interval=0.1):
        for _ in range(40):
            await asyncio.sleep(0.1)
            seen.append(executor.status())
    await recording.close()
    cid = containers(engine, 109)["crasher"]["Id"]
    own = _starts_of(engine, cid, t0, time.time())
    assert 2 <= len(own) <= 9, own  # Docker: 0.1, 0.2, 0.4, 0.8, 1.6 s ... apart
    assert [s.action for s in recording.executed if s.action is Action.start] == [Action.start]  # only the first
    crasher = seen[-1].service(109, "crasher")
    assert crasher is not None and crasher.error and "restart policy" in crasher.error, crasher
    assert ApplyStatus.error in {s.status for s in seen}


class RecordingRuntime(DockerRuntime):
    """The Docker runtime, remembering every step it was asked to run."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.executed: list[Step] = []

    async def execute(self, step: Step) -> None:
        self.executed.append(step)
        await super().execute(step)


async def test_a_service_that_recovers_is_forgiven(
    engine: DockerEngine, runtime: DockerRuntime, lock_root: Path
) -> None:
    """Fails once (first run), then stays up: after `stable_after` its failure count is cleared."""
    flaky = svc(
        "flaky",
        1,
        engine.image,
        restart="no",
        volumes=["state:/state"],
        command=["sh", "-c", "test -f /state/ran || { touch /state/ran; exit 1; }; exec sleep 100000"],
    )
    executor = new_executor(runtime, lock_root, crash_backoff=(0.5, 8.0), stable_after=1.5)
    executor.set_target(make_target({110: [flaky]}))
    async with running(executor, interval=0.1):
        await _until(lambda: (executor.status().service(110, "flaky") or _NONE).failures >= 1, 10)
        await _until(lambda: executor.status().status is ApplyStatus.applied, 10)
    service = executor.status().service(110, "flaky")
    assert service is not None and service.failures == 0 and service.error is None and service.status == "running"


async def test_a_start_that_fails_is_recorded_and_the_round_goes_on(
    engine: DockerEngine, runtime: DockerRuntime, lock_root: Path
) -> None:
    """The host port is taken, so Docker refuses to start `broken`; `fine` (same round) starts all the same."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        broken = svc("broken", 1, engine.image, command=SLEEP, ports=[f"127.0.0.1:{port}:80"])
        fine = svc("fine", 2, engine.image, command=SLEEP)
        executor = new_executor(runtime, lock_root)
        report = await executor.apply(make_target({111: [broken, fine]}))
    started = [(o.step.service_name, o.ok) for o in report.outcomes if o.step.action is Action.start]
    assert started == [("broken", False), ("fine", True)]
    assert "address already in use" in (report.failed[0].error or "")
    assert report.status is ApplyStatus.error
    broken_status = executor.status().service(111, "broken")
    assert broken_status is not None and broken_status.error and "address already in use" in broken_status.error
    assert broken_status.retry_at and broken_status.failures == 1
    assert (executor.status().service(111, "fine") or _NONE).status == "running"


async def test_a_missing_program_is_a_crash_with_its_exit_code(
    engine: DockerEngine, runtime: DockerRuntime, lock_root: Path
) -> None:
    """With an init as PID 1 the start succeeds and the init exits 127: reported as a crash, with the reason in
    the container's logs."""
    executor = new_executor(runtime, lock_root)
    executor.set_target(
        make_target({121: [svc("broken", 1, engine.image, command=["/no/such/program"], restart="no")]})
    )
    async with running(executor, interval=0.1):
        await _until(lambda: (executor.status().service(121, "broken") or _NONE).failures >= 1, 10)
    broken = executor.status().service(121, "broken")
    assert broken is not None and broken.exit_code == 127 and broken.error and "exited with code 127" in broken.error
    assert broken.container_id is not None
    logs = [line.line async for line in runtime.container_logs(broken.container_id)]
    assert any("/no/such/program" in line for line in logs), logs


# --- pulls -----------------------------------------------------------------------------------------------------
async def test_pull_failure_backs_off_and_is_reported(
    engine: DockerEngine, runtime: DockerRuntime, lock_root: Path
) -> None:
    missing = f"127.0.0.1:{free_port()}/nowhere/app:1"  # nothing listens there: the pull fails at once
    clock = Clock()
    executor = new_executor(runtime, lock_root, clock=clock, pull_backoff=(1.0, 8.0))
    target = make_target({112: [svc("web", 1, missing)]})

    first = await executor.apply(target)
    assert actions(first) == [(Action.pull_image, missing)] and not first.outcomes[0].ok
    assert first.status is ApplyStatus.error
    web = executor.status().service(112, "web")
    assert web is not None and web.status == "missing" and web.error and "1 failed pull" in web.error
    assert web.retry_at == pytest.approx(clock.now + 1.0)

    clock.advance(0.5)
    waiting = await executor.apply()
    assert waiting.outcomes == [] and [d.reason for d in waiting.plan.deferred] == [DeferReason.pull_backoff]

    clock.advance(0.6)  # past the first backoff: tried again, and the next wait doubles
    second = await executor.apply()
    assert actions(second) == [(Action.pull_image, missing)]
    assert executor.export_backoff()["pulls"][missing]["retryAt"] == pytest.approx(clock.now + 2.0)

    # persisted and restored: a restarted agent keeps waiting instead of pulling at once
    revived = new_executor(runtime, lock_root, clock=clock)
    revived.import_backoff(executor.export_backoff())
    assert (await revived.apply(target)).outcomes == []


async def test_a_pulled_image_is_used(engine: DockerEngine, runtime: DockerRuntime, lock_root: Path) -> None:
    image = engine.registry_image()
    report = await new_executor(runtime, lock_root).apply(make_target({113: [svc("web", 1, image, command=SLEEP)]}))
    assert [a for a, _ in actions(report)] == [Action.pull_image, Action.create, Action.start]
    assert image in await runtime.images_present()


# --- update locks ----------------------------------------------------------------------------------------------
async def test_update_lock_defers_the_update_until_forced(
    engine: DockerEngine, runtime: DockerRuntime, lock_root: Path
) -> None:
    executor = new_executor(runtime, lock_root)
    await executor.apply(make_target({114: [svc("web", 1, engine.image, command=SLEEP)]}))
    before = ids_and_starts(engine, 114)
    # the service takes its lock from inside its container, through the mounted lock folder
    assert exec_in(engine, before["web"][0], ["touch", "/tmp/iotistic/updates.lock"])[0] == 0
    assert (lock_root / "114" / "web" / LOCK_FILE_NAME).exists()
    assert executor.locks_held() == {ServiceKey(114, "web")}

    changed = make_target({114: [svc("web", 1, engine.image, command=SLEEP, environment={"V": "2"})]})
    held = await executor.apply(changed)
    assert held.outcomes == [] and held.status is ApplyStatus.applying
    assert ids_and_starts(engine, 114) == before
    web = executor.status().service(114, "web")
    assert web is not None and web.locked and any("update-lock" in d for d in web.deferred)
    with pytest.raises(ServiceLocked):
        await executor.restart_service(ServiceKey(114, "web"))

    forced = await executor.apply(force=True)
    assert [a for a, _ in actions(forced)] == [Action.stop, Action.remove, Action.create, Action.start]
    assert ids_and_starts(engine, 114)["web"][0] != before["web"][0]
    # the lock folder outlives the container, so the lock is still held for the next update
    assert executor.locks_held() == {ServiceKey(114, "web")}


# --- adoption --------------------------------------------------------------------------------------------------
async def test_a_restarted_agent_adopts_what_runs_without_touching_it(
    engine: DockerEngine, runtime: DockerRuntime, lock_root: Path
) -> None:
    target = make_target(
        {
            115: [
                svc("web", 1, engine.image, command=SLEEP, networks=["front"], volumes=["data:/data"]),
                svc("db", 2, engine.image, state="paused"),
                svc("job", 3, engine.image, state="stopped"),
            ]
        }
    )
    await new_executor(runtime, lock_root).apply(target)
    before = ids_and_starts(engine, 115)
    await runtime.close()

    fresh_runtime = DockerRuntime(lock_root=lock_root, base_url=engine.base_url)
    fresh = new_executor(fresh_runtime, lock_root)
    report = await fresh.apply(target)
    await fresh_runtime.close()
    assert report.outcomes == [] and report.status is ApplyStatus.applied
    assert ids_and_starts(engine, 115) == before


# --- ownership -------------------------------------------------------------------------------------------------
async def test_unmanaged_objects_are_never_touched(
    engine: DockerEngine, runtime: DockerRuntime, lock_root: Path
) -> None:
    api = engine.api
    test_labels = {TEST_LABEL: "1"}
    squatter = api.create_container(
        engine.image, SLEEP, name="iotistic_116_web", labels=test_labels, host_config=api.create_host_config(init=True)
    )["Id"]
    bystander = api.create_container(
        engine.image,
        SLEEP,
        name=f"bystander-{free_port()}",
        labels={**test_labels, LABEL_APP_ID: "116", LABEL_SERVICE_NAME: "worker"},
        host_config=api.create_host_config(init=True),
    )["Id"]
    api.start(squatter)
    api.start(bystander)
    api.create_network("iotistic_116_back", labels=test_labels)
    api.create_volume("iotistic_116_unused", labels=test_labels)
    foreign_before = {cid: api.inspect_container(cid)["State"]["StartedAt"] for cid in (squatter, bystander)}

    target = make_target(
        {
            116: [
                svc("web", 1, engine.image, command=SLEEP),  # its name is taken
                svc("api", 2, engine.image, command=SLEEP, networks=["back"]),  # its network name is taken
                svc("worker", 3, engine.image, command=SLEEP),
            ]
        }
    )
    executor = new_executor(runtime, lock_root)
    report = await executor.apply(target)
    touched = {o.step.container_id for o in report.outcomes} | {o.step.name for o in report.outcomes}
    assert not touched & {squatter, bystander, "iotistic_116_back", "iotistic_116_unused"}
    assert report.status is ApplyStatus.error
    collisions = {d.subject for d in report.plan.deferred if d.reason is DeferReason.name_collision}
    assert collisions == {"service 116/web", "service 116/api", "network iotistic_116_back"}
    assert set(containers_named(engine, 116)) == {"worker"}

    await executor.apply(TargetState())
    assert containers_named(engine, 116) == {}
    assert {cid: api.inspect_container(cid)["State"]["StartedAt"] for cid in foreign_before} == foreign_before
    assert api.inspect_network("iotistic_116_back")["Labels"] == test_labels
    assert api.inspect_volume("iotistic_116_unused")["Labels"] == test_labels

    # the runtime itself refuses destructive steps on foreign objects, whatever a planner might say
    for step in [
        Step(Action.stop, "test", container_id=squatter),
        Step(Action.remove, "test", container_id=bystander),
        Step(Action.remove_network, "test", name="iotistic_116_back"),
        Step(Action.remove_volume, "test", name="iotistic_116_unused"),
    ]:
        with pytest.raises(StepFailed, match="not managed by the agent"):
            await runtime.execute(step)
    assert api.inspect_container(squatter)["State"]["Running"]


def containers_named(engine: DockerEngine, app_id: int) -> dict[str, str]:
    """The agent's containers of an app (managed only), by service name."""
    found = engine.api.containers(all=True, filters={"label": [f"{LABEL_APP_ID}={app_id}", f"{LABEL_MANAGED}=true"]})
    return {c["Labels"][LABEL_SERVICE_NAME]: c["Id"] for c in found}


async def test_removing_an_app_removes_its_containers_network_and_volume(
    engine: DockerEngine, runtime: DockerRuntime, lock_root: Path
) -> None:
    keep = svc("keep", 1, engine.image, command=SLEEP, networks=["net"], volumes=["vol:/v"])
    gone = [
        svc("web", 1, engine.image, command=SLEEP, networks=["net"], volumes=["vol:/v"]),
        svc("db", 2, engine.image, state="paused", networks=["net"]),
    ]
    executor = new_executor(runtime, lock_root)
    await executor.apply(make_target({117: gone, 118: [keep]}))
    kept = ids_and_starts(engine, 118)
    report = await executor.apply(make_target({118: [keep]}))
    assert report.status is ApplyStatus.applied
    assert containers_named(engine, 117) == {}
    names = {n["Name"] for n in engine.api.networks()}
    volumes = {v["Name"] for v in engine.api.volumes()["Volumes"] or []}
    assert "iotistic_117_net" not in names and "iotistic_117_vol" not in volumes
    assert "iotistic_118_net" in names and "iotistic_118_vol" in volumes
    assert ids_and_starts(engine, 118) == kept
    assert (Action.unpause, "db") in actions(report)  # paused containers are unpaused before they are stopped


# --- Device API helpers ----------------------------------------------------------------------------------------
async def test_restart_service_inspect_and_holds(engine: DockerEngine, runtime: DockerRuntime, lock_root: Path) -> None:
    from iotistic.core.schemas.target_state import ServiceState

    executor = new_executor(runtime, lock_root)
    web = svc("web", 1, engine.image, command=SLEEP, networks=["front"], environment={"A": "1"})
    target = make_target({119: [web]})
    await executor.apply(target)
    ((cid, started),) = ids_and_starts(engine, 119).values()

    details = await runtime.inspect(cid)
    assert details.environment["A"] == "1" and details.image == engine.image and details.image_id.startswith("sha256:")
    assert set(details.addresses) == {"front"} and details.status is ContainerStatus.running
    with pytest.raises(ContainerNotFound):
        await runtime.inspect("0" * 64)

    await executor.restart_service(ServiceKey(119, "web"))
    ((cid2, started2),) = ids_and_starts(engine, 119).values()
    assert cid2 == cid and started2 != started

    executor.hold(ServiceKey(119, "web"), ServiceState.stopped)  # Device API stop-service
    assert actions(await executor.apply()) == [(Action.stop, "web")]
    assert (await executor.apply()).outcomes == []  # the hold sticks across applies
    executor.hold(ServiceKey(119, "web"), None)
    assert actions(await executor.apply()) == [(Action.start, "web")]
    assert ids_and_starts(engine, 119)["web"][0] == cid  # never recreated


async def test_container_logs_keep_streams_apart_and_follow(
    engine: DockerEngine, runtime: DockerRuntime, lock_root: Path
) -> None:
    talker = svc(
        "talker",
        1,
        engine.image,
        command=["sh", "-c", TALK],
    )
    await new_executor(runtime, lock_root).apply(make_target({120: [talker]}))
    cid = containers(engine, 120)["talker"]["Id"]
    await asyncio.sleep(0.5)

    lines = [line async for line in runtime.container_logs(cid)]
    assert any(line.stream is LogStream.stdout and line.line == "hello" for line in lines)  # (streams interleave
    assert any(line.stream is LogStream.stderr and line.line == "oops" for line in lines)  # in no fixed order)
    assert all(line.timestamp.tzinfo is not None for line in lines)

    since = datetime.now(UTC)
    followed: list[str] = []
    stream = runtime.container_logs(cid, since=since, follow=True)
    async with asyncio.timeout(10):
        async for line in stream:
            followed.append(line.line)
            if len(followed) == 3:
                break
    closing = time.monotonic()
    await stream.aclose()  # type: ignore[attr-defined]
    assert time.monotonic() - closing < 2
    assert all(text.startswith("tick") for text in followed), followed

    tail = [line.line async for line in runtime.container_logs(cid, tail=1)]
    assert len(tail) == 1


class _None:
    failures = 0
    status = None


_NONE: Any = _None()


async def _until(condition: Any, seconds: float) -> None:
    async with asyncio.timeout(seconds):
        while not condition():  # noqa: ASYNC110 - polls state another task changes
            await asyncio.sleep(0.05)
