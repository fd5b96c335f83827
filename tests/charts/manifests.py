"""Rendering the charts with the real helm binary and checking what comes out.

Kubernetes kinds are validated with `kubernetes-validate` (the OpenAPI schemas of the newest Kubernetes version
it ships, strict: an unknown field is an error, as with `kubectl apply --validate=strict`). The ServiceMonitor
CRD is not a Kubernetes kind: it is validated against the JSON schema of the pydantic models that
`cloudcoil-models-prometheus-operator` generates from prometheus-operator's own CRD (its field names, enums and
patterns), made strict the same way (no unknown fields).
"""

from __future__ import annotations

import base64
import functools
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import referencing
import yaml
from kubernetes.utils import parse_quantity
from kubernetes_validate import utils as kv

ROOT = Path(__file__).resolve().parents[2]
CUSTOMER_CHART = ROOT / "charts" / "customer-instance"
BILLING_CHART = ROOT / "charts" / "billing"
KUBERNETES_VERSION = kv.latest_version()

WORKLOAD_KINDS = {"Deployment", "StatefulSet", "Job"}


def helm_binary() -> str:
    """HELM_BIN (scripts/test.sh sets it), else .tools/bin/helm, else helm on PATH. Missing helm fails the test."""
    for candidate in (os.environ.get("HELM_BIN"), str(ROOT / ".tools" / "bin" / "helm"), shutil.which("helm")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail("helm not found: run `bash scripts/get-helm.sh` (scripts/test.sh does) or set HELM_BIN")


def run_helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm_binary(), *args], capture_output=True, text=True, timeout=120, check=False)


def render(chart: Path, values: Mapping[str, Any] | None, tmp_path: Path, *, namespace: str = "customer-c0",
           release: str = "iotistic", values_text: str | None = None) -> list[dict[str, Any]]:
    """`helm template` with a values file; the manifests as dicts. Fails the test when helm refuses."""
    result = template(chart, values, tmp_path, namespace=namespace, release=release, values_text=values_text)
    assert result.returncode == 0, f"helm template failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def template(chart: Path, values: Mapping[str, Any] | None, tmp_path: Path, *, namespace: str = "customer-c0",
             release: str = "iotistic", values_text: str | None = None) -> subprocess.CompletedProcess[str]:
    args = ["template", release, str(chart), "--namespace", namespace]
    if values is not None or values_text is not None:
        path = tmp_path / f"values-{len(list(tmp_path.glob('values-*.yaml')))}.yaml"
        path.write_text(values_text if values_text is not None else yaml.safe_dump(dict(values or {})))
        args += ["--values", str(path)]
    return run_helm(*args)


def lint(chart: Path, values: Mapping[str, Any] | None, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    args = ["lint", "--strict", str(chart)]
    if values is not None:
        path = tmp_path / "lint-values.yaml"
        path.write_text(yaml.safe_dump(dict(values)))
        args += ["--values", str(path)]
    return run_helm(*args)


# --- schema validation -------------------------------------------------------------------------------------------

@functools.cache
def _kubernetes_schema(kind: str, api_version: str) -> jsonschema.protocols.Validator:
    """kubernetes_validate.validate, with the schemas loaded once per kind instead of once per call."""
    api = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)  # as kubernetes_validate names its files
    folder = f"kubernetes-json-schema/v{KUBERNETES_VERSION}-local-strict"
    try:
        schema = kv.schema_contents(f"{folder}/{kind.lower()}-{api}.json", KUBERNETES_VERSION)
    except FileNotFoundError:
        pytest.fail(f"kubernetes-validate {KUBERNETES_VERSION} has no schema for {kind} {api_version}")
    registry: referencing.Registry[Any] = referencing.Registry()
    registry = referencing.Resource.from_contents(schema) @ registry
    registry = referencing.Resource.from_contents(_definitions(folder)) @ registry
    return jsonschema.Draft202012Validator(schema, registry=registry)


@functools.cache
def _definitions(folder: str) -> Any:
    return kv.schema_contents(f"{folder}/_definitions.json", KUBERNETES_VERSION)


@functools.cache
def service_monitor_schema() -> dict[str, Any]:
    """The ServiceMonitor schema (from the CRD, via cloudcoil's generated models), strict about unknown fields."""
    from cloudcoil.models.prometheus_operator.v1 import ServiceMonitor

    schema = ServiceMonitor.model_json_schema(by_alias=True)
    _forbid_unknown_fields(schema)
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata", "spec"})
    schema["properties"]["apiVersion"] = {"const": "monitoring.coreos.com/v1"}
    schema["properties"]["kind"] = {"const": "ServiceMonitor"}
    return schema


def _forbid_unknown_fields(node: Any) -> None:
    if isinstance(node, dict):
        if node.get("type") == "object" and "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for value in node.values():
            _forbid_unknown_fields(value)
    elif isinstance(node, list):
        for value in node:
            _forbid_unknown_fields(value)


def schema_errors(doc: Mapping[str, Any]) -> list[str]:
    """Every schema error of one manifest (empty: valid)."""
    if doc.get("kind") == "ServiceMonitor":
        validator: Any = jsonschema.Draft202012Validator(service_monitor_schema())
    else:
        validator = _kubernetes_schema(str(doc["kind"]), str(doc["apiVersion"]))
    return [f"{doc['kind']}/{doc['metadata'].get('name')}: {'.'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator.iter_errors(doc)]


# --- reading manifests -------------------------------------------------------------------------------------------

def by_kind(docs: Iterable[Mapping[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: dict(doc) for doc in docs if doc["kind"] == kind}


def one(docs: Iterable[Mapping[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = by_kind(docs, kind)
    assert name in found, f"no {kind} {name}; have {sorted(found)}"
    return found[name]


def workloads(docs: Iterable[Mapping[str, Any]]) -> Iterator[dict[str, Any]]:
    for doc in docs:
        if doc["kind"] in WORKLOAD_KINDS:
            yield dict(doc)


def pod_spec(workload: Mapping[str, Any]) -> dict[str, Any]:
    return dict(workload["spec"]["template"]["spec"])


def all_containers(spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def env_of(container: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in container.get("env", [])}


def secret_text(secret: Mapping[str, Any], key: str) -> str:
    return base64.b64decode(secret["data"][key]).decode()


def quantity(value: Any) -> float:
    return float(parse_quantity(str(value)))


def pod_resources(spec: Mapping[str, Any]) -> dict[str, float]:
    """What a pod counts against a ResourceQuota: the larger of its containers' sum and its largest init
    container, per resource (the scheduler's and the quota's effective request/limit)."""
    totals: dict[str, float] = {}
    for kind in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            key = f"{kind}.{resource}"
            regular = sum(quantity(c["resources"][kind][resource]) for c in spec["containers"])
            init = max((quantity(c["resources"][kind][resource]) for c in spec.get("initContainers", [])),
                       default=0.0)
            totals[key] = max(regular, init)
    return totals


def dumps(doc: Any) -> str:
    return json.dumps(doc, sort_keys=True)
