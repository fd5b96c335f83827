"""Usage records: what a customer used per billing period (customers see their own; operators anyone's), and an
operator route that collects a customer's current period from Prometheus now."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel
from sqlalchemy import select

from iotistic.billing.deps import Ctx, CurrentCaller, Operator, Session, visible_customer
from iotistic.billing.errors import ApiError, not_found
from iotistic.billing.models import Customer, UsageRecord
from iotistic.billing.services import usage

router = APIRouter(tags=["usage"])


class UsageRecordOut(BaseModel):
    period_start: dt.datetime
    period_end: dt.datetime
    metric: str
    value: float
    limit: float | None
    over_limit: bool
    recorded_at: dt.datetime


class UsageOut(BaseModel):
    customer_id: str
    records: list[UsageRecordOut]  # newest period first, then by metric


class CollectedOut(BaseModel):
    customer_id: str
    plan: str
    period_start: dt.datetime
    period_end: dt.datetime
    records: list[UsageRecordOut]


def _out(record: UsageRecord) -> UsageRecordOut:
    return UsageRecordOut(period_start=record.period_start, period_end=record.period_end, metric=record.metric,
                          value=record.value, limit=record.limit, over_limit=record.over_limit,
                          recorded_at=record.recorded_at)


async def _records(session: Session, customer_id: str, period_start: dt.datetime | None, limit: int
                   ) -> list[UsageRecord]:
    query = select(UsageRecord).where(UsageRecord.customer_id == customer_id)
    if period_start is not None:
        query = query.where(UsageRecord.period_start == period_start)
    query = query.order_by(UsageRecord.period_start.desc(), UsageRecord.metric).limit(limit)
    return list((await session.scalars(query)).all())


@router.get("/api/customers/{customer_id}/usage", response_model=UsageOut)
async def get_usage(
    customer_id: str, caller: CurrentCaller, session: Session,
    period_start: Annotated[dt.datetime | None, Query(description="Only the period starting at this time")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> UsageOut:
    """Usage per billing period: devices (highest count), MQTT messages, storage, each with the plan's limit and
    whether it was exceeded."""
    customer_id = visible_customer(caller, customer_id)
    if period_start is not None and period_start.tzinfo is None:
        raise ApiError(422, "validation_error", "period_start: give a time zone (e.g. 2026-11-01T00:00:00Z)")
    if await session.get(Customer, customer_id) is None:
        raise not_found("customer")
    return UsageOut(customer_id=customer_id,
                    records=[_out(r) for r in await _records(session, customer_id, period_start, limit)])


@router.post("/api/operator/customers/{customer_id}/usage/collect", response_model=CollectedOut)
async def collect_usage(customer_id: str, _: Operator, ctx: Ctx, session: Session) -> CollectedOut:
    """Measure the customer's current period from Prometheus now and store it (as the periodic collection does)."""
    if not ctx.settings.prometheus_url:
        raise ApiError(409, "not_configured", "usage collection needs PROMETHEUS_URL")
    if await session.get(Customer, customer_id) is None:
        raise not_found("customer")
    await session.close()  # no transaction of ours stays open while Prometheus answers
    try:
        async with usage.PrometheusClient(ctx.settings.prometheus_url) as prometheus:
            collected = await usage.collect_customer(ctx.sessions, prometheus, customer_id)
    except usage.PrometheusError as exc:
        raise ApiError(502, "prometheus_unavailable", str(exc)) from None
    except LookupError:
        raise not_found("customer") from None
    records = await _records(session, customer_id, collected.period.start, 1000)
    return CollectedOut(customer_id=customer_id, plan=collected.plan, period_start=collected.period.start,
                        period_end=collected.period.end, records=[_out(r) for r in records])
