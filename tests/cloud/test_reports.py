"""Reports from devices: current state with metrics, and NDJSON log batches; read back by users."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import func, select

from iotistic.cloud.models import DeviceCurrentState, DeviceLog, DeviceMetric, Role
from iotistic.cloud.routers.device_api import MAX_LOG_BODY


def _dev(key: str) -> dict[str, str]:
    return {"X-Device-API-Key": key}


async def _count(app: Any, model: Any, *where: Any) -> int:
    async with app.state.ctx.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def _device(api: Any, owner: dict[str, str], key: str | None = None) -> tuple[str, str]:
    if key is None:
        key = (await api.provisioning_key(owner))["key"]
    body, api_key = await api.register(key)
    return body["uuid"], api_key


REPORT: dict[str, Any] = {
    "apps": {"1": {"appId": 1, "appName": "web", "services": [
        {"serviceName": "nginx", "serviceId": 1, "image": "nginx:1.27", "status": "running", "containerId": "c1"},
        {"serviceName": "worker", "status": "exited", "error": "exit code 1", "restartCount": 3}]}},
    "appliedVersion": 2,
    "status": "idle",
    "metrics": {"cpu": 12.5, "memory": 512e6, "memoryTotal": 1e9, "storage": 4e9, "storageTotal": 3.2e10,
                "temperature": 48.2, "uptime": 3600},
    "osVersion": "Debian 12",
    "agentVersion": "0.1.0",
}


async def _report(api: Any, api_key: str, body: Any) -> Any:
    return await api.client.patch("/api/v1/device/state", json=body, headers=_dev(api_key))


# Current state and metrics ------------------------------------------------------------------------------------

async def test_report_is_stored_and_readable(api, owner, app):
    device_uuid, api_key = await _device(api, owner)
    r = await api.client.get(f"/api/v1/devices/{device_uuid}/current-state", headers=owner)
    assert r.status_code == 200 and r.json()["state"] is None and r.json()["reportedAt"] is None
    assert (await api.client.get(f"/api/v1/devices/{device_uuid}/metrics", headers=owner)).json() == []

    r = await _report(api, api_key, {device_uuid: REPORT})
    assert r.status_code == 204, r.text
    assert r.content == b""

    r = await api.client.get(f"/api/v1/devices/{device_uuid}/current-state", headers=owner)
    assert r.status_code == 200
    out = r.json()
    assert out["uuid"] == device_uuid and out["reportedAt"] is not None
    state = out["state"]
    assert state["status"] == "idle" and state["appliedVersion"] == 2
    services = state["apps"]["1"]["services"]
    assert [(s["serviceName"], s["status"]) for s in services] == [("nginx", "running"), ("worker", "exited")]
    assert services[1]["error"] == "exit code 1" and services[1]["restartCount"] == 3

    r = await api.client.get(f"/api/v1/devices/{device_uuid}/metrics", headers=owner)
    assert r.status_code == 200
    (m,) = r.json()
    assert m["cpu"] == 12.5 and m["memory"] == 512e6 and m["memoryTotal"] == 1e9
    assert m["storage"] == 4e9 and m["storageTotal"] == 3.2e10
    assert m["temperature"] == 48.2 and m["uptime"] == 3600
    assert m["recordedAt"] is not None

    assert await app.state.ctx.presence.flush() == 1  # contact is written in batches; do it now
    r = await api.client.get(f"/api/v1/devices/{device_uuid}", headers=owner)
    assert r.json()["osVersion"] == "Debian 12" and r.json()["agentVersion"] == "0.1.0"
    assert r.json()["online"] is True


async def test_bearer_key_reports_too(api, owner):
    device_uuid, api_key = await _device(api, owner)
    r = await api.client.patch("/api/v1/device/state", json={device_uuid: {"status": "applying"}},
                               headers={"Authorization": f"Bearer {api_key}"})
    assert r.status_code == 204
    r = await api.client.get(f"/api/v1/devices/{device_uuid}/current-state", headers=owner)
    assert r.json()["state"]["status"] == "applying"


async def test_partial_report_keeps_earlier_fields(api, owner):
    device_uuid, api_key = await _device(api, owner)
    assert (await _report(api, api_key, {device_uuid: REPORT})).status_code == 204
    assert (await _report(api, api_key, {device_uuid: {"status": "applying"}})).status_code == 204
    state = (await api.client.get(f"/api/v1/devices/{device_uuid}/current-state", headers=owner)).json()["state"]
    assert state["status"] == "applying"
    assert state["appliedVersion"] == 2
    assert state["apps"]["1"]["services"][0]["serviceName"] == "nginx"

    assert (await _report(api, api_key, {device_uuid: {"metrics": {"cpu": 99}}})).status_code == 204
    state = (await api.client.get(f"/api/v1/devices/{device_uuid}/current-state", headers=owner)).json()["state"]
    assert state["status"] == "applying" and state["appliedVersion"] == 2
    metrics = (await api.client.get(f"/api/v1/devices/{device_uuid}/metrics", headers=owner)).json()
    assert [m["cpu"] for m in metrics] == [12.5, 99]
    assert metrics[1]["temperature"] is None


async def test_reporting_for_another_device_is_forbidden_and_stores_nothing(api, owner, app):
    key = (await api.provisioning_key(owner))["key"]
    a_uuid, a_key = await _device(api, owner, key)
    b_uuid, _ = await _device(api, owner, key)

    r = await _report(api, a_key, {b_uuid: REPORT})
    assert r.status_code == 403
    assert r.json()["error"] == "forbidden"
    # Own uuid first, someone else's second: all or nothing.
    r = await _report(api, a_key, {a_uuid: REPORT, b_uuid: REPORT})
    assert r.status_code == 403
    assert await _count(app, DeviceCurrentState) == 0
    assert await _count(app, DeviceMetric) == 0
    for device_uuid in (a_uuid, b_uuid):
        r = await api.client.get(f"/api/v1/devices/{device_uuid}/current-state", headers=owner)
        assert r.json()["state"] is None


async def test_bad_reports_are_refused(api, owner, app):
    device_uuid, api_key = await _device(api, owner)
    bad_bodies = [
        {},
        {device_uuid: {"metrics": {"cpu": 150}}},
        {device_uuid: {"metrics": {"cpu": "high"}}},
        {device_uuid: {"metrics": {"memory": -1}}},
        {device_uuid: {"metrics": {"temperature": 1000}}},
        {device_uuid: {"unknownField": 1}},
        {device_uuid: {"apps": {"1": {"services": [{"status": "running"}]}}}},
        {device_uuid: "running"},
        [REPORT],
        "text",
    ]
    for body in bad_bodies:
        r = await _report(api, api_key, body)
        assert r.status_code == 422, (body, r.text)
        assert set(r.json()) >= {"error", "message"}
    r = await api.client.patch("/api/v1/device/state", content=b"{oops", headers={
        **_dev(api_key), "Content-Type": "application/json"})
    assert 400 <= r.status_code < 500 and set(r.json()) >= {"error", "message"}
    r = await api.client.patch("/api/v1/device/state", json={device_uuid: REPORT})
    assert r.status_code == 401
    r = await api.client.patch("/api/v1/device/state", json={device_uuid: REPORT}, headers=owner)
    assert r.status_code == 401
    assert await _count(app, DeviceCurrentState) == 0
    assert await _count(app, DeviceMetric) == 0


async def test_metrics_time_window(api, owner):
    device_uuid, api_key = await _device(api, owner)
    before = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    for cpu in (1, 2, 3):
        assert (await _report(api, api_key, {device_uuid: {"metrics": {"cpu": cpu}}})).status_code == 204
    path = f"/api/v1/devices/{device_uuid}/metrics"
    assert [m["cpu"] for m in (await api.client.get(path, headers=owner)).json()] == [1, 2, 3]
    assert [m["cpu"] for m in (await api.client.get(path, params={"limit": 2}, headers=owner)).json()] == [2, 3]
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
    assert (await api.client.get(path, params={"since": future}, headers=owner)).json() == []
    assert len((await api.client.get(path, params={"since": before.isoformat()}, headers=owner)).json()) == 3
    assert (await api.client.get(path, params={"until": before.isoformat()}, headers=owner)).json() == []
    assert (await api.client.get(path, params={"since": "yesterday"}, headers=owner)).status_code == 422
    viewer = await api.headers_for(Role.viewer)
    assert len((await api.client.get(path, headers=viewer)).json()) == 3
    assert (await api.client.get(path)).status_code == 401
    assert (await api.client.get(path, headers=_dev(api_key))).status_code == 401
    assert (await api.client.get("/api/v1/devices/nope-nope/metrics", headers=owner)).status_code == 404


# Logs ---------------------------------------------------------------------------------------------------------

def _ndjson(*lines: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def _line(message: str, ts: str, service: str | None = None, stderr: bool = False) -> dict[str, Any]:
    line: dict[str, Any] = {"timestamp": ts, "message": message, "isStderr": stderr}
    if service is not None:
        line["serviceName"] = service
    return line


async def _post_logs(api: Any, device_uuid: str, api_key: str, body: Any, **headers: str) -> Any:
    return await api.client.post(f"/api/v1/device/{device_uuid}/logs", content=body, headers={
        **_dev(api_key), "Content-Type": "application/x-ndjson", **headers})


async def test_log_batches_are_stored_and_filtered(api, owner):
    device_uuid, api_key = await _device(api, owner)
    body = _ndjson(
        _line("nginx started", "2026-01-01T10:00:00Z", "nginx"),
        _line("worker boot", "2026-01-01T10:00:01Z", "worker"),
        _line("GET /", "2026-01-01T10:05:00+00:00", "nginx"),
        _line("oops", "2026-01-01T10:06:00Z", "worker", stderr=True),
        _line("system line", "2026-01-01T10:07:00Z"),
    )
    r = await _post_logs(api, device_uuid, api_key, b"\n" + body + b"\n\n")  # blank lines are ignored
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 5}

    path = f"/api/v1/devices/{device_uuid}/logs"
    logs = (await api.client.get(path, headers=owner)).json()
    assert [entry["message"] for entry in logs] == ["nginx started", "worker boot", "GET /", "oops", "system line"]
    assert logs[3]["isStderr"] is True and logs[3]["serviceName"] == "worker"
    assert logs[4]["serviceName"] is None
    assert dt.datetime.fromisoformat(logs[0]["timestamp"]) == dt.datetime(2026, 1, 1, 10, tzinfo=dt.UTC)

    nginx = (await api.client.get(path, params={"service": "nginx"}, headers=owner)).json()
    assert [entry["message"] for entry in nginx] == ["nginx started", "GET /"]
    since = (await api.client.get(path, params={"since": "2026-01-01T10:05:00Z"}, headers=owner)).json()
    assert [entry["message"] for entry in since] == ["GET /", "oops", "system line"]
    both = (await api.client.get(path, params={"since": "2026-01-01T10:05:00Z", "service": "worker"},
                                 headers=owner)).json()
    assert [entry["message"] for entry in both] == ["oops"]
    # A time without a zone is UTC.
    naive = (await api.client.get(path, params={"since": "2026-01-01T10:06:30"}, headers=owner)).json()
    assert [entry["message"] for entry in naive] == ["system line"]
    latest = (await api.client.get(path, params={"limit": 2}, headers=owner)).json()
    assert [entry["message"] for entry in latest] == ["oops", "system line"]

    # A second batch adds to the first.
    r = await _post_logs(api, device_uuid, api_key, _ndjson(_line("more", "2026-01-01T11:00:00Z", "nginx")))
    assert r.json() == {"accepted": 1}
    assert len((await api.client.get(path, headers=owner)).json()) == 6
    r = await _post_logs(api, device_uuid, api_key, b"")
    assert r.status_code == 200 and r.json() == {"accepted": 0}


async def test_one_bad_line_rejects_the_whole_batch(api, owner, app):
    device_uuid, api_key = await _device(api, owner)
    good = _line("fine", "2026-01-01T10:00:00Z", "nginx")
    cases = [
        (_ndjson(good, good) + b"{not json\n" + _ndjson(good), 3),
        (_ndjson(good, {"message": "no timestamp"}, good), 2),
        (_ndjson({"timestamp": "not a time", "message": "x"}), 1),
        (_ndjson(good, good, good, {**good, "extra": 1}), 4),
        (_ndjson(good, {**good, "message": 5}), 2),
        (_ndjson(good) + b"[1, 2]\n", 2),
        (_ndjson(good) + b"\xff\xfe\n", 2),
    ]
    for body, number in cases:
        r = await _post_logs(api, device_uuid, api_key, body)
        assert 400 <= r.status_code < 500, (body, r.text)
        out = r.json()
        assert set(out) >= {"error", "message"}
        assert f"line {number}" in out["message"], (body, out["message"])
    assert await _count(app, DeviceLog) == 0
    assert (await api.client.get(f"/api/v1/devices/{device_uuid}/logs", headers=owner)).json() == []


async def test_oversize_log_batches_are_refused(api, owner, app):
    device_uuid, api_key = await _device(api, owner)
    line = json.dumps(_line("x" * 15_000, "2026-01-01T10:00:00Z")).encode() + b"\n"
    body = line * (MAX_LOG_BODY // len(line) + 2)
    assert len(body) > MAX_LOG_BODY
    r = await _post_logs(api, device_uuid, api_key, body)
    assert r.status_code == 413
    assert r.json()["error"] == "payload_too_large"

    # Streamed without a Content-Length: still cut off.
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(MAX_LOG_BODY // len(line) + 2):
            yield line

    r = await api.client.post(f"/api/v1/device/{device_uuid}/logs", content=chunks(), headers=_dev(api_key))
    assert "content-length" not in r.request.headers
    assert r.status_code == 413
    assert set(r.json()) >= {"error", "message"}

    # A lying Content-Length is refused up front.
    r = await _post_logs(api, device_uuid, api_key, b"", **{"Content-Length": str(MAX_LOG_BODY + 1)})
    assert r.status_code == 413
    # Too many (small) lines.
    small = json.dumps(_line("s", "2026-01-01T10:00:00Z")).encode() + b"\n"
    r = await _post_logs(api, device_uuid, api_key, small * 5_001)
    assert r.status_code == 413
    assert await _count(app, DeviceLog) == 0


async def test_a_device_posts_logs_only_for_itself(api, owner, app):
    key = (await api.provisioning_key(owner))["key"]
    _, a_key = await _device(api, owner, key)
    b_uuid, b_key = await _device(api, owner, key)
    body = _ndjson(_line("spoofed", "2026-01-01T10:00:00Z"))
    r = await _post_logs(api, b_uuid, a_key, body)
    assert r.status_code == 403
    r = await api.client.post(f"/api/v1/device/{b_uuid}/logs", content=body)
    assert r.status_code == 401
    r = await api.client.post(f"/api/v1/device/{b_uuid}/logs", content=body, headers=owner)
    assert r.status_code == 401
    assert await _count(app, DeviceLog) == 0
    r = await _post_logs(api, b_uuid, b_key, body)
    assert r.status_code == 200 and r.json() == {"accepted": 1}
    assert (await api.client.get(f"/api/v1/devices/{b_uuid}/logs", params={"service": "x"},
                                 headers=owner)).json() == []


async def test_non_finite_numbers_are_refused(api, owner, app):
    """Python's JSON parser accepts NaN and Infinity; they must not be stored (they cannot be sent back as JSON)."""
    device_uuid, api_key = await _device(api, owner)
    for literal in (b"Infinity", b"NaN", b"-Infinity"):
        body = b'{"' + device_uuid.encode() + b'": {"metrics": {"memory": ' + literal + b', "uptime": 1}}}'
        r = await api.client.patch("/api/v1/device/state", content=body,
                                   headers={**_dev(api_key), "Content-Type": "application/json"})
        assert 400 <= r.status_code < 500, (literal, r.status_code, r.text)
        assert set(r.json()) >= {"error", "message"}
    assert await _count(app, DeviceMetric) == 0
    r = await api.client.get(f"/api/v1/devices/{device_uuid}/metrics", headers=owner)
    assert r.status_code == 200 and r.json() == []


async def test_text_the_database_cannot_hold_is_a_client_error(api, owner, app):
    """NUL characters (PostgreSQL text refuses them) and lone surrogates: 4xx JSON, never a 500, nothing stored."""
    device_uuid, api_key = await _device(api, owner)
    dev = {**_dev(api_key), "Content-Type": "application/json"}
    for bad in ("a\x00b", "a\ud800b"):
        line = json.dumps({"timestamp": "2026-01-01T00:00:00Z", "message": bad, "serviceName": "s"}).encode()
        r = await _post_logs(api, device_uuid, api_key, line)
        # SQLite can store a NUL; PostgreSQL cannot. Either way: stored faithfully, or a clean 4xx.
        assert r.status_code in (200, 400, 422), (bad, r.status_code, r.text)
        if r.status_code == 200:
            logs = (await api.client.get(f"/api/v1/devices/{device_uuid}/logs", headers=owner)).json()
            assert logs[-1]["message"] == bad
        else:
            assert set(r.json()) >= {"error", "message"}
        for report in ({"status": bad}, {"config": {"k": bad}}, {"apps": {"1": {"services": [
                {"serviceName": "s", "status": "error", "error": bad}]}}}):
            r = await api.client.patch("/api/v1/device/state", content=json.dumps({device_uuid: report}).encode(),
                                       headers=dev)
            assert r.status_code == 422, (bad, report, r.status_code, r.text)
            assert set(r.json()) >= {"error", "message"}
    assert await _count(app, DeviceCurrentState) == 0
    r = await api.client.get(f"/api/v1/devices/{device_uuid}/current-state", headers=owner)
    assert r.status_code == 200 and r.json()["state"] is None


async def test_metrics_keep_the_time_the_device_measured_them(api, owner):
    device_uuid, api_key = await _device(api, owner)
    measured = dt.datetime.now(dt.UTC) - dt.timedelta(hours=3)  # queued on the device during an outage
    r = await api.client.patch("/api/v1/device/state", headers={"X-Device-API-Key": api_key},
                               json={device_uuid: {"metrics": {"cpu": 5, "recordedAt": measured.isoformat()}}})
    assert r.status_code == 204, r.text
    r = await api.client.get(f"/api/v1/devices/{device_uuid}/metrics", headers=owner)
    (m,) = r.json()
    assert abs(dt.datetime.fromisoformat(m["recordedAt"]) - measured) < dt.timedelta(seconds=1)

    future = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    r = await api.client.patch("/api/v1/device/state", headers={"X-Device-API-Key": api_key},
                               json={device_uuid: {"metrics": {"cpu": 5, "recordedAt": future.isoformat()}}})
    assert r.status_code == 422 and "future" in r.json()["message"]
    r = await api.client.get(f"/api/v1/devices/{device_uuid}/metrics", headers=owner)
    assert len(r.json()) == 1  # nothing half-written
