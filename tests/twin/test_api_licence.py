"""The digital twin is a plan feature: without it in the licence every twin route answers 402."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from iotistic.core.licensing import generate_keypair
from tests.conftest import LicenseKeys


@pytest.fixture
def settings_env(license_keys: LicenseKeys) -> dict[str, Any]:
    # A licence signed by another key does not verify: the instance runs in free mode, which has no twin.
    other = LicenseKeys(*generate_keypair())
    return {"IOTISTIC_LICENSE_KEY": other.token("enterprise")}


async def test_the_licence_must_include_the_twin(client: httpx.AsyncClient, owner: dict[str, str]) -> None:
    for method, path in (("GET", "/nodes"), ("GET", "/graph"), ("GET", "/mappings"),
                         ("PUT", "/devices/some-device/location"), ("POST", "/edges")):
        r = await client.request(method, f"/api/v1/twin{path}", headers=owner,
                                 json={"node": 1} if method != "GET" else None)
        assert r.status_code == 402, r.text
        assert r.json()["error"] == "feature_not_licensed"
        assert "digital twin" in r.json()["message"] and "free" in r.json()["message"]
    # Not logged in: still a 401, the plan is not revealed.
    r = await client.get("/api/v1/twin/nodes")
    assert r.status_code == 401 and r.json()["error"] == "unauthorized"
    # Other routes are unaffected.
    assert (await client.get("/api/v1/devices", headers=owner)).status_code == 200
