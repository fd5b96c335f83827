"""The Device API over the real agent (`iotistic.agent.main.Agent` in local mode) on a real Docker engine.

Each test starts an agent whose runtime is the test engine (conftest.py) and whose host reboot/shutdown commands
append a line to a marker file. Requests go through `httpx.ASGITransport` to `create_device_api(agent)`, except
the log stream and the access log, which need a real server (the agent's own, or `device_api_server`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from iotistic.agent.api.app import create_device_api, device_api_server
from iotistic.agent.api.security import RedactApiKey, key_matches, redact
from iotistic.agent.main import Agent
from iotistic.agent.runtime.docker import DockerRuntime
from iotistic.agent.settings import load_agent_settings
from iotistic.agent.state import ServiceKey
from iotistic.core.schemas.target_state import TargetState
from tests.agent.conftest import DockerEngine, free_port

pytest_plugins = ["tests.agent.conftest_cloud"]

TALK = "echo hello-api; echo oops >&2; i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done"


# --- helpers ---------------------------------------------------------------------------------------------------
def target(app_id: int, engine: DockerEngine, **services: dict[str, Any]) -> dict[str, Any]:
    """`{apps, config}` with one app; each keyword is a service name and its extra config."""
    return {
        "apps": {
            str(app_id): {
                "appId": app_id,
                "appName": f"app{app_id}",
                "services": [
                    {"serviceId": i + 1, "serviceName": name, "config": {"image": engine.image, **config}}
                    for i, (name, config) in enumerate(services.items())
                ],
            }
        },
        "config": {},
    }


async def eventually(check: Callable[[], Awaitable[bool] | bool], seconds: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + seconds
    while True:
        result = check()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        await asyncio.sleep(0.1)


def containers(engine: DockerEngine, app_id: int) -> dict[str, dict[str, Any]]:
    """The app's containers as Docker sees them, by service name: {name: inspect}."""
    found = engine.api.containers(all=True, filters={"label": f"io.iotistic.app-id={app_id}"})
    details = [engine.api.inspect_container(c["Id"]) for c in found]
    return {d["Config"]["Labels"]["io.iotistic.service-name"]: d for d in details}


def host_actions(marker: Path) -> list[str]:
    """What the host reboot/shutdown commands were asked to do, in order."""
    return marker.read_text().split() if marker.exists() else []


def states(engine: DockerEngine, app_id: int) -> dict[str, str]:
    return {name: d["State"]["Status"] for name, d in containers(engine, app_id).items()}


@pytest.fixture
def host_marker(tmp_path: Path) -> Path:
    return tmp_path / "host-actions.log"


@pytest.fixture
async def agent(engine: DockerEngine, tmp_path: Path, host_marker: Path,
                monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Agent]:
    """A running agent in local mode: executor, log followers and its own Device API server."""
    for name in ("CLOUD_API_ENDPOINT", "PROVISIONING_KEY", "DEVICE_API_HOST"):
        monkeypatch.delenv(name, raising=False)
    script = tmp_path / "host-action.sh"
    script.write_text(f'#!/bin/sh\necho "$1" >> "{host_marker}"\n')
    script.chmod(0o755)
    settings = load_agent_settings(
        AGENT_DATA_DIR=str(tmp_path / "agent"),
        DEVICE_API_PORT=free_port(),
        DEVICE_NAME="api-test",
        HOST_REBOOT_COMMAND=f"{script} reboot",
        HOST_SHUTDOWN_COMMAND=f"{script} shutdown",
        HTTP_TIMEOUT_SECONDS=3,
        BACKOFF_BASE_SECONDS=0.2,
        BACKOFF_MAX_SECONDS=1,
    )
    runtime = DockerRuntime(lock_root=settings.data_dir / "locks", base_url=engine.base_url)
    agent = Agent(settings, runtime=runtime, reconcile_interval=1.0)
    task = asyncio.create_task(agent.run())
    try:
        await eventually(lambda: agent.api_address is not None or task.done(), 15, "the agent's Device API")
        assert not task.done(), "the agent stopped at start"
        yield agent
    finally:
        agent.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 30)


def client_for(agent: Agent, key: str | None = "default") -> httpx.AsyncClient:
    headers = {"X-API-Key": agent.identity.local_api_key if key == "default" else key} if key else {}
    app = create_device_api(agent, apply_wait=30)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://device", headers=headers,
                             timeout=60)


@pytest.fixture
async def api(agent: Agent) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(agent) as client:
        yield client


async def deploy(api: httpx.AsyncClient, engine: DockerEngine, app_id: int, **services: dict[str, Any]) -> None:
    """POST a local target and wait until every service's container runs."""
    r = await api.post("/v2/local/target-state", json=target(app_id, engine, **services))
    assert r.status_code == 202, r.text
    await eventually(lambda: states(engine, app_id) == dict.fromkeys(services, "running"), 60,
                     f"{list(services)} running")


def assert_error(r: httpx.Response, status: int, error: str | None = None, mentions: str = "") -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text)
    body: dict[str, Any] = r.json()
    assert set(body) >= {"error", "message"} and isinstance(body["message"], str), body
    if error is not None:
        assert body["error"] == error, body
    assert mentions in body["message"], body
    return body


# --- security --------------------------------------------------------------------------------------------------
async def test_only_ping_is_open_and_the_key_works_in_header_query_or_bearer(agent: Agent) -> None:
    key = agent.identity.local_api_key
    async with client_for(agent, key=None) as anonymous:
        r = await anonymous.get("/ping")
        assert r.status_code == 200 and r.text == "OK"
        for method, path in (("GET", "/v1/device"), ("GET", "/v2/version"), ("GET", "/openapi.json"),
                             ("GET", "/no/such/path"), ("POST", "/v1/reboot"), ("POST", "/v1/factory-reset")):
            body = assert_error(await anonymous.request(method, path), 401, "unauthorized", "API key")
            assert key not in json.dumps(body)
        # Nothing is parsed before the key is checked: a malformed body is still a 401.
        r = await anonymous.post("/v2/local/target-state", content=b"{not json", headers={"content-type":
                                                                                        "application/json"})
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("ApiKey")
        assert_error(await anonymous.get("/v2/version", headers={"X-API-Key": key + "x"}), 401, "unauthorized",
                     "not valid")
        assert_error(await anonymous.get("/v2/version", params={"apikey": "wrong"}), 401)
        assert (await anonymous.get("/v2/version", headers={"X-API-Key": key})).json() == {
            "status": "success", "version": __import__("iotistic").__version__}
        assert (await anonymous.get("/v2/version", params={"apikey": key})).status_code == 200
        assert (await anonymous.get("/v2/version", headers={"Authorization": f"Bearer {key}"})).status_code == 200
        assert (await anonymous.get("/openapi.json", params={"apikey": key})).json()["paths"]["/v2/local/logs"]
        assert_error(await anonymous.get("/no/such/path", params={"apikey": key}), 404, "not_found")


def test_keys_compare_in_constant_time_and_never_reach_the_log() -> None:
    assert key_matches("lk_abc", "lk_abc") and not key_matches("lk_abc", "lk_abd")
    assert not key_matches(None, "lk_abc") and not key_matches("", "") and not key_matches("x", None)
    assert not key_matches("\udcff", "lk_abc")  # not encodable text is just wrong, not an error
    assert redact("/v1/device?apikey=lk_secret&x=1") == "/v1/device?apikey=***&x=1"
    assert redact("GET /v2/local/logs?serviceName=a&APIKEY=lk_s HTTP/1.1") == \
        "GET /v2/local/logs?serviceName=a&APIKEY=*** HTTP/1.1"
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5", "GET", "/v1/device?apikey=lk_secret", "1.1", 200), None)
    assert RedactApiKey().filter(record) and "lk_secret" not in record.getMessage()


async def test_the_served_api_never_logs_the_key(agent: Agent, monkeypatch: pytest.MonkeyPatch) -> None:
    # Read where the server writes: the access logger itself (its level and propagation are process-wide state
    # that earlier test servers, e.g. uvicorn.Config(log_level="warning", access_log=False), may have changed).
    access = logging.getLogger("uvicorn.access")
    records: list[logging.LogRecord] = []
    collector = logging.Handler(logging.INFO)
    collector.emit = records.append  # type: ignore[method-assign]
    monkeypatch.setattr(access, "disabled", False)
    monkeypatch.setattr(access, "level", logging.INFO)
    access.addHandler(collector)
    key = agent.identity.local_api_key
    server = device_api_server(agent, port=free_port())
    task = asyncio.create_task(server.serve())
    try:
        await eventually(lambda: server.started, 10, "the server")
        base = f"http://127.0.0.1:{server.config.port}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            assert (await client.get("/v2/version", params={"apikey": key})).status_code == 200
            assert (await client.get("/v2/version", params={"apikey": key + "x"})).status_code == 401
        server_log = "\n".join(r.getMessage() for r in records)
        assert server_log.count("/v2/version?apikey=*** HTTP/1.1") == 2, server_log
        assert key not in server_log
    finally:
        access.removeHandler(collector)
        server.should_exit = True
        await asyncio.wait_for(task, 10)


async def test_a_regenerated_key_replaces_the_old_one_at_once(agent: Agent, api: httpx.AsyncClient) -> None:
    old = agent.identity.local_api_key
    r = await api.post("/v1/regenerate-api-key")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    new = r.text
    assert new != old and new.startswith("lk_") and len(new) > 40
    assert_error(await api.get("/v1/healthy"), 401)  # the client still sends the old key
    assert (await api.get("/v1/healthy", headers={"X-API-Key": new})).text == "OK"
    assert agent.store.identity().local_api_key == new  # type: ignore[union-attr]


# --- target state and application state ------------------------------------------------------------------------
async def test_a_local_target_runs_and_every_state_view_shows_it(
        engine: DockerEngine, agent: Agent, api: httpx.AsyncClient) -> None:
    app_id = 3101
    assert (await api.get("/v2/local/target-state")).json() == {"apps": {}, "config": {}}
    assert (await api.get("/v2/applications/state")).json() == {}

    await deploy(api, engine, app_id, web={"environment": {"GREETING": "hi"}}, worker={"command": ["sleep", "999"]})
    document = (await api.get("/v2/local/target-state")).json()  # the canonical form, defaults filled in
    sent = target(app_id, engine, web={"environment": {"GREETING": "hi"}}, worker={"command": ["sleep", "999"]})
    assert TargetState.model_validate(document) == TargetState.model_validate(sent)
    assert document["apps"][str(app_id)]["services"][0]["state"] == "running"
    await eventually(lambda: agent.applied_version == 1, 30, "local target version 1 applied")
    docker = containers(engine, app_id)

    apps = (await api.get("/v2/applications/state")).json()
    assert list(apps) == [f"app{app_id}"]
    app = apps[f"app{app_id}"]
    assert app["appId"] == app_id and set(app["services"]) == {"web", "worker"}
    web = app["services"]["web"]
    assert web["status"] == "running" and web["containerId"] == docker["web"]["Id"] and web["image"] == engine.image
    assert web["targetState"] == "running" and web["error"] is None and web["locked"] is False
    assert (await api.get(f"/v2/applications/{app_id}/state")).json() == app
    assert_error(await api.get("/v2/applications/999/state"), 404, "not_found", "999")

    status = (await api.get("/v2/state/status")).json()
    assert status["status"] == "success" and status["appState"] == "applied" and status["release"] == "1"
    assert status["overallDownloadProgress"] is None
    assert {c["serviceName"]: c["containerId"] for c in status["containers"]} == {
        name: d["Id"] for name, d in docker.items()}
    assert {(i["serviceName"], i["name"], i["status"]) for i in status["images"]} == {
        ("web", engine.image, "Downloaded"), ("worker", engine.image, "Downloaded")}

    device = (await api.get("/v1/device")).json()
    assert device["status"] == "Idle" and device["update_pending"] is False and device["update_failed"] is False
    assert device["commit"] == "1"
    assert device["supervisor_version"] == __import__("iotistic").__version__ and device["os_version"]
    assert device["uuid"] == agent.identity.uuid and device["local_mode"] is True
    assert isinstance(device["ip_address"], str) and device["agent"]["mode"] == "local"
    assert (await api.get("/v1/healthy")).text == "OK"

    single = (await api.get(f"/v1/apps/{app_id}")).json()
    assert single["appId"] == app_id and single["serviceName"] == "web"
    assert single["containerId"] == docker["web"]["Id"] and single["imageId"] == docker["web"]["Image"]
    assert single["env"]["GREETING"] == "hi"
    assert_error(await api.get("/v1/apps/999"), 404)


async def test_a_bad_target_is_refused_with_the_field_named_and_nothing_changes(
        engine: DockerEngine, agent: Agent, api: httpx.AsyncClient) -> None:
    good = target(3102, engine, web={})
    cases: list[tuple[Any, str]] = [
        ({"apps": {"3102": {**good["apps"]["3102"], "services": [{"serviceId": 1, "serviceName": "web",
                                                                  "config": {}}]}}}, "image"),
        ({**good, "version": 3}, "version"),
        ({"some-uuid": good}, "some-uuid"),
        ({"apps": {"1": good["apps"]["3102"]}}, "appId"),
        ({"apps": {"3102": {**good["apps"]["3102"], "appId": "x"}}}, "appId"),
        ([good], "body"),
        ({"apps": "nope"}, "apps"),
    ]
    for body, field in cases:
        r = await api.post("/v2/local/target-state", json=body)
        assert_error(r, 422, "validation_error", field)
    r = await api.post("/v2/local/target-state", content=b'{"apps": ', headers={"content-type": "application/json"})
    assert_error(r, 400, "bad_request", "JSON")
    r = await api.post("/v2/local/target-state", content=b"x" * (3 * 1024 * 1024),
                       headers={"content-type": "application/json"})
    assert_error(r, 413, "payload_too_large")
    assert agent.local_target() is None and states(engine, 3102) == {}


# --- service and app actions -----------------------------------------------------------------------------------
async def test_stop_start_and_restart_services_and_apps(engine: DockerEngine, agent: Agent,
                                                        api: httpx.AsyncClient) -> None:
    app_id = 3103
    await deploy(api, engine, app_id, web={}, db={})
    web_id = containers(engine, app_id)["web"]["Id"]

    r = await api.post(f"/v2/applications/{app_id}/stop-service", json={"serviceName": "web"})
    assert r.status_code == 200 and r.text == "OK"
    assert states(engine, app_id) == {"web": "exited", "db": "running"}
    assert (await api.get(f"/v2/applications/{app_id}/state")).json()["services"]["web"]["status"] == "exited"
    r = await api.post(f"/v2/applications/{app_id}/start-service", json={"serviceName": "web"})
    assert r.status_code == 200 and states(engine, app_id) == {"web": "running", "db": "running"}
    assert containers(engine, app_id)["web"]["Id"] == web_id  # a hold never recreates

    started = containers(engine, app_id)["web"]["State"]["StartedAt"]
    r = await api.post(f"/v2/applications/{app_id}/restart-service", json={"serviceName": "web", "force": False})
    assert r.status_code == 200 and r.text == "OK"
    after = containers(engine, app_id)["web"]
    assert after["Id"] == web_id and after["State"]["StartedAt"] != started and after["State"]["Running"]

    r = await api.post(f"/v1/apps/{app_id}/stop")
    assert r.status_code == 200 and r.json()["containerId"] in {d["Id"] for d in containers(engine, app_id).values()}
    assert states(engine, app_id) == {"web": "exited", "db": "exited"}
    async def applied() -> bool:  # held stopped is what the device should run: applied (once no apply runs)
        return bool((await api.get("/v2/state/status")).json()["appState"] == "applied")

    await eventually(applied, 10, "appState applied")
    r = await api.post(f"/v1/apps/{app_id}/start", json={"force": False})
    assert r.status_code == 200 and states(engine, app_id) == {"web": "running", "db": "running"}

    before = {n: d["State"]["StartedAt"] for n, d in containers(engine, app_id).items()}
    r = await api.post("/v1/restart", json={"appId": app_id})
    assert r.status_code == 200 and r.text == "OK"
    now = {n: d["State"]["StartedAt"] for n, d in containers(engine, app_id).items()}
    assert all(now[n] != before[n] for n in before) and states(engine, app_id) == {"web": "running",
                                                                                  "db": "running"}

    assert_error(await api.post(f"/v2/applications/{app_id}/stop-service", json={"serviceName": "nope"}), 404,
                 "not_found", "nope")
    assert_error(await api.post("/v2/applications/999/start-service", json={"serviceName": "web"}), 404)
    assert_error(await api.post(f"/v2/applications/{app_id}/stop-service", json={}), 422, "validation_error",
                 "serviceName")
    assert_error(await api.post(f"/v2/applications/{app_id}/stop-service",
                                json={"serviceName": "web", "imageId": 3}), 422, "validation_error", "imageId")
    assert_error(await api.post("/v1/restart", json={"appId": 0}), 422, "validation_error", "appId")
    assert_error(await api.post("/v1/restart", json={"appId": 999}), 404)
    assert_error(await api.post(f"/v1/apps/{app_id}/stop", json={"force": "maybe"}), 422, "validation_error",
                 "force")
    assert states(engine, app_id) == {"web": "running", "db": "running"}


async def test_update_locks_block_actions_and_host_commands_unless_forced(
        engine: DockerEngine, agent: Agent, api: httpx.AsyncClient, host_marker: Path) -> None:
    app_id = 3104
    await deploy(api, engine, app_id, web={})
    lock = agent.executor.locks.ensure_dir(ServiceKey(app_id, "web")) / "updates.lock"
    lock.touch()

    for path in ("/v1/reboot", "/v1/shutdown"):
        assert_error(await api.post(path), 423, "locked", f"{app_id}/web")
        assert_error(await api.post(path, json={"force": False}), 423, "locked", "force")
    assert host_actions(host_marker) == []
    assert_error(await api.post(f"/v2/applications/{app_id}/stop-service", json={"serviceName": "web"}), 423,
                 "locked", f"{app_id}/web")
    assert_error(await api.post(f"/v2/applications/{app_id}/restart-service", json={"serviceName": "web"}), 423)
    assert_error(await api.post(f"/v1/apps/{app_id}/stop"), 423)
    assert_error(await api.post("/v1/restart", json={"appId": app_id}), 423)
    assert states(engine, app_id) == {"web": "running"}
    assert (await api.get(f"/v2/applications/{app_id}/state")).json()["services"]["web"]["locked"] is True

    r = await api.post("/v1/reboot", json={"force": True})
    assert r.status_code == 202 and r.json() == {"Data": "OK", "Error": None}
    r = await api.post("/v1/shutdown", json={"force": True})
    assert r.status_code == 202
    assert host_actions(host_marker) == ["reboot", "shutdown"]
    r = await api.post(f"/v2/applications/{app_id}/stop-service", json={"serviceName": "web", "force": True})
    assert r.status_code == 200 and states(engine, app_id) == {"web": "exited"}

    lock.unlink()
    assert (await api.post("/v1/reboot")).status_code == 202
    assert host_actions(host_marker) == ["reboot", "shutdown", "reboot"]
    agent.settings = agent.settings.model_copy(update={"host_shutdown_command": None,
                                                       "host_reboot_command": "/bin/false"})
    assert_error(await api.post("/v1/shutdown"), 409, "host_action_refused", "HOST_SHUTDOWN_COMMAND")
    assert_error(await api.post("/v1/reboot"), 500, "host_action_failed", "exit code 1")

    r = await api.post("/v1/update", json={"force": True})
    assert r.status_code == 204 and r.content == b""
    assert (await api.post("/v1/update")).status_code == 204
    assert_error(await api.post("/v1/update", json={"cancel": True}), 422, "validation_error", "cancel")


# --- logs ------------------------------------------------------------------------------------------------------
async def test_logs_stream_as_ndjson_and_filter_by_service(engine: DockerEngine, agent: Agent,
                                                           api: httpx.AsyncClient) -> None:
    app_id = 3105
    await deploy(api, engine, app_id, talker={"command": ["sh", "-c", TALK]}, quiet={})
    key = agent.identity.local_api_key
    lines: list[dict[str, Any]] = []
    # A real server (the agent's own): the stream never ends by itself, the client leaves when it has seen enough.
    async with httpx.AsyncClient(base_url=f"http://{agent.api_address}", timeout=10,
                                 headers={"X-API-Key": key}) as client:
        async with asyncio.timeout(30), client.stream("GET", "/v2/local/logs",
                                                      params={"serviceName": "talker"}) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("application/x-ndjson")
            async for raw in response.aiter_lines():
                lines.append(json.loads(raw))
                if sum(line["message"].startswith("tick") for line in lines) >= 5:
                    break
        messages = [line["message"] for line in lines]
        assert "hello-api" in messages and "oops" in messages
        assert all(line["serviceName"] == "talker" for line in lines)
        oops = next(line for line in lines if line["message"] == "oops")
        assert oops["isStderr"] is True and oops["timestamp"].endswith("+00:00")
        await eventually(lambda: agent.logs.subscriber_count == 0, 10, "the stream's subscription to end")

        r = await client.get("/v2/local/logs", params={"follow": "false", "serviceName": "quiet"})
        assert r.status_code == 200 and r.content == b""
        r = await client.get("/v2/local/logs", params={"follow": "false", "limit": 3})
        assert r.status_code == 200 and len(r.text.splitlines()) == 3
        assert_error(await client.get("/v2/local/logs", params={"limit": 0}), 422, "validation_error", "limit")


# --- device name, tags, VPN ------------------------------------------------------------------------------------
async def test_device_name_tags_and_vpn(agent: Agent, api: httpx.AsyncClient) -> None:
    assert (await api.get("/v2/device/name")).json() == {"status": "success", "deviceName": "api-test"}
    r = await api.patch("/v2/device/name", json={"deviceName": "Hall sensor 2"})
    assert r.status_code == 200 and r.json()["deviceName"] == "Hall sensor 2"
    assert (await api.get("/v2/device/name")).json()["deviceName"] == "Hall sensor 2"
    for bad in ("a/b", "", "x" * 129, "tab\there"):
        assert_error(await api.patch("/v2/device/name", json={"deviceName": bad}), 422, "validation_error",
                     "deviceName")

    assert (await api.get("/v2/device/tags")).json() == {"status": "success", "tags": {}}
    r = await api.patch("/v2/device/tags", json={"tags": {"site": "A", "floor": "2"}})
    assert r.status_code == 200 and r.json()["tags"] == {"site": "A", "floor": "2"}
    r = await api.patch("/v2/device/tags", json={"tags": {"floor": None, "zone": "north"}})
    assert r.json()["tags"] == {"site": "A", "zone": "north"}
    assert (await api.get("/v2/device/tags")).json()["tags"] == {"site": "A", "zone": "north"}
    assert_error(await api.patch("/v2/device/tags", json={"tags": {"a:b": "x"}}), 422, "validation_error", "tags")
    assert_error(await api.patch("/v2/device/tags", json={"tags": {"k": "v" * 257}}), 422)
    assert_error(await api.patch("/v2/device/tags", json={"site": "A"}), 422)
    assert_error(await api.patch("/v2/device/tags",
                                 json={"tags": {f"t{i}": "x" for i in range(99)}}), 422, "validation_error",
                 "at most 100")

    vpn = (await api.get("/v2/device/vpn")).json()
    assert vpn["status"] == "success"
    assert (vpn["vpn"]["enabled"], vpn["vpn"]["connected"], vpn["vpn"]["state"]) == (False, False, "disabled")


# --- provisioning ----------------------------------------------------------------------------------------------
async def test_provision_against_the_real_cloud_then_deprovision(agent: Agent, api: httpx.AsyncClient,
                                                                 admin: Any, cloud: Any) -> None:
    status = (await api.get("/v1/provision/status")).json()
    assert status["uuid"] == agent.identity.uuid and status["provisioned"] is False
    assert status["registered"] is False and status["lastError"] is None
    for body, field in (({"cloudEndpoint": "ftp://x", "provisioningKey": "k" * 20}, "cloudEndpoint"),
                        ({"cloudEndpoint": "http://[::1", "provisioningKey": "k" * 20}, "cloudEndpoint"),
                        ({"cloudEndpoint": "http://x:99999", "provisioningKey": "k" * 20}, "cloudEndpoint"),
                        ({"cloudEndpoint": cloud.url}, "provisioningKey"),
                        ({"cloudEndpoint": cloud.url, "provisioningKey": "short"}, "provisioningKey"),
                        ({"cloudEndpoint": cloud.url, "provisioningKey": "k" * 20, "fleet": 1}, "fleet")):
        assert_error(await api.post("/v1/provision", json=body), 422, "validation_error", field)
    r = await api.post("/v1/provision", json={"cloudEndpoint": cloud.url, "provisioningKey": "not-a-real-key-123"})
    assert_error(r, 400, "provisioning_refused")
    assert (await api.get("/v1/provision/status")).json()["provisioned"] is False

    key = await admin.provisioning_key()
    r = await api.post("/v1/provision", json={"cloudEndpoint": cloud.url, "provisioningKey": key["key"],
                                              "deviceName": "provisioned-by-api"})
    assert r.status_code == 200, r.text
    status = r.json()
    assert status["provisioned"] is True and status["keyExchanged"] is True and status["uuid"]
    assert key["key"] not in r.text and agent.identity.device_api_key not in r.text
    assert (await admin.device(status["uuid"]))["name"] == "provisioned-by-api"
    assert (await api.get("/v1/provision/status")).json()["provisioned"] is True

    assert_error(await api.post("/v1/provision", json={"cloudEndpoint": cloud.url, "provisioningKey": key["key"]}),
                 409, "already_provisioned", "deprovision")
    assert_error(await api.post("/v2/local/target-state", json={"apps": {}, "config": {}}), 409, "cloud_mode",
                 "CLOUD_API_ENDPOINT")
    assert (await api.get("/v1/device")).json()["local_mode"] is False

    r = await api.post("/v1/deprovision")
    assert r.status_code == 200 and r.json()["provisioned"] is False and r.json()["uuid"] != status["uuid"]
    assert (await api.get("/v1/device")).json()["local_mode"] is True
    assert (await api.get("/v1/healthy")).status_code == 200  # the local key survives a deprovision


async def test_provisioning_against_a_cloud_that_does_not_answer_is_a_502(agent: Agent,
                                                                          api: httpx.AsyncClient) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    r = await api.post("/v1/provision", json={"cloudEndpoint": endpoint, "provisioningKey": "k" * 20})
    assert_error(r, 502, "cloud_unreachable", endpoint)
    status = (await api.get("/v1/provision/status")).json()
    assert status["provisioned"] is False and status["lastError"]


async def test_factory_reset_needs_confirmation_then_removes_everything_and_the_agent_exits(
        engine: DockerEngine, agent: Agent, api: httpx.AsyncClient) -> None:
    app_id = 3106
    await deploy(api, engine, app_id, web={})
    for body in (None, {}, {"confirm": False}, {"confirm": "yes"}, {"confirm": True, "also": 1}):
        assert_error(await api.post("/v1/factory-reset", json=body), 422, "validation_error")
    assert states(engine, app_id) == {"web": "running"}

    r = await api.post("/v1/factory-reset", json={"confirm": True})
    assert r.status_code == 202 and r.json()["status"] == "success"
    assert states(engine, app_id) == {}
    await eventually(lambda: agent.api_address is None, 20, "the agent to exit")
    assert not (agent.settings.data_dir / "locks").exists()


# --- bad input -------------------------------------------------------------------------------------------------
async def test_bad_input_is_a_4xx_json_error(api: httpx.AsyncClient) -> None:
    assert_error(await api.get("/v1/apps/abc"), 422, "validation_error", "app_id")
    assert_error(await api.get(f"/v1/apps/{10**30}"), 404)
    assert_error(await api.post("/v1/reboot", content=b"[1, 2]", headers={"content-type": "application/json"}),
                 422, "validation_error")
    assert_error(await api.post("/v1/reboot", content=b"\xff\xfe", headers={"content-type": "application/json"}),
                 400)
    assert_error(await api.put("/v1/device"), 405, "method_not_allowed")
    assert_error(await api.get("/v2/local/logs", params={"serviceName": ""}), 422, "validation_error",
                 "serviceName")
    assert_error(await api.get("/v2/local/logs", params={"follow": "sometimes"}), 422)
    assert_error(await api.patch("/v2/device/name", content=b"\x00", headers={"content-type": "application/json"}),
                 400)


async def test_an_engine_that_does_not_answer_is_a_503_not_a_500(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLOUD_API_ENDPOINT", raising=False)
    settings = load_agent_settings(AGENT_DATA_DIR=str(tmp_path / "agent"), DEVICE_API_PORT=free_port())
    runtime = DockerRuntime(lock_root=settings.data_dir / "locks", base_url=f"unix://{tmp_path}/none.sock")
    agent = Agent(settings, runtime=runtime)  # not running: the API alone, over an engine that is gone
    try:
        async with client_for(agent) as api:
            assert_error(await api.get("/v1/healthy"), 503, "unhealthy", "docker")
            status = (await api.get("/v2/state/status")).json()
            assert status["appState"] == "applied" and status["containers"] == [] and status["release"] is None
            assert (await api.get("/v1/device")).json()["update_pending"] is False
            assert_error(await api.get("/v1/apps/1"), 404)
    finally:
        agent.store.close()
