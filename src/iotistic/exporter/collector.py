"""The exporter's Prometheus collector: values read at scrape time, briefly cached.

A custom collector rather than gauges updated by a background loop: a scrape always shows what the database and
the broker say at that moment (give or take the cache), and nothing runs while nobody scrapes. Every series
carries `customer="<id>"`, so one Prometheus scraping many instances can tell them apart without relabelling.
A source that cannot be read is left out of the scrape (not reported as zero) and flagged by
`iotistic_exporter_source_up{source=...} 0`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from iotistic.exporter.database import DatabaseUsage

# Metric names (the billing service's usage queries use the same names; the exporter never imports billing).
DEVICES_REGISTERED = "iotistic_devices_registered"
DEVICES_ONLINE = "iotistic_devices_online"
MQTT_MESSAGES_RECEIVED = "iotistic_mqtt_messages_received"  # a counter: exposed as ..._total
STORAGE_DATABASE_BYTES = "iotistic_storage_database_bytes"
STORAGE_TELEMETRY_BYTES = "iotistic_storage_telemetry_bytes"
SOURCE_UP = "iotistic_exporter_source_up"
SAMPLE_SECONDS = "iotistic_exporter_sample_seconds"


@dataclass(frozen=True)
class UsageSample:
    database: DatabaseUsage | None  # None: the database could not be read
    mqtt_messages_received: float | None  # None: no broker account configured, or the broker could not be read
    mqtt_configured: bool  # an MQTT account is configured (without one the broker is not asked)
    seconds: float  # how long reading the sources took


def families(customer_id: str, sample: UsageSample) -> Iterator[Metric]:
    """The metric families of one sample (pure)."""
    label, value = ["customer"], [customer_id]
    db = sample.database
    if db is not None:
        yield _gauge(DEVICES_REGISTERED, "Devices registered in the instance (every status)", customer_id,
                     db.devices_total)
        yield _gauge(DEVICES_ONLINE, "Devices online by the cloud API's rule", customer_id, db.devices_online)
        yield _gauge(STORAGE_DATABASE_BYTES, "Size of the instance's database", customer_id, db.database_bytes)
        if db.telemetry_bytes is not None:
            yield _gauge(STORAGE_TELEMETRY_BYTES, "Size of the telemetry table (partitions and indexes included)",
                         customer_id, db.telemetry_bytes)
    if sample.mqtt_messages_received is not None:
        counter = CounterMetricFamily(MQTT_MESSAGES_RECEIVED,
                                      "MQTT PUBLISH messages the broker received since it started", labels=label)
        counter.add_metric(value, sample.mqtt_messages_received)
        yield counter
    up = GaugeMetricFamily(SOURCE_UP, "Whether the last read of a source succeeded (mqtt only when an MQTT "
                           "account is configured)", labels=["customer", "source"])
    up.add_metric([customer_id, "database"], 1.0 if db is not None else 0.0)
    if sample.mqtt_configured:
        up.add_metric([customer_id, "mqtt"], 1.0 if sample.mqtt_messages_received is not None else 0.0)
    yield up
    yield _gauge(SAMPLE_SECONDS, "Time the last read of the sources took", customer_id, sample.seconds)


def _gauge(name: str, documentation: str, customer_id: str, number: float) -> GaugeMetricFamily:
    gauge = GaugeMetricFamily(name, documentation, labels=["customer"])
    gauge.add_metric([customer_id], number)
    return gauge


class UsageCollector(Collector):
    """Calls `sample()` at scrape time, at most once per `cache_seconds`; concurrent scrapes share one call."""

    def __init__(self, customer_id: str, sample: Callable[[], UsageSample], *, cache_seconds: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.customer_id = customer_id
        self._sample = sample
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._last: UsageSample | None = None
        self._last_at = 0.0

    def current(self) -> UsageSample:
        with self._lock:  # the HTTP server answers each scrape in its own thread
            now = self._clock()
            if self._last is None or now - self._last_at >= self._cache_seconds:
                self._last = self._sample()
                self._last_at = self._clock()
            return self._last

    def collect(self) -> Iterator[Metric]:
        yield from families(self.customer_id, self.current())
