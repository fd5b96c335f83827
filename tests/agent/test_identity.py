"""Identity and provisioning against the real cloud API: first boot, restarts, lost replies, refusals,
key rotation, deprovision and factory reset."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from iotistic.agent.identity import (
    FactoryResetError,
    ProvisioningError,
    deprovision,
    factory_reset,
    load_or_create_identity,
    provision,
    provision_status,
    provision_until_done,
    recover_key_rotation,
    regenerate_local_api_key,
    rotate_device_key,
)
from iotistic.agent.store import AgentStore
from iotistic.agent.sync.http import CloudUnavailable

pytest_plugins = ["tests.agent.conftest_cloud"]


class LoseReplies(httpx.AsyncBaseTransport):
    """Forwards every request to the real server, then throws away the replies `lose` picks: the cloud did the
    work, the device never heard back (a dropped connection)."""

    def __init__(self, lose: Callable[[httpx.Request], bool]) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.lose = lose

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if self.lose(request):
            await response.aread()
            await response.aclose()
            raise httpx.ReadError("connection reset by peer", request=request)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def _losing(url: str, path_suffix: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, transport=LoseReplies(lambda r: r.url.path.endswith(path_suffix)))


def _raw(path: Path) -> bytes:
    return b"".join(Path(str(path) + s).read_bytes() for s in ("", "-wal", "-shm") if Path(str(path) + s).exists())


async def _poll_status(url: str, uuid: str, key: str) -> int:
    async with httpx.AsyncClient(base_url=url) as client:
        r = await client.get(f"/api/v1/device/{uuid}/state", headers={"X-Device-API-Key": key})
        return r.status_code


@pytest.fixture
def open_store():
    stores: list[AgentStore] = []

    def make(path: Path) -> AgentStore:
        stores.append(AgentStore(path))
        return stores[-1]

    yield make
    for s in stores:
        s.close()


# --- first boot -------------------------------------------------------------------------------------------------
async def test_first_boot_provisions_and_forgets_the_provisioning_key(admin, agent_env, cloud, open_store):
    key = await admin.provisioning_key(maxDevices=5)
    settings = agent_env.settings(PROVISIONING_KEY=key["key"])
    store = open_store(settings.store_path)

    identity = await provision(store, settings)

    assert identity.provisioned and identity.provisioning_key is None
    assert len(identity.uuid) == 32 and identity.device_api_key.startswith("dk_")
    assert identity.local_api_key.startswith("lk_") and identity.local_api_key != identity.device_api_key
    assert identity.mqtt_username == identity.uuid and identity.mqtt_password
    device = await admin.device(identity.uuid)
    assert device is not None
    assert device["status"] == "active"
    assert device["name"] == "test-device" and device["deviceType"] == "raspberrypi4"
    assert [c.path.rsplit("/", 1)[-1] for c in cloud.calls] == ["register", "key-exchange"]
    # The key is gone from the store and from its files (no stale copy in free pages or the WAL).
    assert store.identity().provisioning_key is None
    assert key["key"].encode() not in _raw(store.path)
    assert identity.device_api_key.encode() in _raw(store.path)
    status = provision_status(store)
    assert status["provisioned"] and not status["hasProvisioningKey"] and status["lastError"] is None
    assert key["key"] not in str(status) and identity.device_api_key not in str(status)


async def test_identity_is_saved_before_registering(admin, agent_env, cloud, open_store):
    key = await admin.provisioning_key()
    settings = agent_env.settings(PROVISIONING_KEY=key["key"], DEVICE_NAME="")
    store = open_store(settings.store_path)
    cloud.stop()

    with pytest.raises(CloudUnavailable):
        await provision(store, settings)
    saved = store.identity()
    assert saved is not None and not saved.registered and saved.provisioning_key == key["key"]
    assert "lastError" in provision_status(store) and provision_status(store)["lastError"]

    cloud.start()
    identity = await provision(store, settings)
    assert (identity.uuid, identity.device_api_key) == (saved.uuid, saved.device_api_key)
    device = await admin.device(identity.uuid)
    assert device is not None and device["status"] == "active"
    assert device["name"].endswith(identity.uuid[:7])  # default name: host name and short uuid


async def test_restarting_never_provisions_again(admin, agent_env, cloud, open_store):
    key = await admin.provisioning_key()
    settings = agent_env.settings(PROVISIONING_KEY=key["key"])
    first = await provision(open_store(settings.store_path), settings)
    calls_before = len(cloud.calls)

    asked: list[httpx.Request] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        asked.append(request)
        return httpx.Response(500)

    store = open_store(settings.store_path)  # a restart: same folder, new process state
    async with httpx.AsyncClient(base_url=cloud.url, transport=httpx.MockTransport(refuse)) as no_network:
        again = await provision(store, settings, no_network)
    assert asked == [] and len(cloud.calls) == calls_before
    assert (again.uuid, again.device_api_key) == (first.uuid, first.device_api_key)
    assert len(await admin.audit("device.registered")) == 1
    assert await admin.audit("device.reregistered") == []
    assert len(await admin.devices()) == 1


# --- lost replies -----------------------------------------------------------------------------------------------
async def test_a_lost_registration_reply_is_retried_with_the_same_identity(admin, agent_env, cloud, open_store):
    key = await admin.provisioning_key(maxDevices=1)
    settings = agent_env.settings(PROVISIONING_KEY=key["key"])
    store = open_store(settings.store_path)

    async with _losing(cloud.url, "/register") as lossy:
        with pytest.raises(CloudUnavailable):
            await provision(store, settings, lossy)
    assert not store.identity().registered
    assert (await admin.devices())[0]["status"] == "registered"  # the cloud did register it

    identity = await provision(store, settings)

    registrations = cloud.device_calls("POST", "/register")
    assert [c.status for c in registrations] == [201, 200]
    assert len({(c.json()["uuid"], c.json()["deviceApiKey"]) for c in registrations}) == 1
    devices = await admin.devices()
    assert [d["uuid"] for d in devices] == [identity.uuid] and devices[0]["status"] == "active"
    assert await admin.slots_used(key["id"]) == 1  # maxDevices=1 was not used up by the retry
    assert len(await admin.audit("device.registered")) == 1
    assert len(await admin.audit("device.reregistered")) == 1


async def test_a_lost_reply_then_a_revoked_key_still_completes(admin, agent_env, cloud, open_store):
    """Registered, reply lost, then the provisioning key is revoked: the device key proves the registration."""
    key = await admin.provisioning_key()
    settings = agent_env.settings(PROVISIONING_KEY=key["key"])
    store = open_store(settings.store_path)
    async with _losing(cloud.url, "/register") as lossy:
        with pytest.raises(CloudUnavailable):
            await provision(store, settings, lossy)
    await admin.revoke_provisioning_key(key["id"])

    identity = await provision(store, settings)

    assert identity.provisioned
    assert [c.status for c in cloud.device_calls("POST", "/register")] == [201, 401]
    assert (await admin.device(identity.uuid))["status"] == "active"


async def test_a_lost_key_exchange_reply_does_not_register_again(admin, agent_env, cloud, open_store):
    key = await admin.provisioning_key()
    settings = agent_env.settings(PROVISIONING_KEY=key["key"])
    store = open_store(settings.store_path)
    async with _losing(cloud.url, "/key-exchange") as lossy:
        with pytest.raises(CloudUnavailable):
            await provision(store, settings, lossy)
    saved = store.identity()
    assert saved.registered and not saved.key_exchanged and saved.provisioning_key == key["key"]

    identity = await provision(store, settings)
    assert identity.provisioned and identity.provisioning_key is None
    assert len(cloud.device_calls("POST", "/register")) == 1
    assert [c.status for c in cloud.device_calls("POST", "/key-exchange")] == [200, 200]


# --- refusals ---------------------------------------------------------------------------------------------------
async def test_a_refused_provisioning_key_is_a_clear_error(admin, agent_env, cloud, open_store):
    settings = agent_env.settings(PROVISIONING_KEY="not-a-real-provisioning-key")
    store = open_store(settings.store_path)
    with pytest.raises(ProvisioningError) as caught:
        await provision(store, settings)
    assert caught.value.status == 401
    message = str(caught.value)
    assert "\n" not in message and "register" in message and "provisioning key" in message
    assert provision_status(store)["lastError"] == message
    assert await admin.devices() == []


async def test_no_provisioning_key_and_local_mode(agent_env, open_store, tmp_path):
    settings = agent_env.settings()
    with pytest.raises(ProvisioningError, match="PROVISIONING_KEY"):
        await provision(open_store(settings.store_path), settings)

    local = agent_env.settings(CLOUD_API_ENDPOINT="", AGENT_DATA_DIR=str(tmp_path / "local"))
    store = open_store(local.store_path)
    with pytest.raises(ProvisioningError, match="local mode"):
        await provision(store, local)
    # Local mode still has an identity (the local API key protects the Device API).
    assert store.identity() is not None and store.identity().local_api_key.startswith("lk_")


async def test_provision_until_done_rides_out_an_outage(admin, agent_env, cloud, open_store):
    key = await admin.provisioning_key()
    settings = agent_env.settings(PROVISIONING_KEY=key["key"])
    store = open_store(settings.store_path)
    cloud.stop()
    stop = asyncio.Event()
    task = asyncio.create_task(provision_until_done(store, settings, stop))
    await asyncio.sleep(0.8)
    assert not task.done()  # retrying with backoff, not crashing
    cloud.start()
    identity = await asyncio.wait_for(task, 15)
    assert identity is not None and identity.provisioned


async def test_provision_until_done_stops_when_asked(agent_env, cloud, open_store):
    settings = agent_env.settings(PROVISIONING_KEY="not-a-real-provisioning-key", BACKOFF_MAX_SECONDS=60)
    stop = asyncio.Event()
    task = asyncio.create_task(provision_until_done(open_store(settings.store_path), settings, stop))
    await asyncio.sleep(0.3)
    stop.set()
    assert await asyncio.wait_for(task, 5) is None


# --- keys -------------------------------------------------------------------------------------------------------
async def test_rotating_the_device_key(device, cloud):
    old = device.identity.device_api_key
    identity = await rotate_device_key(device.store, device.settings)
    assert identity.device_api_key != old and identity.pending_device_api_key is None
    assert await _poll_status(cloud.url, identity.uuid, identity.device_api_key) == 200
    assert await _poll_status(cloud.url, identity.uuid, old) == 401
    assert old.encode() not in _raw(device.store.path)


async def test_a_rotation_whose_reply_was_lost_is_recovered(device, cloud):
    old = device.identity.device_api_key
    async with _losing(cloud.url, "/rotate-key") as lossy:
        with pytest.raises(CloudUnavailable):
            await rotate_device_key(device.store, device.settings, lossy)
    pending = device.store.identity().pending_device_api_key
    assert pending and device.store.identity().device_api_key == old
    async with httpx.AsyncClient(base_url=cloud.url) as client:
        identity = await recover_key_rotation(device.store, client)
    assert identity.device_api_key == pending and identity.pending_device_api_key is None
    assert await _poll_status(cloud.url, identity.uuid, pending) == 200


async def test_regenerating_the_local_api_key(device):
    old = device.identity.local_api_key
    new = regenerate_local_api_key(device.store)
    assert new != old and device.store.identity().local_api_key == new
    assert device.store.identity().device_api_key == device.identity.device_api_key


# --- deprovision and factory reset ------------------------------------------------------------------------------
async def test_deprovision_forgets_the_cloud_identity_but_keeps_the_workloads(admin, device, cloud):
    store, old = device.store, device.identity
    store.set("target", {"version": 4, "document": {"apps": {}, "config": {}}})
    store.set("target_etag", "abc")
    store.enqueue("report", {"status": "idle"})

    deprovision(store)

    assert store.identity() is None and store.get("target_etag") is None and store.outbox_size() == 0
    assert store.get("target") == {"version": 4, "document": {"apps": {}, "config": {}}}
    assert old.device_api_key.encode() not in _raw(store.path)
    assert old.mqtt_password.encode() not in _raw(store.path)

    # Provisioning again makes a new device; the operator's local API key carries over.
    key = await admin.provisioning_key()
    settings = device.settings.model_copy(update={"provisioning_key": key["key"]})
    new = await provision(store, settings)
    assert new.provisioned and new.uuid != old.uuid and new.device_api_key != old.device_api_key
    assert new.local_api_key == old.local_api_key
    assert {d["uuid"] for d in await admin.devices()} == {old.uuid, new.uuid}
    assert await _poll_status(cloud.url, old.uuid, old.device_api_key) == 200  # the cloud record is untouched


async def test_factory_reset_wipes_everything_after_removing_the_workloads(device):
    store, settings = device.store, device.settings
    data = settings.data_dir
    (data / "cache").mkdir()
    (data / "cache" / "layer").write_bytes(b"x")
    (data / "update.lock").write_text("")
    store.enqueue("logs", [{"message": "hello"}])
    removed: list[str] = []

    async def remove_workloads() -> None:
        removed.append("all")

    await factory_reset(store, data, remove_workloads)

    assert removed == ["all"]
    assert store.identity() is None and store.outbox_size() == 0
    assert {p.name for p in data.iterdir()} <= {"agent.db", "agent.db-wal", "agent.db-shm"}
    assert device.identity.device_api_key.encode() not in _raw(store.path)
    assert device.identity.local_api_key.encode() not in _raw(store.path)
    # The next boot is a first boot: a new identity.
    fresh = load_or_create_identity(store, settings)
    assert fresh.uuid != device.identity.uuid and fresh.local_api_key != device.identity.local_api_key
    assert not fresh.registered


async def test_factory_reset_wipes_nothing_if_the_workloads_cannot_be_removed(device):
    (device.settings.data_dir / "keep-me").write_text("x")

    async def broken() -> None:
        raise RuntimeError("docker is not answering")

    with pytest.raises(FactoryResetError, match="docker is not answering"):
        await factory_reset(device.store, device.settings.data_dir, broken)
    assert device.store.identity() == device.identity
    assert (device.settings.data_dir / "keep-me").exists()
