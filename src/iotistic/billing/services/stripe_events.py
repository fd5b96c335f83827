"""What a Stripe event means for a customer's subscription: pure decisions, no I/O.

Stripe delivers events at least once and in no guaranteed order, and an event's payload is a snapshot of the
moment it was sent. So the caller re-reads the subscription from Stripe and hands both here; `decide` then
says which change to apply (through `subscriptions.change`), or why the event changes nothing:
- an event older (by its `created` time) than the newest one already applied changes nothing;
- an event about a subscription that is not the customer's current one changes nothing, except the two that
  start one (`checkout.session.completed`, `customer.subscription.created`): a customer who buys another plan
  moves to the new subscription, and the old one is to be cancelled in Stripe (`Change.replaces`);
- a subscription not paid for yet (`incomplete`) changes nothing; an unknown price changes nothing (and is
  reported: it is a configuration error, not the customer's).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from iotistic.core.plans import PLANS

HANDLED_TYPES = frozenset({
    "checkout.session.completed",
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "invoice.payment_succeeded",
    "invoice.payment_failed",
})
# The events that bring a new subscription into being; only these may replace the customer's current one.
_STARTING_TYPES = frozenset({"checkout.session.completed", "customer.subscription.created"})

# Stripe's subscription statuses in ours. `paused` (a trial ended without a payment method) is not paid for.
_STATUS = {
    "trialing": "trialing",
    "active": "active",
    "past_due": "past_due",
    "unpaid": "unpaid",
    "paused": "unpaid",
    "canceled": "canceled",
}
_NOT_STARTED = frozenset({"incomplete", "incomplete_expired"})
_LIVE = frozenset({"trialing", "active", "past_due"})
# A failed payment reports past_due unless the subscription is already in a worse state.
_WORSE_THAN_PAST_DUE = frozenset({"past_due", "unpaid", "canceled"})


def _timestamp(value: Any) -> dt.datetime | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return dt.datetime.fromtimestamp(int(value), dt.UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _str(value: Any) -> str | None:
    """A Stripe reference as an id: either the id itself or an expanded object carrying one."""
    if isinstance(value, str) and value:
        return value
    if isinstance(value, Mapping) and isinstance(value.get("id"), str):
        return str(value["id"])
    return None


def _metadata(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    value = obj.get("metadata")
    return value if isinstance(value, Mapping) else {}


@dataclass(frozen=True)
class PriceRef:
    id: str
    metadata_plan: str | None  # `plan` in the Price's metadata, when set in Stripe


@dataclass(frozen=True)
class SubscriptionFacts:
    """The parts of a Stripe subscription object billing acts on."""

    id: str
    status: str  # Stripe's status, e.g. active, past_due, incomplete
    stripe_customer_id: str | None
    customer_id: str | None  # ours, from the metadata set at checkout
    prices: tuple[PriceRef, ...]
    period_start: dt.datetime | None
    period_end: dt.datetime | None


def subscription_facts(obj: Mapping[str, Any]) -> SubscriptionFacts:
    """Parse a subscription. Periods sit on the items in current API versions and on the subscription in older
    ones; both are read."""
    sub_id = _str(obj.get("id"))
    if sub_id is None:
        raise ValueError("subscription without an id")
    items = obj.get("items")
    data = items.get("data") if isinstance(items, Mapping) else None
    prices: list[PriceRef] = []
    starts: list[dt.datetime] = []
    ends: list[dt.datetime] = []
    for item in data if isinstance(data, list) else []:
        if not isinstance(item, Mapping):
            continue
        price = item.get("price")
        price_id = _str(price)
        if price_id is not None:
            plan = _metadata(price).get("plan") if isinstance(price, Mapping) else None
            prices.append(PriceRef(price_id, plan if isinstance(plan, str) else None))
        for key, bucket in (("current_period_start", starts), ("current_period_end", ends)):
            moment = _timestamp(item.get(key))
            if moment is not None:
                bucket.append(moment)
    period_start = _timestamp(obj.get("current_period_start")) or (min(starts) if starts else None)
    period_end = _timestamp(obj.get("current_period_end")) or (max(ends) if ends else None)
    customer_id = _metadata(obj).get("customerId")
    return SubscriptionFacts(
        id=sub_id,
        status=str(obj.get("status") or ""),
        stripe_customer_id=_str(obj.get("customer")),
        customer_id=customer_id if isinstance(customer_id, str) else None,
        prices=tuple(prices),
        period_start=period_start,
        period_end=period_end,
    )


@dataclass(frozen=True)
class EventFacts:
    """The parts of a Stripe event billing acts on."""

    id: str
    type: str
    created: dt.datetime
    subscription_id: str | None  # the subscription the event is about, if any
    stripe_customer_id: str | None
    customer_id: str | None  # ours: checkout's client_reference_id or the customerId metadata
    subscription: SubscriptionFacts | None  # the payload itself, for customer.subscription.* events
    not_applicable: str | None = None  # why an event of a handled type has nothing to do with us


def event_facts(event: Mapping[str, Any]) -> EventFacts:
    """Parse a verified event. Raises ValueError when it lacks what every Stripe event has."""
    event_id = event.get("id")
    event_type = event.get("type")
    created = _timestamp(event.get("created"))
    if not isinstance(event_id, str) or not event_id or not isinstance(event_type, str) or created is None:
        raise ValueError("not a Stripe event: id, type and created are required")
    data = event.get("data")
    obj = data.get("object") if isinstance(data, Mapping) else None
    if not isinstance(obj, Mapping):
        raise ValueError("not a Stripe event: data.object is missing")

    subscription_id = stripe_customer = customer_id = not_applicable = None
    payload: SubscriptionFacts | None = None
    if event_type == "checkout.session.completed":
        subscription_id = _str(obj.get("subscription"))
        stripe_customer = _str(obj.get("customer"))
        reference = obj.get("client_reference_id") or _metadata(obj).get("customerId")
        customer_id = reference if isinstance(reference, str) else None
        if obj.get("mode") != "subscription":
            not_applicable = f"checkout session in {obj.get('mode')!r} mode, not a subscription"
    elif event_type.startswith("customer.subscription."):
        payload = subscription_facts(obj)
        subscription_id, stripe_customer, customer_id = payload.id, payload.stripe_customer_id, payload.customer_id
    elif event_type.startswith("invoice."):
        stripe_customer = _str(obj.get("customer"))
        subscription_id = _invoice_subscription(obj)
        if subscription_id is None:
            not_applicable = "invoice not for a subscription"
    return EventFacts(event_id, event_type, created, subscription_id, stripe_customer, customer_id, payload,
                      not_applicable)


def _invoice_subscription(invoice: Mapping[str, Any]) -> str | None:
    """An invoice's subscription: under `parent.subscription_details` now, top-level in older API versions."""
    parent = invoice.get("parent")
    if isinstance(parent, Mapping):
        details = parent.get("subscription_details")
        if isinstance(details, Mapping) and _str(details.get("subscription")):
            return _str(details.get("subscription"))
    return _str(invoice.get("subscription"))


@dataclass(frozen=True)
class CurrentState:
    """The customer's subscription as billing holds it."""

    plan: str
    status: str
    stripe_subscription_id: str | None
    stripe_state_at: dt.datetime | None


@dataclass(frozen=True)
class Change:
    """Arguments of `subscriptions.change`, plus the Stripe subscription this one replaces (to cancel there)."""

    plan: str | None
    status: str
    stripe_subscription_id: str
    period_start: dt.datetime | None
    period_end: dt.datetime | None
    event_time: dt.datetime
    replaces: str | None = None

    @property
    def outcome(self) -> str:
        what = f"status {self.status}" + (f", plan {self.plan}" if self.plan else "")
        moved = f" (replaces {self.replaces})" if self.replaces else ""
        return f"applied: subscription {self.stripe_subscription_id}: {what}{moved}"


@dataclass(frozen=True)
class Ignore:
    outcome: str


def price_plans(configured: Mapping[str, str | None]) -> dict[str, str]:
    """{price id: plan} from the configured `STRIPE_PRICE_<PLAN>` values ({plan: price id or None})."""
    return {price: plan for plan, price in configured.items() if price}


def plan_for(subscription: SubscriptionFacts, prices: Mapping[str, str]) -> str | None:
    """The plan a subscription pays for: the configured price ids first, then a `plan` in a price's metadata."""
    for price in subscription.prices:
        if price.id in prices:
            return prices[price.id]
    for price in subscription.prices:
        if price.metadata_plan in PLANS:
            return price.metadata_plan
    return None


def decide(event: EventFacts, current: CurrentState, subscription: SubscriptionFacts | None,
           prices: Mapping[str, str]) -> Change | Ignore:
    """What `event` changes, given billing's state and the subscription as Stripe has it now (None when the
    event names no subscription or Stripe no longer has it and the event carried none)."""
    if event.type not in HANDLED_TYPES:
        return Ignore(f"ignored: event type {event.type} is not handled")
    if event.not_applicable:
        return Ignore(f"ignored: {event.not_applicable}")
    if subscription is None:
        return Ignore(f"ignored: subscription {event.subscription_id or '(none)'} not found in Stripe")
    if current.stripe_state_at is not None and event.created < current.stripe_state_at:
        return Ignore(f"ignored: older ({event.created.isoformat()}) than the state already applied "
                      f"({current.stripe_state_at.isoformat()})")

    replaces = None
    if current.stripe_subscription_id not in (None, subscription.id):
        if event.type not in _STARTING_TYPES or subscription.status not in _LIVE:
            return Ignore(f"ignored: subscription {subscription.id} is not the customer's current one "
                          f"({current.stripe_subscription_id})")
        if current.status != "canceled":
            replaces = current.stripe_subscription_id

    if subscription.status in _NOT_STARTED:
        return Ignore(f"ignored: subscription {subscription.id} is {subscription.status} (not paid for yet)")
    status = _STATUS.get(subscription.status)
    if status is None:
        return Ignore(f"ignored: subscription {subscription.id} has unknown status {subscription.status!r}")
    if event.type == "invoice.payment_failed" and status not in _WORSE_THAN_PAST_DUE:
        # The failed invoice is itself the evidence, even if the re-read subscription has not turned yet.
        status = "past_due"

    plan = plan_for(subscription, prices)
    if plan is None and status != "canceled":
        # A cancelled subscription needs no plan: the instance is removed whatever it was.
        known = ", ".join(p.id for p in subscription.prices) or "(none)"
        return Ignore(f"ignored: unknown price {known} on subscription {subscription.id}: "
                      "set STRIPE_PRICE_<PLAN> or the price's metadata plan")
    return Change(plan=plan, status=status, stripe_subscription_id=subscription.id,
                  period_start=subscription.period_start, period_end=subscription.period_end,
                  event_time=event.created, replaces=replaces)
