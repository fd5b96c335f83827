"""The runtime interface: what the executor, the Device API and the log collector need from a container engine.

Docker implements it today (`iotistic.agent.runtime.docker`); a Kubernetes (K3s) runtime can implement it later
by mapping a service to a pod, a network to a namespace-local service name and a volume to a PVC. So the
interface speaks of the agent's own objects (`CurrentState`, `Step`), never of Docker's.

Rules every implementation follows:

* `read_state` reports *everything* it sees, managed or not, so the planner can notice a name it needs taken
  by someone else. Networks and volumes a container uses are given by their logical (target) names.
* `execute` runs one planner step and refuses (with `StepFailed`) any destructive step on an object that does
  not carry the agent's management label, whatever the planner said: a second line of defence.
* Every method is async; a blocking client runs in a worker thread, never on the event loop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol, runtime_checkable

from iotistic.agent.reconcile.planner import Step
from iotistic.agent.state import ContainerStatus, CurrentState


class RuntimeFailure(Exception):
    """Base of the runtime's errors."""


class RuntimeUnavailable(RuntimeFailure):
    """The engine does not answer (socket missing, daemon down). The executor retries later."""


class StepFailed(RuntimeFailure):
    """A step could not be carried out. `message` says why in words a user can act on."""

    def __init__(self, step: Step | None, message: str) -> None:
        self.step = step
        self.message = message
        super().__init__(f"{step}: {message}" if step is not None else message)


class ContainerNotFound(RuntimeFailure):
    """No container with that id (it may just have been removed)."""


class LogStream(StrEnum):
    stdout = "stdout"
    stderr = "stderr"


@dataclass(frozen=True, slots=True)
class LogLine:
    """One line of a container's output, without its line ending."""

    timestamp: datetime
    stream: LogStream
    line: str


@dataclass(frozen=True)
class ContainerDetails:
    """What the Device API shows about one container (`/v1/apps/{appId}`, `/v2/containerId`, ...).

    Runtime-neutral: `image_id` is the content id of the image the container runs; `addresses` maps each
    network (logical name) to the container's IP address on it.
    """

    container_id: str
    name: str
    image: str
    image_id: str
    status: ContainerStatus
    labels: Mapping[str, str] = field(default_factory=dict)
    environment: Mapping[str, str] = field(default_factory=dict)
    addresses: Mapping[str, str] = field(default_factory=dict)
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    exit_code: int | None = None
    restart_count: int = 0
    error: str = ""


@runtime_checkable
class Runtime(Protocol):
    """A container engine as the agent uses it."""

    #: Short name for reports and logs, e.g. "docker".
    name: str

    async def ping(self) -> bool:
        """Whether the engine answers. Never raises."""
        ...

    async def version(self) -> Mapping[str, str]:
        """Engine name and version, for `/v1/device` and support."""
        ...

    async def read_state(self) -> CurrentState:
        """Every container, network and volume there is (managed or not). Raises `RuntimeUnavailable`."""
        ...

    async def images_present(self) -> frozenset[str]:
        """References of the images available locally: every tag (with and without `:latest`), digest and id."""
        ...

    async def execute(self, step: Step) -> None:
        """Carry out one planner step. Raises `StepFailed` (with the engine's reason) or `RuntimeUnavailable`."""
        ...

    async def restart(self, container_id: str) -> None:
        """Restart one managed container in place (the Device API's restart-service). Raises `StepFailed`."""
        ...

    async def inspect(self, container_id: str) -> ContainerDetails:
        """Details of one container. Raises `ContainerNotFound`."""
        ...

    def container_logs(
        self,
        container_id: str,
        *,
        since: datetime | None = None,
        follow: bool = False,
        tail: int | None = None,
    ) -> AsyncIterator[LogLine]:
        """The container's output from `since` (or the last `tail` lines), each stream in order (stdout and
        stderr interleave as the engine delivers them, not strictly by timestamp); with `follow`, keeps
        yielding live lines until the container stops or the iterator is closed (closing frees the stream: use
        `contextlib.aclosing` when leaving the loop early)."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...
