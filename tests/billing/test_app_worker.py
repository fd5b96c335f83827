"""The service with its deployment worker inside (`iotistic billing serve`): signup to a deployed instance."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from iotistic.billing.app import create_app
from iotistic.billing.settings import BillingSettings
from tests.billing.conftest import BillingApi, RecordingDeployer, empty_billing_tables


@pytest.fixture
def billing_settings_env() -> dict[str, object]:
    return {"BILLING_WORKER_POLL_SECONDS": 0.05}


async def _deployed(client: httpx.AsyncClient, customer_id: str, headers: dict[str, str],
                    revision: int) -> dict[str, object]:
    """The deployment once it reached `revision` (or whatever it is after 15 s)."""
    deadline = time.monotonic() + 15
    while True:
        body: dict[str, object] = (await client.get(f"/api/customers/{customer_id}/deployment",
                                                    headers=headers)).json()
        if (body["status"], body["revision"]) == ("deployed", revision) or time.monotonic() > deadline:
            return body
        await asyncio.sleep(0.05)


async def test_the_worker_inside_the_service_deploys_signups_and_changes(billing_settings: BillingSettings) -> None:
    deployer = RecordingDeployer()
    application = create_app(billing_settings, deployer=deployer)
    try:
        async with application.router.lifespan_context(application):
            transport = httpx.ASGITransport(app=application)
            async with httpx.AsyncClient(transport=transport, base_url="http://billing.test") as client:
                api = BillingApi(client)
                alice = await api.signup("starter")
                deployed = await _deployed(client, alice.customer_id, alice.headers, 1)
                assert deployed["status"] == "deployed" and deployed["revision"] == 1
                r = await client.patch(f"/api/operator/customers/{alice.customer_id}/subscription",
                                       json={"plan": "enterprise", "status": "active"},
                                       headers=BillingApi.operator_headers)
                assert r.status_code == 200
                upgraded = await _deployed(client, alice.customer_id, alice.headers, 2)
                assert (upgraded["status"], upgraded["revision"]) == ("deployed", 2)
                assert upgraded["values_digest"] != deployed["values_digest"]
        assert [spec.plan for spec in deployer.applied] == ["starter", "enterprise"]
    finally:
        await empty_billing_tables(billing_settings.sqlalchemy_url)
