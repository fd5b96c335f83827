"""Usage collection: ask Prometheus (PROMETHEUS_URL, which scrapes every instance's exporter) what each customer
used in its billing period, and keep it as `usage_records`, one row per customer, period and metric.

Collecting again updates the period's rows in place (the unique key is customer, period start and metric), so
the collector can run as often as wanted and the newest numbers of a running period simply replace the older
ones. No transaction is open while Prometheus answers: the subscription is read, Prometheus is asked, then the
rows are written in one short transaction.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx
from sqlalchemy import or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from iotistic.billing.models import Customer, Subscription, SubscriptionStatus, UsageRecord
from iotistic.billing.usage import Period, UsageValue, current_period, evaluation, queries, usage_values
from iotistic.core.db import utcnow
from iotistic.core.plans import get_plan

log = logging.getLogger(__name__)


class PrometheusError(Exception):
    """Prometheus could not answer; the message says why (no credentials in it)."""


class PrometheusClient:
    """Instant queries over Prometheus' HTTP API (`GET /api/v1/query`)."""

    def __init__(self, base_url: str, *, timeout: float = 30.0, transport: httpx.AsyncBaseTransport | None = None
                 ) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = httpx.AsyncClient(base_url=self.base_url, timeout=timeout, transport=transport)

    async def query(self, promql: str, at: dt.datetime) -> float | None:
        """The value of a query that yields at most one series; None when it yields none (no data)."""
        try:
            r = await self._client.get("/api/v1/query", params={"query": promql, "time": f"{at.timestamp():.3f}"})
        except httpx.HTTPError as exc:
            raise PrometheusError(f"Prometheus at {self.base_url} unreachable: {type(exc).__name__}") from None
        try:
            body: dict[str, Any] = r.json()
        except ValueError:
            raise PrometheusError(f"Prometheus answered {r.status_code} without JSON") from None
        if r.status_code != 200 or body.get("status") != "success":
            raise PrometheusError(f"Prometheus refused the query ({r.status_code}): {body.get('error', '?')}")
        data = body.get("data") or {}
        result = data.get("result") or []
        if data.get("resultType") != "vector" or len(result) > 1:
            raise PrometheusError(f"expected at most one series, got {data.get('resultType')} of {len(result)}")
        if not result:
            return None
        value = float(result[0]["value"][1])
        return value if math.isfinite(value) else None

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> PrometheusClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()


@dataclass(frozen=True)
class Collected:
    customer_id: str
    plan: str
    period: Period
    values: list[UsageValue]  # what was recorded (metrics without data are not)


async def _billing_state(session: AsyncSession, customer_id: str) -> tuple[Customer, Subscription]:
    customer = await session.get(Customer, customer_id)
    subscription = await session.get(Subscription, customer_id)
    if customer is None or subscription is None:
        raise LookupError(f"customer {customer_id} has no subscription")
    return customer, subscription


def _period_of(customer: Customer, subscription: Subscription) -> Period:
    return current_period(created_at=customer.created_at, trial_ends_at=subscription.trial_ends_at,
                          period_start=subscription.current_period_start, period_end=subscription.current_period_end)


async def collect_customer(sessions: async_sessionmaker[AsyncSession], prometheus: PrometheusClient,
                           customer_id: str, *, period: Period | None = None, now: dt.datetime | None = None
                           ) -> Collected:
    """Measure one customer's period (default: its current one) and upsert its usage records. Limits are those
    of the plan the customer is on now. LookupError for an unknown customer; PrometheusError when Prometheus
    cannot answer (nothing is written then)."""
    now = now or utcnow()
    async with sessions() as session:
        customer, subscription = await _billing_state(session, customer_id)
        plan_name = subscription.plan
        period = period or _period_of(customer, subscription)
    where = evaluation(period, now)
    if where is None:
        return Collected(customer_id, plan_name, period, [])
    promql = queries(customer_id, where.window_seconds)
    measured = dict(zip(promql, await asyncio.gather(*(prometheus.query(q, where.at) for q in promql.values())),
                        strict=True))
    values = usage_values(get_plan(plan_name), measured)
    if values:
        async with sessions() as session, session.begin():
            await _upsert(session, customer_id, period, values, now)
    return Collected(customer_id, plan_name, period, values)


async def _upsert(session: AsyncSession, customer_id: str, period: Period, values: list[UsageValue],
                  now: dt.datetime) -> None:
    rows = [{"customer_id": customer_id, "period_start": period.start, "period_end": period.end, "metric": v.metric,
             "value": v.value, "limit": v.limit, "over_limit": v.over_limit, "recorded_at": now} for v in values]
    dialect = session.get_bind().dialect.name
    stmt = (postgresql.insert(UsageRecord) if dialect == "postgresql" else sqlite.insert(UsageRecord)).values(rows)
    excluded = stmt.excluded
    await session.execute(stmt.on_conflict_do_update(
        index_elements=["customer_id", "period_start", "metric"],
        set_={name: excluded[name] for name in ("period_end", "value", "limit", "over_limit", "recorded_at")},
    ))


async def billable_customers(session: AsyncSession, now: dt.datetime) -> list[str]:
    """Customers with an instance to measure: every subscription but a cancelled one past its grace period."""
    rows = await session.scalars(
        select(Subscription.customer_id).where(or_(
            Subscription.status != SubscriptionStatus.canceled,
            Subscription.cancel_effective_at.is_(None),
            Subscription.cancel_effective_at > now,
        )).order_by(Subscription.customer_id))
    return list(rows)


@dataclass(frozen=True)
class CollectionRun:
    collected: list[Collected]
    failed: dict[str, str]  # customer id -> why


async def collect_all(sessions: async_sessionmaker[AsyncSession], prometheus: PrometheusClient, *,
                      now: dt.datetime | None = None) -> CollectionRun:
    """Every billable customer's current period; one customer's failure does not stop the others."""
    now = now or utcnow()
    async with sessions() as session:
        customer_ids = await billable_customers(session, now)
    collected, failed = [], {}
    for customer_id in customer_ids:
        try:
            collected.append(await collect_customer(sessions, prometheus, customer_id, now=now))
        except (PrometheusError, LookupError) as exc:
            failed[customer_id] = str(exc)
            log.warning("usage collection for %s failed: %s", customer_id, exc)
    return CollectionRun(collected, failed)


async def run_forever(sessions: async_sessionmaker[AsyncSession], prometheus: PrometheusClient, stop: asyncio.Event,
                      *, interval_seconds: float) -> None:
    """Collect every `interval_seconds` until `stop` is set (inside `iotistic billing serve` when PROMETHEUS_URL
    is configured)."""
    while not stop.is_set():
        try:
            run = await collect_all(sessions, prometheus)
            over = sum(v.over_limit for c in run.collected for v in c.values)
            log.info("usage collected for %d customers (%d failed, %d values over their plan's limit)",
                     len(run.collected), len(run.failed), over)
        except Exception as exc:  # database away: try again next round
            log.warning("usage collection failed: %s: %s", type(exc).__name__, str(exc)[:200])
        try:
            await asyncio.wait_for(stop.wait(), interval_seconds)
        except TimeoutError:
            pass
