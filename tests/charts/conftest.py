"""Fixtures of the chart tests: real RS256 licences and the values billing would install."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from iotistic.billing.deploy.spec import InstanceSpec
from iotistic.billing.deploy.values import Platform, build_values
from iotistic.core.licensing import issue_license
from tests.charts.manifests import CUSTOMER_CHART, render

CUSTOMER_ID = "c0123456789ab"
HOST = f"{CUSTOMER_ID}.iotistic.example"

MakeSpec = Callable[..., InstanceSpec]
Render = Callable[..., list[dict[str, Any]]]


@pytest.fixture
def make_spec(license_keys: Any) -> MakeSpec:
    def make(plan: str = "starter", *, status: str = "trialing", customer_id: str = CUSTOMER_ID,
             license_jwt: str | None = None, host: str | None = None) -> InstanceSpec:
        token = license_jwt or issue_license(license_keys.private_pem, customer_id=customer_id, plan=plan, days=14,
                                             trial=status == "trialing", subscription_status=status)
        return InstanceSpec(customer_id=customer_id, plan=plan, license_jwt=token, subscription_status=status,
                            ingress_host=host or f"{customer_id}.iotistic.example")

    return make


@pytest.fixture
def platform(license_keys: Any) -> Platform:
    return Platform(license_public_key=license_keys.public_pem)


@pytest.fixture
def instance(make_spec: MakeSpec, platform: Platform, tmp_path: Path) -> Render:
    """Render charts/customer-instance for a plan with exactly the values billing installs."""

    def run(plan: str = "starter", *, company: str | None = None, **spec: Any) -> list[dict[str, Any]]:
        values = build_values(make_spec(plan, **spec), platform, company=company)
        return render(CUSTOMER_CHART, values, tmp_path, namespace=f"customer-{values['customer']['id']}")

    return run
