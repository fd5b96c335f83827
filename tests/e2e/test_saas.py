"""The SaaS flow end to end (issue 6's "done when"), on PostgreSQL:

sign up -> trial licence the cloud API accepts -> the billing service's own worker deploys the instance (the real helm
binary and `kubernetes` client against the local fake Kubernetes API, the real charts/customer-instance) -> plan
upgrade paid in Stripe (the real `stripe` library against the local fake Stripe, webhook signed as Stripe signs) ->
new licence and the enterprise values (dedicated Prometheus and Grafana) in the cluster -> a replayed webhook changes
nothing -> a badly signed webhook is refused -> another customer cannot read this one's data.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from iotistic.billing.app import create_app as create_billing_app
from iotistic.billing.deploy.deployer import RELEASE, KubernetesDeployer
from iotistic.billing.deploy.helm import Helm
from iotistic.billing.deploy.kube import CUSTOMER_LABEL, Namespaces, client_factory
from iotistic.billing.deploy.spec import namespace_for
from iotistic.billing.deploy.values import Platform
from iotistic.billing.models import DeploymentJob, License, StripeEvent
from iotistic.cloud.models import Role
from tests.billing.conftest import BillingApi, SignedUp, empty_billing_tables, make_billing_settings
from tests.billing.test_deployer import CHART
from tests.conftest import Api, LicenseKeys
from tests.fakes.kube_api import FakeKubeApi
from tests.fakes.stripe_server import FakeStripe
from tests.fakes.stripe_signing import signed_request

pytestmark = pytest.mark.postgres

WEBHOOK_SECRET = "whsec_e2e_" + "w" * 32
PRICES = {"starter": "price_e2e_starter", "professional": "price_e2e_pro", "enterprise": "price_e2e_ent"}


@pytest.fixture
def db_url(postgresql_url: str) -> str:
    """The cloud API of this module runs on PostgreSQL only (the flow is the production one)."""
    return postgresql_url


@pytest.fixture
def stripe_fake() -> Iterator[FakeStripe]:
    fake = FakeStripe()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def kube() -> Iterator[FakeKubeApi]:
    with FakeKubeApi(namespace_termination_s=0.2) as api:
        yield api


@pytest.fixture
async def billing(billing_postgresql_url: str, tmp_path: Path, license_keys: LicenseKeys, stripe_fake: FakeStripe,
                  kube: FakeKubeApi, helm_bin: str) -> AsyncIterator[httpx.AsyncClient]:
    """The billing service as `iotistic billing serve` runs it: its deployment worker inside, with the Kubernetes
    deployer (real helm, real kubernetes client) pointed at the fake cluster."""
    kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
    settings = make_billing_settings(
        billing_postgresql_url, tmp_path / "billing", license_keys,
        STRIPE_API_KEY=stripe_fake.api_key, STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET, STRIPE_API_BASE=stripe_fake.url,
        BILLING_WORKER_POLL_SECONDS=0.2,
        **{f"STRIPE_PRICE_{plan.upper()}": price for plan, price in PRICES.items()})
    deployer = KubernetesDeployer(
        helm=Helm(binary=helm_bin, kubeconfig=kubeconfig, timeout_s=90),
        namespaces=Namespaces(client_factory(kubeconfig), delete_timeout_s=10),
        chart=CHART, platform=Platform(license_public_key=license_keys.public_pem))
    app = create_billing_app(settings, deployer=deployer)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 51000), raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://billing.test") as client:
                client.app = app  # type: ignore[attr-defined]  # the tests read the database through it
                yield client
    finally:
        await empty_billing_tables(settings.sqlalchemy_url)


async def deployed(client: httpx.AsyncClient, who: SignedUp, revision: int, within: float = 120.0
                   ) -> dict[str, Any]:
    """Waits for the worker to have applied `revision` of the customer's instance; returns the deployment."""
    deadline = time.monotonic() + within
    while True:
        r = await client.get(f"/api/customers/{who.customer_id}/deployment", headers=who.headers)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        assert body["status"] != "failed", body
        if body["status"] == "deployed" and body["revision"] >= revision:
            return body
        assert time.monotonic() < deadline, f"not deployed (revision {revision}) within {within} s: {body}"
        await asyncio.sleep(0.2)


async def counts(client: httpx.AsyncClient, customer_id: str) -> tuple[int, int, int]:
    """(licences, deployment jobs, Stripe events) in the billing database."""
    async with client.app.state.ctx.sessions() as session:  # type: ignore[attr-defined]
        licences = await session.scalar(select(func.count()).where(License.customer_id == customer_id))
        jobs = await session.scalar(select(func.count()).where(DeploymentJob.customer_id == customer_id))
        events = await session.scalar(select(func.count()).select_from(StripeEvent))
    return int(licences or 0), int(jobs or 0), int(events or 0)


def secret_text(secret: dict[str, Any], key: str) -> str:
    return base64.b64decode(secret["data"][key]).decode()


def workloads(kube: FakeKubeApi, namespace: str) -> set[str]:
    return {o["metadata"]["labels"].get("app.kubernetes.io/component", "")
            for kind in ("Deployment", "StatefulSet") for o in kube.list(kind, namespace)}


async def test_signup_deploy_upgrade_through_stripe_replay_bad_signature_and_isolation(
        billing: httpx.AsyncClient, kube: FakeKubeApi, stripe_fake: FakeStripe, client: httpx.AsyncClient,
        api: Api, license_keys: LicenseKeys) -> None:
    customers = BillingApi(billing)

    # 1. Signup: a trial on the chosen plan, and a licence the cloud API's licence code accepts.
    who = await customers.signup("starter", company="Acme GmbH")
    assert who.body["customer"]["subscription"]["status"] == "trialing"
    r = await billing.get("/api/license/public-key")
    assert r.status_code == 200 and r.json()["public_key"].strip() == license_keys.public_pem.strip()  # the cloud's
    trial = (await billing.get(f"/api/customers/{who.customer_id}/license", headers=who.headers)).json()
    owner = await api.headers_for(Role.owner)
    r = await client.put("/api/v1/license", json={"token": trial["token"]}, headers=owner)
    assert r.status_code == 200, r.text
    state = r.json()
    assert (state["mode"], state["plan"], state["customerId"]) == ("licensed", "starter", who.customer_id)
    assert state["trial"]["isTrial"] is True and state["limits"]["maxDevices"] == 10

    # 2. The deploy job: namespace customer-<id>, the chart applied with the trial licence, shared monitoring.
    first = await deployed(billing, who, revision=1)
    namespace = namespace_for(who.customer_id)
    assert first["namespace"] == namespace
    ns = kube.get("Namespace", namespace)
    assert ns is not None and ns["metadata"]["labels"][CUSTOMER_LABEL] == who.customer_id
    licence_secret = kube.get("Secret", f"{RELEASE}-license", namespace)
    assert licence_secret is not None and secret_text(licence_secret, "license") == trial["token"]
    assert {"api", "ingest", "mqtt", "redis", "postgresql", "exporter"} <= workloads(kube, namespace)
    assert "prometheus" not in workloads(kube, namespace) and kube.list("ServiceMonitor", namespace)
    [ingress] = kube.list("Ingress", namespace)
    assert ingress["spec"]["rules"][0]["host"] == f"{who.customer_id}.customers.iotistic.test"

    # 3. Upgrade to enterprise: Checkout, payment, and Stripe's signed webhook.
    r = await billing.post("/api/billing/checkout", json={"plan": "enterprise"}, headers=who.headers)
    assert r.status_code == 201, r.text
    completed = stripe_fake.complete_checkout(r.json()["session_id"])
    event = stripe_fake.event("checkout.session.completed", completed)
    body, headers = signed_request(event, WEBHOOK_SECRET)
    r = await billing.post("/api/webhooks/stripe", content=body, headers=headers)
    assert r.status_code == 200 and r.json()["duplicate"] is False, r.text

    upgraded = (await billing.get(f"/api/customers/{who.customer_id}/license", headers=who.headers)).json()
    assert upgraded["token"] != trial["token"]
    assert (upgraded["plan"], upgraded["subscription_status"]) == ("enterprise", "active")
    assert upgraded["claims"]["features"]["hasDedicatedPrometheus"] is True
    second = await deployed(billing, who, revision=2)
    assert second["values_digest"] != first["values_digest"]
    licence_secret = kube.get("Secret", f"{RELEASE}-license", namespace)
    assert licence_secret is not None and secret_text(licence_secret, "license") == upgraded["token"]
    assert {"prometheus", "grafana"} <= workloads(kube, namespace)  # dedicated monitoring for enterprise
    assert not kube.list("ServiceMonitor", namespace)
    r = await client.put("/api/v1/license", json={"token": upgraded["token"]}, headers=owner)
    assert r.status_code == 200 and (r.json()["plan"], r.json()["trial"]["isTrial"]) == ("enterprise", False)

    # 4. The same webhook again: acknowledged, nothing changes (no licence, no job, no redeploy).
    before = await counts(billing, who.customer_id)
    body, headers = signed_request(event, WEBHOOK_SECRET)
    r = await billing.post("/api/webhooks/stripe", content=body, headers=headers)
    assert r.status_code == 200 and r.json()["duplicate"] is True, r.text
    assert await counts(billing, who.customer_id) == before
    again = (await billing.get(f"/api/customers/{who.customer_id}/deployment", headers=who.headers)).json()
    assert (again["revision"], again["values_digest"]) == (second["revision"], second["values_digest"])

    # 5. A webhook with a bad signature (here: signed with another secret) is refused and not recorded.
    forged = stripe_fake.event("customer.subscription.deleted", stripe_fake.subscription(completed["subscription"]))
    body, headers = signed_request(forged, "whsec_not_the_endpoint_secret_" + "x" * 16)
    r = await billing.post("/api/webhooks/stripe", content=body, headers=headers)
    assert r.status_code == 400 and "signature" in r.json()["message"].lower(), r.text
    assert await counts(billing, who.customer_id) == before
    still = (await billing.get(f"/api/customers/{who.customer_id}/license", headers=who.headers)).json()
    assert still["token"] == upgraded["token"]

    # 6. Another customer sees none of it: its reads of this customer's id are 404s, as for an unknown id.
    other = await customers.signup("professional", company="Other Ltd")
    for path in ("", "/license", "/deployment", "/usage"):
        r = await billing.get(f"/api/customers/{who.customer_id}{path}", headers=other.headers)
        assert r.status_code == 404, (path, r.status_code, r.text)
        assert token_free(r.text, upgraded["token"])
    r = await billing.get("/api/operator/customers", headers=other.headers)
    assert r.status_code == 403
    mine = (await billing.get(f"/api/customers/{other.customer_id}", headers=other.headers)).json()
    assert mine["id"] == other.customer_id and who.email not in str(mine)


def token_free(text: str, token: str) -> bool:
    return token not in text
