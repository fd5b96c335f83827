"""Usage from end to end: a customer signs up with billing; its instance (cloud API on PostgreSQL, a private
Mosquitto) runs the exporter labelled with that customer's id; a real Prometheus scrapes it; billing collects
the period from Prometheus into usage records (on SQLite and PostgreSQL billing databases), flags devices over
the plan's maximum, and shows the records only to that customer and the operator."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from iotistic.billing.models import UsageRecord
from iotistic.billing.services import usage
from iotistic.broker.testing import free_port
from iotistic.core.topics import sensor_topic
from tests.billing.conftest import BillingApi
from tests.exporter import env as exporter_env
from tests.exporter.env import MakeSettings, Register, running_exporter
from tests.exporter.prometheus import PrivatePrometheus, eventually, value_of
from tests.mqtt_env import Broker

# The exporter's fixtures (tests/exporter/env.py), available here by name.
sys_broker = exporter_env.sys_broker
exporter_account = exporter_env.exporter_account
exporter_settings = exporter_env.exporter_settings
register_devices = exporter_env.register_devices


@pytest.fixture
def db_url(postgresql_url: str) -> str:
    """The customer instance's database (the billing database is parametrised over both backends)."""
    return postgresql_url


@pytest.fixture(scope="module")
def prometheus_port() -> int:
    return free_port()


@pytest.fixture
def billing_settings_env(prometheus_port: int) -> dict[str, Any]:
    return {"PROMETHEUS_URL": f"http://127.0.0.1:{prometheus_port}"}


@pytest.fixture
async def prometheus(prometheus_port: int) -> AsyncIterator[list[PrivatePrometheus]]:
    """Started by the test once it knows the exporter's address; stopped afterwards."""
    started: list[PrivatePrometheus] = []
    yield started
    for server in started:
        await asyncio.to_thread(server.close)


async def _records(billing_sessions: Any, customer_id: str) -> list[UsageRecord]:
    from sqlalchemy import select

    async with billing_sessions() as session:
        return list((await session.scalars(select(UsageRecord).where(UsageRecord.customer_id == customer_id)
                                           .order_by(UsageRecord.metric))).all())


def _counts(records: list[UsageRecord]) -> dict[str, float]:
    """Devices and messages (storage may move between two collections while the instance runs)."""
    return {r.metric: r.value for r in records if not r.metric.endswith("bytes_max")}


async def test_usage_flows_from_the_instance_to_billing_records(
    billing_api: BillingApi, billing_sessions: Any, prometheus: list[PrivatePrometheus], prometheus_port: int,
    exporter_settings: MakeSettings, sys_broker: Broker, exporter_account: tuple[str, str],
    register_devices: Register,
):
    customer = await billing_api.signup("starter")  # at most 10 devices
    other = await billing_api.signup("professional")  # no exporter: Prometheus has nothing on it
    devices = await register_devices(11)  # the instance's own licence allows them (e.g. after a downgrade)
    settings = exporter_settings(CUSTOMER_ID=customer.customer_id,
                                 MQTT_BROKER_URL=f"mqtt://127.0.0.1:{sys_broker.mosquitto.port}",
                                 EXPORTER_MQTT_USERNAME=exporter_account[0], EXPORTER_MQTT_PASSWORD=exporter_account[1])
    async with running_exporter(settings) as exporter:
        server = PrivatePrometheus([f"127.0.0.1:{exporter.port}"], port=prometheus_port)
        prometheus.append(server)
        await asyncio.to_thread(server.start)
        selector = f'{{customer="{customer.customer_id}"}}'
        start = await eventually(lambda: value_of(server, f"iotistic_mqtt_messages_received_total{selector}"))
        assert start is not None, server.log_tail()
        assert await value_of(server, f"iotistic_devices_registered{selector}") == 11
        probe = await sys_broker.connect(devices[0]["mqtt"]["username"], devices[0]["mqtt"]["password"])
        for _ in range(7):
            probe.publish(sensor_topic(devices[0]["uuid"], "temperature"), b'{"value": 20}')

        async def counted() -> bool:
            return await value_of(server, f"iotistic_mqtt_messages_received_total{selector}") == start + 7

        assert await eventually(counted)

        # The operator has the current period collected now (the periodic collection does the same).
        r = await billing_api.client.post(f"/api/operator/customers/{customer.customer_id}/usage/collect",
                                          headers=billing_api.operator_headers)
        assert r.status_code == 200, r.text
        collected = r.json()
        assert collected["plan"] == "starter"
        trial = customer.body["customer"]["subscription"]
        assert collected["period_end"] == trial["trial_ends_at"]
        by_metric = {rec["metric"]: rec for rec in collected["records"]}
        assert by_metric["devices_max"]["value"] == 11
        assert by_metric["devices_max"]["limit"] == 10 and by_metric["devices_max"]["over_limit"] is True
        assert by_metric["mqtt_messages"]["value"] == 7 and by_metric["mqtt_messages"]["over_limit"] is False
        assert by_metric["storage_bytes_max"]["value"] > 0
        assert by_metric["telemetry_bytes_max"]["value"] >= 0
        assert by_metric["devices_online_max"]["value"] == 0

        # The customer reads its own usage; another customer cannot (404, as for an unknown id); nobody anonymous.
        r = await billing_api.client.get(f"/api/customers/{customer.customer_id}/usage", headers=customer.headers)
        assert r.status_code == 200
        assert {rec["metric"]: rec["value"] for rec in r.json()["records"]} == \
            {m: rec["value"] for m, rec in by_metric.items()}
        r = await billing_api.client.get(f"/api/customers/{customer.customer_id}/usage", headers=other.headers)
        assert r.status_code == 404 and r.json()["error"] == "not_found"
        assert (await billing_api.client.get(f"/api/customers/{customer.customer_id}/usage")).status_code == 401

        # Collecting again updates the period's rows in place; the customer without data gets no made-up zeros.
        before = await _records(billing_sessions, customer.customer_id)
        async with usage.PrometheusClient(f"http://127.0.0.1:{prometheus_port}") as client:
            run = await usage.collect_all(billing_sessions, client)
        assert run.failed == {}
        assert {c.customer_id for c in run.collected} == {customer.customer_id, other.customer_id}
        after = await _records(billing_sessions, customer.customer_id)
        assert [(r.id, r.metric) for r in after] == [(r.id, r.metric) for r in before]
        assert _counts(after) == _counts(before)
        assert all(a.recorded_at >= b.recorded_at for a, b in zip(after, before, strict=True))
        assert await _records(billing_sessions, other.customer_id) == []

        # The service's periodic collection does the same at once, then waits for its interval or the stop signal.
        stop = asyncio.Event()
        async with usage.PrometheusClient(f"http://127.0.0.1:{prometheus_port}") as client:
            task = asyncio.create_task(usage.run_forever(billing_sessions, client, stop, interval_seconds=3600))
            deadline = asyncio.get_running_loop().time() + 10
            while (await _records(billing_sessions, customer.customer_id))[0].recorded_at <= after[0].recorded_at:
                assert asyncio.get_running_loop().time() < deadline, "the periodic collection did not run"
                await asyncio.sleep(0.1)
            stop.set()
            await asyncio.wait_for(task, 5)
        assert _counts(await _records(billing_sessions, customer.customer_id)) == _counts(after)
        r = await billing_api.client.get(f"/api/customers/{other.customer_id}/usage", headers=other.headers)
        assert r.status_code == 200 and r.json()["records"] == []


        # A broker restart resets its counter: the period still counts every message, the 7 before and the 3
        # after (increase() across the reset; it extrapolates by at most half a scrape interval at each end).
        probe.stop()
        await asyncio.to_thread(sys_broker.mosquitto.stop)
        await asyncio.to_thread(sys_broker.mosquitto.start)
        probe = await sys_broker.connect(devices[0]["mqtt"]["username"], devices[0]["mqtt"]["password"])
        for _ in range(3):
            probe.publish(sensor_topic(devices[0]["uuid"], "temperature"), b'{"value": 21}')

        async def counted_after_restart() -> bool:
            return await value_of(server, f"iotistic_mqtt_messages_received_total{selector}") == 3

        assert await eventually(counted_after_restart)
        r = await billing_api.client.post(f"/api/operator/customers/{customer.customer_id}/usage/collect",
                                          headers=billing_api.operator_headers)
        assert r.status_code == 200, r.text
        by_metric = {rec["metric"]: rec for rec in r.json()["records"]}
        assert 10 <= by_metric["mqtt_messages"]["value"] <= 11, by_metric["mqtt_messages"]

async def test_prometheus_away_is_a_clear_502_and_writes_nothing(billing_api: BillingApi, billing_sessions: Any):
    customer = await billing_api.signup("starter")
    r = await billing_api.client.post(f"/api/operator/customers/{customer.customer_id}/usage/collect",
                                      headers=billing_api.operator_headers)
    assert r.status_code == 502, r.text
    assert r.json()["error"] == "prometheus_unavailable" and "unreachable" in r.json()["message"]
    assert await _records(billing_sessions, customer.customer_id) == []


async def test_collection_and_usage_routes_need_the_right_caller(billing_api: BillingApi):
    customer = await billing_api.signup("starter")
    path = f"/api/operator/customers/{customer.customer_id}/usage/collect"
    assert (await billing_api.client.post(path)).status_code == 401
    assert (await billing_api.client.post(path, headers=customer.headers)).status_code == 403
    r = await billing_api.client.post("/api/operator/customers/cffffffffffff/usage/collect",
                                      headers=billing_api.operator_headers)
    assert r.status_code == 404
    r = await billing_api.client.get(f"/api/customers/{customer.customer_id}/usage",
                                     params={"period_start": "2026-11-01T00:00:00"}, headers=customer.headers)
    assert r.status_code == 422 and "time zone" in r.json()["message"]
    r = await billing_api.client.get(f"/api/customers/{customer.customer_id}/usage", params={"limit": 0},
                                     headers=customer.headers)
    assert r.status_code == 422


async def test_the_service_collects_usage_from_the_start(billing_api: BillingApi, billing_settings: Any, caplog):
    """With PROMETHEUS_URL set, a starting service collects every customer's period at once (here Prometheus is
    away: the customer's collection fails, is logged, and the service runs on)."""
    import logging

    from iotistic.billing.app import create_app

    customer = await billing_api.signup("starter")
    caplog.set_level(logging.INFO, logger="iotistic.billing.services.usage")
    second = create_app(billing_settings)  # a second replica of the service, starting now
    async with second.router.lifespan_context(second):
        deadline = asyncio.get_running_loop().time() + 10
        while not any(f"usage collection for {customer.customer_id} failed" in r.getMessage()
                      for r in caplog.records):
            assert asyncio.get_running_loop().time() < deadline, caplog.text
            await asyncio.sleep(0.05)
