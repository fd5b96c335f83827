"""Executor edge cases that a real engine cannot produce on demand: an engine that is down, a step that
"succeeds" without effect (the round limit), unreadable persisted backoff, and the run loop's wake-ups.

The runtime here is the planner tests' strict in-memory Docker behind the `Runtime` interface; everything that
needs real containers is in test_docker_runtime.py.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from iotistic.agent.reconcile.executor import ApplyStatus, Executor
from iotistic.agent.reconcile.planner import Action, Step
from iotistic.agent.runtime.base import ContainerDetails, LogLine, Runtime, RuntimeUnavailable, StepFailed
from iotistic.agent.state import CurrentState, ServiceKey
from tests.agent.test_planner import IMAGE, FakeDocker, svc, target


class FakeRuntime:
    """`Runtime` over the planner tests' FakeDocker; `fail` decides per step whether it fails (and why)."""

    name = "fake"

    def __init__(self, docker: FakeDocker, fail: Callable[[Step], str | None] = lambda _: None) -> None:
        self.docker = docker
        self.fail = fail
        self.down = False
        self.executed: list[Step] = []

    async def ping(self) -> bool:
        return not self.down

    async def version(self) -> Mapping[str, str]:
        return {"runtime": self.name}

    async def read_state(self) -> CurrentState:
        if self.down:
            raise RuntimeUnavailable("engine down")
        return self.docker.current()

    async def images_present(self) -> frozenset[str]:
        return frozenset(self.docker.images)

    async def execute(self, step: Step) -> None:
        self.executed.append(step)
        reason = self.fail(step)
        if reason == "no-op":
            return
        if reason:
            raise StepFailed(step, reason)
        self.docker.apply(step)

    async def restart(self, container_id: str) -> None:
        return None

    async def inspect(self, container_id: str) -> ContainerDetails:
        raise NotImplementedError

    async def container_logs(
        self, container_id: str, *, since: datetime | None = None, follow: bool = False, tail: int | None = None
    ) -> Any:
        if False:  # pragma: no cover - an empty async generator
            yield LogLine

    async def close(self) -> None:
        return None


def test_the_fake_is_a_runtime() -> None:
    assert isinstance(FakeRuntime(FakeDocker()), Runtime)


async def test_converges_in_rounds_and_reports_applied(tmp_path: Path) -> None:
    runtime = FakeRuntime(FakeDocker(images={IMAGE}))
    executor = Executor(runtime, lock_root=tmp_path)
    assert executor.status().status is ApplyStatus.idle
    report = await executor.apply(target(svc("web"), svc("db", sid=2, state="paused")))
    assert report.rounds == 3 and report.status is ApplyStatus.applied
    assert executor.status().last_applied_at is not None and executor.status().pending == ()


async def test_the_round_limit_bounds_an_apply_that_makes_no_progress(tmp_path: Path) -> None:
    """A create that 'succeeds' but leaves nothing behind would be planned forever: the limit stops it."""
    runtime = FakeRuntime(FakeDocker(images={IMAGE}), fail=lambda s: "no-op" if s.action is Action.create else None)
    executor = Executor(runtime, lock_root=tmp_path, max_rounds=4)
    report = await executor.apply(target(svc("web")))
    assert report.rounds == 4 and len(runtime.executed) == 4
    assert report.status is ApplyStatus.error and executor.status().pending == ("create 1/web: missing",)


async def test_a_failed_step_is_not_retried_within_the_same_apply(tmp_path: Path) -> None:
    runtime = FakeRuntime(FakeDocker(images={IMAGE}), fail=lambda s: "disk full" if s.service_name == "web" else None)
    executor = Executor(runtime, lock_root=tmp_path)
    report = await executor.apply(target(svc("web"), svc("db", sid=2)))
    assert [(s.action, s.service_name) for s in runtime.executed] == [
        (Action.create, "db"),
        (Action.create, "web"),
        (Action.start, "db"),
    ]
    assert report.status is ApplyStatus.error
    web = executor.status().service(1, "web")
    assert web is not None and web.error == "create failed: disk full" and web.status == "missing"
    runtime.fail = lambda _: None
    assert (await executor.apply()).status is ApplyStatus.applied
    assert (executor.status().service(1, "web") or web).error is None


async def test_an_engine_that_is_down_is_an_error_not_a_crash(tmp_path: Path) -> None:
    runtime = FakeRuntime(FakeDocker(images={IMAGE}))
    runtime.down = True
    executor = Executor(runtime, lock_root=tmp_path)
    report = await executor.apply(target(svc("web")))
    assert report.status is ApplyStatus.error and report.error == "engine down"
    assert executor.status().last_error == "engine down"
    runtime.down = False
    assert (await executor.apply()).status is ApplyStatus.applied
    assert executor.status().last_error is None


async def test_unreadable_backoff_is_ignored_and_good_backoff_round_trips(tmp_path: Path) -> None:
    executor = Executor(FakeRuntime(FakeDocker()), lock_root=tmp_path)
    for junk in (None, {}, {"version": 99}, {"version": 1, "crashes": {"x/web": {}}}, {"version": 1, "pulls": 3}):
        executor.import_backoff(junk)
    data = {
        "version": 1,
        "pulls": {IMAGE: {"failures": 2, "retryAt": 123.5, "error": "nope"}},
        "crashes": {"7/web": {"failures": 3, "retryAt": 99.0, "error": "exited with code 1"}},
    }
    executor.import_backoff(data)
    assert executor.export_backoff() == data
    backoff = executor.backoff_state()
    assert backoff.pull_retry_at == {IMAGE: 123.5} and backoff.start_retry_at == {ServiceKey(7, "web"): 99.0}


async def wait_for_status(executor: Executor, status: ApplyStatus) -> None:
    async with asyncio.timeout(5):
        while executor.status().status is not status:  # noqa: ASYNC110 - the run loop task changes it
            await asyncio.sleep(0.01)


async def test_the_run_loop_applies_on_a_new_target_and_survives_failures(tmp_path: Path) -> None:
    runtime = FakeRuntime(FakeDocker(images={IMAGE}))
    executor = Executor(runtime, lock_root=tmp_path)
    task = asyncio.create_task(executor.run(interval=60))  # only wake-ups can make it apply in time
    try:
        executor.set_target(target(svc("web")))
        await wait_for_status(executor, ApplyStatus.applied)
        runtime.down = True
        executor.request_apply()
        await wait_for_status(executor, ApplyStatus.error)
        runtime.down = False
        executor.set_target(target(svc("web", state="stopped")))
        await wait_for_status(executor, ApplyStatus.applied)
        assert not task.done()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_new_target_drops_local_holds(tmp_path: Path) -> None:
    from iotistic.core.schemas.target_state import ServiceState

    executor = Executor(FakeRuntime(FakeDocker(images={IMAGE})), lock_root=tmp_path)
    executor.set_target(target(svc("web")))
    executor.hold(ServiceKey(1, "web"), ServiceState.stopped)
    executor.set_target(target(svc("web")))  # the same target: the hold stays
    assert executor.holds() == {ServiceKey(1, "web"): ServiceState.stopped}
    executor.set_target(target(svc("web", environment={"A": "1"})))
    assert executor.holds() == {}
