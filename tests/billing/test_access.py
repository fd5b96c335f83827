"""Who may call what: every route needs a login except the public few; customers see only themselves."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import httpx
import jwt
import pytest

from iotistic.billing.tokens import AUDIENCE, create_customer_token
from tests.billing.conftest import OPERATOR_TOKEN, BillingApi

PUBLIC = {
    ("POST", "/api/customers/signup"),
    ("POST", "/api/auth/login"),
    ("GET", "/api/license/public-key"),
    ("POST", "/api/webhooks/stripe"),
    ("GET", "/health"),
}
FAKE_ID = "c000000000000"


def _routes(app: Any) -> list[tuple[str, str]]:
    """Every operation the API has, from its OpenAPI document (routes added later are covered too)."""
    return [(method.upper(), path) for path, operations in app.openapi()["paths"].items() for method in operations]


def _fill(path: str, customer_id: str) -> str:
    return re.sub(r"\{[^}]+\}", customer_id, path)


async def test_every_route_but_the_public_ones_needs_a_token(billing_app: Any,
                                                             billing_client: httpx.AsyncClient) -> None:
    routes = _routes(billing_app)
    assert ("GET", "/api/customers/{customer_id}") in routes
    checked = 0
    for method, path in routes:
        if (method, path) in PUBLIC or path.startswith(("/docs", "/redoc", "/openapi")):
            continue
        for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic Zm9vOmJhcg=="}):
            r = await billing_client.request(method, _fill(path, FAKE_ID), headers=headers, json={})
            assert r.status_code == 401, (method, path, headers, r.text)
            assert r.json()["error"] == "unauthorized"
        checked += 1
    assert checked >= 6


async def test_a_customer_cannot_read_another_customer(billing_app: Any, billing_api: BillingApi,
                                                       billing_client: httpx.AsyncClient) -> None:
    alice = await billing_api.signup()
    bob = await billing_api.signup()
    own_routes = [(m, p) for m, p in _routes(billing_app)
                  if p.startswith("/api/customers/{") and (m, p) not in PUBLIC]
    assert len(own_routes) >= 3
    for method, path in own_routes:
        if method == "GET":
            mine = await billing_client.get(_fill(path, alice.customer_id), headers=alice.headers)
            assert mine.status_code == 200, (path, mine.text)
        theirs = await billing_client.request(method, _fill(path, bob.customer_id), headers=alice.headers, json={})
        unknown = await billing_client.request(method, _fill(path, FAKE_ID), headers=alice.headers, json={})
        # Another customer's id looks exactly like one that does not exist.
        assert theirs.status_code == unknown.status_code == 404, (method, path, theirs.text)
        assert theirs.json() == unknown.json()
        assert bob.email not in theirs.text


async def test_customers_cannot_use_operator_routes(billing_app: Any, billing_api: BillingApi,
                                                    billing_client: httpx.AsyncClient) -> None:
    alice = await billing_api.signup()
    operator_routes = [(m, p) for m, p in _routes(billing_app) if p.startswith("/api/operator/")]
    assert len(operator_routes) >= 3
    for method, path in operator_routes:
        r = await billing_client.request(method, _fill(path, alice.customer_id), headers=alice.headers,
                                         json={"plan": "enterprise"})
        assert r.status_code == 403, (method, path, r.text)
    r = await billing_client.get(f"/api/customers/{alice.customer_id}", headers=BillingApi.operator_headers)
    assert r.json()["subscription"]["plan"] == "starter"  # the change above was refused


async def test_expired_forged_and_foreign_tokens_are_refused(billing_app: Any, billing_api: BillingApi,
                                                             billing_client: httpx.AsyncClient) -> None:
    alice = await billing_api.signup()
    secret = billing_app.state.ctx.jwt_secret
    url = f"/api/customers/{alice.customer_id}"
    expired = create_customer_token(secret, alice.customer_id, minutes=15,
                                    now=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    forged = create_customer_token("another-secret-" + "y" * 32, alice.customer_id, minutes=15)
    wrong_audience = jwt.encode({"sub": alice.customer_id, "aud": "iotistic-api",
                                 "exp": dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)}, secret, algorithm="HS256")
    unsigned = jwt.encode({"sub": alice.customer_id, "aud": AUDIENCE,
                           "exp": dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)}, None, algorithm="none")
    for token in (expired, forged, wrong_audience, unsigned, OPERATOR_TOKEN[:-1]):
        r = await billing_client.get(url, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401, token
    assert (await billing_client.get(url, headers=alice.headers)).status_code == 200


async def test_operator_lists_customers_and_reads_any(billing_api: BillingApi,
                                                      billing_client: httpx.AsyncClient) -> None:
    alice = await billing_api.signup("starter")
    bob = await billing_api.signup("enterprise")
    r = await billing_client.get("/api/operator/customers", headers=BillingApi.operator_headers)
    assert r.status_code == 200
    page = r.json()
    assert page["total"] == 2
    assert {(c["id"], c["plan"], c["status"], c["deployment_status"]) for c in page["items"]} == {
        (alice.customer_id, "starter", "trialing", "pending"), (bob.customer_id, "enterprise", "trialing", "pending")}
    assert "password_hash" not in r.text
    r = await billing_client.get("/api/operator/customers?limit=1&offset=1", headers=BillingApi.operator_headers)
    assert len(r.json()["items"]) == 1
    r = await billing_client.get("/api/operator/customers?limit=0", headers=BillingApi.operator_headers)
    assert r.status_code == 422
    r = await billing_client.get(f"/api/customers/{bob.customer_id}/license", headers=BillingApi.operator_headers)
    assert r.json()["plan"] == "enterprise"
    r = await billing_client.get(f"/api/customers/{FAKE_ID}", headers=BillingApi.operator_headers)
    assert r.status_code == 404


async def test_operator_changes_a_subscription_and_redeploys(billing_api: BillingApi,
                                                            billing_client: httpx.AsyncClient) -> None:
    alice = await billing_api.signup("starter")
    first_job = alice.body["deployment"]["job"]["id"]
    url = f"/api/operator/customers/{alice.customer_id}/subscription"
    r = await billing_client.patch(url, json={"plan": "enterprise", "status": "active"},
                                   headers=BillingApi.operator_headers)
    assert r.status_code == 200, r.text
    assert r.json()["changed"] is True
    assert r.json()["subscription"]["plan"] == "enterprise"
    licence = (await billing_client.get(f"/api/customers/{alice.customer_id}/license", headers=alice.headers)).json()
    assert licence["claims"]["plan"] == "enterprise"
    assert licence["claims"]["trial"]["isTrial"] is False
    deployment = (await billing_client.get(f"/api/customers/{alice.customer_id}/deployment",
                                           headers=alice.headers)).json()
    assert deployment["job"]["id"] > first_job and deployment["job"]["status"] == "queued"

    # The same change again changes nothing.
    r = await billing_client.patch(url, json={"plan": "enterprise"}, headers=BillingApi.operator_headers)
    assert r.json()["changed"] is False

    r = await billing_client.patch(url, json={"plan": "gold"}, headers=BillingApi.operator_headers)
    assert r.status_code == 422 and "unknown plan" in r.json()["message"]
    r = await billing_client.patch(url, json={"status": "paused"}, headers=BillingApi.operator_headers)
    assert r.status_code == 422

    r = await billing_client.post(f"/api/operator/customers/{alice.customer_id}/redeploy",
                                  headers=BillingApi.operator_headers)
    assert r.status_code == 202
    assert r.json()["job"]["id"] > deployment["job"]["id"]
    r = await billing_client.post(f"/api/operator/customers/{FAKE_ID}/redeploy", headers=BillingApi.operator_headers)
    assert r.status_code == 404


async def test_a_canceled_customer_is_not_redeployed_over_its_removal(billing_api: BillingApi,
                                                                     billing_client: httpx.AsyncClient) -> None:
    alice = await billing_api.signup()
    r = await billing_client.patch(f"/api/operator/customers/{alice.customer_id}/subscription",
                                   json={"status": "canceled"}, headers=BillingApi.operator_headers)
    assert r.json()["subscription"]["cancel_effective_at"] is not None
    r = await billing_client.post(f"/api/operator/customers/{alice.customer_id}/redeploy",
                                  headers=BillingApi.operator_headers)
    assert r.status_code == 409
    job = (await billing_client.get(f"/api/customers/{alice.customer_id}/deployment",
                                    headers=alice.headers)).json()["job"]
    assert (job["kind"], job["status"]) == ("remove", "queued")


@pytest.mark.parametrize("billing_settings_env", [{"BILLING_OPERATOR_TOKEN": None}], indirect=False)
async def test_without_an_operator_token_internal_routes_refuse_everyone(
        billing_client: httpx.AsyncClient) -> None:
    r = await billing_client.get("/api/operator/customers", headers={"Authorization": "Bearer "})
    assert r.status_code == 401
    r = await billing_client.get("/api/operator/customers", headers=BillingApi.operator_headers)
    assert r.status_code == 401
