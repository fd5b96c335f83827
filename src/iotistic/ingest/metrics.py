"""Ingest's counters for Prometheus, read from the running pipeline at scrape time."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from iotistic.ingest.pipeline import IngestStats


class IngestCollector(Collector):
    def __init__(self, stats: Callable[[], IngestStats | None]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        stats = self._stats()
        if stats is None:  # not started (yet)
            return
        yield CounterMetricFamily("iotistic_ingest_messages_received", "MQTT messages ingest received",
                                  value=stats.received)
        yield CounterMetricFamily("iotistic_ingest_messages_stored", "Messages committed to the database",
                                  value=stats.stored_messages)
        yield CounterMetricFamily("iotistic_ingest_readings_stored", "Sensor readings committed",
                                  value=stats.stored_readings)
        rejected = CounterMetricFamily("iotistic_ingest_messages_rejected", "Messages dropped, by reason",
                                       labels=["reason"])
        for reason, count in sorted(stats.rejected.items()):
            rejected.add_metric([reason], count)
        yield rejected
        yield CounterMetricFamily("iotistic_ingest_batches", "Batches committed", value=stats.batches)
        yield CounterMetricFamily("iotistic_ingest_write_failures", "Batch writes that failed and were retried",
                                  value=stats.write_failures)
        yield GaugeMetricFamily("iotistic_ingest_last_batch_seconds", "Time the last batch took to commit",
                                value=stats.last_batch_seconds)
