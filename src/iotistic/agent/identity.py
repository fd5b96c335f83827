"""Who this device is: first-boot identity, provisioning with the cloud, deprovision and factory reset.

Provisioning (architecture "data flow 1"):

1. First boot makes a uuid, a device API key (for the cloud) and a local API key (for remote Device API callers)
   and saves them in the store *before* talking to the cloud: a crash or power cut mid-registration never
   loses the identity, and the next attempt sends the same uuid and key.
2. `POST /api/v1/device/register` with the provisioning key. The cloud is idempotent for the same uuid and
   provisioning key, so a registration whose reply was lost is simply sent again.
3. `POST /api/v1/device/{uuid}/key-exchange` with the device key: the device proves it holds its key and becomes
   active.
4. The provisioning key is forgotten: removed from the store and scrubbed from its files.

A provisioned device never provisions again: `provision()` returns without any network call.

`deprovision` vs `factory_reset` (balena's "purge" is something else: it wipes one app's data volumes, which is
the runtime's business):

- `deprovision` forgets the *cloud* identity only: uuid, device API key, MQTT credentials, the cloud's ETag and
  the queued reports and logs (they belong to the old identity). The containers keep running on their last
  target, and the local API key stays, so the device keeps working and stays reachable locally. The next
  provisioning (with a provisioning key) makes a *new* uuid and device: the old record stays in the cloud, where
  an operator deletes it (its key is unusable anyway, the device no longer has it).
- `factory_reset` returns the device to its first boot: the runtime's hook removes every container, network and
  volume the agent manages, then the store is wiped (nothing recoverable left in the files) and every other
  file in the data folder is removed. The agent should exit afterwards; it starts again as a new device.
"""

from __future__ import annotations

import asyncio
import logging
import platform
import random
import re
import secrets
import shutil
import socket
import uuid as uuidlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import iotistic
from iotistic.agent.store import AgentStore, Identity
from iotistic.agent.sync.backoff import backoff_delay
from iotistic.agent.sync.http import (
    CloudError,
    CloudRejected,
    CloudUnauthorized,
    CloudUnavailable,
    make_client,
    send,
)
from iotistic.agent.vpn.files import save_from_registration

if TYPE_CHECKING:
    import httpx

    from iotistic.agent.settings import AgentSettings

log = logging.getLogger(__name__)

_NAME_OK = re.compile(r"^[^\x00-\x1f/]{1,100}$")
PROVISION_ERROR_KEY = "provision_error"
KEPT_LOCAL_KEY = "kept_local_api_key"
#: Keys of the store that belong to the cloud identity (forgotten by `deprovision`).
CLOUD_STATE_KEYS = ("identity", "target_etag", "sync_status", "last_report", PROVISION_ERROR_KEY)


class ProvisioningError(Exception):
    """Provisioning cannot proceed as configured (no or refused provisioning key, device limit, conflict).
    Retrying soon will not help; the message is one line for the operator."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class FactoryResetError(Exception):
    """The workloads could not be removed; nothing was wiped, so the reset can be retried."""


# --- local identity --------------------------------------------------------------------------------------------
def new_api_key(prefix: str) -> str:
    """A random key for the device: 256 bits, printable ASCII as the cloud requires."""
    return prefix + secrets.token_urlsafe(32)


def _default_name(device_uuid: str) -> str:
    host = socket.gethostname().split(".")[0]
    return f"{host}-{device_uuid[:7]}" if host and _NAME_OK.match(host) else f"device-{device_uuid[:7]}"


def _default_type() -> str:
    return (platform.machine() or "generic")[:64]


def os_version() -> str:
    try:
        name = platform.freedesktop_os_release().get("PRETTY_NAME")
    except OSError:
        name = None
    return (name or platform.platform())[:128]


def load_or_create_identity(store: AgentStore, settings: AgentSettings) -> Identity:
    """The device's identity; made and saved on first boot, before any network call. No network here.

    A provisioning key given in the environment is remembered until provisioning completes (a newer one given
    later replaces it), so a reboot during provisioning still has it.
    """
    identity = store.identity()
    if identity is None:
        device_uuid = uuidlib.uuid4().hex
        identity = Identity(
            uuid=device_uuid,
            device_api_key=new_api_key("dk_"),
            # After `deprovision` the operator's local API key carries over to the new identity.
            local_api_key=store.get(KEPT_LOCAL_KEY) or new_api_key("lk_"),
            device_name=settings.device_name or _default_name(device_uuid),
            device_type=settings.device_type or _default_type(),
            provisioning_key=settings.provisioning_key,
        )
        store.save_identity(identity)
        store.delete(KEPT_LOCAL_KEY)
        log.info("new device identity %s", identity.uuid)
        return identity
    changed = False
    if not identity.provisioned and settings.provisioning_key and \
            settings.provisioning_key != identity.provisioning_key:
        identity.provisioning_key = settings.provisioning_key
        changed = True
    if not identity.registered:
        # Until the cloud knows the device, name and type follow the configuration.
        for field, value in (("device_name", settings.device_name), ("device_type", settings.device_type)):
            if value and getattr(identity, field) != value:
                setattr(identity, field, value)
                changed = True
    if changed:
        store.save_identity(identity)
    return identity


def regenerate_local_api_key(store: AgentStore) -> str:
    """A new local Device API key (`/v1/regenerate-api-key`); the old one stops working at once."""
    identity = store.identity()
    if identity is None:
        raise LookupError("no identity yet")
    identity.local_api_key = new_api_key("lk_")
    store.save_identity(identity)
    store.scrub()
    return identity.local_api_key


# --- provisioning ----------------------------------------------------------------------------------------------
def _registration_body(identity: Identity, settings: AgentSettings) -> dict[str, Any]:
    body: dict[str, Any] = {
        "uuid": identity.uuid,
        "deviceName": identity.device_name or _default_name(identity.uuid),
        "deviceType": identity.device_type or _default_type(),
        "deviceApiKey": identity.device_api_key,
        "osVersion": os_version(),
        "agentVersion": iotistic.__version__,
    }
    if settings.application_id is not None:
        body["applicationId"] = settings.application_id
    return body


async def _register(http: httpx.AsyncClient, store: AgentStore, identity: Identity,
                    settings: AgentSettings) -> None:
    key = identity.provisioning_key
    if not key:
        raise ProvisioningError("not provisioned and no PROVISIONING_KEY: set one (or use local mode)")
    try:
        response = await send(http, "POST", "/api/v1/device/register", "register",
                              json=_registration_body(identity, settings),
                              headers={"Authorization": f"Bearer {key}"})
    except (CloudUnauthorized, CloudRejected) as exc:
        # An earlier attempt may have succeeded with its reply lost, and the key since expired or used up:
        # if the cloud accepts our device key, we are registered.
        if await _device_key_works(http, identity):
            log.info("registration refused (%s) but the device key is accepted: already registered", exc)
            identity.registered = True
            store.save_identity(identity)
            return
        raise ProvisioningError(str(exc), exc.status) from None
    data = response.json()
    identity.registered = True
    identity.device_id = data.get("id")
    mqtt = data.get("mqtt") or {}
    identity.mqtt_username = mqtt.get("username")
    identity.mqtt_password = mqtt.get("password")
    identity.mqtt_broker = mqtt.get("broker")
    store.save_identity(identity)
    if settings.vpn_enabled:
        # Never fatal: without it the VPN supervisor asks the cloud again (`GET /api/v1/device/{uuid}/vpn`).
        await asyncio.to_thread(save_from_registration, settings.vpn_config_file, data.get("vpn"))
    log.info("registered as %s (HTTP %s)", identity.uuid, response.status_code)


async def _device_key_works(http: httpx.AsyncClient, identity: Identity) -> bool:
    try:
        await _key_exchange(http, identity)
    except CloudError:
        return False
    return True


async def _key_exchange(http: httpx.AsyncClient, identity: Identity) -> dict[str, Any]:
    response = await send(http, "POST", f"/api/v1/device/{identity.uuid}/key-exchange", "key exchange",
                          headers={"X-Device-API-Key": identity.device_api_key})
    data: dict[str, Any] = response.json()
    return data


async def provision(store: AgentStore, settings: AgentSettings, http: httpx.AsyncClient | None = None
                    ) -> Identity:
    """Make sure the device is provisioned; returns its identity. Already provisioned: no network call.

    Raises `CloudUnavailable` (retry later) or `ProvisioningError` (the configuration must change).
    """
    identity = load_or_create_identity(store, settings)
    if identity.provisioned:
        return identity
    if settings.cloud_api_endpoint is None:
        raise ProvisioningError("local mode: set CLOUD_API_ENDPOINT to provision with a cloud")
    own_client = http is None
    client = http or make_client(settings.cloud_api_endpoint, settings.http_timeout)
    try:
        if not identity.registered:
            await _register(client, store, identity, settings)
        try:
            data = await _key_exchange(client, identity)
        except (CloudUnauthorized, CloudRejected) as exc:
            raise ProvisioningError(str(exc), exc.status) from None
        identity.key_exchanged = True
        identity.device_id = data.get("deviceId", identity.device_id)
        identity.provisioning_key = None
        store.save_identity(identity)
        store.delete(PROVISION_ERROR_KEY)
        store.scrub()
        log.info("provisioned: device %s is %s", identity.uuid, data.get("deviceStatus", "active"))
        return identity
    except (ProvisioningError, CloudUnavailable) as exc:
        store.set(PROVISION_ERROR_KEY, str(exc))
        raise
    finally:
        if own_client:
            await client.aclose()


async def provision_until_done(store: AgentStore, settings: AgentSettings, stop: asyncio.Event, *,
                               http: httpx.AsyncClient | None = None, rng: random.Random | None = None
                               ) -> Identity | None:
    """`provision()` until it succeeds or `stop` is set (then None). Transient errors back off exponentially;
    a refusal (bad key, device limit) is logged and retried at the slowest rate, in case the operator fixes it
    in the cloud (a new key in the environment needs a restart)."""
    rng = rng or random.Random()
    failures = 0
    while not stop.is_set():
        try:
            return await provision(store, settings, http)
        except CloudUnavailable as exc:
            failures += 1
            delay = backoff_delay(failures, settings.backoff_base, settings.backoff_max, rng)
            log.warning("provisioning: cloud unreachable (%s); retrying in %.0f s", exc, delay)
        except ProvisioningError as exc:
            failures += 1
            delay = settings.backoff_max
            log.error("provisioning refused: %s; retrying in %.0f s", exc, delay)
        try:
            await asyncio.wait_for(stop.wait(), timeout=delay)
        except TimeoutError:
            pass
    return None


def provision_status(store: AgentStore) -> dict[str, Any]:
    """For `/v1/provision/status` and `iotistic agent status`: never includes a secret."""
    identity = store.identity()
    return {
        "uuid": identity.uuid if identity else None,
        "deviceName": identity.device_name if identity else None,
        "registered": bool(identity and identity.registered),
        "keyExchanged": bool(identity and identity.key_exchanged),
        "provisioned": bool(identity and identity.provisioned),
        "hasProvisioningKey": bool(identity and identity.provisioning_key),
        "lastError": store.get(PROVISION_ERROR_KEY),
    }


# --- device key rotation ---------------------------------------------------------------------------------------
async def rotate_device_key(store: AgentStore, settings: AgentSettings, http: httpx.AsyncClient | None = None
                            ) -> Identity:
    """Replace the device API key. The new key is saved as pending first; if the reply is lost, the next call
    (or `recover_key_rotation`) finds out which key the cloud accepts."""
    identity = store.identity()
    if identity is None or not identity.provisioned or settings.cloud_api_endpoint is None:
        raise ProvisioningError("not provisioned")
    own_client = http is None
    client = http or make_client(settings.cloud_api_endpoint, settings.http_timeout)
    try:
        identity = await recover_key_rotation(store, client)
        identity.pending_device_api_key = new_api_key("dk_")
        store.save_identity(identity)
        await send(client, "POST", f"/api/v1/device/{identity.uuid}/rotate-key", "rotate key",
                   json={"deviceApiKey": identity.pending_device_api_key},
                   headers={"X-Device-API-Key": identity.device_api_key})
        identity.device_api_key, identity.pending_device_api_key = identity.pending_device_api_key, None
        store.save_identity(identity)
        store.scrub()
        return identity
    finally:
        if own_client:
            await client.aclose()


async def recover_key_rotation(store: AgentStore, http: httpx.AsyncClient) -> Identity:
    """Settle an interrupted rotation: keep whichever key the cloud accepts (the old one is tried first)."""
    identity = store.identity()
    if identity is None:
        raise ProvisioningError("no identity")
    pending = identity.pending_device_api_key
    if not pending:
        return identity
    if not await _device_key_works(http, identity):
        candidate = Identity.from_dict({**identity.to_dict(), "device_api_key": pending})
        if await _device_key_works(http, candidate):
            identity.device_api_key = pending
    identity.pending_device_api_key = None
    store.save_identity(identity)
    store.scrub()
    return identity


# --- deprovision and factory reset -----------------------------------------------------------------------------
def deprovision(store: AgentStore) -> None:
    """Forget the cloud identity and its credentials, keep the workloads and the local API key (module doc).

    No network call: this also works for a device whose cloud record is already gone.
    """
    identity = store.identity()
    local_key = identity.local_api_key if identity else None
    store.delete(*CLOUD_STATE_KEYS)
    store.clear_outbox()
    if local_key:
        # Keep only what the device needs locally; the next provisioning makes a new uuid and device key.
        store.set(KEPT_LOCAL_KEY, local_key)
    store.scrub()
    log.info("deprovisioned: cloud identity forgotten (containers left running)")


def _empty_folder(folder: Path, store_path: Path) -> None:
    """Remove everything in `folder` except the (already wiped, still open) store's own files."""
    if not folder.is_dir():
        return
    same_folder = folder.resolve() == store_path.parent.resolve()
    keep = {store_path.name + suffix for suffix in ("", "-wal", "-shm")} if same_folder else set()
    for entry in folder.iterdir():
        if entry.name in keep:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


RemoveWorkloads = Callable[[], Awaitable[None]]


async def factory_reset(store: AgentStore, data_dir: Path, remove_workloads: RemoveWorkloads | None = None
                        ) -> None:
    """Back to first boot: workloads removed (by the runtime's hook), store wiped, data folder emptied.

    If the hook fails, nothing is wiped (`FactoryResetError`): the store still knows the device, and the reset
    can be retried. The store stays open (and empty), so a running agent does not crash; it should exit.
    """
    if remove_workloads is not None:
        try:
            await remove_workloads()
        except Exception as exc:
            raise FactoryResetError(f"could not remove the workloads: {exc}") from exc
    store.wipe()
    await asyncio.to_thread(_empty_folder, data_dir, store.path)
    log.warning("factory reset done: identity, credentials, state and data removed")


__all__ = [
    "FactoryResetError",
    "ProvisioningError",
    "deprovision",
    "factory_reset",
    "load_or_create_identity",
    "os_version",
    "provision",
    "provision_status",
    "provision_until_done",
    "recover_key_rotation",
    "regenerate_local_api_key",
    "rotate_device_key",
]
