"""Simulated devices registered through the cloud API, remembered in a state file so runs reuse them.

`provision_devices(api_url, count, provisioning_key, state_file=...)` returns `count` devices with their
credentials: those already in the state file (checked against the API unless `verify=False`), plus new ones
registered concurrently (`POST /api/v1/device/register` with the provisioning key, then the key exchange, as
the agent does). The state file (JSON, mode 0600) holds secrets: device API keys and MQTT passwords.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import secrets
import tempfile
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import httpx

STATE_VERSION = 1
DEFAULT_DEVICE_TYPE = "bme688-simulator"
DEFAULT_CONCURRENCY = 16

# A provisioning key, or an async callable that makes one (called only when a device must be registered).
KeySource = str | Callable[[], Awaitable[str]] | None
Progress = Callable[[int, int], None]  # (devices ready, devices wanted)


class ProvisioningError(Exception):
    """Provisioning failed; the message is one line meant for people."""


@dataclass(frozen=True, slots=True)
class SimulatedDevice:
    uuid: str
    name: str
    api_key: str  # the device API key (X-Device-API-Key)
    mqtt_username: str
    mqtt_password: str
    broker_url: str  # as the cloud told it at registration

    def to_json(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> SimulatedDevice:
        names = [f.name for f in fields(cls)]
        if not isinstance(data, dict) or not all(isinstance(data.get(n), str) and data.get(n) for n in names):
            raise ValueError(f"a device entry needs the strings {', '.join(names)}")
        return cls(**{n: data[n] for n in names})


# The state file ---------------------------------------------------------------------------------------------------

def load_state(path: Path, api_url: str | None) -> list[SimulatedDevice]:
    """The devices saved for `api_url`; [] when the file does not exist. Raises ProvisioningError when it is
    unreadable or was written for another cloud API (not checked when `api_url` is None)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ProvisioningError(f"cannot read the state file {path}: {exc.strerror or exc}") from None
    try:
        doc = json.loads(text)
        if not isinstance(doc, dict) or doc.get("version") != STATE_VERSION or not isinstance(doc.get("devices"), list):
            raise ValueError(f"expected {{version: {STATE_VERSION}, api, devices: [...]}}")
        devices = [SimulatedDevice.from_json(d) for d in doc["devices"]]
    except ValueError as exc:
        raise ProvisioningError(f"the state file {path} is not a simulator state file: {exc}") from None
    if api_url is not None and not _same_api(doc.get("api"), api_url):
        raise ProvisioningError(f"the state file {path} holds devices of {doc.get('api')}, not {api_url}: "
                                f"give another state file")
    return devices


def _same_api(saved: object, api_url: str) -> bool:
    return isinstance(saved, str) and saved.rstrip("/") == api_url.rstrip("/")


def save_state(path: Path, api_url: str, devices: Sequence[SimulatedDevice]) -> None:
    """Write atomically (temporary file, fsync, rename), mode 0600: the file holds credentials."""
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"version": STATE_VERSION, "api": api_url.rstrip("/"), "devices": [d.to_json() for d in devices]}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # created 0600
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# The API calls ----------------------------------------------------------------------------------------------------

def _api_error(response: httpx.Response, what: str) -> ProvisioningError:
    try:
        message = response.json().get("message") or response.text
    except ValueError:
        message = response.text
    line = " ".join(str(message).split())[:300]
    return ProvisioningError(f"{what} failed: HTTP {response.status_code}: {line}")


TRANSPORT_ATTEMPTS = 3


async def _post(client: httpx.AsyncClient, url: str, **kwargs: Any) -> httpx.Response:
    """POST, again on a dropped connection (e.g. a keep-alive connection the server closed as we reused it).
    Safe for these calls: registering a uuid again re-registers it (with a fresh MQTT password, the one we keep),
    and a repeated key exchange changes nothing."""
    for attempt in range(1, TRANSPORT_ATTEMPTS + 1):
        try:
            return await client.post(url, **kwargs)
        except (httpx.ReadError, httpx.RemoteProtocolError, httpx.WriteError):
            if attempt == TRANSPORT_ATTEMPTS:
                raise
            await asyncio.sleep(0.1 * attempt)
    raise AssertionError("unreachable")


async def register_device(client: httpx.AsyncClient, provisioning_key: str, *, name_prefix: str = "sim",
                          device_type: str = DEFAULT_DEVICE_TYPE) -> SimulatedDevice:
    """Register one new device and do its key exchange; returns it with its credentials."""
    device_uuid = uuid.uuid4().hex
    api_key = secrets.token_urlsafe(32)
    r = await _post(client, "/api/v1/device/register", headers={"Authorization": f"Bearer {provisioning_key}"},
                          json={"uuid": device_uuid, "deviceName": f"{name_prefix}-{device_uuid[:8]}",
                                "deviceType": device_type, "deviceApiKey": api_key})
    if r.status_code not in (200, 201):
        raise _api_error(r, "registering a device")
    body = r.json()
    mqtt = body.get("mqtt") or {}
    r = await _post(client, f"/api/v1/device/{device_uuid}/key-exchange", headers={"X-Device-API-Key": api_key})
    if r.status_code != 200:
        raise _api_error(r, f"the key exchange of device {device_uuid}")
    return SimulatedDevice(uuid=device_uuid, name=body.get("deviceName", device_uuid), api_key=api_key,
                           mqtt_username=mqtt["username"], mqtt_password=mqtt["password"], broker_url=mqtt["broker"])


async def device_known(client: httpx.AsyncClient, device: SimulatedDevice) -> bool:
    """Whether the cloud still accepts the device's API key (its target-state poll answers)."""
    r = await client.get(f"/api/v1/device/{device.uuid}/state", headers={"X-Device-API-Key": device.api_key})
    if r.status_code in (200, 304):
        return True
    if r.status_code in (401, 403, 404):
        return False
    raise _api_error(r, f"checking device {device.uuid}")


async def _bounded(limit: int, jobs: Sequence[Callable[[], Awaitable[Any]]]) -> list[Any]:
    """Run the jobs, at most `limit` at a time; results in order, or exceptions in their place."""
    semaphore = asyncio.Semaphore(limit)

    async def run(job: Callable[[], Awaitable[Any]]) -> Any:
        async with semaphore:
            return await job()

    return await asyncio.gather(*(run(job) for job in jobs), return_exceptions=True)


def _describe(exc: BaseException, api_url: str) -> str:
    if isinstance(exc, ProvisioningError):
        return str(exc)
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return f"cannot reach the cloud API at {api_url}: {exc or type(exc).__name__}"
    if isinstance(exc, httpx.HTTPError):
        return f"talking to the cloud API at {api_url} failed: {type(exc).__name__}: {exc}"
    return f"{type(exc).__name__}: {exc}"


async def provision_devices(
    api_url: str, count: int, provisioning_key: KeySource = None, *, state_file: Path | None = None,
    concurrency: int = DEFAULT_CONCURRENCY, verify: bool = True, name_prefix: str = "sim",
    device_type: str = DEFAULT_DEVICE_TYPE, on_progress: Progress | None = None,
    client: httpx.AsyncClient | None = None, timeout_s: float = 30.0, check_api_url: bool = True,
) -> list[SimulatedDevice]:
    """`count` simulated devices: the state file's first ones (verified against the API unless `verify=False`;
    those the cloud no longer knows are dropped) plus newly registered ones, `concurrency` requests at a time.

    The state file is rewritten with every device it held or that was registered, also when registering fails
    part-way (so the devices made are not lost), and keeps entries beyond `count` for later runs.
    `client` (its base URL must be `api_url`) replaces the HTTP client made here, e.g. an ASGI transport in tests.
    `check_api_url=False` accepts a state file written for another URL of the API (one kept beside the database,
    as `iotistic up --demo` does, whose port may change between runs).
    """
    if count < 0:
        raise ValueError("count must not be negative")
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    saved = load_state(state_file, api_url if check_api_url else None) if state_file is not None else []
    own_client = client is None
    http = client or httpx.AsyncClient(base_url=api_url, timeout=timeout_s,
                                       limits=httpx.Limits(max_connections=concurrency))
    kept = list(saved)
    made: list[SimulatedDevice] = []
    try:
        candidates = saved[:count]
        if verify and candidates:
            results = await _bounded(concurrency, [functools.partial(device_known, http, d) for d in candidates])
            for result in results:
                if isinstance(result, BaseException):
                    raise ProvisioningError(_describe(result, api_url))
            gone = {d.uuid for d, known in zip(candidates, results, strict=True) if not known}
            kept = [d for d in saved if d.uuid not in gone]
        ready = kept[:count]
        missing = count - len(ready)
        if on_progress is not None:
            on_progress(len(ready), count)
        if missing == 0:
            return ready
        if provisioning_key is None:
            raise ProvisioningError(f"{missing} device(s) to register and no provisioning key given")
        key = provisioning_key if isinstance(provisioning_key, str) else await provisioning_key()

        async def register_one() -> SimulatedDevice:
            device = await register_device(http, key, name_prefix=name_prefix, device_type=device_type)
            made.append(device)
            if on_progress is not None:
                on_progress(len(ready) + len(made), count)
            return device

        results = await _bounded(concurrency, [register_one] * missing)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            raise ProvisioningError(f"{len(failures)} of {missing} registration(s) failed; first: "
                                    f"{_describe(failures[0], api_url)}")
        return ready + made
    except httpx.HTTPError as exc:
        raise ProvisioningError(_describe(exc, api_url)) from None
    finally:
        if own_client:
            await http.aclose()
        if state_file is not None and (made or kept != saved):
            save_state(state_file, api_url, kept + made)
