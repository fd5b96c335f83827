"""The pure decisions on Stripe events: no database, no Stripe."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from iotistic.billing.services.stripe_events import (
    Change,
    CurrentState,
    Ignore,
    decide,
    event_facts,
    plan_for,
    price_plans,
    subscription_facts,
)

T0 = 1_800_000_000
PRICES = price_plans({"starter": "price_starter", "professional": "price_pro", "enterprise": None})


def at(seconds: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


def subscription(sub_id: str = "sub_1", *, status: str = "active", price: str = "price_pro",
                 price_metadata: dict[str, str] | None = None, legacy_periods: bool = False) -> dict[str, Any]:
    item: dict[str, Any] = {"id": "si_1", "price": {"id": price, "metadata": price_metadata or {}}}
    sub: dict[str, Any] = {"id": sub_id, "object": "subscription", "status": status, "customer": "cus_1",
                           "metadata": {"customerId": "c000000000001"}, "items": {"data": [item]}}
    if legacy_periods:
        sub.update(current_period_start=T0, current_period_end=T0 + 30 * 86400)
    else:
        item.update(current_period_start=T0, current_period_end=T0 + 30 * 86400)
    return sub


def event(type_: str, obj: dict[str, Any], created: int = T0) -> dict[str, Any]:
    return {"id": f"evt_{type_}_{created}", "type": type_, "created": created, "data": {"object": obj}}


def checkout_session(sub_id: str = "sub_1", mode: str = "subscription") -> dict[str, Any]:
    return {"id": "cs_1", "object": "checkout.session", "mode": mode, "customer": "cus_1",
            "client_reference_id": "c000000000001", "subscription": sub_id}


def invoice(sub_id: str = "sub_1", *, legacy: bool = False) -> dict[str, Any]:
    if legacy:
        return {"id": "in_1", "object": "invoice", "customer": "cus_1", "subscription": sub_id}
    return {"id": "in_1", "object": "invoice", "customer": "cus_1",
            "parent": {"type": "subscription_details", "subscription_details": {"subscription": sub_id}}}


TRIAL = CurrentState(plan="starter", status="trialing", stripe_subscription_id=None, stripe_state_at=None)


def on(state: CurrentState, raw_event: dict[str, Any], fresh: dict[str, Any] | None) -> Change | Ignore:
    return decide(event_facts(raw_event), state, subscription_facts(fresh) if fresh else None, PRICES)


def test_checkout_completed_moves_a_trial_to_the_paid_plan_with_its_period() -> None:
    decision = on(TRIAL, event("checkout.session.completed", checkout_session()), subscription())
    assert decision == Change(plan="professional", status="active", stripe_subscription_id="sub_1",
                              period_start=at(T0), period_end=at(T0 + 30 * 86400), event_time=at(T0))


def test_event_facts_find_customer_and_subscription_in_each_event_shape() -> None:
    facts = event_facts(event("checkout.session.completed", checkout_session("sub_9")))
    assert (facts.subscription_id, facts.stripe_customer_id, facts.customer_id) == ("sub_9", "cus_1",
                                                                                     "c000000000001")
    facts = event_facts(event("customer.subscription.updated", subscription("sub_8")))
    assert (facts.subscription_id, facts.customer_id) == ("sub_8", "c000000000001")
    assert facts.subscription is not None and facts.subscription.status == "active"
    for legacy in (False, True):
        facts = event_facts(event("invoice.payment_failed", invoice("sub_7", legacy=legacy)))
        assert (facts.subscription_id, facts.stripe_customer_id) == ("sub_7", "cus_1")


def test_periods_are_read_from_items_or_from_the_subscription() -> None:
    for legacy in (False, True):
        facts = subscription_facts(subscription(legacy_periods=legacy))
        assert (facts.period_start, facts.period_end) == (at(T0), at(T0 + 30 * 86400))


def test_configured_price_wins_over_metadata_and_metadata_is_the_fallback() -> None:
    assert plan_for(subscription_facts(subscription(price="price_pro", price_metadata={"plan": "enterprise"})),
                    PRICES) == "professional"
    assert plan_for(subscription_facts(subscription(price="price_x", price_metadata={"plan": "enterprise"})),
                    PRICES) == "enterprise"
    assert plan_for(subscription_facts(subscription(price="price_x", price_metadata={"plan": "gold"})),
                    PRICES) is None


def test_unknown_price_is_ignored_with_a_reason_naming_it() -> None:
    decision = on(TRIAL, event("customer.subscription.updated", subscription(price="price_mystery")),
                  subscription(price="price_mystery"))
    assert isinstance(decision, Ignore)
    assert "unknown price price_mystery" in decision.outcome


def test_an_event_older_than_the_applied_state_is_ignored_and_a_newer_one_applies() -> None:
    state = CurrentState("professional", "active", "sub_1", stripe_state_at=at(T0 + 60))
    older = on(state, event("customer.subscription.updated", subscription(), created=T0), subscription())
    assert isinstance(older, Ignore) and older.outcome.startswith("ignored: older")
    newer = on(state, event("customer.subscription.updated", subscription(), created=T0 + 61),
               subscription(price="price_starter"))
    assert isinstance(newer, Change) and newer.plan == "starter" and newer.event_time == at(T0 + 61)


def test_the_same_second_is_not_older_so_the_fresh_subscription_decides() -> None:
    # Stripe's `created` has one-second resolution: created and updated often share it. The re-read
    # subscription (not the event's snapshot) is what gets applied, so applying it again is harmless.
    state = CurrentState("professional", "active", "sub_1", stripe_state_at=at(T0))
    decision = on(state, event("customer.subscription.created", subscription(price="price_starter"), created=T0),
                  subscription(price="price_pro"))
    assert isinstance(decision, Change) and decision.plan == "professional"


def test_payment_failure_reports_past_due_even_before_stripe_turns_the_subscription() -> None:
    state = CurrentState("professional", "active", "sub_1", stripe_state_at=at(T0 - 10))
    decision = on(state, event("invoice.payment_failed", invoice()), subscription(status="active"))
    assert isinstance(decision, Change) and decision.status == "past_due"
    worse = on(state, event("invoice.payment_failed", invoice()), subscription(status="unpaid"))
    assert isinstance(worse, Change) and worse.status == "unpaid"


def test_payment_success_applies_the_subscription_status() -> None:
    state = CurrentState("professional", "past_due", "sub_1", stripe_state_at=at(T0 - 10))
    decision = on(state, event("invoice.payment_succeeded", invoice()), subscription(status="active"))
    assert isinstance(decision, Change) and decision.status == "active"


def test_deletion_cancels_even_when_the_price_is_no_longer_known() -> None:
    state = CurrentState("professional", "active", "sub_1", stripe_state_at=None)
    gone = subscription(status="canceled", price="price_retired")
    decision = on(state, event("customer.subscription.deleted", gone), gone)
    assert isinstance(decision, Change) and decision.status == "canceled" and decision.plan is None


def test_a_new_checkout_replaces_the_current_subscription_and_says_which_to_cancel() -> None:
    state = CurrentState("starter", "active", "sub_old", stripe_state_at=at(T0 - 100))
    decision = on(state, event("checkout.session.completed", checkout_session("sub_new")),
                  subscription("sub_new", price="price_pro"))
    assert isinstance(decision, Change)
    assert (decision.stripe_subscription_id, decision.replaces, decision.plan) == ("sub_new", "sub_old",
                                                                                  "professional")


def test_after_a_cancellation_a_new_subscription_replaces_nothing() -> None:
    state = CurrentState("starter", "canceled", "sub_old", stripe_state_at=at(T0 - 100))
    decision = on(state, event("customer.subscription.created", subscription("sub_new")), subscription("sub_new"))
    assert isinstance(decision, Change) and decision.replaces is None and decision.status == "active"


def test_events_about_a_replaced_subscription_change_nothing() -> None:
    state = CurrentState("professional", "active", "sub_new", stripe_state_at=at(T0 - 100))
    for type_, obj in (("customer.subscription.deleted", subscription("sub_old", status="canceled")),
                       ("customer.subscription.updated", subscription("sub_old")),
                       ("invoice.payment_failed", invoice("sub_old"))):
        decision = on(state, event(type_, obj), subscription("sub_old", status=obj.get("status", "active")))
        assert isinstance(decision, Ignore), type_
        assert "not the customer's current one" in decision.outcome


@pytest.mark.parametrize("status", ["incomplete", "incomplete_expired"])
def test_a_subscription_not_paid_for_yet_changes_nothing(status: str) -> None:
    decision = on(TRIAL, event("customer.subscription.created", subscription(status=status)),
                  subscription(status=status))
    assert isinstance(decision, Ignore) and "not paid for yet" in decision.outcome


def test_paused_is_not_paid_for() -> None:
    decision = on(TRIAL, event("customer.subscription.updated", subscription(status="paused")),
                  subscription(status="paused"))
    assert isinstance(decision, Change) and decision.status == "unpaid"


def test_unhandled_types_and_non_subscription_objects_are_ignored() -> None:
    assert isinstance(on(TRIAL, event("customer.created", {"id": "cus_1"}), None), Ignore)
    payment = on(TRIAL, event("checkout.session.completed", checkout_session(mode="payment")), None)
    assert isinstance(payment, Ignore) and "'payment' mode" in payment.outcome
    one_off = on(TRIAL, event("invoice.payment_succeeded", {"id": "in_2", "customer": "cus_1"}), None)
    assert isinstance(one_off, Ignore) and "not for a subscription" in one_off.outcome


def test_a_subscription_stripe_no_longer_has_is_ignored() -> None:
    decision = on(TRIAL, event("invoice.payment_succeeded", invoice("sub_gone")), None)
    assert isinstance(decision, Ignore) and "sub_gone not found" in decision.outcome


@pytest.mark.parametrize("raw", [
    {"type": "x", "created": T0, "data": {"object": {}}},
    {"id": "evt_1", "created": T0, "data": {"object": {}}},
    {"id": "evt_1", "type": "x", "created": "soon", "data": {"object": {}}},
    {"id": "evt_1", "type": "x", "created": T0, "data": {}},
    {"id": "evt_1", "type": "customer.subscription.updated", "created": T0, "data": {"object": {"status": "x"}}},
])
def test_malformed_events_are_refused(raw: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        event_facts(raw)
