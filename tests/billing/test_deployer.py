"""The Kubernetes deployer: the real helm binary and the real `kubernetes` client against a local fake API server.

No Kubernetes API server can run here; `tests/fakes/kube_api.py` serves what helm and the client use (discovery,
a generic object store, server-side apply, Status errors) over TLS with a bearer token, and validates applied
objects against the Kubernetes 1.33 schemas as `fieldValidation=Strict` asks. The chart is the real
charts/customer-instance with the values `build_values` makes.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import os
import stat
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from iotistic.billing.deploy.deployer import RELEASE, KubernetesDeployer
from iotistic.billing.deploy.errors import DeployError, HelmError, NamespaceError
from iotistic.billing.deploy.helm import REDACTED, Helm, redact
from iotistic.billing.deploy.kube import CUSTOMER_LABEL, MANAGED_BY, MANAGED_BY_LABEL, Namespaces, client_factory
from iotistic.billing.deploy.spec import InstanceSpec
from iotistic.billing.deploy.values import SIZING, Platform
from iotistic.billing.settings import load_billing_settings
from iotistic.core.licensing import evaluate_license, generate_keypair, issue_license
from tests.fakes.kube_api import FakeKubeApi, Request

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "customer-instance"
CUSTOMER = "c0a1b2c3d4e5f"


@pytest.fixture(scope="session")
def helm_bin() -> str:
    """HELM_BIN (CI) or what scripts/get-helm.sh installed; missing helm fails the run, it never skips."""
    path = os.environ.get("HELM_BIN") or str(ROOT / ".tools" / "bin" / "helm")
    if not os.access(path, os.X_OK):
        pytest.fail(f"no helm binary at {path}: run `bash scripts/get-helm.sh` or set HELM_BIN")
    return path


@pytest.fixture(scope="session")
def keys() -> tuple[str, str]:
    return generate_keypair()


@pytest.fixture
def kube() -> Iterator[FakeKubeApi]:
    with FakeKubeApi(namespace_termination_s=0.3) as api:
        yield api


@pytest.fixture
def kubeconfig(kube: FakeKubeApi, tmp_path: Path) -> Path:
    return kube.write_kubeconfig(tmp_path / "kubeconfig")


def make_deployer(helm_bin: str, kubeconfig: Path, public_key: str, *, chart: Path = CHART, **helm: Any
                  ) -> KubernetesDeployer:
    return KubernetesDeployer(
        helm=Helm(**{"binary": helm_bin, "kubeconfig": kubeconfig, "timeout_s": 60, **helm}),
        namespaces=Namespaces(client_factory(kubeconfig), delete_timeout_s=10),
        chart=chart,
        platform=Platform(license_public_key=public_key),
    )


@pytest.fixture
def deployer(helm_bin: str, kubeconfig: Path, keys: tuple[str, str]) -> KubernetesDeployer:
    return make_deployer(helm_bin, kubeconfig, keys[1])


def make_spec(keys: tuple[str, str], plan: str = "starter", status: str = "trialing",
              customer_id: str = CUSTOMER) -> InstanceSpec:
    token = issue_license(keys[0], customer_id=customer_id, plan=plan, days=14)
    return InstanceSpec(customer_id, plan, token, status, f"{customer_id}.iotistic.example")


def release_secrets(kube: FakeKubeApi, namespace: str) -> list[dict[str, Any]]:
    return [s for s in kube.list("Secret", namespace) if s["metadata"].get("labels", {}).get("owner") == "helm"]


def deployed_revision(kube: FakeKubeApi, namespace: str) -> int:
    deployed = [s for s in release_secrets(kube, namespace) if s["metadata"]["labels"]["status"] == "deployed"]
    assert len(deployed) == 1, [s["metadata"]["labels"] for s in release_secrets(kube, namespace)]
    return int(deployed[0]["metadata"]["labels"]["version"])


def secret_text(secret: dict[str, Any], key: str) -> str:
    return base64.b64decode(secret["data"][key]).decode()


def exists(path: str) -> bool:
    return Path(path).exists()


def components(kube: FakeKubeApi, kind: str, namespace: str) -> set[str]:
    return {o["metadata"]["labels"].get("app.kubernetes.io/component", "") for o in kube.list(kind, namespace)}


# --- apply -----------------------------------------------------------------------------------------------------


async def test_apply_creates_the_labelled_namespace_and_the_release(
    deployer: KubernetesDeployer, kube: FakeKubeApi, keys: tuple[str, str]
) -> None:
    spec = make_spec(keys)
    await deployer.apply(spec)
    ns = spec.namespace
    assert ns == f"customer-{CUSTOMER}"

    namespace = kube.get("Namespace", ns)
    assert namespace is not None
    assert namespace["metadata"]["labels"] == {MANAGED_BY_LABEL: MANAGED_BY, CUSTOMER_LABEL: CUSTOMER}
    assert deployed_revision(kube, ns) == 1

    # The licence the instance verifies: in its Secret, verifiable with the public key in its ConfigMap.
    licence = kube.get("Secret", f"{RELEASE}-license", ns)
    assert licence is not None
    assert secret_text(licence, "license") == spec.license_jwt
    public_key = kube.get("ConfigMap", f"{RELEASE}-license", ns)
    assert public_key is not None
    state = evaluate_license(secret_text(licence, "license"), public_key["data"]["public-key.pem"])
    assert (state.mode, state.customer_id, state.plan) == ("licensed", CUSTOMER, "starter"), state.reason

    sizing = SIZING["starter"]
    api = kube.get("Deployment", f"{RELEASE}-api", ns)
    assert api is not None and api["spec"]["replicas"] == sizing.api_replicas
    assert api["spec"]["template"]["spec"]["containers"][0]["resources"] == sizing.api
    assert {"api", "ingest", "mqtt", "postgresql", "redis", "exporter"} <= (
        components(kube, "Deployment", ns) | components(kube, "StatefulSet", ns)
    )
    assert {"api", "mqtt"} <= components(kube, "Service", ns)

    quota = kube.list("ResourceQuota", ns)
    assert len(quota) == 1
    assert quota[0]["spec"]["hard"]["pods"] == str(sizing.quota.pods)
    assert quota[0]["spec"]["hard"]["requests.cpu"] == sizing.quota.requests_cpu

    policies = kube.list("NetworkPolicy", ns)
    deny_all = [p for p in policies if p["spec"]["podSelector"] == {} and p["spec"].get("ingress") is None]
    assert deny_all, "no default-deny NetworkPolicy"

    ingress = kube.list("Ingress", ns)
    assert [rule["host"] for i in ingress for rule in i["spec"]["rules"]] == [spec.ingress_host]

    # starter: the shared Prometheus scrapes through a ServiceMonitor; no Prometheus or Grafana of its own.
    assert kube.list("ServiceMonitor", ns)
    assert not {"prometheus", "grafana"} & (components(kube, "Deployment", ns) | components(kube, "StatefulSet", ns))

    # Everything the chart made lives in the customer's namespace (a cluster-scoped object would escape it).
    assert [n["metadata"]["name"] for n in kube.list("Namespace")] == [ns]


async def test_reapplying_the_same_spec_changes_no_object(
    deployer: KubernetesDeployer, kube: FakeKubeApi, keys: tuple[str, str]
) -> None:
    """Helm records every upgrade as a new revision; the objects of an unchanged spec stay as they are."""
    spec = make_spec(keys)
    await deployer.apply(spec)
    ns = spec.namespace

    def versions() -> dict[tuple[str, str], str]:
        return {
            (o["kind"], o["metadata"]["name"]): o["metadata"]["resourceVersion"]
            for kind in kube.namespaced_kinds(ns)
            for o in kube.list(kind, ns)
            if o["metadata"].get("labels", {}).get("owner") != "helm"
        }

    before = versions()
    await deployer.apply(spec)
    after = versions()
    assert deployed_revision(kube, ns) == 2
    # The migration Job is per revision by design (charts/customer-instance/templates/migrate-job.yaml).
    assert {k: v for k, v in after.items() if k[0] != "Job"} == {k: v for k, v in before.items() if k[0] != "Job"}


async def test_a_new_licence_and_plan_change_the_instance(
    deployer: KubernetesDeployer, kube: FakeKubeApi, keys: tuple[str, str]
) -> None:
    trial = make_spec(keys, "starter", "trialing")
    await deployer.apply(trial)
    ns = trial.namespace
    api_before = kube.get("Deployment", f"{RELEASE}-api", ns)
    assert api_before is not None

    installed = len(kube.requests)
    upgraded = make_spec(keys, "enterprise", "active")
    assert upgraded.license_jwt != trial.license_jwt
    await deployer.apply(upgraded)

    # Every object goes through server-side apply, validated strictly by the API server. An install has nothing to
    # conflict with; an upgrade takes back fields someone else changed (--force-conflicts).
    def patches(requests: list[Request]) -> set[tuple[str | None, ...]]:
        return {
            (r.content_type, r.query["fieldManager"], r.query["fieldValidation"], r.query["force"])
            for r in requests
            if r.method == "PATCH"
        }

    apply = "application/apply-patch+yaml"
    assert patches(kube.requests[:installed]) == {(apply, "helm", "Strict", "false")}
    assert patches(kube.requests[installed:]) == {(apply, "helm", "Strict", "true")}
    namespace_writes = [r for r in kube.requests if r.path == "/api/v1/namespaces" and r.method == "POST"]
    assert len(namespace_writes) == 1 and namespace_writes[0].user_agent.startswith("OpenAPI-Generator")

    licence = kube.get("Secret", f"{RELEASE}-license", ns)
    assert licence is not None and secret_text(licence, "license") == upgraded.license_jwt
    api = kube.get("Deployment", f"{RELEASE}-api", ns)
    assert api is not None
    assert api["spec"]["replicas"] == SIZING["enterprise"].api_replicas
    # A new licence rolls the pods that read it (checksum annotation), so it takes effect without a manual step.
    assert api["spec"]["template"]["metadata"]["annotations"] != api_before["spec"]["template"]["metadata"][
        "annotations"
    ]
    assert api["metadata"]["generation"] == api_before["metadata"]["generation"] + 1

    workloads = components(kube, "Deployment", ns) | components(kube, "StatefulSet", ns)
    assert {"prometheus", "grafana"} <= workloads, workloads
    quota = kube.list("ResourceQuota", ns)[0]
    assert quota["spec"]["hard"]["pods"] == str(SIZING["enterprise"].quota.pods)
    assert deployed_revision(kube, ns) == 2

    # And back: objects the chart no longer renders are deleted by helm.
    await deployer.apply(make_spec(keys, "starter", "active"))
    workloads = components(kube, "Deployment", ns) | components(kube, "StatefulSet", ns)
    assert not {"prometheus", "grafana"} & workloads


async def test_the_deployer_from_settings_installs_licences_the_instance_can_verify(
    helm_bin: str, kubeconfig: Path, kube: FakeKubeApi, keys: tuple[str, str]
) -> None:
    settings = load_billing_settings(
        private_key=keys[0], helm_bin=helm_bin, kubeconfig=kubeconfig, chart_path=CHART, helm_timeout_seconds=60
    )
    deployer = KubernetesDeployer.from_settings(settings)
    spec = make_spec(keys, "professional", "active")
    await deployer.apply(spec)
    licence = kube.get("Secret", f"{RELEASE}-license", spec.namespace)
    public_key = kube.get("ConfigMap", f"{RELEASE}-license", spec.namespace)
    assert licence is not None and public_key is not None
    state = evaluate_license(secret_text(licence, "license"), public_key["data"]["public-key.pem"])
    assert (state.mode, state.plan) == ("licensed", "professional"), state.reason
    assert deployer.values(spec)["license"]["publicKey"] == settings.public_key_pem


INSTANCE_ENV = {
    "BILLING_INSTANCE_IMAGE": "registry.example/iot/iotistic", "BILLING_INSTANCE_IMAGE_TAG": "1.4.2",
    "BILLING_INGRESS_CLASS": "traefik", "BILLING_TLS_CLUSTER_ISSUER": "letsencrypt",
    "BILLING_STORAGE_CLASS": "fast-ssd", "BILLING_INGRESS_NAMESPACE": "traefik",
    "BILLING_MONITORING_NAMESPACE": "observability", "BILLING_SERVICE_MONITOR_LABELS": '{"team": "platform"}',
}


def test_what_instances_share_comes_from_the_billing_settings(keys: tuple[str, str],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = KubernetesDeployer.from_settings(load_billing_settings(private_key=keys[0])).values(make_spec(keys))
    assert defaults["image"]["repository"] == "ghcr.io/iotistic/iotistic" and defaults["storageClass"] == ""
    for name, value in INSTANCE_ENV.items():  # as the billing chart passes them: environment variables
        monkeypatch.setenv(name, value)
    values = KubernetesDeployer.from_settings(load_billing_settings(private_key=keys[0])).values(make_spec(keys))
    assert values["image"] == {"repository": "registry.example/iot/iotistic", "tag": "1.4.2"}
    assert (values["ingress"]["className"], values["ingress"]["tls"]["clusterIssuer"]) == ("traefik", "letsencrypt")
    assert values["storageClass"] == "fast-ssd"
    assert values["networkPolicy"] == {"ingressNamespace": "traefik", "monitoringNamespace": "observability"}
    assert values["monitoring"]["serviceMonitor"]["labels"] == {"team": "platform"}


@pytest.mark.parametrize("env", [{"BILLING_INGRESS_CLASS": "Not A Class"}, {"BILLING_STORAGE_CLASS": "a;b"},
                                 {"BILLING_INSTANCE_IMAGE": "UPPER/case"}, {"BILLING_INSTANCE_IMAGE_TAG": "a b"},
                                 {"BILLING_SERVICE_MONITOR_LABELS": "not json"}])
def test_a_bad_instance_setting_is_one_readable_error(keys: tuple[str, str], env: dict[str, str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from iotistic.core.settings import ConfigError

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_billing_settings(private_key=keys[0])
    assert next(iter(env)) in str(caught.value)


# --- waiting for readiness -------------------------------------------------------------------------------------


@contextmanager
def controllers(kube: FakeKubeApi, namespace: str) -> Iterator[None]:
    """What the cluster's controllers and kubelets would report for a healthy instance: workloads ready, Jobs
    complete, a load balancer address. The fake runs no controller of its own."""
    stop = threading.Event()

    def report(kind: str, obj: dict[str, Any], status: dict[str, Any]) -> None:
        if obj.get("status") != status:
            kube.set_status(kind, obj["metadata"]["name"], namespace, status)

    def run() -> None:
        while not stop.wait(0.05):
            for kind in ("Deployment", "StatefulSet"):
                for obj in kube.list(kind, namespace):
                    n = obj["spec"].get("replicas", 1)
                    status: dict[str, Any] = {
                        "observedGeneration": obj["metadata"]["generation"], "replicas": n, "readyReplicas": n,
                        "availableReplicas": n, "updatedReplicas": n, "currentReplicas": n,
                    }
                    if kind == "Deployment":
                        status["conditions"] = [
                            {"type": "Available", "status": "True"},
                            {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
                        ]
                    else:
                        status["currentRevision"] = status["updateRevision"] = "r1"
                    report(kind, obj, status)
            for obj in kube.list("Job", namespace):
                report("Job", obj, {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]})
            for obj in kube.list("Service", namespace):
                if obj["spec"].get("type") == "LoadBalancer":
                    report("Service", obj, {"loadBalancer": {"ingress": [{"ip": "192.0.2.10"}]}})

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


async def test_with_wait_an_apply_returns_once_the_instance_is_ready(
    helm_bin: str, kubeconfig: Path, kube: FakeKubeApi, keys: tuple[str, str]
) -> None:
    deployer = make_deployer(helm_bin, kubeconfig, keys[1], wait=True)
    spec = make_spec(keys)
    with controllers(kube, spec.namespace):
        await deployer.apply(spec)
    assert deployed_revision(kube, spec.namespace) == 1
    api = kube.get("Deployment", f"{RELEASE}-api", spec.namespace)
    assert api is not None and api["status"]["readyReplicas"] == api["spec"]["replicas"]
    watched = {r.path.rsplit("/", 1)[-1] for r in kube.requests if r.query.get("watch") == "true"}
    assert {"deployments", "statefulsets", "jobs"} <= watched


async def test_with_wait_an_instance_that_never_gets_ready_is_a_timeout_error(
    helm_bin: str, kubeconfig: Path, kube: FakeKubeApi, keys: tuple[str, str]
) -> None:
    deployer = make_deployer(helm_bin, kubeconfig, keys[1], wait=True, timeout_s=2)  # no kubelet: nothing starts
    spec = make_spec(keys)
    with pytest.raises(HelmError) as caught:
        await deployer.apply(spec)
    message = str(caught.value)
    assert f"Deployment/{spec.namespace}/{RELEASE}-api not ready" in message
    assert "context deadline exceeded" in message
    assert spec.license_jwt not in message


# --- remove ----------------------------------------------------------------------------------------------------


async def test_remove_uninstalls_and_deletes_the_namespace_and_is_repeatable(
    deployer: KubernetesDeployer, kube: FakeKubeApi, keys: tuple[str, str]
) -> None:
    spec, neighbour = make_spec(keys), make_spec(keys, customer_id="c000000000002")
    await deployer.apply(spec)
    await deployer.apply(neighbour)
    ns = spec.namespace
    assert neighbour.namespace != ns
    latest = await deployer.helm.latest(RELEASE, ns)
    assert latest is not None and (latest.number, latest.status) == (1, "deployed")
    start = len(kube.requests)

    await deployer.remove(CUSTOMER)
    # Waited for: the fake's namespace controller takes 0.3 s to finish, and the namespace is gone on return.
    assert kube.get("Namespace", ns) is None
    assert kube.namespaced_kinds(ns) == set()
    calls = [(r.method, r.path) for r in kube.requests[start:]]
    uninstall = [c for c in calls if c[0] == "DELETE" and "/deployments/" in c[1]]
    assert uninstall, "helm uninstall did not delete the workloads"
    assert calls.index(uninstall[0]) < calls.index(("DELETE", f"/api/v1/namespaces/{ns}"))
    assert await deployer.helm.latest(RELEASE, ns) is None

    start = len(kube.requests)
    await deployer.remove(CUSTOMER)  # nothing left: no error, and no write
    assert all(r.method == "GET" for r in kube.requests[start:])

    # The other customer's instance is untouched.
    licence = kube.get("Secret", f"{RELEASE}-license", neighbour.namespace)
    assert licence is not None and secret_text(licence, "license") == neighbour.license_jwt
    assert deployed_revision(kube, neighbour.namespace) == 1


async def test_remove_of_a_customer_never_deployed_is_a_no_op(
    deployer: KubernetesDeployer, kube: FakeKubeApi
) -> None:
    await deployer.remove("c0000000000ff")
    assert [r.method for r in kube.requests] == ["GET"]


async def test_apply_while_the_namespace_terminates_fails_then_succeeds(
    deployer: KubernetesDeployer, kube: FakeKubeApi, keys: tuple[str, str]
) -> None:
    """A re-signup or reactivation racing a removal: the apply fails (the queue retries it) until the namespace
    is gone, then installs afresh."""
    spec = make_spec(keys)
    await deployer.apply(spec)
    kube.namespace_termination_s = 2.0  # long enough for the apply below to find it terminating, even under load
    kube.delete(kube.resource("v1", "namespaces"), "", spec.namespace)  # a removal still running
    with pytest.raises(NamespaceError, match="being deleted"):
        await deployer.apply(spec)
    await until_gone(kube, spec.namespace)
    await deployer.apply(spec)
    assert deployed_revision(kube, spec.namespace) == 1
    assert kube.get("Namespace", spec.namespace) is not None


async def until_gone(kube: FakeKubeApi, namespace: str, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while kube.get("Namespace", namespace) is not None:
        assert time.monotonic() < deadline, f"namespace {namespace} still there"
        await asyncio.sleep(0.05)


def mark_release(kube: FakeKubeApi, namespace: str, revision: int, status: str, age_s: float) -> None:
    """Make a stored revision look like what a helm killed mid-operation leaves behind (helm's storage format:
    the release as gzipped JSON, base64 inside the Secret's base64 data)."""
    secrets = kube.resource("v1", "secrets")
    secret = kube.read(secrets, namespace, f"sh.helm.release.v1.{RELEASE}.v{revision}")
    release = json.loads(gzip.decompress(base64.b64decode(base64.b64decode(secret["data"]["release"]))))
    when = (datetime.now(UTC) - timedelta(seconds=age_s)).isoformat().replace("+00:00", "Z")
    release["info"].update(status=status, last_deployed=when)
    encoded = base64.b64encode(gzip.compress(json.dumps(release).encode()))
    secret["data"]["release"] = base64.b64encode(encoded).decode()
    secret["metadata"]["labels"]["status"] = status
    kube.replace(secrets, namespace, secret["metadata"]["name"], secret)


async def test_a_release_left_pending_by_a_dead_helm_is_rolled_back_then_upgraded(
    deployer: KubernetesDeployer, kube: FakeKubeApi, keys: tuple[str, str]
) -> None:
    spec = make_spec(keys)
    await deployer.apply(spec)
    await deployer.apply(make_spec(keys, "professional"))
    mark_release(kube, spec.namespace, 2, "pending-upgrade", age_s=deployer.helm.deadline_s + 60)
    await deployer.apply(make_spec(keys, "enterprise"))
    latest = await deployer.helm.latest(RELEASE, spec.namespace)
    assert latest is not None and (latest.number, latest.status) == (4, "deployed")  # 3: the rollback
    assert "prometheus" in components(kube, "StatefulSet", spec.namespace) | components(
        kube, "Deployment", spec.namespace
    )


async def test_a_first_install_left_pending_is_uninstalled_then_installed(
    deployer: KubernetesDeployer, kube: FakeKubeApi, keys: tuple[str, str]
) -> None:
    spec = make_spec(keys)
    await deployer.apply(spec)
    mark_release(kube, spec.namespace, 1, "pending-install", age_s=deployer.helm.deadline_s + 60)
    await deployer.apply(spec)
    assert deployed_revision(kube, spec.namespace) == 1
    assert len(release_secrets(kube, spec.namespace)) == 1


async def test_a_recently_pending_release_is_left_alone(
    deployer: KubernetesDeployer, kube: FakeKubeApi, keys: tuple[str, str]
) -> None:
    """Another helm may still be working on it (e.g. a worker that lost its lease): retry later, touch nothing."""
    spec = make_spec(keys)
    await deployer.apply(spec)
    mark_release(kube, spec.namespace, 1, "pending-install", age_s=5)
    with pytest.raises(DeployError, match="another helm may still be at work"):
        await deployer.apply(spec)
    labels = [s["metadata"]["labels"] for s in release_secrets(kube, spec.namespace)]
    assert [(label["version"], label["status"]) for label in labels] == [("1", "pending-install")]


# --- refusals and failures -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "customer_id",
    ["c1; rm -rf /", "../kube-system", "C0A1B2C3D4E5F", "--kubeconfig=/etc/passwd", "", "x" * 60, "c1\n", "a b"],
)
async def test_a_hostile_customer_id_never_reaches_helm_or_the_cluster(
    helm_bin: str, kubeconfig: Path, kube: FakeKubeApi, keys: tuple[str, str], tmp_path: Path, customer_id: str
) -> None:
    marker = tmp_path / "helm-ran"
    spy = tmp_path / "helm"
    spy.write_text(f'#!/bin/sh\ntouch "{marker}"\nexec "{helm_bin}" "$@"\n')
    spy.chmod(0o700)
    deployer = make_deployer(str(spy), kubeconfig, keys[1])
    spec = InstanceSpec(customer_id, "starter", make_spec(keys).license_jwt, "active", "h.iotistic.example")
    with pytest.raises(ValueError, match="cannot name a namespace"):
        await deployer.apply(spec)
    with pytest.raises(ValueError, match="cannot name a namespace"):
        await deployer.remove(customer_id)
    assert not marker.exists()
    assert kube.requests == []


async def test_a_namespace_that_is_not_ours_is_neither_used_nor_deleted(
    deployer: KubernetesDeployer, kube: FakeKubeApi, keys: tuple[str, str]
) -> None:
    spec = make_spec(keys)
    namespaces = kube.resource("v1", "namespaces")
    kube.create(namespaces, "", {"metadata": {"name": spec.namespace, "labels": {CUSTOMER_LABEL: CUSTOMER}}})
    with pytest.raises(NamespaceError, match="not labelled"):
        await deployer.apply(spec)
    with pytest.raises(NamespaceError, match="not labelled"):
        await deployer.remove(CUSTOMER)
    assert kube.get("Namespace", spec.namespace) is not None
    assert release_secrets(kube, spec.namespace) == []
    assert not [r for r in kube.requests if r.user_agent.startswith("Helm")]


async def test_a_failing_chart_is_a_clear_error_without_the_licence(
    helm_bin: str, kubeconfig: Path, kube: FakeKubeApi, keys: tuple[str, str], tmp_path: Path
) -> None:
    chart = tmp_path / "broken"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: broken\nversion: 0.1.0\n")
    # A chart that prints the licence in its error, as a careless template could.
    (chart / "templates" / "fail.yaml").write_text('{{ fail (printf "licence %s refused" .Values.license.token) }}\n')
    deployer = make_deployer(helm_bin, kubeconfig, keys[1], chart=chart)
    spec = make_spec(keys)
    with pytest.raises(HelmError) as caught:
        await deployer.apply(spec)
    message = str(caught.value)
    assert message.startswith("helm upgrade --install: exit status 1")
    assert f"licence {REDACTED} refused" in message
    assert spec.license_jwt not in message
    assert spec.license_jwt.split(".")[1] not in message
    # The namespace was made before helm failed; removing the customer clears it although no release exists.
    assert kube.get("Namespace", spec.namespace) is not None and release_secrets(kube, spec.namespace) == []
    await deployer.remove(CUSTOMER)
    assert kube.get("Namespace", spec.namespace) is None


async def test_an_object_the_api_server_refuses_is_a_helm_error_with_its_message(
    helm_bin: str, kubeconfig: Path, kube: FakeKubeApi, keys: tuple[str, str], tmp_path: Path
) -> None:
    chart = tmp_path / "invalid"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: invalid\nversion: 0.1.0\n")
    (chart / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  a: b\nspecification: oops\n"
    )
    deployer = make_deployer(helm_bin, kubeconfig, keys[1], chart=chart)
    with pytest.raises(HelmError, match="specification"):
        await deployer.apply(make_spec(keys))
    assert kube.get("ConfigMap", "settings", f"customer-{CUSTOMER}") is None


async def test_an_unreachable_cluster_is_a_clear_error(
    helm_bin: str, tmp_path: Path, keys: tuple[str, str]
) -> None:
    with FakeKubeApi() as gone:
        kubeconfig = gone.write_kubeconfig(tmp_path / "kubeconfig")
    deployer = make_deployer(helm_bin, kubeconfig, keys[1])
    with pytest.raises(NamespaceError, match="unreachable"):
        await deployer.apply(make_spec(keys))
    with pytest.raises(HelmError, match="uninstall"):
        await deployer.helm.uninstall(RELEASE, f"customer-{CUSTOMER}")


async def test_a_missing_helm_binary_is_a_clear_error(
    kubeconfig: Path, keys: tuple[str, str], tmp_path: Path
) -> None:
    deployer = make_deployer(str(tmp_path / "no-helm"), kubeconfig, keys[1])
    with pytest.raises(HelmError, match="cannot run"):
        await deployer.apply(make_spec(keys))


async def test_helm_past_its_deadline_is_killed(
    kubeconfig: Path, keys: tuple[str, str], tmp_path: Path
) -> None:
    slow = tmp_path / "helm"
    slow.write_text("#!/bin/sh\nexec sleep 30\n")
    slow.chmod(0o700)
    helm = Helm(binary=str(slow), kubeconfig=kubeconfig, timeout_s=0.0, kill_grace_s=0.5)
    started = time.monotonic()
    with pytest.raises(HelmError, match="did not finish within 0 s; killed"):
        await helm.run("status", ["status", RELEASE])
    assert time.monotonic() - started < 5


async def test_the_values_file_is_private_and_removed(
    helm_bin: str, kubeconfig: Path, kube: FakeKubeApi, keys: tuple[str, str], tmp_path: Path
) -> None:
    """helm sees the values as a 0600 file in a 0700 directory, never on its command line; the file is gone after."""
    log = tmp_path / "seen.json"
    spy = tmp_path / "helm"
    spy.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        "args = sys.argv[1:]\n"
        "if '--values' in args:\n"
        "    path = args[args.index('--values') + 1]\n"
        "    seen = {'args': args, 'path': path, 'values': open(path).read(), 'file': os.stat(path).st_mode,\n"
        "            'dir': os.stat(os.path.dirname(path)).st_mode}\n"
        f"    json.dump(seen, open({str(log)!r}, 'w'))\n"
        f"os.execv({helm_bin!r}, [{helm_bin!r}, *args])\n"
    )
    spy.chmod(0o700)
    deployer = make_deployer(str(spy), kubeconfig, keys[1])
    spec = make_spec(keys)
    await asyncio.to_thread(deployer.namespaces.ensure, CUSTOMER)
    revision = await deployer.helm.upgrade_install(
        RELEASE, CHART, spec.namespace, deployer.values(spec), secrets=[spec.license_jwt]
    )
    assert (revision.number, revision.status) == (1, "deployed")
    assert abs((datetime.now(UTC) - revision.updated).total_seconds()) < 60

    seen = json.loads(log.read_text())
    assert yaml.safe_load(seen["values"]) == deployer.values(spec)
    assert stat.S_IMODE(seen["file"]) == 0o600
    assert stat.S_IMODE(seen["dir"]) == 0o700
    assert not exists(seen["path"]) and not exists(os.path.dirname(seen["path"]))
    assert not any(spec.license_jwt in arg for arg in seen["args"])
    assert deployed_revision(kube, spec.namespace) == 1


def test_redaction_removes_given_secrets_tokens_and_private_keys() -> None:
    token = "eyJhbGciOiJSUzI1NiJ9.eyJjdXN0b21lcklkIjoiYyJ9.c2lnbmF0dXJl"
    pem = "-----BEGIN PRIVATE KEY-----\nMIIEvQ\n-----END PRIVATE KEY-----"
    text = f"bad token {token}; key {pem}; password hunter22 and a public id c0a1b2c3d4e5f"
    assert redact(text, ["hunter22"]) == (
        f"bad token {REDACTED}; key {REDACTED}; password {REDACTED} and a public id c0a1b2c3d4e5f"
    )
