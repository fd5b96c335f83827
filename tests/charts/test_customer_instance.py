"""charts/customer-instance rendered by the real helm binary with the values billing installs, for every plan."""

from __future__ import annotations

import json
import re
import secrets
from pathlib import Path
from typing import Any

import pytest
import yaml

from iotistic.billing.deploy.values import SIZING, SUBSCRIPTION_STATUSES, build_values
from iotistic.broker.files import AclRule, BrokerAccount
from iotistic.broker.files import render as render_broker_files
from iotistic.broker.sync import write_files
from iotistic.broker.testing import MqttProbe, PrivateMosquitto, until
from iotistic.core.plans import PLANS
from iotistic.core.security import mosquitto_password_hash
from iotistic.core.settings import CloudSettings
from iotistic.exporter.settings import ExporterSettings
from tests.charts.conftest import CUSTOMER_ID, HOST, MakeSpec, Render
from tests.charts.manifests import (
    CUSTOMER_CHART,
    ROOT,
    all_containers,
    by_kind,
    env_of,
    lint,
    one,
    pod_resources,
    pod_spec,
    quantity,
    render,
    schema_errors,
    secret_text,
    template,
    workloads,
)

PLAN_NAMES = sorted(PLANS)
HOSTILE = ('ACME "Ltd" \'quoted\'\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: kube-system\n'
           '{{ .Release.Name }} {{ lookup "v1" "Secret" "" "" }} #: \\ \t é </script>')
# Environment variables set for Kubernetes' own $(VAR) expansion, not read by Iotistic.
EXPANSION_ONLY = {"POD_NAME", "REDIS_PASSWORD"}


@pytest.fixture(scope="module")
def rendered(license_keys: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    """Each plan rendered once for the read-only checks below."""
    from iotistic.billing.deploy.spec import InstanceSpec
    from iotistic.billing.deploy.values import Platform
    from iotistic.core.licensing import issue_license

    out = {}
    for plan in PLAN_NAMES:
        token = issue_license(license_keys.private_pem, customer_id=CUSTOMER_ID, plan=plan, days=14, trial=True,
                              subscription_status="trialing")
        spec = InstanceSpec(CUSTOMER_ID, plan, token, "trialing", HOST)
        values = build_values(spec, Platform(license_public_key=license_keys.public_pem), company="ACME Ltd")
        out[plan] = render(CUSTOMER_CHART, values, tmp_path_factory.mktemp(plan), namespace=f"customer-{CUSTOMER_ID}")
    return out


@pytest.mark.parametrize("plan", PLAN_NAMES)
def test_helm_lint_strict_passes(plan: str, make_spec: MakeSpec, platform: Any, tmp_path: Path) -> None:
    result = lint(CUSTOMER_CHART, build_values(make_spec(plan), platform), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


def test_without_a_customer_helm_refuses_with_a_clear_message(tmp_path: Path) -> None:
    result = template(CUSTOMER_CHART, None, tmp_path)
    assert result.returncode != 0
    assert "/customer/id" in result.stderr and "/license/token" in result.stderr and "/ingress/host" in result.stderr


@pytest.mark.parametrize("plan", PLAN_NAMES)
def test_every_manifest_validates_against_its_schema(plan: str, rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered[plan]
    assert len(docs) > 20
    errors = [error for doc in docs for error in schema_errors(doc)]
    assert errors == []


def test_the_schema_check_catches_mistakes(rendered: dict[str, list[dict[str, Any]]]) -> None:
    """The validation above can fail: an unknown field, a wrong type, a bad ServiceMonitor are all reported."""
    docs = json.loads(json.dumps(rendered["starter"]))
    api = one(docs, "Deployment", "iotistic-api")
    api["spec"]["template"]["spec"]["containers"][0]["envFrom"] = "not-a-list"
    api["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    assert len(schema_errors(api)) == 2
    monitor = one(docs, "ServiceMonitor", "iotistic")
    monitor["spec"]["endpoints"][0]["interval"] = "30 seconds"
    monitor["spec"]["endpoints"][1]["scrapeIntervall"] = "30s"
    monitor["spec"]["endpoints"][0]["relabelings"][0]["action"] = "rewrite"
    assert len(schema_errors(monitor)) == 3


def test_plans_differ_in_size_and_monitoring(rendered: dict[str, list[dict[str, Any]]]) -> None:
    for plan in PLAN_NAMES:
        docs = rendered[plan]
        sizing = SIZING[plan]
        quota = one(docs, "ResourceQuota", "iotistic-plan")["spec"]["hard"]
        assert quota["requests.cpu"] == sizing.quota.requests_cpu
        assert quota["limits.memory"] == sizing.quota.limits_memory
        assert quota["requests.storage"] == sizing.quota.requests_storage
        assert quota["services.nodeports"] == "0"
        assert one(docs, "Deployment", "iotistic-api")["spec"]["replicas"] == sizing.api_replicas
        assert one(docs, "StatefulSet", "iotistic-ingest")["spec"]["replicas"] == sizing.ingest_replicas
        database = one(docs, "StatefulSet", "iotistic-postgresql")
        assert database["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == \
            sizing.database_storage
        deployments = by_kind(docs, "Deployment")
        monitors = by_kind(docs, "ServiceMonitor")
        paths = [p["path"] for p in one(docs, "Ingress", "iotistic")["spec"]["rules"][0]["http"]["paths"]]
        if PLANS[plan].dedicated_prometheus:
            assert {"iotistic-prometheus", "iotistic-grafana"} <= set(deployments)
            assert monitors == {}
            args = deployments["iotistic-prometheus"]["spec"]["template"]["spec"]["containers"][0]["args"]
            assert f"--storage.tsdb.retention.time={PLANS[plan].retention_days}d" in args
            assert paths == ["/grafana", "/"]
        else:
            assert not {"iotistic-prometheus", "iotistic-grafana"} & set(deployments)
            assert set(monitors) == {"iotistic"}
            assert monitors["iotistic"]["metadata"]["labels"]["release"] == "prometheus"
            assert paths == ["/"]
    sizes = [quantity(one(rendered[p], "ResourceQuota", "iotistic-plan")["spec"]["hard"]["limits.cpu"])
             for p in ("starter", "professional", "enterprise")]
    assert sizes == sorted(sizes) and len(set(sizes)) == 3


@pytest.mark.parametrize("plan", PLAN_NAMES)
def test_the_quota_holds_every_pod_with_a_rolling_update_under_way(
        plan: str, rendered: dict[str, list[dict[str, Any]]]) -> None:
    """Requests and limits of every pod at full size, one surge pod per rolling Deployment and the migration Job
    must fit the plan's ResourceQuota, or Kubernetes would refuse pods of a healthy instance."""
    docs = rendered[plan]
    hard = one(docs, "ResourceQuota", "iotistic-plan")["spec"]["hard"]
    used = {"requests.cpu": 0.0, "requests.memory": 0.0, "limits.cpu": 0.0, "limits.memory": 0.0}
    pods = 0
    for workload in workloads(docs):
        spec = workload["spec"]
        count = spec.get("replicas", 1)
        if workload["kind"] == "Deployment" and spec.get("strategy", {}).get("type") != "Recreate":
            count += spec.get("strategy", {}).get("rollingUpdate", {}).get("maxSurge", 1)
        pods += count
        for key, value in pod_resources(pod_spec(workload)).items():
            used[key] += value * count
    for key, value in used.items():
        assert value <= quantity(hard[key]), f"{plan}: {key} {value} > {hard[key]}"
    assert pods <= int(hard["pods"])
    claims = [c["spec"]["resources"]["requests"]["storage"] for c in by_kind(docs, "PersistentVolumeClaim").values()]
    for workload in by_kind(docs, "StatefulSet").values():
        for template_ in workload["spec"].get("volumeClaimTemplates", []):
            claims += [template_["spec"]["resources"]["requests"]["storage"]] * workload["spec"]["replicas"]
    assert sum(quantity(c) for c in claims) <= quantity(hard["requests.storage"])
    assert len(claims) <= int(hard["persistentvolumeclaims"])
    load_balancers = [s for s in by_kind(docs, "Service").values() if s["spec"].get("type") == "LoadBalancer"]
    assert len(load_balancers) <= int(hard["services.loadbalancers"])
    # Every container states its own resources: none relies on the LimitRange's defaults.
    for workload in workloads(docs):
        for container in all_containers(pod_spec(workload)):
            assert {"requests", "limits"} <= set(container["resources"]), container["name"]


def test_the_namespace_is_isolated(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["professional"]
    policies = by_kind(docs, "NetworkPolicy")
    deny = policies["iotistic-default-deny"]["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress"]}
    same = policies["iotistic-same-namespace"]["spec"]["ingress"]
    assert same == [{"from": [{"podSelector": {}}]}]  # pods of this namespace only (no namespaceSelector)
    from_ingress = policies["iotistic-from-ingress-controller"]["spec"]
    assert from_ingress["ingress"][0]["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}]
    assert from_ingress["podSelector"]["matchExpressions"][0]["values"] == ["api", "grafana"]
    from_monitoring = policies["iotistic-from-monitoring"]["spec"]
    assert from_monitoring["ingress"][0]["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    assert {p["port"] for p in from_monitoring["ingress"][0]["ports"]} == {3002, 9100}
    # The one rule open to every source: MQTT, port 1883, on the broker's pods only.
    open_rules = [(name, rule) for name, policy in policies.items() for rule in policy["spec"].get("ingress", [])
                  if "from" not in rule]
    assert [name for name, _ in open_rules] == ["iotistic-mqtt-devices"]
    assert open_rules[0][1] == {"ports": [{"protocol": "TCP", "port": 1883}]}
    assert policies["iotistic-mqtt-devices"]["spec"]["podSelector"]["matchLabels"][
        "app.kubernetes.io/component"] == "mqtt"


def test_a_new_licence_rolls_exactly_the_pods_that_read_it(instance: Render, make_spec: MakeSpec,
                                                          license_keys: Any) -> None:
    from iotistic.core.licensing import issue_license

    first = instance("professional", status="trialing")
    upgraded_token = issue_license(license_keys.private_pem, customer_id=CUSTOMER_ID, plan="professional", days=30,
                                   subscription_status="active")
    second = instance("professional", status="active", license_jwt=upgraded_token)
    assert secret_text(one(second, "Secret", "iotistic-license"), "license") == upgraded_token
    assert secret_text(one(first, "Secret", "iotistic-license"), "license") != upgraded_token

    def templates(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return {f"{w['kind']}/{w['metadata']['name']}": w["spec"]["template"] for w in workloads(docs)
                if w["kind"] != "Job"}

    before, after = templates(first), templates(second)
    changed = {name for name in before if before[name] != after[name]}
    assert changed == {"Deployment/iotistic-api", "StatefulSet/iotistic-ingest"}
    for name in changed:
        old, new = before[name]["metadata"]["annotations"], after[name]["metadata"]["annotations"]
        assert re.fullmatch(r"[0-9a-f]{64}", new["checksum/license"])
        assert old["checksum/license"] != new["checksum/license"]
        # Only the annotation differs: the rollout is the licence's doing, nothing else moved.
        assert {**before[name], "metadata": {}} == {**after[name], "metadata": {}}


def test_hostile_company_names_stay_one_string(instance: Render) -> None:
    plain = instance("starter", company="ACME")
    hostile = instance("starter", company=HOSTILE)
    assert [(d["kind"], d["metadata"]["name"]) for d in hostile] == [(d["kind"], d["metadata"]["name"]) for d in plain]
    assert "Namespace" not in {d["kind"] for d in hostile}
    annotated = [d for d in hostile if "iotistic.io/company" in d["metadata"].get("annotations", {})]
    assert len(annotated) >= 5
    for doc in annotated:
        assert doc["metadata"]["annotations"]["iotistic.io/company"] == HOSTILE  # verbatim: nothing was templated
    assert all(schema_errors(doc) == [] for doc in annotated)


@pytest.mark.parametrize(("override", "path"), [
    ({"ingress": {"host": "a.example\n  - host: evil.example"}}, "/ingress/host"),
    ({"license": {"token": "x.y.z\nkind: Namespace"}}, "/license/token"),
    ({"customer": {"id": "evil\nns"}}, "/customer/id"),
    ({"customer": {"plan": "platinum"}}, "/customer/plan"),
    ({"monitoring": {"serviceMonitor": {"labels": {"release": "x\ny"}}}}, "/monitoring/serviceMonitor/labels"),
    ({"mqtt": {"publicUrl": "mqtt://a\" \n"}}, "/mqtt/publicUrl"),
    ({"typo": True}, "typo"),
])
def test_the_chart_itself_refuses_hostile_values(override: dict[str, Any], path: str, make_spec: MakeSpec,
                                                 platform: Any, tmp_path: Path) -> None:
    """values.schema.json guards a hand-written values file the way build_values guards billing's."""
    values = build_values(make_spec("starter"), platform)
    for key, part in override.items():
        values[key] = {**values.get(key, {}), **part} if isinstance(part, dict) else part
    result = template(CUSTOMER_CHART, values, tmp_path)
    assert result.returncode != 0
    assert path in result.stderr


def test_the_schema_knows_the_plan_catalogue() -> None:
    schema = json.loads((CUSTOMER_CHART / "values.schema.json").read_text())
    customer = schema["properties"]["customer"]["properties"]
    assert set(customer["plan"]["enum"]) == set(PLANS)
    assert set(customer["subscriptionStatus"]["enum"]) == SUBSCRIPTION_STATUSES


def test_no_secret_has_a_default_and_generated_ones_are_random(instance: Render) -> None:
    defaults = yaml.safe_load((CUSTOMER_CHART / "values.yaml").read_text())

    def secret_like(node: Any, path: str = "") -> list[str]:
        found = []
        if isinstance(node, dict):
            for key, value in node.items():
                if re.search(r"password|secret$|token|privatekey", key, re.IGNORECASE) and isinstance(value, str) \
                        and value:
                    found.append(f"{path}.{key}")
                found += secret_like(value, f"{path}.{key}")
        return found

    assert secret_like(defaults) == []
    first, second = instance("starter"), instance("starter")
    for key in ("jwt-secret", "metrics-token", "redis-password", "ingest-mqtt-password", "exporter-mqtt-password",
                "grafana-admin-password"):
        a = secret_text(one(first, "Secret", "iotistic-secrets"), key)
        b = secret_text(one(second, "Secret", "iotistic-secrets"), key)
        assert len(a) == 48 and a != b
    assert len(secret_text(one(first, "Secret", "iotistic-postgresql"), "password")) == 48


@pytest.mark.parametrize("plan", PLAN_NAMES)
def test_pods_are_locked_down(plan: str, rendered: dict[str, list[dict[str, Any]]]) -> None:
    for workload in workloads(rendered[plan]):
        spec = pod_spec(workload)
        assert spec["automountServiceAccountToken"] is False
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] > 0
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in all_containers(spec):
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False
            assert security["readOnlyRootFilesystem"] is True
            assert security["capabilities"] == {"drop": ["ALL"]}


@pytest.mark.parametrize("plan", PLAN_NAMES)
def test_everything_a_pod_refers_to_exists(plan: str, rendered: dict[str, list[dict[str, Any]]]) -> None:
    """Volumes, Secrets, ConfigMaps and keys referenced by pods, and Services' and Ingress' backends, all exist."""
    docs = rendered[plan]
    secrets = {name: set(s.get("data", {})) for name, s in by_kind(docs, "Secret").items()}
    config_maps = {name: set(c.get("data", {})) for name, c in by_kind(docs, "ConfigMap").items()}
    claims = set(by_kind(docs, "PersistentVolumeClaim"))
    pods = []
    for workload in workloads(docs):
        spec = pod_spec(workload)
        where = f"{workload['kind']}/{workload['metadata']['name']}"
        volumes = [v["name"] for v in spec.get("volumes", [])]
        volumes += [t["metadata"]["name"] for t in workload["spec"].get("volumeClaimTemplates", [])]
        assert len(volumes) == len(set(volumes)), f"{where}: duplicate volume names {volumes}"
        for volume in spec.get("volumes", []):
            if "secret" in volume:
                name = volume["secret"]["secretName"]
                assert {i["key"] for i in volume["secret"].get("items", [])} <= secrets[name], where
            if "configMap" in volume:
                assert volume["configMap"]["name"] in config_maps, where
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims, where
        for container in all_containers(spec):
            mounts = [m["name"] for m in container.get("volumeMounts", [])]
            assert set(mounts) <= set(volumes), f"{where}/{container['name']}: {set(mounts) - set(volumes)}"
            names = [e["name"] for e in container.get("env", [])]
            assert len(names) == len(set(names)), f"{where}/{container['name']}: duplicate env"
            for entry in container.get("env", []):
                source = entry.get("valueFrom", {})
                if "secretKeyRef" in source:
                    ref = source["secretKeyRef"]
                    assert ref["key"] in secrets.get(ref["name"], set()), f"{where}: {ref}"
                if "configMapKeyRef" in source:
                    ref = source["configMapKeyRef"]
                    assert ref["key"] in config_maps.get(ref["name"], set()), f"{where}: {ref}"
        pods.append((spec["containers"], workload["spec"]["template"]["metadata"]["labels"]))
    services = by_kind(docs, "Service")
    for name, service in services.items():
        selector = service["spec"]["selector"]
        matching = [containers for containers, labels in pods if selector.items() <= labels.items()]
        assert matching, f"Service {name} selects no pod"
        ports = {p["name"]: p["containerPort"] for containers in matching for c in containers
                 for p in c.get("ports", [])}
        for port in service["spec"].get("ports", []):
            assert port["targetPort"] in ports, f"Service {name}: no container port {port['targetPort']}"
    for path in one(docs, "Ingress", "iotistic")["spec"]["rules"][0]["http"]["paths"]:
        backend = path["backend"]["service"]
        service_ports = {p["name"] for p in services[backend["name"]]["spec"]["ports"]}
        assert backend["port"]["name"] in service_ports


def test_iotistic_containers_set_only_settings_that_exist(rendered: dict[str, list[dict[str, Any]]]) -> None:
    """Every environment variable given to an Iotistic process is a setting it reads (a typo would be ignored
    silently by pydantic-settings, so the chart is checked against the settings classes)."""
    known = {f.alias for f in ExporterSettings.model_fields.values() if f.alias}
    assert {f.alias for f in CloudSettings.model_fields.values() if f.alias} <= known
    image = "ghcr.io/iotistic/iotistic"
    for plan in PLAN_NAMES:
        for workload in workloads(rendered[plan]):
            for container in all_containers(pod_spec(workload)):
                if not container["image"].startswith(image):
                    continue
                unknown = set(env_of(container)) - known - EXPANSION_ONLY
                assert unknown == set(), f"{workload['metadata']['name']}/{container['name']}: {unknown}"


def test_api_ingest_exporter_and_broker_sync_are_wired(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["enterprise"]
    api = pod_spec(one(docs, "Deployment", "iotistic-api"))["containers"][0]
    env = env_of(api)
    assert api["args"][:1] == ["api"] and api["ports"][0]["containerPort"] == 3002
    assert env["IOTISTIC_LICENSE_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "iotistic-license", "key": "license"}
    assert env["LICENSE_PUBLIC_KEY"]["valueFrom"]["configMapKeyRef"]["name"] == "iotistic-license"
    assert env["MQTT_BROKER_URL"]["value"] == f"mqtt://{HOST}:1883"  # what devices are told
    assert env["PUBLIC_URL"]["value"] == f"https://{HOST}"
    assert env["REDIS_URL"]["value"] == "redis://:$(REDIS_PASSWORD)@iotistic-redis:6379/0"
    names = [e["name"] for e in api["env"]]
    assert names.index("REDIS_PASSWORD") < names.index("REDIS_URL")  # $(VAR) expands only earlier variables
    # Ingest: a StatefulSet whose MQTT client id is the pod name, stable per replica across restarts.
    ingest = one(docs, "StatefulSet", "iotistic-ingest")
    container = pod_spec(ingest)["containers"][0]
    env = env_of(container)
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["INGEST_CLIENT_ID"]["value"] == "$(POD_NAME)"
    assert env["MQTT_BROKER_URL"]["value"] == "mqtt://iotistic-mqtt:1883"
    assert env["IOTISTIC_DATA_DIR"]["value"] == "/var/lib/iotistic-ingest"
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == "/var/lib/iotistic-ingest")
    volume = next(v for v in pod_spec(ingest)["volumes"] if v["name"] == mount["name"])
    assert volume["secret"]["items"] == [{"key": "ingest-mqtt-password", "path": "ingest-mqtt-password"}]
    # The exporter: labelled with the customer, on 9100, discoverable by annotation in every plan.
    exporter = pod_spec(one(docs, "Deployment", "iotistic-exporter"))["containers"][0]
    assert env_of(exporter)["CUSTOMER_ID"]["value"] == CUSTOMER_ID
    assert exporter["ports"][0]["containerPort"] == 9100
    # Its own MQTT account ($SYS read) with a password that survives restarts: the file in its data dir.
    assert env_of(exporter)["IOTISTIC_DATA_DIR"]["value"] == "/var/lib/iotistic-exporter"
    exporter_volumes = {v["name"]: v for v in pod_spec(one(docs, "Deployment", "iotistic-exporter"))["volumes"]}
    mount = next(m for m in exporter["volumeMounts"] if m["mountPath"] == "/var/lib/iotistic-exporter")
    assert exporter_volumes[mount["name"]]["secret"]["items"] == [
        {"key": "exporter-mqtt-password", "path": "exporter-mqtt-password"}]
    for plan in PLAN_NAMES:
        annotations = one(rendered[plan], "Service", "iotistic-exporter")["metadata"]["annotations"]
        assert annotations == {"prometheus.io/scrape": "true", "prometheus.io/port": "9100",
                               "prometheus.io/path": "/metrics"}
    # Mosquitto and its sync share a process namespace and a user, so the sync may SIGHUP the broker.
    broker = pod_spec(one(docs, "StatefulSet", "iotistic-mqtt"))
    assert broker["shareProcessNamespace"] is True
    sync = next(c for c in broker["containers"] if c["name"] == "broker-sync")
    once = next(c for c in broker["initContainers"] if c["name"] == "sync-once")
    assert sync["args"][:2] == ["broker", "sync"] and "--once" not in sync["args"]
    assert once["args"][:3] == ["broker", "sync", "--once"]
    for args in (sync["args"], once["args"]):
        assert args[args.index("--pid-file") + 1] == "/mosquitto/run/mosquitto.pid"
        assert args[args.index("--group") + 1] == ""  # files 0600, read by the same user
    # Migrations: a Job per revision running `iotistic db upgrade`.
    job = next(iter(by_kind(docs, "Job").values()))
    assert job["metadata"]["name"] == "iotistic-migrate-1"
    assert pod_spec(job)["containers"][0]["args"] == ["db", "upgrade"]


def test_the_broker_runs_the_production_mosquitto_configuration(rendered: dict[str, list[dict[str, Any]]]) -> None:
    """The chart's mosquitto.conf is deploy/mosquitto/mosquitto.conf with this pod's paths, and nothing else."""

    def directives(text: str) -> list[tuple[str, str]]:
        lines = [line.strip() for line in text.splitlines()]
        pairs = [line.split(None, 1) for line in lines if line and not line.startswith("#")]
        return [(pair[0], pair[1]) for pair in pairs]

    pod_paths = {"password_file", "acl_file", "persistence_location", "pid_file"}
    production = directives((ROOT / "deploy" / "mosquitto" / "mosquitto.conf").read_text())
    chart = directives(one(rendered["starter"], "ConfigMap", "iotistic-mqtt")["data"]["mosquitto.conf"])
    # `user` only applies to a broker started as root; this one starts as its own user.
    expected = [d for d in production if d[0] not in pod_paths | {"user"}]
    assert [d for d in chart if d[0] not in pod_paths | {"memory_limit"}] == expected
    assert dict(d for d in chart if d[0] in pod_paths) == {
        "password_file": "/mosquitto/iotistic/passwd", "acl_file": "/mosquitto/iotistic/acl",
        "persistence_location": "/mosquitto/data/", "pid_file": "/mosquitto/run/mosquitto.pid"}
    assert int(dict(chart)["memory_limit"]) == int(256 * 2**20 * 0.8)


async def test_a_real_mosquitto_runs_the_charts_configuration(rendered: dict[str, list[dict[str, Any]]],
                                                             tmp_path: Path) -> None:
    """The ConfigMap's mosquitto.conf (memory_limit included) is accepted by Mosquitto 2, which then enforces the
    files the broker sync writes: the account in them connects, an anonymous client is refused."""
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(one(rendered["enterprise"], "ConfigMap", "iotistic-mqtt")["data"]["mosquitto.conf"])
    broker = PrivateMosquitto(conf)  # only the port and the folders are replaced
    probes: list[MqttProbe] = []
    try:
        password = secrets.token_urlsafe(24)
        account = BrokerAccount("ingest", mosquitto_password_hash(password), "service",
                                rules=(AclRule("iot/device/+/#", "read"),))
        write_files(broker.target, render_broker_files([account]))
        broker.start()
        probes = [MqttProbe(broker.port, "ingest", password).start(), MqttProbe(broker.port, None, None).start()]
        assert await until(lambda: all(p.connack is not None for p in probes))
        assert [p.accepted for p in probes] == [True, False]
    finally:
        for probe in probes:
            probe.stop()
        broker.close()


def test_an_external_database_replaces_the_bundled_one(make_spec: MakeSpec, platform: Any, tmp_path: Path) -> None:
    values = build_values(make_spec("professional"), platform)
    values["postgresql"] = {"enabled": False, "external": {
        "host": "db.internal.example", "port": 6432, "database": "tenant_c0", "user": "tenant_c0",
        "passwordSecret": {"name": "tenant-db", "key": "pw"}}}
    docs = render(CUSTOMER_CHART, values, tmp_path)
    assert "iotistic-postgresql" not in by_kind(docs, "StatefulSet")
    assert "iotistic-postgresql" not in by_kind(docs, "Secret")
    env = env_of(pod_spec(one(docs, "Deployment", "iotistic-api"))["containers"][0])
    assert env["DB_HOST"]["value"] == "db.internal.example" and env["DB_PORT"]["value"] == "6432"
    assert env["DB_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "tenant-db", "key": "pw"}
    assert [e for doc in docs for e in schema_errors(doc)] == []
    values["postgresql"]["external"]["host"] = ""
    refused = template(CUSTOMER_CHART, values, tmp_path)
    assert refused.returncode != 0 and "postgresql.external.host is required" in refused.stderr
