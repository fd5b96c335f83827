"""build_values, values_digest and values_yaml: pure, no helm."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

import pytest
import yaml

from iotistic.billing.deploy.values import (
    SIZING,
    SUBSCRIPTION_STATUSES,
    Platform,
    build_values,
    memory_bytes,
    values_digest,
    values_yaml,
)
from iotistic.core.plans import PLANS
from tests.charts.conftest import CUSTOMER_ID, HOST, MakeSpec

HOSTILE = 'ACME "Ltd"\n---\nkind: Namespace\nmetadata: {name: kube-system}\n{{ .Release.Name }} #: \\ \t é'


def test_every_plan_of_the_catalogue_is_sized() -> None:
    assert set(SIZING) == set(PLANS)
    for name, plan in PLANS.items():
        sizing = SIZING[name]
        # Dedicated monitoring needs its Prometheus and Grafana sized; shared monitoring has none to size.
        assert (sizing.prometheus is not None) == plan.dedicated_prometheus
        assert (sizing.grafana is not None) == plan.dedicated_prometheus


@pytest.mark.parametrize("plan", sorted(PLANS))
def test_values_follow_the_plan(plan: str, make_spec: MakeSpec) -> None:
    spec = make_spec(plan)
    values = build_values(spec, Platform(license_public_key="PEM"))
    sizing = SIZING[plan]
    assert values["customer"] == {"id": CUSTOMER_ID, "plan": plan, "subscriptionStatus": "trialing", "company": ""}
    assert values["license"] == {"token": spec.license_jwt, "publicKey": "PEM"}
    assert values["ingress"]["host"] == HOST
    assert values["monitoring"]["retentionDays"] == PLANS[plan].retention_days
    assert values["monitoring"]["mode"] == ("dedicated" if PLANS[plan].dedicated_prometheus else "shared")
    assert ("prometheus" in values["monitoring"]) == PLANS[plan].dedicated_prometheus
    assert values["api"]["replicas"] == sizing.api_replicas
    assert values["ingest"]["replicas"] == sizing.ingest_replicas
    assert values["quota"] == sizing.quota.as_values()
    assert values["postgresql"]["storage"]["size"] == sizing.database_storage
    # Mosquitto refuses messages at 80% of its container's memory limit rather than being OOM-killed.
    limit = memory_bytes(sizing.broker["limits"]["memory"])
    assert values["mqtt"]["memoryLimitBytes"] == int(limit * 0.8)


def test_bigger_plans_get_more() -> None:
    order = ["starter", "professional", "enterprise"]
    assert order == sorted(PLANS, key=lambda name: order.index(name))
    for field in ("requests_cpu", "requests_memory", "limits_cpu", "limits_memory", "requests_storage"):
        sizes = [memory_bytes(v) if v.endswith("i") else float(v)
                 for v in (getattr(SIZING[name].quota, field) for name in order)]
        assert sizes == sorted(sizes) and len(set(sizes)) == 3, field
    retention = [PLANS[name].retention_days for name in order]
    assert retention == sorted(retention)


def test_platform_settings_reach_the_values(make_spec: MakeSpec) -> None:
    platform = Platform(license_public_key="KEY", image_repository="registry.example/iotistic", image_tag="1.2.3",
                        ingress_class="traefik", tls_cluster_issuer="letsencrypt", storage_class="fast",
                        ingress_namespace="traefik", monitoring_namespace="observability",
                        service_monitor_labels={"prometheus": "shared"})
    values = build_values(make_spec("professional"), platform)
    assert values["image"] == {"repository": "registry.example/iotistic", "tag": "1.2.3"}
    assert values["ingress"]["className"] == "traefik"
    assert values["ingress"]["tls"] == {"enabled": True, "clusterIssuer": "letsencrypt"}
    assert values["storageClass"] == "fast"
    assert values["networkPolicy"] == {"ingressNamespace": "traefik", "monitoringNamespace": "observability"}
    assert values["monitoring"]["serviceMonitor"]["labels"] == {"prometheus": "shared"}


@pytest.mark.parametrize(("change", "message"), [
    ({"plan": "free"}, "unknown plan"),
    ({"plan": "Enterprise"}, "unknown plan"),
    ({"subscription_status": "paid"}, "subscription status"),
    ({"ingress_host": "Upper.Example.com"}, "ingress host"),
    ({"ingress_host": "localhost"}, "ingress host"),
    ({"ingress_host": "a.example\n  - host: evil.example"}, "ingress host"),
    ({"ingress_host": "evil.example/x"}, "ingress host"),
    ({"ingress_host": "-a.example"}, "ingress host"),
    ({"license_jwt": ""}, "not a signed JWT"),
    ({"license_jwt": "-----BEGIN PUBLIC KEY-----"}, "not a signed JWT"),
    ({"license_jwt": "a.b.c\nkind: Secret"}, "not a signed JWT"),
    ({"customer_id": "Customer_1"}, "cannot name a namespace"),
    ({"customer_id": "c1\n"}, "cannot name a namespace"),
])
def test_inputs_the_chart_must_never_see_are_refused(change: dict[str, str], message: str,
                                                     make_spec: MakeSpec) -> None:
    spec = replace(make_spec("starter"), **change)
    with pytest.raises(ValueError, match=message):
        build_values(spec)


def test_bad_platform_labels_and_long_company_names_are_refused(make_spec: MakeSpec) -> None:
    with pytest.raises(ValueError, match="label"):
        build_values(make_spec(), Platform(service_monitor_labels={"release": "a b"}))
    with pytest.raises(ValueError, match="company name longer"):
        build_values(make_spec(), company="x" * 201)


def test_every_subscription_status_is_accepted(make_spec: MakeSpec) -> None:
    for status in SUBSCRIPTION_STATUSES:
        assert build_values(make_spec(status=status))["customer"]["subscriptionStatus"] == status


def test_values_yaml_keeps_hostile_text_a_string(make_spec: MakeSpec) -> None:
    values = build_values(make_spec(), company=HOSTILE)
    text = values_yaml(values)
    assert yaml.safe_load(text) == values
    assert len(list(yaml.safe_load_all(text))) == 1  # the company's "---" did not start a second document


def test_values_digest_is_the_sha256_of_canonical_json(make_spec: MakeSpec) -> None:
    values = build_values(make_spec("enterprise"), company="Ünïcode GmbH")
    canonical = json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert values_digest(values) == hashlib.sha256(canonical).hexdigest()
    reordered = json.loads(json.dumps(values, sort_keys=True))
    reordered = dict(reversed(list(reordered.items())))
    assert values_digest(reordered) == values_digest(values)


def test_values_digest_changes_with_the_licence_and_the_plan(make_spec: MakeSpec) -> None:
    first = make_spec("starter")
    digest = values_digest(build_values(first))
    assert values_digest(build_values(first)) == digest  # pure: same spec, same digest
    other_licence = replace(first, license_jwt=first.license_jwt[:-2] + ("AA" if first.license_jwt[-2:] != "AA"
                                                                           else "BB"))
    assert values_digest(build_values(other_licence)) != digest
    assert values_digest(build_values(make_spec("professional"))) != digest


def test_memory_bytes() -> None:
    assert memory_bytes("256Mi") == 256 * 2**20
    assert memory_bytes("2Gi") == 2 * 2**30
    with pytest.raises(ValueError, match="binary suffix"):
        memory_bytes("1G")
