"""The state-poll cache: never stale after a change, in this process or (PostgreSQL) in another replica."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from iotistic.cloud.app import create_app
from iotistic.cloud.services.device_cache import CachedDevice, DeviceAuthCache
from tests.conftest import make_settings


def _entry(device_id: int, etag: str = "e1") -> CachedDevice:
    return CachedDevice(device_id=device_id, uuid=f"uuid-{device_id}", status="active", etag=etag)


def test_fill_that_raced_with_an_eviction_is_dropped() -> None:
    cache = DeviceAuthCache()
    generation = cache.generation  # a request starts reading the database...
    cache.evict({1})  # ...another commits a change to device 1 meanwhile
    cache.put("k1", _entry(1), generation)
    assert cache.get("k1") is None
    cache.put("k1", _entry(1), cache.generation)
    assert cache.get("k1") == _entry(1)


def test_evict_removes_by_device_and_a_new_key_replaces_the_old() -> None:
    cache = DeviceAuthCache()
    cache.put("old", _entry(1), cache.generation)
    cache.put("new", _entry(1, "e2"), cache.generation)  # key rotated
    assert cache.get("old") is None and cache.get("new") == _entry(1, "e2")
    cache.evict({1})
    assert cache.get("new") is None and len(cache) == 0


def test_bounded_least_recently_inserted_first() -> None:
    cache = DeviceAuthCache(max_entries=3)
    for i in range(5):
        cache.put(f"k{i}", _entry(i), cache.generation)
    assert len(cache) == 3
    assert cache.get("k0") is None and cache.get("k1") is None and cache.get("k4") == _entry(4)


def test_disabled_cache_serves_nothing() -> None:
    cache = DeviceAuthCache(enabled=False)
    cache.put("k", _entry(1), cache.generation)
    assert cache.get("k") is None


async def test_poll_is_served_from_cache_and_deploy_invalidates_it(api: Any, owner: dict[str, str], app: Any) -> None:
    key = await api.provisioning_key(owner)
    device, api_key = await api.register(key["key"])
    url = f"/api/v1/device/{device['uuid']}/state"
    headers = {"X-Device-API-Key": api_key}
    r = await api.client.get(url, headers=headers)
    etag = r.headers["etag"]
    assert len(app.state.ctx.device_cache) == 1

    r = await api.client.put(
        f"/api/v1/devices/{device['uuid']}/target-state", headers=owner, json={"apps": {}, "config": {"x": "1"}}
    )
    assert r.status_code == 200
    # Staging alone does not change what the device sees: still cached, still 304.
    r = await api.client.get(url, headers={**headers, "If-None-Match": etag})
    assert r.status_code == 304
    r = await api.client.post(f"/api/v1/devices/{device['uuid']}/deploy", headers=owner)
    assert r.status_code == 200
    r = await api.client.get(url, headers={**headers, "If-None-Match": etag})
    assert r.status_code == 200 and r.json()[device["uuid"]]["config"] == {"x": "1"}
    assert r.headers["etag"] != etag


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_change_made_by_another_replica_reaches_this_ones_cache(
    api: Any, owner: dict[str, str], app: Any, db_url: str, tmp_path: Any, license_keys: Any
) -> None:
    """Two API processes on one database: a deploy and a disable on B are seen at once by A's cache."""
    key = await api.provisioning_key(owner)
    device, api_key = await api.register(key["key"])
    url = f"/api/v1/device/{device['uuid']}/state"
    headers = {"X-Device-API-Key": api_key}
    etag = (await api.client.get(url, headers=headers)).headers["etag"]
    assert len(app.state.ctx.device_cache) == 1

    replica_b = create_app(make_settings(db_url, tmp_path / "b", license_keys))
    async with replica_b.router.lifespan_context(replica_b):
        transport = httpx.ASGITransport(app=replica_b, client=("127.0.0.1", 50001))
        async with httpx.AsyncClient(transport=transport, base_url="http://b") as b:
            r = await b.post(f"/api/v1/devices/{device['uuid']}/deploy", headers=owner)
            assert r.status_code == 200
            for _ in range(100):  # the NOTIFY arrives asynchronously; normally within a millisecond or two
                if len(app.state.ctx.device_cache) == 0:
                    break
                await asyncio.sleep(0.01)
            r = await api.client.get(url, headers={**headers, "If-None-Match": etag})
            assert r.status_code == 200 and r.json()[device["uuid"]]["version"] == 1

            r = await b.patch(f"/api/v1/devices/{device['uuid']}", headers=owner, json={"status": "disabled"})
            assert r.status_code == 200
            for _ in range(100):
                if len(app.state.ctx.device_cache) == 0:
                    break
                await asyncio.sleep(0.01)
            r = await api.client.get(url, headers=headers)
            assert r.status_code == 401
