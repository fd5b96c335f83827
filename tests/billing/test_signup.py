"""Signup, login and the customer's own reads, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from iotistic.billing import queue
from iotistic.billing.models import Customer, DeploymentJob, License, Subscription
from iotistic.core.licensing import evaluate_license
from iotistic.core.plans import PLANS
from tests.billing.conftest import BILLING_PASSWORD, BillingApi


async def _count(sessions: Any, model: type) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_signup_creates_trial_licence_and_queued_deployment(billing_api: BillingApi,
                                                                 billing_client: httpx.AsyncClient) -> None:
    before = dt.datetime.now(dt.UTC)
    signed = await billing_api.signup("professional", email="Owner@Example.COM")
    body = signed.body
    assert re.fullmatch(r"c[0-9a-f]{12}", signed.customer_id)
    assert body["customer"]["email"] == "owner@example.com"
    subscription = body["customer"]["subscription"]
    assert subscription["plan"] == "professional"
    assert subscription["status"] == "trialing"
    trial_end = dt.datetime.fromisoformat(subscription["trial_ends_at"])
    assert dt.timedelta(days=14) - dt.timedelta(minutes=1) < trial_end - before < dt.timedelta(days=14, minutes=1)

    # The licence verifies, with the instance's own licence code, against the key the public route serves.
    key = (await billing_client.get("/api/license/public-key")).json()
    assert key["algorithm"] == "RS256"
    state = evaluate_license(body["license"]["token"], key["public_key"])
    assert state.mode == "licensed", state.reason
    assert state.customer_id == signed.customer_id
    assert state.plan == "professional"
    assert state.max_devices == PLANS["professional"].max_devices
    assert state.trial == {"isTrial": True, "expiresAt": int(trial_end.timestamp())}
    assert state.subscription["status"] == "trialing"
    assert state.expires_at == int(trial_end.timestamp())

    deployment = body["deployment"]
    assert deployment["status"] == "pending"
    assert deployment["namespace"] == f"customer-{signed.customer_id}"
    assert deployment["job"]["kind"] == "apply" and deployment["job"]["status"] == "queued"

    # The customer reads itself with its session.
    r = await billing_client.get(f"/api/customers/{signed.customer_id}", headers=signed.headers)
    assert r.status_code == 200, r.text
    assert r.json()["company"] == "Acme GmbH"
    r = await billing_client.get(f"/api/customers/{signed.customer_id}/license", headers=signed.headers)
    assert r.status_code == 200
    assert r.json()["token"] == body["license"]["token"]
    assert r.json()["claims"]["customerId"] == signed.customer_id
    r = await billing_client.get(f"/api/customers/{signed.customer_id}/deployment", headers=signed.headers)
    assert r.status_code == 200
    assert r.json()["job"]["id"] == deployment["job"]["id"]


async def test_signup_session_token_works(billing_api: BillingApi, billing_client: httpx.AsyncClient) -> None:
    signed = await billing_api.signup()
    token = signed.body["session"]["access_token"]
    r = await billing_client.get(f"/api/customers/{signed.customer_id}", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200
    assert signed.body["session"]["expires_in"] == 15 * 60


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"password": "short"}, "body.password"),
        ({"email": "not-an-email"}, "body.email"),
        ({"plan": "platinum"}, "body.plan"),
        ({"plan": "free"}, "body.plan"),
        ({"company": "   "}, "body.company"),
        ({"company": "Acme\x00"}, "body.company"),
        ({"company": "x" * 201}, "body.company"),
        ({"password": "p" * 257}, "body.password"),
        ({"admin": True}, "body.admin"),
    ],
)
async def test_signup_refuses_bad_input_with_a_message(billing_client: httpx.AsyncClient, billing_sessions: Any,
                                                       change: dict[str, Any], where: str) -> None:
    body = {"email": "a@example.com", "password": BILLING_PASSWORD, "company": "Acme", "plan": "starter", **change}
    r = await billing_client.post("/api/customers/signup", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "validation_error"
    assert r.json()["message"].startswith(where)
    assert BILLING_PASSWORD not in r.text
    assert await _count(billing_sessions, Customer) == 0


async def test_unknown_plan_message_names_the_plans(billing_client: httpx.AsyncClient) -> None:
    r = await billing_client.post("/api/customers/signup", json={
        "email": "a@example.com", "password": BILLING_PASSWORD, "company": "Acme", "plan": "platinum"})
    assert r.status_code == 422
    assert "starter, professional, enterprise" in r.json()["message"]


async def test_signup_with_a_used_email_is_a_conflict(billing_api: BillingApi, billing_client: httpx.AsyncClient,
                                                      billing_sessions: Any) -> None:
    await billing_api.signup(email="taken@example.com")
    r = await billing_client.post("/api/customers/signup", json={
        "email": "TAKEN@example.com", "password": BILLING_PASSWORD, "company": "Other", "plan": "starter"})
    assert r.status_code == 409
    assert r.json() == {"error": "conflict", "message": "a customer with this email already exists"}
    assert await _count(billing_sessions, Customer) == 1
    assert await _count(billing_sessions, License) == 1


async def test_concurrent_signups_with_one_email_make_one_customer(billing_client: httpx.AsyncClient,
                                                                   billing_sessions: Any) -> None:
    body = {"email": "race@example.com", "password": BILLING_PASSWORD, "company": "Acme", "plan": "starter"}
    import asyncio

    results = await asyncio.gather(*(billing_client.post("/api/customers/signup", json=body) for _ in range(4)))
    assert sorted(r.status_code for r in results) == [201, 409, 409, 409]
    assert await _count(billing_sessions, Customer) == 1
    assert await _count(billing_sessions, Subscription) == 1
    assert await _count(billing_sessions, DeploymentJob) == 1


async def test_signup_is_all_or_nothing(billing_client: httpx.AsyncClient, billing_sessions: Any,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure after the customer, its subscription and its licence were written leaves none of them."""

    async def broken_enqueue(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("queue unavailable")

    monkeypatch.setattr(queue, "enqueue", broken_enqueue)
    r = await billing_client.post("/api/customers/signup", json={
        "email": "half@example.com", "password": BILLING_PASSWORD, "company": "Acme", "plan": "starter"})
    assert r.status_code == 500
    assert r.json() == {"error": "internal_error", "message": "internal server error"}
    for model in (Customer, Subscription, License, DeploymentJob):
        assert await _count(billing_sessions, model) == 0, model.__name__
    monkeypatch.undo()
    r = await billing_client.post("/api/customers/signup", json={
        "email": "half@example.com", "password": BILLING_PASSWORD, "company": "Acme", "plan": "starter"})
    assert r.status_code == 201


async def test_password_is_stored_as_argon2id(billing_api: BillingApi, billing_sessions: Any) -> None:
    signed = await billing_api.signup()
    async with billing_sessions() as session:
        stored = await session.scalar(select(Customer.password_hash).where(Customer.id == signed.customer_id))
    assert stored is not None and stored.startswith("$argon2id$")
    assert BILLING_PASSWORD not in stored


async def test_login_refuses_wrong_password_and_unknown_email_alike(billing_api: BillingApi,
                                                                    billing_client: httpx.AsyncClient) -> None:
    signed = await billing_api.signup()
    wrong = await billing_client.post("/api/auth/login", json={"email": signed.email, "password": "wrong-password"})
    unknown = await billing_client.post("/api/auth/login", json={"email": "nobody@example.com",
                                                                  "password": BILLING_PASSWORD})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json() == {"error": "unauthorized", "message": "email or password incorrect"}
    ok = await billing_client.post("/api/auth/login", json={"email": signed.email.upper(),
                                                            "password": BILLING_PASSWORD})
    assert ok.status_code == 200
    assert ok.json()["customer_id"] == signed.customer_id


async def test_repeated_failed_logins_are_throttled(billing_api: BillingApi,
                                                    billing_client: httpx.AsyncClient) -> None:
    signed = await billing_api.signup()
    for _ in range(5):
        r = await billing_client.post("/api/auth/login", json={"email": signed.email, "password": "wrong-password"})
        assert r.status_code == 401
    r = await billing_client.post("/api/auth/login", json={"email": signed.email, "password": BILLING_PASSWORD})
    assert r.status_code == 429
    assert int(r.headers["Retry-After"]) > 0
    # Other customers are not affected.
    other = await billing_api.signup()
    assert other.headers["Authorization"].startswith("Bearer ")


async def test_health_and_public_key_need_no_login(billing_client: httpx.AsyncClient) -> None:
    assert (await billing_client.get("/health")).json() == {"status": "ok"}
    r = await billing_client.get("/api/license/public-key")
    assert r.status_code == 200
    assert r.json()["public_key"].startswith("-----BEGIN PUBLIC KEY-----")


@pytest.mark.parametrize("billing_settings_env", [{"BILLING_SIGNUP_MAX_PER_HOUR": 2}])
async def test_signups_from_one_address_are_limited(billing_api: BillingApi, billing_client: httpx.AsyncClient,
                                                    billing_sessions: Any) -> None:
    await billing_api.signup()
    await billing_api.signup()
    r = await billing_client.post("/api/customers/signup", json={
        "email": "third@example.com", "password": BILLING_PASSWORD, "company": "Acme", "plan": "starter"})
    assert r.status_code == 429
    assert r.json()["error"] == "too_many_requests" and int(r.headers["Retry-After"]) > 3000
    assert await _count(billing_sessions, Customer) == 2
