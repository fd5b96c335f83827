"""The audit log's time window (since/until), which the dashboard pages through."""

from __future__ import annotations

import asyncio
import datetime as dt

from iotistic.cloud.models import Role


async def test_since_and_until_bound_the_window(api):
    admin = await api.headers_for(Role.admin)
    start = dt.datetime.now(dt.UTC)
    assert (await api.client.post("/api/v1/fleets", json={"name": "before"}, headers=admin)).status_code == 201
    await asyncio.sleep(0.05)
    middle = dt.datetime.now(dt.UTC)
    await asyncio.sleep(0.05)
    assert (await api.client.post("/api/v1/fleets", json={"name": "after"}, headers=admin)).status_code == 201

    async def fleets_created(**params: str) -> int:
        r = await api.client.get("/api/v1/audit", params={"action": "fleet.created", **params}, headers=admin)
        assert r.status_code == 200, r.text
        return len(r.json())

    assert await fleets_created() == 2
    assert await fleets_created(until=middle.isoformat()) == 1
    assert await fleets_created(since=middle.isoformat()) == 1
    assert await fleets_created(since=start.isoformat(), until=middle.isoformat()) == 1
    # A time without a zone is UTC.
    assert await fleets_created(until=middle.replace(tzinfo=None).isoformat()) == 1
    r = await api.client.get("/api/v1/audit", params={"until": "later"}, headers=admin)
    assert r.status_code == 422 and r.json()["message"].startswith("query.until")
