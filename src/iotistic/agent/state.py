"""The agent's view of what exists on the device, and the naming and labelling contract with the runtime.

The runtime (Docker today, Kubernetes later) reads reality into these dataclasses; the planner compares them with
the `TargetState` the cloud sent. Nothing here does I/O.

Ownership: the agent only ever touches containers, networks and volumes that carry `io.iotistic.managed=true`.
Everything else on the host is someone else's and is ignored, even when a name collides with one the agent
wants (the planner then reports the collision instead of acting).

Change detection: every container the agent creates carries `io.iotistic.config-hash`, a hash of the
*target* config it was created from (`ComparableConfig.config_hash`). Comparing that label with the hash of the
current target is robust where a field-by-field comparison of what Docker reports is not (Docker merges the
image's own environment, reorders ports, rewrites volume modes, ...). Only containers without the label (made
by an older agent) fall back to comparing the observed fields.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, NamedTuple

from iotistic.core.schemas.target_state import ServiceConfig

# --- label namespace -------------------------------------------------------------------------------------------
#: Every label under this prefix belongs to the agent: management labels it sets itself, and behaviour hints
#: such as the update strategy. None of them take part in change detection, so they never cause a recreate.
LABEL_PREFIX = "io.iotistic."
LABEL_MANAGED = LABEL_PREFIX + "managed"
MANAGED_VALUE = "true"
LABEL_APP_ID = LABEL_PREFIX + "app-id"
LABEL_SERVICE_ID = LABEL_PREFIX + "service-id"
LABEL_SERVICE_NAME = LABEL_PREFIX + "service-name"
LABEL_CONFIG_HASH = LABEL_PREFIX + "config-hash"
#: The logical (target) name of a managed network or volume, before app scoping.
LABEL_RESOURCE_NAME = LABEL_PREFIX + "name"
#: Set by users in a service's target labels: `download-then-kill` (default) or `kill-then-download`.
LABEL_UPDATE_STRATEGY = LABEL_PREFIX + "update-strategy"

#: Docker names of agent-made objects start with this, then the app id: `iotistic_<appId>_<name>`.
NAME_PREFIX = "iotistic"
#: Networks every Docker engine has; a service may join them, the agent never creates or removes them.
BUILTIN_NETWORKS = frozenset({"bridge", "host", "none"})
#: Part of the hashed payload: bumping it (when the hashed fields change meaning) recreates every service once.
CONFIG_HASH_VERSION = 1

_MEMORY_UNITS = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


class ContainerStatus(StrEnum):
    """Container states as Docker reports them (`State.Status`)."""

    created = "created"
    running = "running"
    paused = "paused"
    restarting = "restarting"
    exited = "exited"
    dead = "dead"


class ServiceKey(NamedTuple):
    """Identity of a service on the device: the unit of update locks, backoff and step ordering."""

    app_id: int
    service_name: str

    def __str__(self) -> str:
        return f"{self.app_id}/{self.service_name}"


# --- naming ----------------------------------------------------------------------------------------------------
def container_name(app_id: int, service_name: str) -> str:
    """The container's Docker name. Injective: the app id has no underscore, so the name parses back uniquely."""
    return f"{NAME_PREFIX}_{app_id}_{service_name}"


def network_name(app_id: int, name: str) -> str:
    """Docker name of a target network. Networks are app-scoped (like Compose projects) except the built-in ones."""
    if name in BUILTIN_NETWORKS:
        return name
    return f"{NAME_PREFIX}_{app_id}_{name}"


def volume_name(app_id: int, name: str) -> str:
    """Docker name of a target named volume, app-scoped so two apps' `data` volumes stay apart."""
    return f"{NAME_PREFIX}_{app_id}_{name}"


def resource_labels(app_id: int, name: str) -> dict[str, str]:
    """Labels the agent puts on a network or volume it creates."""
    return {LABEL_MANAGED: MANAGED_VALUE, LABEL_APP_ID: str(app_id), LABEL_RESOURCE_NAME: name}


def container_labels(
    app_id: int, service_id: int, service_name: str, config_hash: str, user_labels: Mapping[str, str]
) -> dict[str, str]:
    """All labels of a container the agent creates: the user's, then the management ones (which always win)."""
    labels = dict(user_labels)
    labels.update(
        {
            LABEL_MANAGED: MANAGED_VALUE,
            LABEL_APP_ID: str(app_id),
            LABEL_SERVICE_ID: str(service_id),
            LABEL_SERVICE_NAME: service_name,
            LABEL_CONFIG_HASH: config_hash,
        }
    )
    return labels


def is_managed(labels: Mapping[str, str]) -> bool:
    return labels.get(LABEL_MANAGED) == MANAGED_VALUE


def user_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """The labels that describe the service, i.e. without the agent's own namespace."""
    return {k: v for k, v in labels.items() if not k.startswith(LABEL_PREFIX)}


# --- comparable config -----------------------------------------------------------------------------------------
def _command(value: Sequence[str] | str | None) -> tuple[str, ...] | None:
    """A string command means what Docker makes of it (the SDK shlex-splits it), so compare it split."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return tuple(shlex.split(value))
        except ValueError:  # unbalanced quotes: Docker would refuse it anyway; keep it comparable
            return (value,)
    return tuple(value)


def _port(value: str) -> str:
    """`80:80` and `80:80/tcp` are the same binding."""
    return value if "/" in value else f"{value}/tcp"


def _volume(value: str) -> str:
    """`data:/data` and `data:/data:rw` are the same mount."""
    return value[: -len(":rw")] if value.count(":") == 2 and value.endswith(":rw") else value


def _memory(value: str | int | None) -> int | None:
    if value is None or isinstance(value, int):
        return value
    text = value.strip().lower()
    unit = text[-1] if text[-1] in _MEMORY_UNITS else "b"
    number = text[:-1] if text[-1] in _MEMORY_UNITS else text
    return int(number) * _MEMORY_UNITS[unit]


@dataclass(frozen=True)
class ComparableConfig:
    """The fields whose change recreates a service, normalised so equal meaning compares equal.

    Order does not matter for environment, ports, volumes, networks and labels (they are sorted sets); it does
    for command and entrypoint. Labels exclude the agent's `io.iotistic.*` namespace. Resources (cpus, memory)
    are included: Docker applies them at create time, so a changed limit needs a new container. Probes are not:
    the agent runs them itself, the container does not change.
    """

    image: str
    command: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    environment: tuple[tuple[str, str], ...] = ()
    ports: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    networks: tuple[str, ...] = ()
    restart: str = "unless-stopped"
    labels: tuple[tuple[str, str], ...] = ()
    cpus: float | None = None
    memory: int | None = None

    @classmethod
    def build(
        cls,
        image: str,
        *,
        command: Sequence[str] | str | None = None,
        entrypoint: Sequence[str] | str | None = None,
        environment: Mapping[str, str] | None = None,
        ports: Iterable[str] = (),
        volumes: Iterable[str] = (),
        networks: Iterable[str] = (),
        restart: str = "unless-stopped",
        labels: Mapping[str, str] | None = None,
        cpus: float | None = None,
        memory: str | int | None = None,
    ) -> ComparableConfig:
        """Normalise loosely shaped values (as a runtime reads them, or as tests write them)."""
        return cls(
            image=image,
            command=_command(command),
            entrypoint=_command(entrypoint),
            environment=tuple(sorted((environment or {}).items())),
            ports=tuple(sorted({_port(p) for p in ports})),
            volumes=tuple(sorted({_volume(v) for v in volumes})),
            networks=tuple(sorted(set(networks))),
            restart=restart,
            labels=tuple(sorted(user_labels(labels or {}).items())),
            cpus=cpus,
            memory=_memory(memory),
        )

    @classmethod
    def from_target(cls, config: ServiceConfig) -> ComparableConfig:
        resources = config.resources
        return cls.build(
            config.image,
            command=config.command,
            entrypoint=config.entrypoint,
            environment=config.environment,
            ports=config.ports,
            volumes=config.volumes,
            networks=config.networks,
            restart=config.restart.value,
            labels=config.labels,
            cpus=resources.cpus if resources else None,
            memory=resources.memory if resources else None,
        )

    def config_hash(self) -> str:
        """Stable across processes and Python versions: sha256 of canonical JSON, versioned."""
        payload: dict[str, Any] = {"v": CONFIG_HASH_VERSION, **asdict(self)}
        canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def differences(self, other: ComparableConfig) -> list[str]:
        """Names of the fields that differ, for human-readable step reasons."""
        mine, theirs = asdict(self), asdict(other)
        return [name for name in mine if mine[name] != theirs[name]]

    def named_volumes(self) -> tuple[str, ...]:
        """Logical names of the named volumes this service mounts (bind mounts of host paths are not resources)."""
        names = {v.split(":", 1)[0] for v in self.volumes}
        return tuple(sorted(n for n in names if not n.startswith("/")))


# --- observed objects ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ObservedService:
    """A container as the runtime sees it. The runtime fills app/service ids from the management labels.

    `config` is the runtime's best reading of the container's comparable fields, with networks and volumes given
    by their logical (target) names; the planner trusts it fully only for which networks and volumes a container
    uses, and for change detection only when the container has no config-hash label.
    """

    app_id: int
    service_id: int
    service_name: str
    container_id: str
    status: ContainerStatus
    config: ComparableConfig
    labels: Mapping[str, str] = field(default_factory=dict)
    name: str = ""
    created_at: datetime | None = None
    exit_code: int | None = None
    restart_count: int = 0
    #: When the container last started and last exited (None: never). The executor tells a crash from an old
    #: exit, and a service that stayed up from one that keeps failing, by these.
    started_at: datetime | None = None
    finished_at: datetime | None = None
    #: The runtime's own error for the container (e.g. "executable file not found"), empty when none.
    error: str = ""

    @property
    def key(self) -> ServiceKey:
        return ServiceKey(self.app_id, self.service_name)

    @property
    def image(self) -> str:
        return self.config.image

    @property
    def managed(self) -> bool:
        return is_managed(self.labels)

    @property
    def config_hash(self) -> str | None:
        return self.labels.get(LABEL_CONFIG_HASH)


@dataclass(frozen=True)
class ObservedResource:
    """A network or volume that exists. Its app and logical name come from its labels."""

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def managed(self) -> bool:
        return is_managed(self.labels)

    @property
    def app_id(self) -> int | None:
        value = self.labels.get(LABEL_APP_ID, "")
        return int(value) if value.isdigit() else None

    @property
    def logical_name(self) -> str | None:
        return self.labels.get(LABEL_RESOURCE_NAME)


class ObservedNetwork(ObservedResource):
    """A Docker network."""


class ObservedVolume(ObservedResource):
    """A Docker volume."""


@dataclass(frozen=True)
class CurrentState:
    """Everything the runtime observed in one read. Unmanaged objects may be included; the planner skips them."""

    services: Sequence[ObservedService] = ()
    networks: Sequence[ObservedNetwork] = ()
    volumes: Sequence[ObservedVolume] = ()

    def managed_services(self) -> list[ObservedService]:
        return [s for s in self.services if s.managed]

    def foreign_container_names(self) -> frozenset[str]:
        """Names held by containers the agent does not own: it must not create a container under one of them."""
        return frozenset(s.name for s in self.services if not s.managed and s.name)
