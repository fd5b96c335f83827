"""The Helm values of `charts/customer-instance` for one customer, built as data from an `InstanceSpec`.

Values are a dict serialised with `yaml.safe_dump`: nothing a customer typed is ever pasted into YAML or
template text, so a company name with quotes, newlines or `{{ }}` stays a string. The chart's own
`values.schema.json` checks the same shapes again when Helm renders (a second line of defence, and the one that
protects a hand-written values file).

Sizing comes from the one plan catalogue (`iotistic.core.plans`): retention and dedicated monitoring are the
plan's; replicas, volumes, container resources and the namespace's ResourceQuota are chosen here per plan.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from iotistic.billing.deploy.spec import InstanceSpec, namespace_for
from iotistic.core.plans import get_plan

SUBSCRIPTION_STATUSES = frozenset({"trialing", "active", "past_due", "unpaid", "canceled"})

# RFC 1123 host name: lower-case labels of at most 63 characters, at least two labels, 253 in all.
_HOST = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
# A compact JWS: three base64url segments. The licence goes into a Secret whatever it holds; checking its shape
# here turns a mix-up (an empty token, a PEM, an error text) into a clear error instead of a dead instance.
_JWT = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
COMPANY_MAX = 200


_BINARY_SUFFIXES = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
# Mosquitto's memory_limit as a share of its container's limit: the rest is the process itself and headroom,
# so a flood of queued messages makes the broker refuse messages instead of being OOM-killed.
BROKER_MEMORY_SHARE = 0.8


def memory_bytes(quantity: str) -> int:
    """Bytes of a Kubernetes memory quantity with a binary suffix (the only kind SIZING uses)."""
    for suffix, factor in _BINARY_SUFFIXES.items():
        if quantity.endswith(suffix):
            return int(quantity.removesuffix(suffix)) * factor
    raise ValueError(f"memory quantity {quantity!r} has no binary suffix (Ki, Mi, Gi, Ti)")


def resources(cpu_request: str, memory_request: str, cpu_limit: str, memory_limit: str) -> dict[str, Any]:
    return {"requests": {"cpu": cpu_request, "memory": memory_request},
            "limits": {"cpu": cpu_limit, "memory": memory_limit}}


@dataclass(frozen=True)
class Quota:
    """The namespace's ResourceQuota. It must hold every pod of the plan at full size plus a rolling update's
    surge pod and the migration Job (tests/charts checks that against the rendered manifests)."""

    requests_cpu: str
    requests_memory: str
    limits_cpu: str
    limits_memory: str
    requests_storage: str
    pods: int
    persistent_volume_claims: int
    load_balancers: int = 1  # the MQTT Service devices connect to

    def as_values(self) -> dict[str, Any]:
        return {"requestsCpu": self.requests_cpu, "requestsMemory": self.requests_memory,
                "limitsCpu": self.limits_cpu, "limitsMemory": self.limits_memory,
                "requestsStorage": self.requests_storage, "pods": self.pods,
                "persistentVolumeClaims": self.persistent_volume_claims, "loadBalancers": self.load_balancers}


@dataclass(frozen=True)
class PlanSizing:
    api_replicas: int
    ingest_replicas: int
    api: dict[str, Any]
    ingest: dict[str, Any]
    database: dict[str, Any]
    database_storage: str
    broker: dict[str, Any]  # Mosquitto's memory holds the queues of offline persistent sessions
    broker_storage: str
    quota: Quota
    prometheus: dict[str, Any] | None = None  # dedicated monitoring only
    prometheus_storage: str | None = None
    grafana: dict[str, Any] | None = None


# Telemetry volume grows with retention (30 / 90 / 365 days) and with the device limit (10 / 50 / unlimited).
SIZING: dict[str, PlanSizing] = {
    "starter": PlanSizing(
        api_replicas=1, ingest_replicas=1,
        api=resources("100m", "256Mi", "1", "512Mi"),
        ingest=resources("100m", "128Mi", "500m", "256Mi"),
        database=resources("250m", "512Mi", "1", "1Gi"), database_storage="10Gi",
        broker=resources("50m", "64Mi", "500m", "256Mi"), broker_storage="1Gi",
        quota=Quota(requests_cpu="2", requests_memory="4Gi", limits_cpu="8", limits_memory="8Gi",
                    requests_storage="20Gi", pods=20, persistent_volume_claims=4),
    ),
    "professional": PlanSizing(
        api_replicas=2, ingest_replicas=2,
        api=resources("200m", "384Mi", "1", "768Mi"),
        ingest=resources("200m", "192Mi", "1", "384Mi"),
        database=resources("500m", "1Gi", "2", "2Gi"), database_storage="50Gi",
        broker=resources("100m", "128Mi", "1", "1Gi"), broker_storage="5Gi",
        quota=Quota(requests_cpu="4", requests_memory="8Gi", limits_cpu="16", limits_memory="16Gi",
                    requests_storage="80Gi", pods=30, persistent_volume_claims=6),
    ),
    "enterprise": PlanSizing(
        api_replicas=3, ingest_replicas=3,
        api=resources("500m", "512Mi", "2", "1Gi"),
        ingest=resources("500m", "256Mi", "2", "512Mi"),
        database=resources("1", "2Gi", "4", "4Gi"), database_storage="200Gi",
        broker=resources("250m", "256Mi", "2", "2Gi"), broker_storage="20Gi",
        prometheus=resources("250m", "1Gi", "2", "4Gi"), prometheus_storage="50Gi",
        grafana=resources("100m", "128Mi", "1", "512Mi"),
        quota=Quota(requests_cpu="10", requests_memory="20Gi", limits_cpu="40", limits_memory="40Gi",
                    requests_storage="300Gi", pods=50, persistent_volume_claims=10),
    ),
}


@dataclass(frozen=True)
class Platform:
    """What every customer instance of one installation shares. The deployer builds it once from its settings
    (e.g. `license_public_key=settings.public_key_pem`); the defaults match the chart's values.yaml."""

    license_public_key: str = ""  # PEM of the billing key; without it every instance runs in free mode
    image_repository: str = "ghcr.io/iotistic/iotistic"
    image_tag: str = ""  # "": the chart's appVersion
    ingress_class: str = "nginx"
    tls_cluster_issuer: str = ""  # cert-manager ClusterIssuer for the per-customer certificate; "": none
    storage_class: str = ""  # "": the cluster's default StorageClass
    ingress_namespace: str = "ingress-nginx"  # where the ingress controller runs (NetworkPolicy)
    monitoring_namespace: str = "monitoring"  # where the shared Prometheus runs (NetworkPolicy)
    # Labels the shared Prometheus selects ServiceMonitors by (prometheus-operator's serviceMonitorSelector).
    service_monitor_labels: Mapping[str, str] = field(default_factory=lambda: {"release": "prometheus"})
    # The VPN certificate manager (charts/vpn-server) instances get device VPN configurations from; "": no VPN.
    vpn_cert_manager_url: str = ""
    vpn_service_token: str = field(default="", repr=False)


def build_values(spec: InstanceSpec, platform: Platform | None = None, *,
                 company: str | None = None) -> dict[str, Any]:
    """The values for `helm upgrade --install` of one customer's instance. Pure: same input, same values.

    Raises ValueError with a readable message for an input the chart must never see (unknown plan, a host
    that is not a DNS name, a licence that is not a JWT, ...)."""
    platform = platform or Platform()
    namespace_for(spec.customer_id)  # the same check the namespace gets: a bad id fails here, not in Kubernetes
    plan = get_plan(spec.plan)
    sizing = SIZING[plan.name]
    if spec.subscription_status not in SUBSCRIPTION_STATUSES:
        raise ValueError(f"subscription status {spec.subscription_status!r} is not one of "
                         f"{', '.join(sorted(SUBSCRIPTION_STATUSES))}")
    if not _HOST.fullmatch(spec.ingress_host):
        raise ValueError(f"ingress host {spec.ingress_host!r} is not a lower-case DNS name")
    if not _JWT.fullmatch(spec.license_jwt):
        raise ValueError("the licence is not a signed JWT (three base64url segments)")
    for key, value in platform.service_monitor_labels.items():
        if not _LABEL_VALUE.fullmatch(value) or len(value) > 63:
            raise ValueError(f"ServiceMonitor label {key}={value!r} is not a valid label value")
    if company is not None and len(company) > COMPANY_MAX:
        raise ValueError(f"company name longer than {COMPANY_MAX} characters")

    dedicated = plan.dedicated_prometheus
    monitoring: dict[str, Any] = {
        "mode": "dedicated" if dedicated else "shared",
        "retentionDays": plan.retention_days,
        "serviceMonitor": {"labels": dict(platform.service_monitor_labels)},
    }
    if dedicated:
        if sizing.prometheus is None or sizing.prometheus_storage is None or sizing.grafana is None:
            raise ValueError(f"plan {plan.name!r} has dedicated monitoring but no Prometheus/Grafana sizing")
        monitoring["prometheus"] = {"resources": sizing.prometheus,
                                    "storage": {"size": sizing.prometheus_storage}}
        monitoring["grafana"] = {"resources": sizing.grafana}

    return {
        "customer": {"id": spec.customer_id, "plan": plan.name, "subscriptionStatus": spec.subscription_status,
                     "company": company or ""},
        "image": {"repository": platform.image_repository, "tag": platform.image_tag},
        "license": {"token": spec.license_jwt, "publicKey": platform.license_public_key},
        "ingress": {"host": spec.ingress_host, "className": platform.ingress_class,
                    "tls": {"enabled": True, "clusterIssuer": platform.tls_cluster_issuer}},
        "storageClass": platform.storage_class,
        "api": {"replicas": sizing.api_replicas, "resources": sizing.api},
        "ingest": {"replicas": sizing.ingest_replicas, "resources": sizing.ingest},
        "postgresql": {"enabled": True, "resources": sizing.database,
                       "storage": {"size": sizing.database_storage}},
        "mqtt": {"resources": sizing.broker, "storage": {"size": sizing.broker_storage},
                 "memoryLimitBytes": int(memory_bytes(sizing.broker["limits"]["memory"]) * BROKER_MEMORY_SHARE)},
        "monitoring": monitoring,
        "networkPolicy": {"ingressNamespace": platform.ingress_namespace,
                          "monitoringNamespace": platform.monitoring_namespace},
        "quota": sizing.quota.as_values(),
        "vpn": _vpn_values(plan.features.get("vpn") is True, platform),
    }


def _vpn_values(licensed: bool, platform: Platform) -> dict[str, Any]:
    """VPN for plans with the `vpn` feature, when this installation runs a certificate manager."""
    if not (licensed and platform.vpn_cert_manager_url and platform.vpn_service_token):
        return {"enabled": False}
    return {"enabled": True, "certManagerUrl": platform.vpn_cert_manager_url,
            "serviceToken": platform.vpn_service_token}


def values_digest(values: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of the values: equal digests, equal deployments (the `deployments` row)."""
    canonical = json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def values_yaml(values: Mapping[str, Any]) -> str:
    """The values file handed to `helm --values`: safe_dump quotes whatever needs quoting."""
    return yaml.safe_dump(dict(values), sort_keys=True, allow_unicode=True, default_flow_style=False)

