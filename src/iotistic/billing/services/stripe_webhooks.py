"""Applying a verified Stripe event: once per event id, in one transaction with its effects.

Order of work, chosen so no database lock is held while Stripe is asked anything it need not be:
1. a quick look whether the event id was handled already (a redelivery: nothing more to do);
2. the subscription the event names is re-read from Stripe (the event's payload may be stale);
3. one transaction: the event row is inserted first (a concurrent redelivery collides on its primary key), the
   customer is found, their subscription row locked, `stripe_events.decide` consulted and the change applied
   through `subscriptions.change` (new licence, deployment job). Only cancelling a replaced subscription in
   Stripe happens inside it: if that fails nothing is recorded and Stripe redelivers the event later.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from iotistic.billing.models import Customer, StripeEvent
from iotistic.billing.services import subscriptions
from iotistic.billing.services.stripe_events import (
    HANDLED_TYPES,
    Change,
    CurrentState,
    EventFacts,
    Ignore,
    SubscriptionFacts,
    decide,
    event_facts,
    price_plans,
    subscription_facts,
)
from iotistic.billing.settings import BillingSettings
from iotistic.billing.stripe_gateway import StripeGateway
from iotistic.core.plans import PLANS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WebhookResult:
    event_id: str
    outcome: str
    duplicate: bool = False


def configured_prices(settings: BillingSettings) -> dict[str, str]:
    return price_plans({plan: settings.stripe_price_for(plan) for plan in PLANS})


async def _fresh_subscription(gateway: StripeGateway, facts: EventFacts) -> SubscriptionFacts | None:
    if facts.type not in HANDLED_TYPES or facts.not_applicable or facts.subscription_id is None:
        return None
    current = await gateway.retrieve_subscription(facts.subscription_id)
    if current is None:
        # Stripe no longer has it; a subscription event's own snapshot is the best left.
        return facts.subscription
    return subscription_facts(current)


async def _find_customer(session: AsyncSession, facts: EventFacts, fresh: SubscriptionFacts | None
                         ) -> Customer | Ignore:
    """Ours by the Stripe customer id stored at checkout, else by the id we put in the checkout's
    client_reference_id / metadata (then the Stripe customer is linked to it). The customer's row is locked:
    it is the first lock every writer of a customer's billing state takes (see `queue`)."""
    stripe_customer = facts.stripe_customer_id or (fresh.stripe_customer_id if fresh else None)
    if stripe_customer:
        customer = await session.scalar(select(Customer).where(Customer.stripe_customer_id == stripe_customer)
                                       .with_for_update())
        if customer is not None:
            return customer
    reference = facts.customer_id or (fresh.customer_id if fresh else None)
    customer = await session.get(Customer, reference, with_for_update=True) if reference else None
    if customer is None:
        return Ignore(f"ignored: unknown customer (Stripe customer {stripe_customer or '-'}, "
                      f"reference {reference or '-'})")
    if stripe_customer:
        if customer.stripe_customer_id not in (None, stripe_customer):
            return Ignore(f"ignored: customer {customer.id} belongs to Stripe customer "
                          f"{customer.stripe_customer_id}, not {stripe_customer}")
        customer.stripe_customer_id = stripe_customer
    return customer


async def _apply(session: AsyncSession, gateway: StripeGateway, facts: EventFacts,
                 fresh: SubscriptionFacts | None, prices: dict[str, str]) -> str:
    if facts.type not in HANDLED_TYPES:
        return f"ignored: event type {facts.type} is not handled"
    found = await _find_customer(session, facts, fresh)
    if isinstance(found, Ignore):
        return found.outcome
    try:
        row = await subscriptions.get_for_update(session, found.id)
    except LookupError:
        return f"ignored: customer {found.id} has no subscription"
    state = CurrentState(plan=row.plan, status=row.status, stripe_subscription_id=row.stripe_subscription_id,
                         stripe_state_at=row.stripe_state_at)
    decision = decide(facts, state, fresh, prices)
    if isinstance(decision, Ignore):
        return decision.outcome
    assert isinstance(decision, Change)
    if decision.replaces:
        # The customer bought another plan: stop billing the old subscription before moving to the new one.
        await gateway.cancel_subscription(decision.replaces)
    changed = await subscriptions.change(
        session, found.id, plan=decision.plan, status=decision.status, period_start=decision.period_start,
        period_end=decision.period_end, stripe_subscription_id=decision.stripe_subscription_id,
        event_time=decision.event_time,
    )
    return f"{decision.outcome} (customer {found.id})" if changed else f"no change (customer {found.id})"


async def handle_event(sessions: async_sessionmaker[AsyncSession], gateway: StripeGateway,
                       settings: BillingSettings, event: dict[str, Any]) -> WebhookResult:
    """Apply a verified event. ValueError: not a Stripe event. StripeGatewayError: Stripe could not be asked;
    nothing was recorded, so Stripe's redelivery will try again."""
    facts = event_facts(event)
    async with sessions() as session:
        seen = await session.get(StripeEvent, facts.id)
        if seen is not None:
            return WebhookResult(facts.id, seen.outcome, duplicate=True)

    fresh = await _fresh_subscription(gateway, facts)

    async with sessions() as session:
        record = StripeEvent(id=facts.id, type=facts.type, created=facts.created, outcome="processing")
        session.add(record)
        try:
            await session.flush()
        except IntegrityError:
            # The same event is being (or was just) handled by another delivery.
            await session.rollback()
            return WebhookResult(facts.id, "handled by a concurrent delivery", duplicate=True)
        try:
            record.outcome = await _apply(session, gateway, facts, fresh, configured_prices(settings))
            await session.commit()
        except IntegrityError:
            await session.rollback()
            # e.g. a Stripe subscription id already held by another customer: a data problem, not Stripe's.
            # Record it (Stripe must not redeliver forever) and say so loudly.
            log.error("Stripe event %s (%s) conflicts with billing data; recorded, not applied", facts.id,
                      facts.type)
            async with sessions() as retry:
                retry.add(StripeEvent(id=facts.id, type=facts.type, created=facts.created,
                                      outcome="ignored: conflicts with another customer's data"))
                await retry.commit()
            return WebhookResult(facts.id, "ignored: conflicts with another customer's data")
    if record.outcome.startswith("ignored: unknown"):
        # Not an error for Stripe (it would retry for days), but someone should look at it.
        log.warning("Stripe event %s (%s): %s", facts.id, facts.type, record.outcome)
    else:
        log.info("Stripe event %s (%s): %s", facts.id, facts.type, record.outcome)
    return WebhookResult(facts.id, record.outcome)
