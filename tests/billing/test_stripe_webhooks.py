"""Stripe through the billing API, on SQLite and PostgreSQL: checkout sessions created with the real `stripe`
library against the local fake Stripe, and webhooks signed the way Stripe signs them."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from iotistic.billing.models import Customer, DeploymentJob, License, StripeEvent, Subscription
from iotistic.core.licensing import evaluate_license
from tests.billing.conftest import BillingApi, SignedUp
from tests.conftest import LicenseKeys
from tests.fakes.stripe_server import FakeStripe
from tests.fakes.stripe_signing import signature_header, signed_request

WEBHOOK_SECRET = "whsec_test_" + "s" * 32
PRICES = {"starter": "price_starter_m", "professional": "price_pro_m", "enterprise": "price_ent_m"}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeStripe]:
    server = FakeStripe()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def stripe_fake(fake: FakeStripe) -> Iterator[FakeStripe]:
    fake.reset()
    yield fake
    fake.reset()


@pytest.fixture
def billing_settings_env(stripe_fake: FakeStripe) -> dict[str, Any]:
    return {"STRIPE_API_KEY": stripe_fake.api_key, "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "STRIPE_API_BASE": stripe_fake.url,
            **{f"STRIPE_PRICE_{plan.upper()}": price for plan, price in PRICES.items()}}


class Stripe:
    """What the tests do as the customer (checkout) and as Stripe (sending signed events)."""

    def __init__(self, client: httpx.AsyncClient, fake: FakeStripe, sessions: async_sessionmaker[AsyncSession],
                 public_pem: str) -> None:
        self.client = client
        self.fake = fake
        self.sessions = sessions
        self.public_pem = public_pem

    async def checkout(self, who: SignedUp, plan: str) -> dict[str, Any]:
        r = await self.client.post("/api/billing/checkout", json={"plan": plan}, headers=who.headers)
        assert r.status_code == 201, r.text
        body: dict[str, Any] = r.json()
        return body

    async def send(self, event: dict[str, Any], *, secret: str = WEBHOOK_SECRET) -> httpx.Response:
        body, headers = signed_request(event, secret)
        return await self.client.post("/api/webhooks/stripe", content=body, headers=headers)

    async def deliver(self, event: dict[str, Any]) -> dict[str, Any]:
        r = await self.send(event)
        assert r.status_code == 200, r.text
        result: dict[str, Any] = r.json()
        return result

    async def buy(self, who: SignedUp, plan: str, *, created: int | None = None) -> dict[str, Any]:
        """Checkout, pay, and deliver checkout.session.completed; returns the Stripe subscription."""
        session = await self.checkout(who, plan)
        completed = self.fake.complete_checkout(session["session_id"])
        result = await self.deliver(self.fake.event("checkout.session.completed", completed, created=created))
        assert result["outcome"].startswith("applied"), result
        return self.fake.subscription(completed["subscription"])

    async def subscription(self, customer_id: str) -> Subscription:
        async with self.sessions() as s:
            row = await s.get(Subscription, customer_id)
            assert row is not None
            return row

    async def licences(self, customer_id: str) -> list[License]:
        async with self.sessions() as s:
            return list(await s.scalars(select(License).where(License.customer_id == customer_id)
                                        .order_by(License.id)))

    async def jobs(self, customer_id: str) -> list[DeploymentJob]:
        async with self.sessions() as s:
            return list(await s.scalars(select(DeploymentJob).where(DeploymentJob.customer_id == customer_id)
                                        .order_by(DeploymentJob.id)))

    async def event_outcome(self, event_id: str) -> str | None:
        async with self.sessions() as s:
            row = await s.get(StripeEvent, event_id)
            return row.outcome if row else None

    async def events_recorded(self) -> int:
        async with self.sessions() as s:
            return int(await s.scalar(select(func.count()).select_from(StripeEvent)) or 0)

    async def licence_state(self, customer_id: str) -> Any:
        newest = (await self.licences(customer_id))[-1]
        return evaluate_license(newest.token, self.public_pem)


@pytest.fixture
def stripe(billing_client: httpx.AsyncClient, stripe_fake: FakeStripe,
           billing_sessions: async_sessionmaker[AsyncSession], license_keys: LicenseKeys) -> Stripe:
    return Stripe(billing_client, stripe_fake, billing_sessions, license_keys.public_pem)


# -- checkout -----------------------------------------------------------------------------------------------------

async def test_checkout_creates_a_session_for_the_plan_price_and_the_customer(
        billing_api: BillingApi, stripe: Stripe) -> None:
    who = await billing_api.signup("starter", company="Acme GmbH")
    body = await stripe.checkout(who, "professional")
    assert body["url"].startswith("https://checkout.stripe.com/") and body["session_id"].startswith("cs_test_")

    [created] = stripe.fake.calls("POST", "/v1/customers")
    assert created.params == {"email": who.email, "name": "Acme GmbH", "metadata": {"customerId": who.customer_id}}
    assert created.headers["idempotency-key"] == f"iotistic-customer-{who.customer_id}"
    stripe_customer = next(iter(stripe.fake.customers))
    [sent] = stripe.fake.calls("POST", "/v1/checkout/sessions")
    assert sent.params["mode"] == "subscription"
    assert sent.params["line_items"] == [{"price": PRICES["professional"], "quantity": "1"}]
    assert sent.params["customer"] == stripe_customer
    assert sent.params["client_reference_id"] == who.customer_id
    assert sent.params["subscription_data"]["metadata"] == {"customerId": who.customer_id, "plan": "professional"}
    assert sent.params["success_url"].startswith(f"https://{who.customer_id}.customers.iotistic.test/")
    assert "{CHECKOUT_SESSION_ID}" in sent.params["success_url"]
    assert stripe.fake.sessions[body["session_id"]]["customer"] == stripe_customer

    async with stripe.sessions() as s:
        customer = await s.get(Customer, who.customer_id)
        assert customer is not None and customer.stripe_customer_id == stripe_customer
    # Nothing changes before Stripe reports the payment.
    assert (await stripe.subscription(who.customer_id)).plan == "starter"
    assert len(await stripe.licences(who.customer_id)) == 1

    # A second checkout reuses the Stripe customer.
    await stripe.checkout(who, "enterprise")
    assert len(stripe.fake.calls("POST", "/v1/customers")) == 1
    assert stripe.fake.calls("POST", "/v1/checkout/sessions")[-1].params["customer"] == stripe_customer


async def test_checkout_refusals_are_clear_4xx_and_5xx_never_500(
        billing_api: BillingApi, stripe: Stripe, billing_client: httpx.AsyncClient) -> None:
    who = await billing_api.signup("starter")
    r = await billing_client.post("/api/billing/checkout", json={"plan": "platinum"}, headers=who.headers)
    assert r.status_code == 422 and "unknown plan" in r.json()["message"]
    r = await billing_client.post("/api/billing/checkout", json={"plan": "starter", "price": "price_x"},
                                  headers=who.headers)
    assert r.status_code == 422
    r = await billing_client.post("/api/billing/checkout", json={"plan": "starter"},
                                  headers=BillingApi.operator_headers)
    assert r.status_code == 403 and "customer" in r.json()["message"]
    r = await billing_client.post("/api/billing/checkout", json={"plan": "starter"})
    assert r.status_code == 401

    stripe.fake.fail_with = 500
    r = await billing_client.post("/api/billing/checkout", json={"plan": "professional"}, headers=who.headers)
    assert r.status_code == 503 and "payment provider" in r.json()["message"]
    stripe.fake.fail_with = None

    await stripe.buy(who, "professional")
    r = await billing_client.post("/api/billing/checkout", json={"plan": "professional"}, headers=who.headers)
    assert r.status_code == 409 and "already subscribed" in r.json()["message"]


# -- each event type's effect -----------------------------------------------------------------------------------------

async def test_paid_checkout_moves_the_trial_to_the_plan_with_a_new_licence_and_a_deployment(
        billing_api: BillingApi, stripe: Stripe) -> None:
    who = await billing_api.signup("starter")
    trial = await stripe.licence_state(who.customer_id)
    assert trial.mode == "licensed" and trial.trial["isTrial"] is True
    jobs_before = len(await stripe.jobs(who.customer_id))

    sub = await stripe.buy(who, "professional")

    row = await stripe.subscription(who.customer_id)
    assert (row.plan, row.status, row.stripe_subscription_id) == ("professional", "active", sub["id"])
    item = sub["items"]["data"][0]
    assert row.current_period_end == dt.datetime.fromtimestamp(item["current_period_end"], dt.UTC)
    licences = await stripe.licences(who.customer_id)
    assert [(lic.plan, lic.subscription_status) for lic in licences] == [("starter", "trialing"),
                                                                        ("professional", "active")]
    state = await stripe.licence_state(who.customer_id)
    assert (state.mode, state.plan, state.max_devices) == ("licensed", "professional", 50)
    assert state.trial["isTrial"] is False and state.subscription["status"] == "active"
    jobs = await stripe.jobs(who.customer_id)
    assert len(jobs) == jobs_before + 1 and (jobs[-1].kind, jobs[-1].status) == ("apply", "queued")


async def test_subscription_updated_to_enterprise_issues_an_enterprise_licence(
        billing_api: BillingApi, stripe: Stripe) -> None:
    who = await billing_api.signup("starter")
    sub = await stripe.buy(who, "professional", created=int(time.time()) - 60)
    updated = stripe.fake.update_subscription(sub["id"], price=PRICES["enterprise"])
    result = await stripe.deliver(stripe.fake.event("customer.subscription.updated", updated))
    assert "plan enterprise" in result["outcome"]
    state = await stripe.licence_state(who.customer_id)
    assert state.plan == "enterprise" and state.max_devices is None
    assert state.features["hasDedicatedPrometheus"] is True
    assert (await stripe.jobs(who.customer_id))[-1].kind == "apply"


async def test_failed_payment_puts_past_due_in_the_licence_and_a_payment_restores_active(
        billing_api: BillingApi, stripe: Stripe) -> None:
    who = await billing_api.signup("starter")
    sub = await stripe.buy(who, "starter", created=int(time.time()) - 60)
    now = int(time.time())
    await stripe.deliver(stripe.fake.event("invoice.payment_failed", stripe.fake.invoice(sub["id"], paid=False),
                                           created=now - 30))
    assert (await stripe.subscription(who.customer_id)).status == "past_due"
    state = await stripe.licence_state(who.customer_id)
    # past_due is reported to the instance, which keeps working until the subscription is cancelled.
    assert state.subscription["status"] == "past_due" and state.mode == "licensed"

    stripe.fake.update_subscription(sub["id"], status="active")
    await stripe.deliver(stripe.fake.event("invoice.payment_succeeded", stripe.fake.invoice(sub["id"], paid=True),
                                           created=now))
    assert (await stripe.subscription(who.customer_id)).status == "active"
    assert (await stripe.licence_state(who.customer_id)).subscription["status"] == "active"


async def test_deleted_subscription_cancels_and_schedules_removal_after_the_grace_period(
        billing_api: BillingApi, stripe: Stripe) -> None:
    who = await billing_api.signup("starter")
    sub = await stripe.buy(who, "professional", created=int(time.time()) - 60)
    gone = stripe.fake.update_subscription(sub["id"], status="canceled")
    before = dt.datetime.now(dt.UTC)
    await stripe.deliver(stripe.fake.event("customer.subscription.deleted", gone))

    row = await stripe.subscription(who.customer_id)
    assert row.status == "canceled" and row.cancel_effective_at is not None
    grace = row.cancel_effective_at - before
    assert dt.timedelta(days=7) - dt.timedelta(seconds=5) < grace < dt.timedelta(days=7, seconds=60)
    job = (await stripe.jobs(who.customer_id))[-1]
    assert (job.kind, job.status) == ("remove", "queued") and job.run_after == row.cancel_effective_at
    assert (await stripe.licences(who.customer_id))[-1].subscription_status == "canceled"


# -- idempotency, signatures ----------------------------------------------------------------------------------------

async def test_a_replayed_event_changes_nothing(billing_api: BillingApi, stripe: Stripe) -> None:
    who = await billing_api.signup("starter")
    session = await stripe.checkout(who, "enterprise")
    event = stripe.fake.event("checkout.session.completed", stripe.fake.complete_checkout(session["session_id"]))
    first = await stripe.deliver(event)
    assert first["duplicate"] is False and first["outcome"].startswith("applied")
    licences, jobs = len(await stripe.licences(who.customer_id)), len(await stripe.jobs(who.customer_id))

    again = await stripe.deliver(event)
    assert again["duplicate"] is True and again["outcome"] == first["outcome"]
    assert len(await stripe.licences(who.customer_id)) == licences
    assert len(await stripe.jobs(who.customer_id)) == jobs
    # A redelivery is answered from the record: Stripe is not asked again.
    assert len(stripe.fake.calls("GET", "/v1/subscriptions/")) == 1


async def test_concurrent_deliveries_of_one_event_apply_it_once(billing_api: BillingApi, stripe: Stripe) -> None:
    who = await billing_api.signup("starter")
    session = await stripe.checkout(who, "professional")
    event = stripe.fake.event("checkout.session.completed", stripe.fake.complete_checkout(session["session_id"]))
    results = await asyncio.gather(*(stripe.send(event) for _ in range(4)))
    assert [r.status_code for r in results] == [200] * 4
    assert sum(not r.json()["duplicate"] for r in results) == 1
    assert len(await stripe.licences(who.customer_id)) == 2


async def test_bad_signatures_are_refused_and_nothing_is_recorded(
        billing_api: BillingApi, stripe: Stripe, billing_client: httpx.AsyncClient) -> None:
    who = await billing_api.signup("starter")
    session = await stripe.checkout(who, "enterprise")
    event = stripe.fake.event("checkout.session.completed", stripe.fake.complete_checkout(session["session_id"]))
    body, headers = signed_request(event, WEBHOOK_SECRET)
    tampered = body.replace(b'"enterprise"', b'"starter"')
    assert tampered != body
    cases = {
        "wrong secret": (body, {"Stripe-Signature": signature_header(body, "whsec_other")}),
        "missing header": (body, {}),
        "tampered body": (tampered, headers),
        "stale timestamp": (body, {"Stripe-Signature": signature_header(body, WEBHOOK_SECRET,
                                                                        timestamp=int(time.time()) - 600)}),
        "garbage header": (body, {"Stripe-Signature": "v1=deadbeef"}),
    }
    for name, (content, hdrs) in cases.items():
        r = await billing_client.post("/api/webhooks/stripe", content=content, headers=hdrs)
        assert r.status_code == 400, (name, r.text)
        assert r.json()["error"] == "bad_request" and "ignature" in r.json()["message"], name
    assert await stripe.events_recorded() == 0
    assert (await stripe.subscription(who.customer_id)).plan == "starter"

    r = await billing_client.post("/api/webhooks/stripe", content=b"x" * (600 * 1024), headers=headers)
    assert r.status_code == 413


async def test_signed_but_malformed_bodies_are_a_400(stripe: Stripe, billing_client: httpx.AsyncClient) -> None:
    for content in (b"not json", b'{"object": "event"}', b'{"id": "evt_1", "object": "event", "type": "x"}'):
        r = await billing_client.post("/api/webhooks/stripe", content=content,
                                      headers={"Stripe-Signature": signature_header(content, WEBHOOK_SECRET)})
        assert r.status_code == 400, (content, r.text)
    assert await stripe.events_recorded() == 0


# -- order, unknowns, replaced subscriptions ---------------------------------------------------------------------------

async def test_out_of_order_events_end_in_the_right_state(billing_api: BillingApi, stripe: Stripe) -> None:
    who = await billing_api.signup("starter")
    stripe.fake.customers["cus_ooo"] = {"id": "cus_ooo"}
    t = int(time.time()) - 100
    sub = stripe.fake.create_subscription(customer="cus_ooo", price=PRICES["starter"],
                                          metadata={"customerId": who.customer_id}, now=t)
    created = stripe.fake.event("customer.subscription.created", sub, created=t)
    updated = stripe.fake.event("customer.subscription.updated",
                                stripe.fake.update_subscription(sub["id"], price=PRICES["professional"]),
                                created=t + 10)
    # updated arrives before created
    assert "plan professional" in (await stripe.deliver(updated))["outcome"]
    late = await stripe.deliver(created)
    assert late["outcome"].startswith("ignored: older")
    row = await stripe.subscription(who.customer_id)
    assert (row.plan, row.status, row.stripe_subscription_id) == ("professional", "active", sub["id"])
    assert row.stripe_state_at == dt.datetime.fromtimestamp(t + 10, dt.UTC)

    # a newer update, then an older one after it
    newest = stripe.fake.event("customer.subscription.updated",
                               stripe.fake.update_subscription(sub["id"], price=PRICES["enterprise"]),
                               created=t + 30)
    older = stripe.fake.event("customer.subscription.updated",
                              {**sub, "items": {"data": [{**sub["items"]["data"][0],
                                                          "price": {"id": PRICES["starter"]}}]}},
                              created=t + 20)
    await stripe.deliver(newest)
    assert (await stripe.deliver(older))["outcome"].startswith("ignored: older")
    assert (await stripe.subscription(who.customer_id)).plan == "enterprise"
    assert [lic.plan for lic in await stripe.licences(who.customer_id)] == ["starter", "professional", "enterprise"]
    # The customer was linked to its Stripe customer through the subscription's metadata.
    async with stripe.sessions() as s:
        customer = await s.get(Customer, who.customer_id)
        assert customer is not None and customer.stripe_customer_id == "cus_ooo"


async def test_events_for_unknown_customers_and_prices_are_recorded_with_their_outcome(
        billing_api: BillingApi, stripe: Stripe) -> None:
    stranger = stripe.fake.create_subscription(customer="cus_stranger", price=PRICES["starter"])
    event = stripe.fake.event("customer.subscription.updated", stranger)
    result = await stripe.deliver(event)
    assert result["outcome"].startswith("ignored: unknown customer")
    assert await stripe.event_outcome(event["id"]) == result["outcome"]

    who = await billing_api.signup("starter")
    session = await stripe.checkout(who, "professional")
    stripe.fake.sessions[session["session_id"]]["_line_items"][0]["price"] = "price_not_ours"
    event = stripe.fake.event("checkout.session.completed", stripe.fake.complete_checkout(session["session_id"]))
    result = await stripe.deliver(event)
    assert "unknown price price_not_ours" in result["outcome"]
    assert await stripe.event_outcome(event["id"]) == result["outcome"]
    assert (await stripe.subscription(who.customer_id)).plan == "starter"

    other = stripe.fake.event("customer.created", {"id": "cus_x", "object": "customer"})
    assert "not handled" in (await stripe.deliver(other))["outcome"]


async def test_buying_another_plan_cancels_the_old_subscription_in_stripe(
        billing_api: BillingApi, stripe: Stripe) -> None:
    who = await billing_api.signup("starter")
    old = await stripe.buy(who, "starter", created=int(time.time()) - 60)
    new = await stripe.buy(who, "enterprise")
    assert stripe.fake.subscription(old["id"])["status"] == "canceled"
    [cancel] = stripe.fake.calls("DELETE", f"/v1/subscriptions/{old['id']}")
    assert cancel.params == {"prorate": "true"}
    row = await stripe.subscription(who.customer_id)
    assert (row.plan, row.status, row.stripe_subscription_id) == ("enterprise", "active", new["id"])

    # Stripe then reports the old subscription deleted: not the customer's subscription any more.
    result = await stripe.deliver(stripe.fake.event("customer.subscription.deleted",
                                                    stripe.fake.subscription(old["id"])))
    assert "not the customer's current one" in result["outcome"]
    assert (await stripe.subscription(who.customer_id)).status == "active"


async def test_when_stripe_is_down_the_event_is_refused_for_redelivery(
        billing_api: BillingApi, stripe: Stripe) -> None:
    who = await billing_api.signup("starter")
    session = await stripe.checkout(who, "professional")
    event = stripe.fake.event("checkout.session.completed", stripe.fake.complete_checkout(session["session_id"]))
    stripe.fake.fail_with = 500
    r = await stripe.send(event)
    assert r.status_code == 503 and r.json()["error"] == "unavailable"
    assert await stripe.event_outcome(event["id"]) is None
    stripe.fake.fail_with = None
    # Stripe redelivers later: now it applies.
    assert (await stripe.deliver(event))["outcome"].startswith("applied")
    assert (await stripe.subscription(who.customer_id)).plan == "professional"
