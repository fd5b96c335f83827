"""Telemetry query API on SQLite and PostgreSQL: bucketed and raw series, metrics of a device, latest values.

Readings are written straight into the tables, as ingest would, with known values so every bucket's avg, min,
max and count can be checked exactly.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import text

from iotistic.cloud.models import Role, Telemetry, TelemetryLatest

DAY = dt.datetime(2026, 11, 27, tzinfo=dt.UTC)
T10 = DAY.replace(hour=10)


def at(minutes: int = 0, seconds: float = 0) -> dt.datetime:
    return T10 + dt.timedelta(minutes=minutes, seconds=seconds)


def iso(value: dt.datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


async def ensure_partitions(app: Any, *days: dt.date) -> None:
    """PostgreSQL keeps readings in day partitions that ingest creates; make the ones a test writes into."""
    async with app.state.ctx.engine.begin() as conn:
        if conn.dialect.name != "postgresql":
            return
        for day in days:
            nxt = day + dt.timedelta(days=1)
            await conn.execute(text(
                f"CREATE TABLE IF NOT EXISTS telemetry_p{day:%Y%m%d} PARTITION OF telemetry "
                f"FOR VALUES FROM ('{day:%Y-%m-%d} 00:00:00+00') TO ('{nxt:%Y-%m-%d} 00:00:00+00')"))


async def add_readings(app: Any, rows: list[tuple[int, str, dt.datetime, float]]) -> None:
    await ensure_partitions(app, *{ts.date() for _, _, ts, _ in rows})
    async with app.state.ctx.sessions() as session:
        session.add_all(Telemetry(device_id=d, metric=m, ts=ts, value=v) for d, m, ts, v in rows)
        await session.commit()


async def new_device(api: Any, owner: dict[str, str]) -> tuple[int, str]:
    r = await api.client.post("/api/v1/devices", json={"name": f"sensor-{uuid.uuid4().hex[:6]}"}, headers=owner)
    assert r.status_code == 201, r.text
    return r.json()["id"], r.json()["uuid"]


TEMPS = [(at(0, 0), 1.0), (at(0, 30), 3.0), (at(0, 59.999999), 5.0), (at(1, 0), 10.0), (at(2, 15), -2.0)]


async def seeded(api: Any, owner: dict[str, str]) -> tuple[str, str]:
    """Device A with five temps (and a humidity); device B with one temp that must never leak into A's series."""
    a_id, a = await new_device(api, owner)
    b_id, b = await new_device(api, owner)
    await add_readings(api.app, [(a_id, "temp", ts, v) for ts, v in TEMPS]
                       + [(a_id, "hum", at(0, 10), 50.0), (b_id, "temp", at(0, 20), 100.0)])
    return a, b


async def series(api: Any, headers: dict[str, str], device: str, **params: Any) -> Any:
    params.setdefault("metric", "temp")
    return await api.client.get(f"/api/v1/devices/{device}/telemetry", params=params, headers=headers)


# Bucketed series ----------------------------------------------------------------------------------------------

async def test_minute_buckets_have_exact_aggregates(api, owner):
    a, _ = await seeded(api, owner)
    r = await series(api, owner, a, **{"from": iso(at(0)), "to": iso(at(3)), "bucket": 60})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["device"] == a and body["metric"] == "temp" and body["bucket"] == 60
    assert body["from"] == "2026-11-27T10:00:00Z" and body["to"] == "2026-11-27T10:03:00Z"
    assert "readings" not in body
    assert body["buckets"] == [
        # 10:00:59.999999 is still the first minute; 10:01:00 exactly starts the second.
        {"ts": "2026-11-27T10:00:00Z", "avg": 3.0, "min": 1.0, "max": 5.0, "count": 3},
        {"ts": "2026-11-27T10:01:00Z", "avg": 10.0, "min": 10.0, "max": 10.0, "count": 1},
        {"ts": "2026-11-27T10:02:00Z", "avg": -2.0, "min": -2.0, "max": -2.0, "count": 1},
    ]


async def test_range_is_from_inclusive_to_exclusive(api, owner):
    a, _ = await seeded(api, owner)
    r = await series(api, owner, a, **{"from": iso(at(0, 30)), "to": iso(at(1, 0)), "bucket": 60})
    assert r.json()["buckets"] == [{"ts": "2026-11-27T10:00:00Z", "avg": 4.0, "min": 3.0, "max": 5.0, "count": 2}]
    # Times given with another offset mean the same instants.
    r = await series(api, owner, a, **{"from": "2026-11-27T11:00:00+01:00", "to": "2026-11-27T11:01:00+01:00",
                                       "bucket": 3600})
    assert r.json()["buckets"] == [{"ts": "2026-11-27T10:00:00Z", "avg": 3.0, "min": 1.0, "max": 5.0, "count": 3}]
    # Before the first reading and after the last: no buckets, not an error.
    r = await series(api, owner, a, **{"from": iso(at(-60)), "to": iso(at(0)), "bucket": 60})
    assert r.status_code == 200 and r.json()["buckets"] == []


async def test_buckets_align_to_the_epoch_not_to_from(api, owner):
    a, _ = await seeded(api, owner)
    r = await series(api, owner, a, **{"from": iso(at(0, 7)), "to": iso(at(3)), "bucket": 3600})
    # The hour bucket starts at 10:00, before `from`; only readings inside the range count.
    assert r.json()["buckets"] == [{"ts": "2026-11-27T10:00:00Z", "avg": 4.0, "min": -2.0, "max": 10.0, "count": 4}]

    r = await series(api, owner, a, **{"from": iso(at(0)), "to": iso(at(3)), "bucket": 7})
    expected: dict[int, list[float]] = {}
    for ts, v in TEMPS:
        start = int(ts.timestamp()) // 7 * 7
        expected.setdefault(start, []).append(v)
    assert [(b["ts"], b["count"], b["min"], b["max"]) for b in r.json()["buckets"]] == [
        (iso(dt.datetime.fromtimestamp(s, dt.UTC)), len(vs), min(vs), max(vs)) for s, vs in sorted(expected.items())]


async def test_bucket_chosen_from_max_points(api, owner):
    a, _ = await seeded(api, owner)
    r = await series(api, owner, a, **{"from": iso(at(0)), "to": iso(at(3)), "maxPoints": 4})
    body = r.json()
    assert body["bucket"] == 60 and len(body["buckets"]) == 3
    r = await series(api, owner, a, **{"from": iso(at(0)), "to": iso(at(3))})
    assert r.json()["bucket"] == 1 and sum(b["count"] for b in r.json()["buckets"]) == 5
    # A day at the default 500 points: 86400 / 499 = 173.2 s, rounded up to the next round size.
    r = await series(api, owner, a, **{"from": iso(DAY), "to": iso(DAY + dt.timedelta(days=1))})
    body = r.json()
    assert body["bucket"] == 300 and len(body["buckets"]) <= 500
    assert body["buckets"][0] == {"ts": "2026-11-27T10:00:00Z", "avg": 3.4, "min": -2.0, "max": 10.0, "count": 5}
    # A full 400 days at 5000 points: whole days, and still at most maxPoints buckets.
    r = await series(api, owner, a, **{"to": iso(DAY + dt.timedelta(days=1)), "maxPoints": 5000,
                                       "from": iso(DAY + dt.timedelta(days=1) - dt.timedelta(days=400))})
    assert r.status_code == 200 and r.json()["bucket"] == 7200


async def test_default_range_is_the_last_24_hours(api, owner, app):
    device_id, device = await new_device(api, owner)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    await add_readings(app, [(device_id, "temp", now - dt.timedelta(hours=1), 7.0),
                             (device_id, "temp", now - dt.timedelta(hours=25), 99.0)])
    r = await series(api, owner, device, bucket=3600)
    body = r.json()
    assert r.status_code == 200, r.text
    to = dt.datetime.fromisoformat(body["to"])
    assert abs((to - now).total_seconds()) < 60
    assert to - dt.datetime.fromisoformat(body["from"]) == dt.timedelta(hours=24)
    assert [(b["avg"], b["count"]) for b in body["buckets"]] == [(7.0, 1)]


# Raw readings -------------------------------------------------------------------------------------------------

async def test_raw_readings_with_limit(api, owner):
    a, _ = await seeded(api, owner)
    window = {"from": iso(at(0)), "to": iso(at(3)), "bucket": 0}
    r = await series(api, owner, a, **window)
    body = r.json()
    assert body["bucket"] == 0 and "buckets" not in body and body["truncated"] is False
    assert body["readings"] == [
        {"ts": "2026-11-27T10:00:00Z", "value": 1.0}, {"ts": "2026-11-27T10:00:30Z", "value": 3.0},
        {"ts": "2026-11-27T10:00:59.999999Z", "value": 5.0}, {"ts": "2026-11-27T10:01:00Z", "value": 10.0},
        {"ts": "2026-11-27T10:02:15Z", "value": -2.0}]
    r = await series(api, owner, a, **window, limit=2)
    assert [p["value"] for p in r.json()["readings"]] == [1.0, 3.0] and r.json()["truncated"] is True
    r = await series(api, owner, a, **window, limit=5)
    assert len(r.json()["readings"]) == 5 and r.json()["truncated"] is False
    r = await series(api, owner, a, **window, metric="hum")
    assert r.json()["readings"] == [{"ts": "2026-11-27T10:00:10Z", "value": 50.0}]


async def test_raw_readings_newest_first_picked_still_oldest_first(api, owner):
    """A live chart starts from the last readings before now: `newest` keeps the end of the range."""
    a, _ = await seeded(api, owner)
    window = {"from": iso(at(0)), "to": iso(at(3)), "bucket": 0}
    r = await series(api, owner, a, **window, limit=2, newest="true")
    assert r.status_code == 200, r.text
    assert r.json()["readings"] == [{"ts": "2026-11-27T10:01:00Z", "value": 10.0},
                                    {"ts": "2026-11-27T10:02:15Z", "value": -2.0}]
    assert r.json()["truncated"] is True
    r = await series(api, owner, a, **window, limit=5, newest="true")
    assert [p["value"] for p in r.json()["readings"]] == [1.0, 3.0, 5.0, 10.0, -2.0]
    assert r.json()["truncated"] is False
    # Still only the range: a reading at `to` or after is not the newest of [from, to).
    r = await series(api, owner, a, **{"from": iso(at(0)), "to": iso(at(1)), "bucket": 0}, limit=1, newest="true")
    assert r.json()["readings"] == [{"ts": "2026-11-27T10:00:59.999999Z", "value": 5.0}]
    r = await series(api, owner, a, **window, newest="maybe")
    assert r.status_code == 422 and "newest" in r.json()["message"]


# Refusals -----------------------------------------------------------------------------------------------------

async def test_bad_ranges_and_parameters_are_422_with_a_message(api, owner):
    a, _ = await seeded(api, owner)
    cases = [
        ({"from": iso(at(3)), "to": iso(at(0))}, "'from' must be before 'to'"),
        ({"from": iso(at(0)), "to": iso(at(0))}, "'from' must be before 'to'"),
        ({"from": iso(DAY - dt.timedelta(days=401)), "to": iso(DAY)}, "at most 400 days"),
        ({"from": "1969-12-31T00:00:00Z", "to": "1970-01-02T00:00:00Z"}, "1970"),
        ({"from": iso(DAY), "to": iso(DAY + dt.timedelta(days=1)), "bucket": 1}, "bucket too small"),
        ({"from": "yesterday"}, "from"),
        ({"bucket": -5}, "bucket"),
        ({"maxPoints": 1}, "maxPoints"),
        ({"maxPoints": 5001}, "maxPoints"),
        ({"bucket": 0, "limit": 0}, "limit"),
        ({"metric": ""}, "metric"),
        ({"to": "0001-01-01T00:00:00Z"}, "range"),
    ]
    for params, message in cases:
        r = await series(api, owner, a, **params)
        assert r.status_code == 422, (params, r.text)
        assert r.json()["error"] == "validation_error" and message in r.json()["message"], (params, r.text)
    r = await api.client.get(f"/api/v1/devices/{a}/telemetry", headers=owner)
    assert r.status_code == 422 and "metric" in r.json()["message"]


async def test_unknown_device_is_404(api, owner):
    for path in ("/api/v1/devices/nosuchdevice/telemetry?metric=temp",
                 "/api/v1/devices/nosuchdevice/telemetry/metrics"):
        r = await api.client.get(path, headers=owner)
        assert r.status_code == 404 and r.json() == {"error": "not_found", "message": "device nosuchdevice not found"}


async def test_token_required_and_viewer_allowed(api, owner):
    a, _ = await seeded(api, owner)
    paths = [f"/api/v1/devices/{a}/telemetry?metric=temp&from={iso(at(0))}&to={iso(at(3))}&bucket=60",
             f"/api/v1/devices/{a}/telemetry/metrics", f"/api/v1/telemetry/latest?device={a}"]
    viewer = await api.headers_for(Role.viewer)
    for path in paths:
        r = await api.client.get(path)
        assert r.status_code == 401 and r.json()["error"] == "unauthorized", path
        r = await api.client.get(path, headers={"Authorization": "Bearer not-a-token"})
        assert r.status_code == 401, path
        r = await api.client.get(path, headers=viewer)
        assert r.status_code == 200, (path, r.text)
    r = await api.client.get(paths[0], headers=viewer)
    assert [b["count"] for b in r.json()["buckets"]] == [3, 1, 1]


# Latest values ------------------------------------------------------------------------------------------------

async def add_latest(app: Any, rows: list[tuple[int, str, dt.datetime, float, str | None]]) -> None:
    async with app.state.ctx.sessions() as session:
        session.add_all(TelemetryLatest(device_id=d, metric=m, ts=ts, value=v, unit=u) for d, m, ts, v, u in rows)
        await session.commit()


async def test_metrics_of_a_device(api, owner, app):
    a_id, a = await new_device(api, owner)
    b_id, _ = await new_device(api, owner)
    _, silent = await new_device(api, owner)
    await add_latest(app, [(a_id, "temp", at(2), 21.5, "C"), (a_id, "hum", at(1), 40.0, None),
                           (b_id, "temp", at(0), 99.0, "C")])
    r = await api.client.get(f"/api/v1/devices/{a}/telemetry/metrics", headers=owner)
    assert r.status_code == 200
    assert r.json() == [{"metric": "hum", "ts": "2026-11-27T10:01:00Z", "value": 40.0, "unit": None},
                        {"metric": "temp", "ts": "2026-11-27T10:02:00Z", "value": 21.5, "unit": "C"}]
    r = await api.client.get(f"/api/v1/devices/{silent}/telemetry/metrics", headers=owner)
    assert r.status_code == 200 and r.json() == []


async def test_latest_of_many_devices(api, owner, app):
    a_id, a = await new_device(api, owner)
    b_id, b = await new_device(api, owner)
    c_id, c = await new_device(api, owner)
    _, silent = await new_device(api, owner)
    await add_latest(app, [(a_id, "temp", at(2), 21.5, "C"), (a_id, "hum", at(1), 40.0, None),
                           (b_id, "temp", at(0), 19.0, "C"), (c_id, "co2", at(0), 400.0, "ppm")])
    url = "/api/v1/telemetry/latest"
    r = await api.client.get(url, params={"device": [a, b, silent, "missing-device", a]}, headers=owner)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["unknownDevices"] == ["missing-device"]
    assert sorted((i["device"], i["metric"], i["value"], i["unit"], i["ts"]) for i in body["items"]) == sorted([
        (a, "temp", 21.5, "C", "2026-11-27T10:02:00Z"), (a, "hum", 40.0, None, "2026-11-27T10:01:00Z"),
        (b, "temp", 19.0, "C", "2026-11-27T10:00:00Z")])

    r = await api.client.get(url, params={"device": [a, b, c], "metric": ["temp", "co2"]}, headers=owner)
    assert sorted((i["device"], i["metric"]) for i in r.json()["items"]) == sorted(
        [(a, "temp"), (b, "temp"), (c, "co2")])


async def test_latest_limits(api, owner):
    url = "/api/v1/telemetry/latest"
    r = await api.client.get(url, headers=owner)
    assert r.status_code == 422 and "device" in r.json()["message"]
    r = await api.client.get(url, params={"device": [f"device-{i:06d}" for i in range(1001)]}, headers=owner)
    assert r.status_code == 422 and "at most 1000 devices" in r.json()["message"]
    r = await api.client.get(url, params={"device": [f"device-{i:06d}" for i in range(1000)]}, headers=owner)
    assert r.status_code == 200 and len(r.json()["unknownDevices"]) == 1000
    r = await api.client.get(url, params={"device": "a/b+c#d"}, headers=owner)
    assert r.status_code == 422 and "not a device uuid" in r.json()["message"]
    r = await api.client.get(url, params={"device": "device-1", "metric": "x" * 129}, headers=owner)
    assert r.status_code == 422 and "metrics" in r.json()["message"]
