"""Usage logic without services: billing periods, where queries are evaluated, PromQL built as data, records and
over-limit flags against the plan catalogue."""

from __future__ import annotations

import datetime as dt

import pytest

from iotistic.billing.usage import (
    METRICS,
    Period,
    current_period,
    evaluation,
    promql_string,
    queries,
    usage_values,
)
from iotistic.core.plans import PLANS, TRIAL_DAYS

T0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


def test_the_period_is_stripes_once_there_is_one_else_the_trial() -> None:
    trial_end = T0 + dt.timedelta(days=TRIAL_DAYS)
    assert current_period(created_at=T0, trial_ends_at=trial_end, period_start=None, period_end=None) == \
        Period(T0, trial_end)
    paid = Period(T0 + dt.timedelta(days=20), T0 + dt.timedelta(days=50))
    assert current_period(created_at=T0, trial_ends_at=trial_end, period_start=paid.start,
                          period_end=paid.end) == paid
    # No trial and no Stripe period (should not happen): a month from signup rather than nothing.
    assert current_period(created_at=T0, trial_ends_at=None, period_start=None, period_end=None) == \
        Period(T0, T0 + dt.timedelta(days=30))


def test_a_period_must_be_ordered_and_aware() -> None:
    with pytest.raises(ValueError, match="end after"):
        Period(T0, T0)
    with pytest.raises(ValueError, match="timezone"):
        Period(T0.replace(tzinfo=None), T0 + dt.timedelta(days=1))


def test_a_running_period_is_measured_up_to_now_a_past_one_up_to_its_end() -> None:
    period = Period(T0, T0 + dt.timedelta(days=30))
    running = evaluation(period, T0 + dt.timedelta(days=2, seconds=5))
    assert running is not None
    assert running.at == T0 + dt.timedelta(days=2, seconds=5) and running.window_seconds == 2 * 86400 + 5
    past = evaluation(period, T0 + dt.timedelta(days=45))
    assert past is not None and past.at == period.end and past.window_seconds == 30 * 86400
    assert evaluation(period, T0 - dt.timedelta(hours=1)) is None  # not started: nothing to measure
    assert evaluation(period, T0) is None
    just_started = evaluation(period, T0 + dt.timedelta(milliseconds=300))
    assert just_started is not None and just_started.window_seconds == 1


def test_label_values_cannot_escape_the_promql_string() -> None:
    assert promql_string("c0123456789ab") == '"c0123456789ab"'
    assert promql_string('a"} or vector(1) #') == '"a\\"} or vector(1) #"'
    assert promql_string("back\\slash\nline") == '"back\\\\slash\\nline"'


def test_every_metric_has_one_query_for_that_customer_only() -> None:
    built = queries("c0123456789ab", 3600)
    assert set(built) == {m.name for m in METRICS}
    for promql in built.values():
        assert '{customer="c0123456789ab"}[3600s]' in promql
    assert built["devices_max"] == 'max(max_over_time(iotistic_devices_registered{customer="c0123456789ab"}[3600s]))'
    # Messages: exact differences of scraped values, increase() only for a series whose counter was reset.
    assert "resets(" in built["mqtt_messages"] and "increase(" in built["mqtt_messages"]
    with pytest.raises(ValueError):
        queries("c1", 0)


def test_devices_over_the_plans_maximum_are_flagged() -> None:
    starter = PLANS["starter"]  # max 10 devices
    values = {v.metric: v for v in usage_values(starter, {"devices_max": 11.0, "mqtt_messages": 1234.0})}
    assert values["devices_max"].limit == 10 and values["devices_max"].over_limit is True
    assert values["mqtt_messages"].limit is None and values["mqtt_messages"].over_limit is False
    at_limit = usage_values(starter, {"devices_max": 10.0})
    assert [(v.value, v.over_limit) for v in at_limit] == [(10.0, False)]


def test_enterprise_has_no_device_limit() -> None:
    (value,) = usage_values(PLANS["enterprise"], {"devices_max": 10_000.0})
    assert value.limit is None and value.over_limit is False


def test_metrics_without_data_get_no_record_and_counts_are_whole() -> None:
    values = usage_values(PLANS["professional"], {"devices_max": None, "mqtt_messages": 99.6,
                                                  "storage_bytes_max": 1.5e9})
    assert [(v.metric, v.value) for v in values] == [("mqtt_messages", 100.0), ("storage_bytes_max", 1.5e9)]
