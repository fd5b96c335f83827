"""Subscription changes, wherever they come from (Stripe webhooks, operators), and what follows from them:
a new licence and a deployment job, in the caller's transaction so that either all of it happens or none."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from iotistic.billing import queue
from iotistic.billing.db import settings_of
from iotistic.billing.models import JobKind, Subscription, SubscriptionStatus
from iotistic.billing.services import licences
from iotistic.core.db import utcnow
from iotistic.core.plans import PLANS


async def get_for_update(session: AsyncSession, customer_id: str) -> Subscription:
    """The subscription, locked for this transaction (after the customer's row: the lock order of `queue`)."""
    await queue.lock_customer(session, customer_id)
    subscription = await session.scalar(
        select(Subscription).where(Subscription.customer_id == customer_id).with_for_update()
        .execution_options(populate_existing=True)
    )
    if subscription is None:
        raise LookupError(f"customer {customer_id} has no subscription")
    return subscription


async def change(
    session: AsyncSession,
    customer_id: str,
    *,
    plan: str | None = None,
    status: str | None = None,
    period_start: dt.datetime | None = None,
    period_end: dt.datetime | None = None,
    stripe_subscription_id: str | None = None,
    event_time: dt.datetime | None = None,
) -> bool:
    """Apply a change to the customer's subscription (flushed, not committed); True when anything changed.

    - `event_time` (the Stripe event's `created`): a change older than the newest one applied is ignored, so
      events arriving out of order never roll the subscription back.
    - a new plan, status or paid period issues a new licence (the period: a renewal must extend the licence) and
      queues an `apply` job, so the running instance receives it;
    - `canceled` schedules the instance's removal at the end of the grace period (a `remove` job due then, which
      supersedes any queued apply); a later reactivation clears it and queues an `apply` that supersedes it.
    """
    if plan is not None and plan not in PLANS:
        raise ValueError(f"unknown plan {plan!r}; plans are {', '.join(PLANS)}")
    if status is not None:
        status = SubscriptionStatus(status).value  # ValueError for anything else
    subscription = await get_for_update(session, customer_id)
    last_event = subscription.stripe_state_at
    if event_time is not None and last_event is not None and event_time < last_event:
        return False

    now = utcnow()
    was_canceled = subscription.status == SubscriptionStatus.canceled
    changed: set[str] = set()
    for field, value in (("plan", plan), ("status", status), ("current_period_start", period_start),
                         ("current_period_end", period_end), ("stripe_subscription_id", stripe_subscription_id)):
        if value is not None and getattr(subscription, field) != value:
            setattr(subscription, field, value)
            changed.add(field)
    if event_time is not None and (last_event is None or event_time > last_event):
        subscription.stripe_state_at = event_time
    if not changed:
        return False

    canceled = subscription.status == SubscriptionStatus.canceled
    if canceled and not was_canceled:
        subscription.cancel_effective_at = now + dt.timedelta(days=settings_of(session).cancel_grace_days)
    elif was_canceled and not canceled:
        subscription.cancel_effective_at = None
    subscription.updated_at = now
    await session.flush()

    if changed & {"plan", "status", "current_period_end"}:
        await licences.issue(session, customer_id)
        if canceled:
            # The instance keeps its licence until it is removed; changes while canceled (e.g. of the plan) are
            # recorded, and the removal stays the customer's newest job.
            if not was_canceled:
                await queue.enqueue(session, customer_id, JobKind.remove, run_after=subscription.cancel_effective_at)
        else:
            await queue.enqueue(session, customer_id, JobKind.apply)
    return True
