"""The Docker runtime: the `Runtime` interface through the Docker SDK's low-level `APIClient`.

Why the low-level client: the high-level one inspects every container on every listing, and the agent lists
every few seconds on small devices. Here the listing is one call; only the agent's own containers are inspected
(for restart count, exit code and timestamps); unmanaged ones need nothing but their name.

Every SDK call blocks, so each public method runs its work in a worker thread (`asyncio.to_thread`). The client
is made on first use, so an agent can start before the engine does; `DOCKER_HOST` (and the TLS variables) are
honoured as the Docker CLI honours them.

How a target service becomes a container (`_create`): the app-scoped names from `iotistic.agent.state` for the
container, its named volumes and its networks (the first network at create time, the others connected before
the container is started, each with the service name as DNS alias), the restart policy, the labels of the step
(management ones included), CPU and memory limits, `init=True` (a tiny init as PID 1 forwards SIGTERM, so stop is
instant and zombies are reaped), and the service's update-lock folder bind-mounted at `/tmp/iotistic`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shlex
import socket
import struct
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import docker
import docker.errors
import requests
from docker.utils import kwargs_from_env, parse_repository_tag

from iotistic.agent.reconcile.locks import LOCK_MOUNT_PATH, UpdateLocks
from iotistic.agent.reconcile.planner import Action, Step
from iotistic.agent.runtime.base import (
    ContainerDetails,
    ContainerNotFound,
    LogLine,
    LogStream,
    RuntimeUnavailable,
    StepFailed,
)
from iotistic.agent.state import (
    BUILTIN_NETWORKS,
    LABEL_APP_ID,
    LABEL_MANAGED,
    LABEL_SERVICE_ID,
    LABEL_SERVICE_NAME,
    NAME_PREFIX,
    ComparableConfig,
    ContainerStatus,
    CurrentState,
    ObservedNetwork,
    ObservedService,
    ObservedVolume,
    ServiceKey,
    is_managed,
    network_name,
    volume_name,
)
from iotistic.core.schemas.target_state import RestartPolicy

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Docker's `State.Status` -> ours. `removing` counts as dead: it is on its way out and cannot be started.
_STATUS = {
    "created": ContainerStatus.created,
    "running": ContainerStatus.running,
    "paused": ContainerStatus.paused,
    "restarting": ContainerStatus.restarting,
    "removing": ContainerStatus.dead,
    "exited": ContainerStatus.exited,
    "dead": ContainerStatus.dead,
}
_NEVER = "0001-01-01T00:00:00Z"
_LOG_HEADER = struct.Struct(">BxxxL")
#: A follow stream stops reading while this many lines wait for the consumer (soft back-pressure).
_LOG_QUEUE_HIGH_WATER = 2000


class DockerRuntime:
    """`Runtime` on a Docker engine. `lock_root` is the host folder holding the services' update-lock folders."""

    name = "docker"

    def __init__(
        self,
        *,
        lock_root: Path,
        base_url: str | None = None,
        timeout: float = 120.0,
        stop_timeout: int = 10,
    ) -> None:
        self.locks = UpdateLocks(lock_root)
        self._base_url = base_url
        self._timeout = timeout
        self._stop_timeout = stop_timeout
        self._client: docker.APIClient | None = None
        self._client_lock = threading.Lock()

    # --- client --------------------------------------------------------------------------------------------
    def _api(self) -> docker.APIClient:
        """The client, made on first use (in a worker thread: `version="auto"` asks the engine)."""
        with self._client_lock:
            if self._client is None:
                kwargs: dict[str, Any] = kwargs_from_env()
                if self._base_url:
                    kwargs["base_url"] = self._base_url
                try:
                    self._client = docker.APIClient(
                        version="auto", timeout=int(self._timeout), max_pool_size=32, **kwargs
                    )
                except docker.errors.DockerException as exc:
                    raise RuntimeUnavailable(f"Docker engine not reachable: {exc}") from exc
            return self._client

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking function in a thread, translating 'engine gone' into `RuntimeUnavailable`."""
        try:
            return await asyncio.to_thread(fn, *args)
        except (requests.exceptions.ConnectionError, ConnectionError) as exc:
            raise RuntimeUnavailable(f"Docker engine not reachable: {exc}") from exc

    async def close(self) -> None:
        with self._client_lock:
            client, self._client = self._client, None
        if client is not None:
            await asyncio.to_thread(client.close)

    # --- engine --------------------------------------------------------------------------------------------
    async def ping(self) -> bool:
        try:
            return bool(await self._run(lambda: self._api().ping()))
        except Exception:
            return False

    async def version(self) -> Mapping[str, str]:
        info = await self._run(lambda: self._api().version())
        return {"runtime": self.name, "version": str(info.get("Version", "")), "api": str(info.get("ApiVersion", ""))}

    # --- reading -------------------------------------------------------------------------------------------
    async def read_state(self) -> CurrentState:
        return await self._run(self._read_state)

    def _read_state(self) -> CurrentState:
        api = self._api()
        services: list[ObservedService] = []
        for summary in api.containers(all=True):
            labels = summary.get("Labels") or {}
            if is_managed(labels):
                try:
                    services.append(observe_container(api.inspect_container(summary["Id"])))
                except docker.errors.NotFound:
                    continue  # removed between the listing and the inspect
            else:
                services.append(_foreign_container(summary))
        networks = [ObservedNetwork(n["Name"], n.get("Labels") or {}) for n in api.networks()]
        volumes = [ObservedVolume(v["Name"], v.get("Labels") or {}) for v in api.volumes().get("Volumes") or []]
        return CurrentState(services=services, networks=networks, volumes=volumes)

    async def images_present(self) -> frozenset[str]:
        return await self._run(self._images_present)

    def _images_present(self) -> frozenset[str]:
        refs: set[str] = set()
        for image in self._api().images():
            refs.add(image["Id"])
            refs.update(image.get("RepoDigests") or [])
            for tag in image.get("RepoTags") or []:
                if tag != "<none>:<none>":
                    refs.update(image_aliases(tag))
        return frozenset(refs)

    async def inspect(self, container_id: str) -> ContainerDetails:
        return await self._run(self._inspect, container_id)

    def _inspect(self, container_id: str) -> ContainerDetails:
        try:
            attrs = self._api().inspect_container(container_id)
        except docker.errors.NotFound as exc:
            raise ContainerNotFound(f"no container {container_id}") from exc
        observed = observe_container(attrs)
        networks = (attrs.get("NetworkSettings") or {}).get("Networks") or {}
        return ContainerDetails(
            container_id=observed.container_id,
            name=observed.name,
            image=observed.image,
            image_id=str(attrs.get("Image", "")),
            status=observed.status,
            labels=dict(observed.labels),
            environment=dict(observed.config.environment),
            addresses={
                _logical(name, observed.app_id): str(net.get("IPAddress") or "")
                for name, net in networks.items()
                if net.get("IPAddress")
            },
            created_at=observed.created_at,
            started_at=observed.started_at,
            finished_at=observed.finished_at,
            exit_code=observed.exit_code,
            restart_count=observed.restart_count,
            error=observed.error,
        )

    # --- steps ---------------------------------------------------------------------------------------------
    async def execute(self, step: Step) -> None:
        await self._run(self._execute, step)

    def _execute(self, step: Step) -> None:
        handler = self._handlers()[step.action]
        try:
            handler(step)
        except docker.errors.APIError as exc:
            raise StepFailed(step, _explain(exc)) from exc
        except docker.errors.DockerException as exc:  # e.g. an invalid argument caught by the SDK
            raise StepFailed(step, str(exc)) from exc

    def _handlers(self) -> dict[Action, Callable[[Step], None]]:
        return {
            Action.create_network: self._create_network,
            Action.remove_network: self._remove_network,
            Action.create_volume: self._create_volume,
            Action.remove_volume: self._remove_volume,
            Action.pull_image: self._pull,
            Action.create: self._create,
            Action.start: lambda s: self._api().start(self._owned(s)),
            Action.stop: lambda s: self._api().stop(self._owned(s), timeout=self._stop_timeout),
            Action.pause: lambda s: self._api().pause(self._owned(s)),
            Action.unpause: lambda s: self._api().unpause(self._owned(s)),
            # v=True: the container's anonymous volumes go with it (named volumes are resources, never removed here)
            Action.remove: lambda s: self._api().remove_container(self._owned(s), v=True),
        }

    def _owned(self, step: Step) -> str:
        """The step's container id, after checking the container carries the management label."""
        cid = _required(step, step.container_id, "container_id")
        try:
            labels = (self._api().inspect_container(cid).get("Config") or {}).get("Labels") or {}
        except docker.errors.NotFound as exc:
            raise StepFailed(step, f"no container {cid}") from exc
        if not is_managed(labels):
            raise StepFailed(step, f"refusing to touch container {cid}: it is not managed by the agent")
        return cid

    def _create_network(self, step: Step) -> None:
        name = _required(step, step.name, "name")
        self._api().create_network(name, driver="bridge", labels=dict(step.labels), check_duplicate=True)

    def _remove_network(self, step: Step) -> None:
        name = _required(step, step.name, "name")
        labels = self._api().inspect_network(name).get("Labels") or {}
        if not is_managed(labels):
            raise StepFailed(step, f"refusing to remove network {name}: it is not managed by the agent")
        self._api().remove_network(name)

    def _create_volume(self, step: Step) -> None:
        name = _required(step, step.name, "name")
        self._api().create_volume(name, labels=dict(step.labels))

    def _remove_volume(self, step: Step) -> None:
        name = _required(step, step.name, "name")
        labels = self._api().inspect_volume(name).get("Labels") or {}
        if not is_managed(labels):
            raise StepFailed(step, f"refusing to remove volume {name}: it is not managed by the agent")
        self._api().remove_volume(name)

    def _pull(self, step: Step) -> None:
        """Pull by reference; credentials come from the engine host's Docker config, as for `docker pull`."""
        image = _required(step, step.image, "image")
        repository, tag = parse_repository_tag(image)
        for event in self._api().pull(repository, tag=tag or "latest", stream=True, decode=True):
            if isinstance(event, dict) and event.get("error"):
                raise StepFailed(step, f"pull of {image} failed: {event['error']}")

    def _create(self, step: Step) -> None:
        service = step.service
        if service is None or step.app_id is None or step.name is None or step.image is None:
            raise StepFailed(step, "create step without its service, app id, name or image")
        api = self._api()
        key = ServiceKey(step.app_id, service.service_name)
        config = service.config
        networks = [network_name(step.app_id, n) for n in dict.fromkeys(config.networks)]
        binds = [_bind(v, step.app_id) for v in config.volumes]
        binds.append(f"{self.locks.ensure_dir(key)}:{LOCK_MOUNT_PATH}:rw")
        exposed, bindings = port_bindings(config.ports)
        comparable = ComparableConfig.from_target(config)
        host_config = api.create_host_config(
            binds=binds,
            port_bindings=bindings,
            restart_policy=_restart_policy(config.restart),
            init=True,
            nano_cpus=round(comparable.cpus * 1e9) if comparable.cpus else None,
            mem_limit=comparable.memory,
            network_mode=networks[0] if networks else None,
        )
        networking_config = None
        if networks:
            networking_config = api.create_networking_config(
                {networks[0]: api.create_endpoint_config(aliases=_aliases(networks[0], service.service_name))}
            )
        created = api.create_container(
            step.image,
            command=_split(config.command),
            entrypoint=_split(config.entrypoint),
            environment=dict(config.environment),
            ports=exposed,
            labels=dict(step.labels),
            name=step.name,
            host_config=host_config,
            networking_config=networking_config,
            detach=True,
        )
        cid = created["Id"]
        try:
            for network in networks[1:]:
                api.connect_container_to_network(cid, network, aliases=_aliases(network, service.service_name))
        except docker.errors.APIError as exc:
            # All or nothing: a half-connected container would match its config hash and never be fixed.
            with contextlib.suppress(docker.errors.APIError):
                api.remove_container(cid, force=True, v=True)
            raise StepFailed(step, f"could not connect to its networks: {_explain(exc)}") from exc

    # --- Device API helpers --------------------------------------------------------------------------------
    async def restart(self, container_id: str) -> None:
        step = Step(Action.start, "restart requested", container_id=container_id)

        def restart() -> None:
            try:
                self._api().restart(self._owned(step), timeout=self._stop_timeout)
            except docker.errors.APIError as exc:
                raise StepFailed(step, _explain(exc)) from exc

        await self._run(restart)

    # --- logs ----------------------------------------------------------------------------------------------
    async def container_logs(
        self,
        container_id: str,
        *,
        since: datetime | None = None,
        follow: bool = False,
        tail: int | None = None,
    ) -> AsyncIterator[LogLine]:
        """Lines read by a thread of their own and handed over through a queue; closing the iterator (use
        `contextlib.aclosing`) shuts the connection down, which unblocks the thread even while it waits for a
        quiet container.

        Not `asyncio.to_thread`: a follow stream lives as long as its container, and a few of them would occupy
        the default executor's handful of threads that every other runtime call needs.
        """
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[LogLine | BaseException | None] = asyncio.Queue()
        reader = _LogReader(self, container_id, since=since, follow=follow, tail=tail)
        finished = asyncio.Event()

        def deliver(item: LogLine | BaseException | None) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening any more
                loop.call_soon_threadsafe(queue.put_nowait, item)
                if item is None:
                    loop.call_soon_threadsafe(finished.set)

        thread = threading.Thread(
            target=reader.run, args=(deliver, queue.qsize), name=f"logs-{container_id[:12]}", daemon=True
        )
        thread.start()
        try:
            while True:
                item = await queue.get()
                if item is None:
                    break
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            reader.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(finished.wait(), 5)


class _LogReader:
    """Reads one container's log stream in a worker thread (Docker's multiplexed format, or raw for a TTY)."""

    def __init__(
        self, runtime: DockerRuntime, container_id: str, *, since: datetime | None, follow: bool, tail: int | None
    ) -> None:
        self.runtime = runtime
        self.container_id = container_id
        self.params: dict[str, Any] = {
            "stdout": 1,
            "stderr": 1,
            "timestamps": 1,
            "follow": 1 if follow else 0,
            "tail": "all" if tail is None else str(tail),
        }
        if since is not None:
            self.params["since"] = f"{since.timestamp():.6f}"
        self._closed = threading.Event()
        self._response: requests.Response | None = None
        self._lock = threading.Lock()

    def run(self, deliver: Callable[[LogLine | BaseException | None], None], backlog: Callable[[], int]) -> None:
        try:
            for line in self._lines():
                while backlog() > _LOG_QUEUE_HIGH_WATER and not self._closed.is_set():
                    time.sleep(0.05)
                if self._closed.is_set():
                    return
                deliver(line)
        except docker.errors.NotFound:
            deliver(ContainerNotFound(f"no container {self.container_id}"))
        except Exception as exc:
            if not self._closed.is_set():
                deliver(exc)
        finally:
            deliver(None)

    def _lines(self) -> Iterator[LogLine]:
        api = self.runtime._api()
        tty = bool((api.inspect_container(self.container_id).get("Config") or {}).get("Tty"))
        # The SDK's public `logs()` merges stdout and stderr; the raw endpoint keeps them apart.
        response = api._get(api._url("/containers/{0}/logs", self.container_id), params=self.params, stream=True)
        api._raise_for_status(response)
        with self._lock:
            self._response = response
        if self._closed.is_set():
            self.close()
        frames = _raw_frames(response) if tty else _multiplexed_frames(response)
        pending = {LogStream.stdout: b"", LogStream.stderr: b""}
        for stream, data in frames:
            chunk = pending[stream] + data
            *complete, pending[stream] = chunk.split(b"\n")
            for raw in complete:
                yield _log_line(stream, raw)
        for stream, rest in pending.items():
            if rest:
                yield _log_line(stream, rest)

    def close(self) -> None:
        """Stop reading: shutting the socket down wakes a thread blocked in a read (closing it would not)."""
        self._closed.set()
        with self._lock:
            response = self._response
        if response is None:
            return
        with contextlib.suppress(Exception):
            raw_socket = self.runtime._api()._get_raw_response_socket(response)
            sock = getattr(raw_socket, "_sock", raw_socket)
            sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(Exception):
            response.close()


def _read_exact(response: requests.Response, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = response.raw.read(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _multiplexed_frames(response: requests.Response) -> Iterator[tuple[LogStream, bytes]]:
    """Docker's stream format: an 8-byte header (stream type, 3 zero bytes, big-endian length), then the payload."""
    while True:
        header = _read_exact(response, _LOG_HEADER.size)
        if len(header) < _LOG_HEADER.size:
            return
        kind, length = _LOG_HEADER.unpack(header)
        payload = _read_exact(response, length)
        yield (LogStream.stderr if kind == 2 else LogStream.stdout), payload
        if len(payload) < length:
            return


def _raw_frames(response: requests.Response) -> Iterator[tuple[LogStream, bytes]]:
    for chunk in response.iter_content(chunk_size=None):
        yield LogStream.stdout, chunk


def _log_line(stream: LogStream, raw: bytes) -> LogLine:
    """`<RFC 3339 nano timestamp> <text>` -> LogLine; a line without a readable timestamp is stamped now."""
    text = raw.decode("utf-8", "replace").rstrip("\r")
    stamp, _, rest = text.partition(" ")
    when = parse_time(stamp)
    if when is None:
        return LogLine(datetime.now(UTC), stream, text)
    return LogLine(when, stream, rest)


# --- mapping Docker's view to the agent's ------------------------------------------------------------------------
def observe_container(attrs: Mapping[str, Any]) -> ObservedService:
    """A container's `docker inspect` document as the planner sees it."""
    config = attrs.get("Config") or {}
    state = attrs.get("State") or {}
    labels = dict(config.get("Labels") or {})
    name = str(attrs.get("Name", "")).lstrip("/")
    ids = _management_ids(labels)
    if ids is None:
        # Labelled managed, but not attributable to a service: treat it as foreign rather than guess (and delete).
        labels.pop(LABEL_MANAGED, None)
        ids = (0, 0, name)
    app_id, service_id, service_name = ids
    finished_at = parse_time(state.get("FinishedAt"))
    error = str(state.get("Error") or "")
    exit_code = state.get("ExitCode")
    return ObservedService(
        app_id=app_id,
        service_id=service_id,
        service_name=service_name,
        container_id=str(attrs["Id"]),
        status=_STATUS.get(str(state.get("Status", "")), ContainerStatus.dead),
        config=observed_config(attrs, app_id),
        labels=labels,
        name=name,
        created_at=parse_time(attrs.get("Created")),
        exit_code=int(exit_code) if exit_code is not None and (finished_at or error) else None,
        restart_count=int(attrs.get("RestartCount") or 0),
        started_at=parse_time(state.get("StartedAt")),
        finished_at=finished_at,
        error=error,
    )


def observed_config(attrs: Mapping[str, Any], app_id: int) -> ComparableConfig:
    """The comparable fields as Docker reports them, networks and volumes by logical name.

    Trusted fully only for which networks and volumes a container uses: Docker adds the image's environment and
    command, so a container made from a target differs in those from the target itself (the config-hash label
    is what detects changes).
    """
    config = attrs.get("Config") or {}
    host = attrs.get("HostConfig") or {}
    networks = list((attrs.get("NetworkSettings") or {}).get("Networks") or {})
    if host.get("NetworkMode") == "default":
        networks = [n for n in networks if n != "bridge"]  # a container with no networks asked lands on bridge
    nano_cpus = host.get("NanoCpus") or 0
    restart = (host.get("RestartPolicy") or {}).get("Name") or RestartPolicy.no.value
    return ComparableConfig.build(
        str(config.get("Image", "")),
        command=config.get("Cmd"),
        entrypoint=config.get("Entrypoint"),
        environment=dict(e.split("=", 1) if "=" in e else (e, "") for e in config.get("Env") or []),
        ports=_observed_ports(host.get("PortBindings") or {}),
        volumes=[_logical_bind(b, app_id) for b in host.get("Binds") or [] if not _is_lock_mount(b)],
        networks=[_logical(n, app_id) for n in networks],
        restart=restart,
        labels=config.get("Labels") or {},
        cpus=nano_cpus / 1e9 if nano_cpus else None,
        memory=host.get("Memory") or None,
    )


def _foreign_container(summary: Mapping[str, Any]) -> ObservedService:
    """An unmanaged container, from the listing alone: the planner needs only its name."""
    names = summary.get("Names") or [""]
    name = str(names[0]).lstrip("/")
    return ObservedService(
        app_id=0,
        service_id=0,
        service_name=name,
        container_id=str(summary["Id"]),
        status=_STATUS.get(str(summary.get("State", "")), ContainerStatus.dead),
        config=ComparableConfig(image=str(summary.get("Image", ""))),
        labels=dict(summary.get("Labels") or {}),
        name=name,
    )


def _management_ids(labels: Mapping[str, str]) -> tuple[int, int, str] | None:
    app_id, service_id = labels.get(LABEL_APP_ID, ""), labels.get(LABEL_SERVICE_ID, "")
    service_name = labels.get(LABEL_SERVICE_NAME, "")
    if not (app_id.isdigit() and service_id.isdigit() and service_name):
        return None
    return int(app_id), int(service_id), service_name


def parse_time(value: Any) -> datetime | None:
    """Docker's RFC 3339 times carry nanoseconds, which `datetime` cannot; the zero time means never."""
    if not value or not isinstance(value, str) or value == _NEVER:
        return None
    text = value.replace("Z", "+00:00")
    main, dot, rest = text.partition(".")
    if dot:
        digits = "".join(ch for ch in rest if ch.isdigit())
        zone = rest[len(digits) :]
        text = f"{main}.{digits[:6].ljust(6, '0')}{zone}"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.year <= 1:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def image_aliases(reference: str) -> set[str]:
    """The ways a target can name a local image: `nginx:latest` is also `nginx`, `docker.io/library/nginx`, ..."""
    names = {reference}
    repository, tag = parse_repository_tag(reference)
    first = repository.split("/", 1)[0]
    has_registry = "/" in repository and ("." in first or ":" in first or first == "localhost")
    repositories = {repository}
    if not has_registry:
        full = repository if "/" in repository else f"library/{repository}"
        repositories |= {full, f"docker.io/{full}", f"index.docker.io/{full}"}
        if repository.startswith("library/"):
            repositories.add(repository.removeprefix("library/"))
    for repo in repositories:
        if tag:
            names.add(f"{repo}:{tag}")
        if tag == "latest" or tag is None:
            names |= {repo, f"{repo}:latest"}
    return names


def port_bindings(ports: Sequence[str]) -> tuple[list[tuple[int, str]], dict[str, list[tuple[str, int | None]]]]:
    """Target ports `[ip:]host:container[/proto]` -> (exposed ports, Docker port bindings)."""
    exposed: list[tuple[int, str]] = []
    bindings: dict[str, list[tuple[str, int | None]]] = {}
    for spec in ports:
        body, _, proto = spec.partition("/")
        proto = proto or "tcp"
        ip = ""
        if body.startswith("["):  # [v6]:host:container
            end = body.index("]")
            ip, body = body[1:end], body[end + 2 :]
        parts = body.split(":")
        if len(parts) == 3:
            ip, parts = parts[0], parts[1:]
        elif len(parts) == 2 and "." in parts[0]:  # ip:container, the host port chosen by Docker
            ip, parts = parts[0], [parts[1]]
        container = int(parts[-1])
        host = int(parts[0]) if len(parts) == 2 else None
        if (container, proto) not in exposed:
            exposed.append((container, proto))
        bindings.setdefault(f"{container}/{proto}", []).append((ip, host))
    return exposed, bindings


def _observed_ports(bindings: Mapping[str, Any]) -> list[str]:
    ports: list[str] = []
    for container_port, hosts in bindings.items():
        for host in hosts or [{}]:
            ip, port = host.get("HostIp") or "", host.get("HostPort") or ""
            ip = f"[{ip}]" if ":" in ip else ip
            prefix = ":".join(p for p in (ip, port) if p)
            ports.append(f"{prefix}:{container_port}" if prefix else container_port)
    return ports


def _bind(spec: str, app_id: int) -> str:
    """`name:/path[:mode]` -> the app-scoped volume; `/host:/path[:mode]` stays a bind mount."""
    source, _, rest = spec.partition(":")
    if source.startswith("/"):
        return spec
    return f"{volume_name(app_id, source)}:{rest}"


def _logical_bind(spec: str, app_id: int) -> str:
    source, _, rest = spec.partition(":")
    return f"{_logical(source, app_id)}:{rest}"


def _is_lock_mount(spec: str) -> bool:
    parts = spec.split(":")
    return len(parts) >= 2 and parts[1] == LOCK_MOUNT_PATH


def _logical(name: str, app_id: int) -> str:
    """A Docker network or volume name -> the name the target uses (inverse of `network_name`/`volume_name`)."""
    prefix = f"{NAME_PREFIX}_{app_id}_"
    return name[len(prefix) :] if name.startswith(prefix) else name


def _aliases(network: str, service_name: str) -> list[str] | None:
    """Siblings find a service by its name on the app's networks; Docker allows aliases only on user networks."""
    return None if network in BUILTIN_NETWORKS else [service_name]


def _restart_policy(policy: RestartPolicy) -> dict[str, Any]:
    return {"Name": policy.value, "MaximumRetryCount": 0}


def _split(value: list[str] | str | None) -> list[str] | None:
    """A string command means what a shell would split it into (as `ComparableConfig` compares it)."""
    if value is None:
        return None
    return shlex.split(value) if isinstance(value, str) else list(value)


def _required(step: Step, value: str | None, what: str) -> str:
    if not value:
        raise StepFailed(step, f"{step.action.value} step without {what}")
    return value


def _explain(exc: docker.errors.APIError) -> str:
    """Docker's own sentence (e.g. 'port is already allocated'), not the HTTP wrapper around it."""
    return str(exc.explanation or exc).strip()


__all__ = [
    "DockerRuntime",
    "image_aliases",
    "observe_container",
    "observed_config",
    "parse_time",
    "port_bindings",
]
