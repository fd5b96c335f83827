"""Prometheus metrics of the VPN server, computed at scrape time from its status file and log."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from iotistic.vpn.connection_log import REASONS
from iotistic.vpn.service import VpnService


class VpnCollector(Collector):
    def __init__(self, service: VpnService) -> None:
        self.service = service

    def collect(self) -> Iterator[Metric]:
        connected = self.service.connected()
        clients = connected.clients
        yield GaugeMetricFamily("vpn_connected_devices", "Devices connected to the OpenVPN server",
                                value=len(clients))
        # Sums over the current sessions (a session's bytes leave the sum when it ends), hence gauges.
        yield GaugeMetricFamily("vpn_bytes_in", "Bytes received from connected devices in their current sessions",
                                value=sum(c.bytes_received for c in clients))
        yield GaugeMetricFamily("vpn_bytes_out", "Bytes sent to connected devices in their current sessions",
                                value=sum(c.bytes_sent for c in clients))
        yield GaugeMetricFamily("vpn_status_stale", "1 when the OpenVPN status file is missing or too old",
                                value=1 if connected.stale else 0)
        errors = CounterMetricFamily("vpn_connection_errors", "Failed device connection attempts seen in the "
                                     "OpenVPN log since this service started", labels=["reason"])
        counts = self.service.connection_errors()
        for reason in REASONS:
            errors.add_metric([reason], counts[reason])
        yield errors
