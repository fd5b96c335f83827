"""Provisioning simulated devices through the real cloud API (SQLite and PostgreSQL), and reusing them."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import httpx
import pytest

from iotistic.broker.testing import free_port
from iotistic.simulator.provision import ProvisioningError, load_state, provision_devices, save_state
from tests.conftest import Api
from tests.simulator.conftest import API_URL, Provision


async def slots_used(api: Api, owner: dict[str, str], key_id: str) -> int:
    r = await api.client.get("/api/v1/provisioning-keys", headers=owner)
    assert r.status_code == 200, r.text
    [key] = [k for k in r.json() if k["id"] == key_id]
    return int(key["devicesRegistered"])


async def test_devices_are_registered_key_exchanged_and_saved_0600(api: Api, owner, provisioning_key, provision,
                                                                   tmp_path: Path):
    progress: list[tuple[int, int]] = []
    devices = await provision(4, on_progress=lambda done, total: progress.append((done, total)))

    assert len({d.uuid for d in devices}) == 4
    assert progress[0] == (0, 4) and progress[-1] == (4, 4)
    for device in devices:
        r = await api.client.get(f"/api/v1/devices/{device.uuid}", headers=owner)
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "active"  # the key exchange was done
        assert r.json()["deviceType"] == "bme688-simulator"
        assert device.mqtt_username == device.uuid and len(device.mqtt_password) >= 20
        assert device.broker_url == "mqtt://127.0.0.1:1883"  # MQTT_BROKER_URL's default, as the cloud said
    state = tmp_path / "devices.json"
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    doc = json.loads(state.read_text())
    assert doc["api"] == API_URL and [d["uuid"] for d in doc["devices"]] == [d.uuid for d in devices]
    assert doc["devices"][0]["mqtt_password"] == devices[0].mqtt_password
    assert await slots_used(api, owner, provisioning_key["id"]) == 4


async def test_a_second_run_reuses_the_saved_devices(api: Api, owner, provisioning_key, provision: Provision):
    first = await provision(3)
    again = await provision(3)
    assert again == first
    assert await slots_used(api, owner, provisioning_key["id"]) == 3  # nothing registered the second time

    more = await provision(5)  # two more registered, the first three kept
    assert more[:3] == first and len({d.uuid for d in more}) == 5
    fewer = await provision(2)  # a smaller run uses the first ones; the file keeps all five
    assert fewer == first[:2]
    assert [d.uuid for d in await provision(5, key=None)] == [d.uuid for d in more]
    assert await slots_used(api, owner, provisioning_key["id"]) == 5


async def test_a_device_the_cloud_forgot_is_replaced(api: Api, owner, provision: Provision, tmp_path: Path):
    first = await provision(2)
    r = await api.client.delete(f"/api/v1/devices/{first[0].uuid}", headers=owner)
    assert r.status_code == 204, r.text

    again = await provision(2)
    assert again[0] == first[1] and again[1].uuid not in {d.uuid for d in first}
    assert [d.uuid for d in load_state(tmp_path / "devices.json", API_URL)] == [d.uuid for d in again]
    # Without verification the saved devices are taken as they are (no request at all).
    assert await provision(2, verify=False, key=None) == again


async def test_the_key_source_is_only_called_when_registering(provisioning_key, provision: Provision):
    calls: list[int] = []

    async def make_key() -> str:
        calls.append(1)
        return str(provisioning_key["key"])

    await provision(2, key=make_key)
    await provision(2, key=make_key)
    assert calls == [1]


async def test_registration_failures_are_one_line_and_what_was_made_is_kept(api: Api, owner, provision: Provision,
                                                                            tmp_path: Path):
    with pytest.raises(ProvisioningError, match="HTTP 401: provisioning key invalid or revoked"):
        await provision(1, key="pk_not-a-key")
    assert not (tmp_path / "devices.json").exists()

    small = await api.provisioning_key(owner, maxDevices=2)
    with pytest.raises(ProvisioningError) as failed:
        await provision(4, key=small["key"], concurrency=1)
    assert "2 of 4 registration(s) failed" in str(failed.value) and "maxDevices" in str(failed.value)
    assert "\n" not in str(failed.value)
    assert len(load_state(tmp_path / "devices.json", API_URL)) == 2  # the two registered are not lost

    with pytest.raises(ProvisioningError, match="no provisioning key"):
        await provision(3, key=None)


async def test_state_file_problems_are_clear(provision: Provision, tmp_path: Path):
    state = tmp_path / "devices.json"
    await provision(1)
    with pytest.raises(ProvisioningError, match="holds devices of http://testserver, not http://elsewhere"):
        load_state(state, "http://elsewhere")
    state.write_text("{not json")
    with pytest.raises(ProvisioningError, match="is not a simulator state file"):
        await provision(1)
    state.write_text(json.dumps({"version": 1, "api": API_URL, "devices": [{"uuid": "x"}]}))
    with pytest.raises(ProvisioningError, match="needs the strings"):
        await provision(1)


async def test_an_unreachable_api_is_one_line(tmp_path: Path):
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ProvisioningError, match=f"cannot reach the cloud API at {url}"):
        await provision_devices(url, 1, "pk_x", state_file=tmp_path / "s.json", timeout_s=5)


def test_save_state_replaces_the_file_atomically(tmp_path: Path):
    path = tmp_path / "sub" / "state.json"
    save_state(path, "http://x/", [])
    assert json.loads(path.read_text()) == {"version": 1, "api": "http://x", "devices": []}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["state.json"]  # no temporary file left behind


async def test_the_api_url_may_end_with_a_slash(app: Any, provisioning_key, tmp_path: Path):
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://cloud.test") as client:
        devices = await provision_devices("http://cloud.test/", 2, provisioning_key["key"],
                                          state_file=tmp_path / "s.json", client=client, concurrency=2)
    assert len(devices) == 2
    assert load_state(tmp_path / "s.json", "http://cloud.test") == devices


async def test_a_state_file_kept_beside_the_database_may_follow_the_api_to_another_url(app: Any, provisioning_key,
                                                                                      provision, tmp_path: Path):
    first = await provision(2)  # saved for http://testserver
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:3999") as client:
        with pytest.raises(ProvisioningError, match="holds devices of"):
            await provision_devices("http://127.0.0.1:3999", 2, None, state_file=tmp_path / "devices.json",
                                    client=client)
        again = await provision_devices("http://127.0.0.1:3999", 2, None, state_file=tmp_path / "devices.json",
                                        client=client, check_api_url=False)
    assert again == first
