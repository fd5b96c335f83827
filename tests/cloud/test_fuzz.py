"""Property-based fuzz of the whole OpenAPI schema (schemathesis): no input may cause a server error.

The app is built by the same machinery as the `app` fixture (settings from `make_settings`, a migrated SQLite or
PostgreSQL database) and called in-process over ASGI. Calls are authenticated as an owner, device routes with a
real device's API key and registration with a real provisioning key; half of the generated path ids are
swapped for ids that exist, so the fuzz reaches the code behind the lookups. Calls that spend the credentials
(logout, password change, key rotation, disabling or deleting the device) are repaired after the fact.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import secrets
import tempfile
import uuid as uuidlib
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.python import asgi as schemathesis_asgi

from iotistic.cloud.app import create_app
from iotistic.cloud.models import Role
from iotistic.cloud.services import users
from iotistic.core.db import make_engine, make_sessionmaker
from iotistic.core.settings import load_cloud_settings
from tests.conftest import PASSWORD, _empty_tables, make_settings

# Bounded so the suite stays fast and repeatable; raise IOTISTIC_FUZZ_EXAMPLES and set IOTISTIC_FUZZ_RANDOM=1 for a
# deeper, randomised exploration.
MAX_EXAMPLES = int(os.environ.get("IOTISTIC_FUZZ_EXAMPLES", "20"))
DERANDOMIZE = os.environ.get("IOTISTIC_FUZZ_RANDOM") != "1"


@schemathesis.serializer("application/x-ndjson")
def _ndjson(_ctx: Any, value: Any) -> bytes:
    """The log route takes NDJSON: a list becomes one JSON document per line, a string is sent as it is."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    if isinstance(value, list):
        return b"".join(json.dumps(item).encode() + b"\n" for item in value)
    return json.dumps(value).encode()


def _half(value: Any) -> bool:
    """A stable coin flip on a generated value (hypothesis replays stay deterministic)."""
    return hashlib.sha256(repr(value).encode()).digest()[0] % 2 == 0


class FuzzWorld:
    """The app under test and live credentials for it."""

    def __init__(self, app: Any, client: Any, db_url: str) -> None:
        self.app = app
        self.client = client
        self.db_url = db_url
        self.email = ""
        self.token = ""
        self.user_id = 0
        self.pk = ""
        self.pk_id = ""
        self.device_uuid = "fuzz-" + uuidlib.uuid4().hex[:12]
        self.device_key = ""
        self.fleet_id = 0
        self.release_id = 0
        self.mqtt_account_id = 0
        self.mqtt_rule_id = 0

    # Owner -----------------------------------------------------------------------------------------------
    async def _create_owner(self, email: str) -> int:
        engine = make_engine(self.db_url)  # its own engine: the app's pool lives on the ASGI client's loop
        try:
            async with make_sessionmaker(engine)() as session:
                user = await users.create_user(session, email=email, password=PASSWORD, role=Role.owner)
                await session.commit()
                return user.id
        finally:
            await engine.dispose()

    def _login(self) -> bool:
        r = self.client.post("/api/v1/auth/login", json={"email": self.email, "password": PASSWORD})
        if r.status_code != 200:
            return False
        self.token = r.json()["access_token"]
        return True

    def ensure_owner(self) -> None:
        if self.token and self.client.get("/api/v1/auth/me", headers=self.owner_headers).status_code == 200:
            return
        if self.email and self._login():
            return
        self.email = f"owner-{uuidlib.uuid4().hex[:10]}@example.com"
        self.user_id = asyncio.run(self._create_owner(self.email))
        assert self._login(), "a freshly created owner must be able to log in"

    @property
    def owner_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    # Provisioning key and device -------------------------------------------------------------------------
    def new_provisioning_key(self) -> None:
        r = self.client.post("/api/v1/provisioning-keys", json={"description": "fuzz"}, headers=self.owner_headers)
        assert r.status_code == 201, r.text
        self.pk, self.pk_id = r.json()["key"], r.json()["id"]

    def _register(self) -> int:
        self.device_key = secrets.token_urlsafe(32)
        r = self.client.post("/api/v1/device/register", headers={"Authorization": f"Bearer {self.pk}"}, json={
            "uuid": self.device_uuid, "deviceName": "fuzz", "deviceType": "pi", "deviceApiKey": self.device_key})
        return r.status_code

    def ensure_device(self) -> None:
        path = f"/api/v1/device/{self.device_uuid}/state"
        if self.device_key and self.client.get(path, headers={"X-Device-API-Key": self.device_key}).status_code == 200:
            return
        r = self.client.get(f"/api/v1/devices/{self.device_uuid}", headers=self.owner_headers)
        if r.status_code == 200 and r.json()["status"] == "disabled":
            self.client.patch(f"/api/v1/devices/{self.device_uuid}", json={"status": "active"},
                              headers=self.owner_headers)
            if self.client.get(path, headers={"X-Device-API-Key": self.device_key}).status_code == 200:
                return
        if self._register() not in (200, 201):
            self.client.delete(f"/api/v1/devices/{self.device_uuid}", headers=self.owner_headers)
            self.new_provisioning_key()
            assert self._register() == 201
        assert self.client.get(path, headers={"X-Device-API-Key": self.device_key}).status_code == 200

    def setup(self) -> None:
        self.ensure_owner()
        self.new_provisioning_key()
        self.ensure_device()
        r = self.client.post("/api/v1/fleets", json={"name": "fuzz-fleet"}, headers=self.owner_headers)
        assert r.status_code == 201, r.text
        self.fleet_id = r.json()["id"]
        r = self.client.post("/api/v1/releases", json={"name": "fuzz", "target": {"apps": {}}},
                             headers=self.owner_headers)
        assert r.status_code == 201, r.text
        self.release_id = r.json()["id"]
        self.ensure_mqtt_account()

    def ensure_mqtt_account(self) -> None:
        """A service account with one rule, for the MQTT routes' ids (recreated when the fuzz deletes either)."""
        r = self.client.get(f"/api/v1/mqtt/accounts/{self.mqtt_account_id}/rules", headers=self.owner_headers)
        if r.status_code == 200 and any(rule["id"] == self.mqtt_rule_id for rule in r.json()):
            return
        if r.status_code == 200:
            self.client.delete(f"/api/v1/mqtt/accounts/{self.mqtt_account_id}", headers=self.owner_headers)
        r = self.client.post("/api/v1/mqtt/accounts", headers=self.owner_headers, json={
            "username": "fuzz-svc", "kind": "service", "rules": [{"topic": "fuzz/#", "access": "read"}]})
        assert r.status_code == 201, r.text
        self.mqtt_account_id, self.mqtt_rule_id = r.json()["id"], r.json()["rules"][0]["id"]

    # Per case --------------------------------------------------------------------------------------------
    def prepare(self, case: Any) -> dict[str, str]:
        """Point half the path ids at real objects; return the credentials this operation takes."""
        real = {"uuid": self.device_uuid, "fleet_id": self.fleet_id, "release_id": self.release_id,
                "user_id": self.user_id, "key_id": self.pk_id, "account_id": self.mqtt_account_id,
                "rule_id": self.mqtt_rule_id}
        whole = (case.method, case.path, case.path_parameters, case.query, case.body)
        for name, value in real.items():
            if case.path_parameters and name in case.path_parameters and _half(whole):
                case.path_parameters[name] = value
        # Reports and logs: half the time about this device, and log text framed as a valid NDJSON line.
        if case.path == "/api/v1/device/state" and isinstance(case.body, dict) and case.body and _half((whole, 1)):
            case.body = {self.device_uuid: next(iter(case.body.values()))}
        if case.path.endswith("/logs") and isinstance(case.body, str) and _half((whole, 2)):
            case.body = json.dumps({"timestamp": "2026-01-01T00:00:00Z", "message": case.body, "serviceName": "s"})
        if case.path == "/api/v1/device/register":
            return {"Authorization": f"Bearer {self.pk}"}
        if case.path.startswith("/api/v1/device/"):
            return {"X-Device-API-Key": self.device_key, "Authorization": f"Bearer {self.device_key}"}
        return self.owner_headers

    def after(self, case: Any, response: Any) -> None:
        if case.path.endswith("/rotate-key") and response.status_code == 200:
            self.device_key = response.json()["deviceApiKey"]
        if case.path == "/api/v1/provisioning-keys/{key_id}" and case.method.upper() == "DELETE" \
                and case.path_parameters.get("key_id") == self.pk_id:
            self.ensure_owner()
            self.new_provisioning_key()
        if case.path == "/api/v1/fleets/{fleet_id}" and case.method.upper() == "DELETE" \
                and response.status_code == 204 and case.path_parameters.get("fleet_id") == self.fleet_id:
            self.ensure_owner()
            r = self.client.post("/api/v1/fleets", json={"name": "fuzz-fleet"}, headers=self.owner_headers)
            self.fleet_id = r.json()["id"] if r.status_code == 201 else self.fleet_id
        self.ensure_owner()
        self.ensure_device()
        if case.path.startswith("/api/v1/mqtt/accounts/{account_id}") and case.method.upper() == "DELETE":
            self.ensure_mqtt_account()


@pytest.fixture
def fuzz_world(db_url: str, tmp_path: Any, license_keys: Any) -> Iterator[FuzzWorld]:
    # Failed logins from the fuzz must not lock the harness out.
    app = create_app(make_settings(db_url, tmp_path, license_keys, LOGIN_MAX_FAILURES=10**6))
    with schemathesis_asgi.get_client(app) as client:
        world = FuzzWorld(app, client, db_url)
        world.setup()
        yield world
    # Runs the app's lifespan shutdown (engine disposal) on the loop its connections belong to.
    schemathesis_asgi.shutdown_lifespans()
    asyncio.run(_empty_tables(app))


def _schema_app() -> Any:
    """The OpenAPI document does not depend on the database: a throwaway app (never called) describes it."""
    settings = load_cloud_settings(DATABASE_URL="sqlite+aiosqlite:///:memory:", JWT_SECRET="schema-only-" + "x" * 32,
                                   IOTISTIC_DATA_DIR=tempfile.gettempdir())
    return create_app(settings)


# Loaded once at import; every case is sent to the app built for the test (see `fuzz_world`).
schema = schemathesis.openapi.from_dict(_schema_app().openapi())


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=DERANDOMIZE, database=None,
          phases=[Phase.explicit, Phase.generate, Phase.shrink],
          suppress_health_check=list(HealthCheck))
def test_no_input_causes_a_server_error(case: Any, fuzz_world: FuzzWorld) -> None:
    headers = fuzz_world.prepare(case)
    response = case.call(base_url="http://testserver", session=fuzz_world.client, headers=headers)
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:500]}\n"
        f"reproduce: {case.as_curl_command()}"
    )
    if response.status_code >= 400 and response.content:
        body = response.json()
        assert isinstance(body, dict) and {"error", "message"} <= set(body), body
    fuzz_world.after(case, response)
