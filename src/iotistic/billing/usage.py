"""Usage per billing period, without I/O: which period to measure, the PromQL that measures each metric from what
the instances' exporters export, and the records (with over-limit flags against the plan catalogue) the values
become.

Gauges are the highest value scraped in the period. The message count is the difference between scraped values
of the broker's counter (`max - min` of a series): exact up to the messages of one scrape interval at the period's
edges, which it leaves out rather than guesses. Only a series in which the broker restarted (the counter went
down) is measured with Prometheus' reset-aware `increase()`, which extrapolates to the window's edges: it may add
up to about one scrape interval's worth of messages, negligible over a month but visible over a minute.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from iotistic.core.plans import TRIAL_DAYS, Plan

# The exporter's metric names (iotistic.exporter.collector; billing never imports the exporter).
DEVICES_REGISTERED = "iotistic_devices_registered"
DEVICES_ONLINE = "iotistic_devices_online"
MQTT_MESSAGES_RECEIVED = "iotistic_mqtt_messages_received_total"
STORAGE_DATABASE_BYTES = "iotistic_storage_database_bytes"
STORAGE_TELEMETRY_BYTES = "iotistic_storage_telemetry_bytes"

DEFAULT_PERIOD_DAYS = 30  # a subscription without a Stripe period or a trial end (should not happen)


@dataclass(frozen=True)
class Period:
    start: dt.datetime
    end: dt.datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("a billing period needs timezone-aware times")
        if self.end <= self.start:
            raise ValueError("a billing period must end after it starts")


def current_period(*, created_at: dt.datetime, trial_ends_at: dt.datetime | None,
                   period_start: dt.datetime | None, period_end: dt.datetime | None) -> Period:
    """The period being billed: Stripe's current period once there is one, else the trial."""
    if period_start is not None and period_end is not None:
        return Period(period_start, period_end)
    if trial_ends_at is not None:
        return Period(min(created_at, trial_ends_at - dt.timedelta(days=TRIAL_DAYS)), trial_ends_at)
    return Period(created_at, created_at + dt.timedelta(days=DEFAULT_PERIOD_DAYS))


@dataclass(frozen=True)
class Evaluation:
    """Where Prometheus evaluates a period's queries: at its end (or now, while it runs), over a window that
    reaches back to its start."""

    at: dt.datetime
    window_seconds: int


def evaluation(period: Period, now: dt.datetime) -> Evaluation | None:
    """None when the period has not started yet (nothing to measure). The window is whole seconds (PromQL
    durations), at least one."""
    at = min(period.end, now)
    if at <= period.start:
        return None
    return Evaluation(at, max(1, int((at - period.start).total_seconds())))


def promql_string(value: str) -> str:
    """`value` as a PromQL double-quoted string literal (label values come from our database, but a query is
    built as data all the same: nothing in it can end the string or the selector)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{escaped}"'


def _highest(metric: str) -> Callable[[str, int], str]:
    # max(...) over series: a restarted exporter pod is a new series of the same instance.
    return lambda selector, window: f"max(max_over_time({metric}{selector}[{window}s]))"


def _counted(selector: str, window: int) -> str:
    c = f"{MQTT_MESSAGES_RECEIVED}{selector}[{window}s]"
    # Per series: the exact difference when the counter never went down in the window, else increase() (which
    # treats the drop as a broker restart). Summed over series (exporter pods one after another).
    return (f"sum((max_over_time({c}) - min_over_time({c})) and (resets({c}) == 0) "
            f"or increase({c}))")


@dataclass(frozen=True)
class UsageMetric:
    name: str  # usage_records.metric
    query: Callable[[str, int], str]  # (label selector, window in seconds) -> PromQL
    limit: Callable[[Plan], float | None]  # the plan's limit on it, None: unlimited or not limited
    whole: bool = False  # a count: rounded (increase() over a broker restart can be fractional)


def _unlimited(_plan: Plan) -> float | None:
    return None


def _max_devices(plan: Plan) -> float | None:
    return None if plan.max_devices is None else float(plan.max_devices)


METRICS: tuple[UsageMetric, ...] = (
    UsageMetric("devices_max", _highest(DEVICES_REGISTERED), _max_devices, whole=True),
    UsageMetric("devices_online_max", _highest(DEVICES_ONLINE), _unlimited, whole=True),
    UsageMetric("mqtt_messages", _counted, _unlimited, whole=True),
    UsageMetric("storage_bytes_max", _highest(STORAGE_DATABASE_BYTES), _unlimited),
    UsageMetric("telemetry_bytes_max", _highest(STORAGE_TELEMETRY_BYTES), _unlimited),
)


def queries(customer_id: str, window_seconds: int) -> dict[str, str]:
    """The PromQL of every usage metric for one customer's instance."""
    if window_seconds < 1:
        raise ValueError("the window must be at least one second")
    selector = "{customer=" + promql_string(customer_id) + "}"
    return {m.name: m.query(selector, window_seconds) for m in METRICS}


@dataclass(frozen=True)
class UsageValue:
    metric: str
    value: float
    limit: float | None
    over_limit: bool


def usage_values(plan: Plan, measured: Mapping[str, float | None]) -> list[UsageValue]:
    """The records for what was measured, flagged against the plan's limits. A metric Prometheus had no data for
    (None or absent) gets no record: unknown is not zero."""
    values = []
    for metric in METRICS:
        value = measured.get(metric.name)
        if value is None:
            continue
        if metric.whole:
            value = float(round(value))
        limit = metric.limit(plan)
        values.append(UsageValue(metric.name, value, limit, limit is not None and value > limit))
    return values
