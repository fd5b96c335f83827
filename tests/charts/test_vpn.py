"""VPN in a customer instance: billing turns it on for plans with the `vpn` feature when the installation runs a
certificate manager, and the chart hands the cloud API VPN_ENABLED, VPN_CERT_MANAGER_URL and the token (a Secret)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from iotistic.billing.deploy.deployer import KubernetesDeployer
from iotistic.billing.deploy.values import Platform, build_values
from iotistic.billing.settings import load_billing_settings
from iotistic.core.plans import PLANS
from iotistic.core.settings import load_cloud_settings
from tests.charts.conftest import MakeSpec
from tests.charts.manifests import (
    CUSTOMER_CHART,
    all_containers,
    env_of,
    one,
    pod_spec,
    render,
    schema_errors,
    secret_text,
    template,
)

URL = "http://cert-manager.vpn-server.svc:8080"
TOKEN = "vpn-service-token-" + "k" * 24


@pytest.fixture
def vpn_platform(platform: Platform) -> Platform:
    return dataclasses.replace(platform, vpn_cert_manager_url=URL, vpn_service_token=TOKEN)


@pytest.mark.parametrize("plan", sorted(PLANS))
def test_vpn_follows_the_plan_feature_when_a_certificate_manager_is_known(
        plan: str, make_spec: MakeSpec, platform: Platform, vpn_platform: Platform) -> None:
    values = build_values(make_spec(plan), vpn_platform)["vpn"]
    if PLANS[plan].features.get("vpn"):
        assert values == {"enabled": True, "certManagerUrl": URL, "serviceToken": TOKEN}
    else:
        assert values == {"enabled": False}
    assert build_values(make_spec(plan), platform)["vpn"] == {"enabled": False}  # no certificate manager here


def api_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    [container] = [c for c in all_containers(pod_spec(one(docs, "Deployment", "iotistic-api"))) if c["name"] == "api"]
    return container


def test_the_api_gets_the_vpn_settings_and_the_token_from_a_secret(
        make_spec: MakeSpec, vpn_platform: Platform, tmp_path: Path) -> None:
    values = build_values(make_spec("professional"), vpn_platform)
    docs = render(CUSTOMER_CHART, values, tmp_path, namespace="customer-c0123456789ab")
    for doc in docs:
        assert not schema_errors(doc), (doc["kind"], doc["metadata"]["name"], schema_errors(doc))
    env = env_of(api_container(docs))
    assert env["VPN_ENABLED"]["value"] == "true" and env["VPN_CERT_MANAGER_URL"]["value"] == URL
    ref = env["VPN_SERVICE_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert secret_text(one(docs, "Secret", ref["name"]), ref["key"]) == TOKEN
    assert TOKEN not in str(one(docs, "Deployment", "iotistic-api"))  # only a reference in the pod spec
    # The cloud API accepts what the chart passes (VPN_ENABLED without URL and token is a start-up error).
    settings = load_cloud_settings(DATABASE_URL="sqlite+aiosqlite:///x.db", VPN_ENABLED="true",
                                   VPN_CERT_MANAGER_URL=URL, VPN_SERVICE_TOKEN=TOKEN)
    assert settings.vpn_enabled is True

    rotated = build_values(make_spec("professional"), dataclasses.replace(vpn_platform,
                                                                           vpn_service_token=TOKEN[::-1]))
    annotations = [pod_spec_annotations(render(CUSTOMER_CHART, v, tmp_path, namespace="customer-c0123456789ab"))
                   for v in (values, rotated)]
    assert annotations[0]["checksum/vpn"] != annotations[1]["checksum/vpn"]  # a new token rolls the API


def pod_spec_annotations(docs: list[dict[str, Any]]) -> dict[str, str]:
    annotations: dict[str, str] = one(docs, "Deployment", "iotistic-api")["spec"]["template"]["metadata"]["annotations"]
    return annotations


def test_without_vpn_the_api_has_no_vpn_settings(make_spec: MakeSpec, vpn_platform: Platform, tmp_path: Path) -> None:
    docs = render(CUSTOMER_CHART, build_values(make_spec("starter"), vpn_platform), tmp_path,
                  namespace="customer-c0123456789ab")
    assert not {"VPN_ENABLED", "VPN_CERT_MANAGER_URL", "VPN_SERVICE_TOKEN"} & set(env_of(api_container(docs)))
    assert not [d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"].endswith("-vpn")]
    assert "checksum/vpn" not in pod_spec_annotations(docs)


@pytest.mark.parametrize(("vpn", "complaint"), [
    ({"enabled": True}, "certManagerUrl"),
    ({"enabled": True, "certManagerUrl": URL, "serviceToken": "short"}, "serviceToken"),
    ({"enabled": True, "certManagerUrl": "file:///etc/passwd", "serviceToken": TOKEN}, "certManagerUrl"),
    ({"enabled": True, "certManagerUrl": URL, "serviceToken": TOKEN + "\nkey: injected"}, "serviceToken"),
])
def test_the_chart_schema_refuses_an_incomplete_or_hostile_vpn_block(
        vpn: dict[str, Any], complaint: str, make_spec: MakeSpec, platform: Platform, tmp_path: Path) -> None:
    values = {**build_values(make_spec("professional"), platform), "vpn": vpn}
    result = template(CUSTOMER_CHART, values, tmp_path)
    assert result.returncode != 0 and complaint in result.stderr, result.stderr


def test_billing_settings_give_the_deployer_the_certificate_manager(
        make_spec: MakeSpec, license_keys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BILLING_VPN_CERT_MANAGER_URL", URL)
    monkeypatch.setenv("BILLING_VPN_SERVICE_TOKEN", TOKEN)
    settings = load_billing_settings(private_key=license_keys.private_pem)
    assert TOKEN not in repr(settings)
    deployer = KubernetesDeployer.from_settings(settings)
    assert deployer.values(make_spec("enterprise"))["vpn"]["enabled"] is True
    assert TOKEN not in repr(deployer.platform)


def test_the_billing_worker_gets_the_certificate_manager_from_its_chart(tmp_path: Path) -> None:
    from iotistic.billing.settings import BillingSettings
    from tests.charts.test_billing_chart import billing

    vpn = {"certManagerUrl": URL, "serviceTokenSecret": "vpn-service-token"}
    docs = billing(tmp_path, worker={"instances": {"vpn": vpn}})
    worker = one(docs, "Deployment", "billing-worker")
    env = env_of(all_containers(pod_spec(worker))[0])
    assert env["BILLING_VPN_CERT_MANAGER_URL"]["value"] == URL
    assert env["BILLING_VPN_SERVICE_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "vpn-service-token",
                                                                            "key": "service-token"}
    aliases = {f.alias for f in BillingSettings.model_fields.values()}
    assert {"BILLING_VPN_CERT_MANAGER_URL", "BILLING_VPN_SERVICE_TOKEN"} <= aliases
    assert not schema_errors(worker)
    without = env_of(all_containers(pod_spec(one(billing(tmp_path), "Deployment", "billing-worker")))[0])
    assert "BILLING_VPN_CERT_MANAGER_URL" not in without
