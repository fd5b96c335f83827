"""The gateway: the real `stripe` library against the local fake Stripe (no database)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from iotistic.billing.stripe_gateway import StripeGateway, StripeRejected, StripeUnavailable, WebhookSignatureError
from tests.fakes.stripe_server import FakeStripe, decode_form
from tests.fakes.stripe_signing import signature_header

SECRET = "whsec_gateway_" + "k" * 24


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeStripe]:
    server = FakeStripe()
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def gateway(fake: FakeStripe) -> AsyncIterator[StripeGateway]:
    fake.reset()
    gw = StripeGateway(fake.api_key, SECRET, api_base=fake.url)
    yield gw
    await gw.aclose()


def test_the_fake_decodes_stripe_bracket_notation() -> None:
    assert decode_form([("line_items[0][price]", "p"), ("line_items[0][quantity]", "1"),
                        ("line_items[1][price]", "q"), ("metadata[customerId]", "c1"), ("mode", "subscription")]) == {
        "line_items": [{"price": "p", "quantity": "1"}, {"price": "q"}], "metadata": {"customerId": "c1"},
        "mode": "subscription"}


async def test_customer_creation_is_idempotent_per_customer(gateway: StripeGateway, fake: FakeStripe) -> None:
    first = await gateway.create_customer(customer_id="c0000000000a1", email="a@example.com", company="A")
    again = await gateway.create_customer(customer_id="c0000000000a1", email="a@example.com", company="A")
    other = await gateway.create_customer(customer_id="c0000000000b2", email="b@example.com", company="B")
    assert first == again != other
    assert len(fake.customers) == 2
    assert fake.requests[0].headers["authorization"] == f"Bearer {fake.api_key}"
    assert fake.requests[0].headers["stripe-version"]  # the library pins its API version


async def test_subscriptions_are_read_and_cancelled_once(gateway: StripeGateway, fake: FakeStripe) -> None:
    sub = fake.create_subscription(customer="cus_1", price="price_a")
    read = await gateway.retrieve_subscription(sub["id"])
    assert read is not None and read["id"] == sub["id"] and read["items"]["data"][0]["price"]["id"] == "price_a"
    assert await gateway.retrieve_subscription("sub_missing") is None
    await gateway.cancel_subscription(sub["id"])
    await gateway.cancel_subscription(sub["id"])  # already cancelled: no second DELETE (Stripe would refuse it)
    await gateway.cancel_subscription("sub_missing")
    assert fake.subscription(sub["id"])["status"] == "canceled"
    assert len(fake.calls("DELETE", "/v1/subscriptions/")) == 1


async def test_failures_are_told_apart_without_leaking_the_key(fake: FakeStripe, gateway: StripeGateway) -> None:
    wrong = StripeGateway("sk_test_wrong_key_0123456789", None, api_base=fake.url)
    try:
        with pytest.raises(StripeRejected) as refused:
            await wrong.create_customer(customer_id="c0000000000a1", email="a@example.com", company="A")
    finally:
        await wrong.aclose()
    assert "wrong_key_0123456789" not in str(refused.value)
    fake.fail_with = 500
    with pytest.raises(StripeUnavailable):
        await gateway.retrieve_subscription("sub_1")
    fake.fail_with = None
    unreachable = StripeGateway(fake.api_key, None, api_base="http://127.0.0.1:9")
    try:
        with pytest.raises(StripeUnavailable):
            await unreachable.retrieve_subscription("sub_1")
    finally:
        await unreachable.aclose()


def test_webhook_verification(gateway: StripeGateway, fake: FakeStripe) -> None:
    payload = json.dumps(fake.event("invoice.payment_failed", {"id": "in_1", "object": "invoice"})).encode()
    event = gateway.verify_event(payload, signature_header(payload, SECRET))
    assert event["type"] == "invoice.payment_failed" and event["data"]["object"]["id"] == "in_1"
    # Stripe sends one v1 per active secret while a secret is being rolled: any matching one is enough.
    rolled = signature_header(payload, "whsec_old") + "," + signature_header(payload, SECRET).split(",")[1]
    assert gateway.verify_event(payload, rolled)["id"] == event["id"]
    for header in (None, "", signature_header(payload, "whsec_other"), "t=abc,v1=00",
                   signature_header(payload, SECRET, timestamp=int(time.time()) - 301)):
        with pytest.raises(WebhookSignatureError):
            gateway.verify_event(payload, header)
    unconfigured = StripeGateway(fake.api_key, None, api_base=fake.url)
    with pytest.raises(WebhookSignatureError, match="STRIPE_WEBHOOK_SECRET"):
        unconfigured.verify_event(payload, signature_header(payload, SECRET))
