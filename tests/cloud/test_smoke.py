async def test_health_is_open(client):
    r = await client.get("/health")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


async def test_register_and_poll(api, owner):
    key = await api.provisioning_key(owner, maxDevices=2)
    device, api_key = await api.register(key["key"])
    r = await api.client.get(f"/api/v1/device/{device['uuid']}/state", headers={"X-Device-API-Key": api_key})
    assert r.status_code == 200, r.text
    etag = r.headers["etag"]
    r2 = await api.client.get(f"/api/v1/device/{device['uuid']}/state",
                              headers={"X-Device-API-Key": api_key, "If-None-Match": etag})
    assert r2.status_code == 304
