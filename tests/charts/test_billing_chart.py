"""charts/billing rendered by the real helm binary: schemas, secrets, and the worker's RBAC against what
charts/customer-instance actually contains."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from iotistic.billing.deploy.values import build_values
from iotistic.billing.settings import BillingSettings
from iotistic.core.plans import PLANS
from tests.charts.conftest import MakeSpec
from tests.charts.manifests import (
    BILLING_CHART,
    CUSTOMER_CHART,
    all_containers,
    by_kind,
    env_of,
    lint,
    one,
    pod_spec,
    render,
    schema_errors,
    secret_text,
    template,
    workloads,
)

NAMESPACE = "iotistic-billing"
BASE = {"ingress": {"host": "billing.iotistic.example"}, "settings": {"ingressDomain": "iotistic.example",
                                                                      "prometheusUrl": "http://prometheus:9090"}}
STRIPE = {"apiKey": "sk_test_123", "webhookSecret": "whsec_456",
          "prices": {"starter": "price_s", "professional": "price_p", "enterprise": "price_e"}}
# Set for Kubernetes' $(VAR) expansion or for helm, not read by BillingSettings.
NOT_SETTINGS = {"DB_PASSWORD", "HOME"}


def billing(tmp_path: Path, **extra: Any) -> list[dict[str, Any]]:
    values = {**BASE, **extra}
    return render(BILLING_CHART, values, tmp_path, namespace=NAMESPACE, release="billing")


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """Rendered once: helm generates a 4096-bit signing key at every render (a few seconds)."""
    return billing(tmp_path_factory.mktemp("billing"), stripe=STRIPE)


def test_helm_lint_strict_passes(tmp_path: Path) -> None:
    result = lint(BILLING_CHART, {**BASE, "stripe": STRIPE}, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


def test_host_and_domain_are_required(tmp_path: Path) -> None:
    result = template(BILLING_CHART, None, tmp_path)
    assert result.returncode != 0
    assert "/ingress/host" in result.stderr and "/settings/ingressDomain" in result.stderr


def test_every_manifest_validates_against_its_schema(docs: list[dict[str, Any]], tmp_path: Path) -> None:
    assert len(docs) >= 15
    assert [error for doc in docs for error in schema_errors(doc)] == []
    external = billing(tmp_path, postgresql={"enabled": False, "external": {"urlSecret": {"name": "db"}}},
                       signingKey={"existingSecret": "licence-key"}, stripe={"existingSecret": "stripe-keys"},
                       secrets={"existingSecret": "billing-tokens"})
    assert [error for doc in external for error in schema_errors(doc)] == []
    # Nothing is generated when everything is provided, and the pods read what was named.
    assert by_kind(external, "Secret") == {} and by_kind(external, "StatefulSet") == {}
    worker = pod_spec(one(external, "Deployment", "billing-worker"))
    env = env_of(worker["containers"][0])
    assert env["BILLING_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "db", "key": "url"}
    assert env["STRIPE_WEBHOOK_SECRET"]["valueFrom"]["secretKeyRef"]["name"] == "stripe-keys"
    assert env["BILLING_OPERATOR_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "billing-tokens"
    assert next(v for v in worker["volumes"] if v["name"] == "signing-key")["secret"]["secretName"] == "licence-key"


def test_service_settings_are_billing_settings(docs: list[dict[str, Any]]) -> None:
    known = {field.alias for field in BillingSettings.model_fields.values() if field.alias}
    for workload in workloads(docs):
        for container in all_containers(pod_spec(workload)):
            if container["image"].startswith('ghcr.io/iotistic/iotistic'):
                unknown = set(env_of(container)) - known - NOT_SETTINGS
                assert unknown == set(), f"{workload['metadata']['name']}: {unknown}"
    worker = env_of(pod_spec(one(docs, "Deployment", "billing-worker"))["containers"][0])
    assert worker["STRIPE_PRICE_ENTERPRISE"]["value"] == "price_e"
    assert worker["STRIPE_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "billing-stripe", "key": "api-key"}
    assert worker["BILLING_DATABASE_URL"]["value"] == \
        "postgresql://billing:$(DB_PASSWORD)@billing-postgresql:5432/billing"
    names = [e["name"] for e in pod_spec(one(docs, "Deployment", "billing-worker"))["containers"][0]["env"]]
    assert names.index("DB_PASSWORD") < names.index("BILLING_DATABASE_URL")
    stripe = one(docs, "Secret", "billing-stripe")
    assert secret_text(stripe, "api-key") == "sk_test_123" and secret_text(stripe, "webhook-secret") == "whsec_456"


def test_the_generated_signing_key_is_one_billing_accepts_and_is_kept(docs: list[dict[str, Any]],
                                                                      tmp_path: Path) -> None:
    secret = one(docs, "Secret", "billing-signing-key")
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    pem_path = tmp_path / "private-key.pem"
    pem_path.write_text(secret_text(secret, "private-key.pem"))
    settings = BillingSettings(BILLING_PRIVATE_KEY_FILE=pem_path)  # type: ignore[call-arg]
    assert "BEGIN PUBLIC KEY" in settings.public_key_pem
    # The service reads it from the mounted file the setting names.
    api = pod_spec(one(docs, "Deployment", "billing-api"))
    path = env_of(api["containers"][0])["BILLING_PRIVATE_KEY_FILE"]["value"]
    mount = next(m for m in api["containers"][0]["volumeMounts"] if path.startswith(m["mountPath"] + "/"))
    volume = next(v for v in api["volumes"] if v["name"] == mount["name"])
    assert volume["secret"] == {"secretName": "billing-signing-key", "defaultMode": 0o440,
                                "items": [{"key": "private-key.pem", "path": Path(path).name}]}
    generated = one(docs, "Secret", "billing-secrets")
    assert len(secret_text(generated, "operator-token")) == 48 and len(secret_text(generated, "jwt-secret")) == 48


def test_only_the_worker_holds_kubernetes_credentials(docs: list[dict[str, Any]]) -> None:
    for workload in workloads(docs):
        spec = pod_spec(workload)
        is_worker = workload["metadata"]["name"] == "billing-worker"
        assert spec["automountServiceAccountToken"] is is_worker
        assert spec.get("serviceAccountName") == ("billing-worker" if is_worker else None)
        assert spec["securityContext"]["runAsNonRoot"] is True
        for container in all_containers(spec):
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
    binding = one(docs, "ClusterRoleBinding", f"{NAMESPACE}-billing-deployer")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "billing-worker", "namespace": NAMESPACE}]


def _plural(kind: str) -> str:
    lower = kind.lower()
    if lower.endswith("y"):
        return lower[:-1] + "ies"
    return lower + ("es" if lower.endswith("s") else "s")


def test_the_worker_may_do_exactly_what_deploying_an_instance_needs(
        docs: list[dict[str, Any]], make_spec: MakeSpec, platform: Any, tmp_path: Path) -> None:
    """Every kind any plan's instance contains is writable by the worker; nothing else is, besides namespaces."""
    rules = one(docs, "ClusterRole", f"{NAMESPACE}-billing-deployer")["rules"]
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in rules:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    assert not any("*" in key[0] or "*" in key[1] for key in granted)
    needed = set()
    for plan in PLANS:
        for doc in render(CUSTOMER_CHART, build_values(make_spec(plan), platform), tmp_path):
            group = doc["apiVersion"].rpartition("/")[0]
            needed.add((group, _plural(doc["kind"])))
    write = {"get", "list", "watch", "create", "update", "patch", "delete"}
    for key in needed:
        assert write <= granted.get(key, set()), f"the worker cannot manage {key}"
    assert granted[("", "namespaces")] == {"get", "create", "delete"}
    read_only = {key for key, verbs in granted.items() if verbs == {"get", "list", "watch"}}
    assert read_only == {("", "pods"), ("apps", "replicasets"), ("apps", "controllerrevisions")}
    assert set(granted) == needed | read_only | {("", "namespaces")}
    for forbidden in [("rbac.authorization.k8s.io", "roles"), ("rbac.authorization.k8s.io", "clusterroles"),
                      ("", "nodes"), ("apiextensions.k8s.io", "customresourcedefinitions")]:
        assert forbidden not in granted


def test_writes_outside_customer_namespaces_are_refused_by_admission(docs: list[dict[str, Any]],
                                                                     tmp_path: Path) -> None:
    policy = one(docs, "ValidatingAdmissionPolicy", f"{NAMESPACE}-billing-customer-namespaces-only")["spec"]
    assert policy["failurePolicy"] == "Fail"
    assert policy["matchConstraints"]["resourceRules"][0]["operations"] == ["CREATE", "UPDATE", "DELETE"]
    assert policy["matchConditions"][0]["expression"] == \
        f"request.userInfo.username == 'system:serviceaccount:{NAMESPACE}:billing-worker'"
    expression = " ".join(policy["validations"][0]["expression"].split())
    assert expression == ("request.kind.kind == 'Namespace' ? request.name.startsWith('customer-') "
                          ": request.namespace.startsWith('customer-')")
    binding = one(docs, "ValidatingAdmissionPolicyBinding", f"{NAMESPACE}-billing-customer-namespaces-only")
    assert binding["spec"] == {"policyName": f"{NAMESPACE}-billing-customer-namespaces-only",
                               "validationActions": ["Deny"]}
    unrestricted = billing(tmp_path, rbac={"create": True, "restrictToCustomerNamespaces": False},
                           signingKey={"existingSecret": "licence-key"})
    assert "ValidatingAdmissionPolicy" not in {d["kind"] for d in unrestricted}
    assert "ClusterRole" in {d["kind"] for d in unrestricted}


def test_the_database_is_reachable_only_from_billing(docs: list[dict[str, Any]]) -> None:
    policies = by_kind(docs, "NetworkPolicy")
    assert policies["billing-default-deny"]["spec"]["policyTypes"] == ["Ingress"]
    assert "ingress" not in policies["billing-default-deny"]["spec"]
    database = policies["billing-postgresql-from-billing"]["spec"]["ingress"][0]
    assert database["ports"] == [{"protocol": "TCP", "port": 5432}]
    assert database["from"][0]["podSelector"]["matchExpressions"][0]["values"] == ["api", "worker", "migrate"]
    api = policies["billing-api-from-ingress-controller"]["spec"]["ingress"][0]
    assert api["ports"] == [{"protocol": "TCP", "port": 3100}]
    assert one(docs, "Ingress", "billing")["spec"]["rules"][0]["host"] == "billing.iotistic.example"
