"""The collector without services: what a sample becomes in the exposition format, the cache, the settings."""

from __future__ import annotations

import threading
import time

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from iotistic.core.settings import ConfigError
from iotistic.exporter.collector import UsageCollector, UsageSample
from iotistic.exporter.database import DatabaseUsage
from iotistic.exporter.settings import load_exporter_settings


def _sample(*, database: DatabaseUsage | None = DatabaseUsage(7, 3, 1_000_000, 250_000),
            mqtt: float | None = 42.0, configured: bool = True) -> UsageSample:
    return UsageSample(database=database, mqtt_messages_received=mqtt, mqtt_configured=configured, seconds=0.01)


def _scrape(collector: UsageCollector) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    text = generate_latest(registry).decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def _c(**extra: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted({"customer": "c0123456789ab", **extra}.items()))


def test_every_value_is_exported_with_the_customer_label() -> None:
    got = _scrape(UsageCollector("c0123456789ab", _sample, cache_seconds=0))
    assert got[("iotistic_devices_registered", _c())] == 7
    assert got[("iotistic_devices_online", _c())] == 3
    assert got[("iotistic_storage_database_bytes", _c())] == 1_000_000
    assert got[("iotistic_storage_telemetry_bytes", _c())] == 250_000
    # A counter in Prometheus terms: exposed with the _total suffix.
    assert got[("iotistic_mqtt_messages_received_total", _c())] == 42
    assert got[("iotistic_exporter_source_up", _c(source="database"))] == 1
    assert got[("iotistic_exporter_source_up", _c(source="mqtt"))] == 1
    assert all(dict(labels)["customer"] == "c0123456789ab" for _name, labels in got)


def test_a_failed_source_is_left_out_and_flagged_not_reported_as_zero() -> None:
    got = _scrape(UsageCollector("c1", lambda: _sample(database=None, mqtt=None), cache_seconds=0))
    names = {name for name, _labels in got}
    assert not names & {"iotistic_devices_registered", "iotistic_devices_online", "iotistic_storage_database_bytes",
                        "iotistic_mqtt_messages_received_total"}
    assert got[("iotistic_exporter_source_up", (("customer", "c1"), ("source", "database")))] == 0
    assert got[("iotistic_exporter_source_up", (("customer", "c1"), ("source", "mqtt")))] == 0


def test_without_an_mqtt_account_the_broker_is_not_a_source() -> None:
    got = _scrape(UsageCollector("c1", lambda: _sample(mqtt=None, configured=False), cache_seconds=0))
    assert ("iotistic_exporter_source_up", (("customer", "c1"), ("source", "mqtt"))) not in got
    assert ("iotistic_mqtt_messages_received_total", (("customer", "c1"),)) not in got


def test_sqlite_without_dbstat_leaves_out_only_the_telemetry_size() -> None:
    got = _scrape(UsageCollector("c1", lambda: _sample(database=DatabaseUsage(1, 0, 4096, None)), cache_seconds=0))
    assert got[("iotistic_storage_database_bytes", (("customer", "c1"),))] == 4096
    assert ("iotistic_storage_telemetry_bytes", (("customer", "c1"),)) not in got


def test_scrapes_within_the_cache_time_share_one_sample() -> None:
    now = [100.0]
    calls = []

    def sample() -> UsageSample:
        calls.append(now[0])
        return _sample(mqtt=float(len(calls)))

    collector = UsageCollector("c1", sample, cache_seconds=5, clock=lambda: now[0])
    assert _scrape(collector)[("iotistic_mqtt_messages_received_total", (("customer", "c1"),))] == 1
    now[0] += 4.9
    assert _scrape(collector)[("iotistic_mqtt_messages_received_total", (("customer", "c1"),))] == 1
    now[0] += 0.2
    assert _scrape(collector)[("iotistic_mqtt_messages_received_total", (("customer", "c1"),))] == 2
    assert calls == [100.0, pytest.approx(105.1)]


def test_a_burst_of_concurrent_scrapes_reads_the_sources_once() -> None:
    calls = []

    def slow_sample() -> UsageSample:
        calls.append(1)
        time.sleep(0.2)
        return _sample()

    collector = UsageCollector("c1", slow_sample, cache_seconds=5)
    threads = [threading.Thread(target=collector.current) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1


def test_settings_want_both_mqtt_credentials_or_neither() -> None:
    with pytest.raises(ConfigError, match="EXPORTER_MQTT_USERNAME and EXPORTER_MQTT_PASSWORD"):
        load_exporter_settings(EXPORTER_MQTT_USERNAME="exporter")
    settings = load_exporter_settings(EXPORTER_MQTT_USERNAME="exporter", EXPORTER_MQTT_PASSWORD="p" * 20)
    assert settings.mqtt_password is not None and "p" * 20 not in repr(settings)  # a secret, never printed


@pytest.mark.parametrize("bad", ["", "c 1", 'c"1', "x" * 129])
def test_settings_refuse_a_customer_id_that_cannot_be_a_plain_label(bad: str) -> None:
    with pytest.raises(ConfigError, match="CUSTOMER_ID"):
        load_exporter_settings(CUSTOMER_ID=bad)
