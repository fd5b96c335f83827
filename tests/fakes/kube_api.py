"""A local fake of the Kubernetes API server for the deployer's tests (no real API server can run here).

Complete enough for the real `helm` binary and the real `kubernetes` Python client, both pointed at it through a
generated kubeconfig (HTTPS with its own CA, bearer token): discovery (`/version`, `/api`, `/apis`, resource
lists, the OpenAPI v3 index), and one generic in-memory store for every resource in `RESOURCES` with GET, LIST
(label and field selectors), POST, PUT, PATCH (JSON merge, strategic merge, JSON patch, server-side apply), DELETE,
WATCH (also the streaming lists of helm's readiness watcher) and the status subresource; resourceVersion,
generation and uid kept as the API server keeps them; errors are `Status` objects with its reasons and codes;
`fieldValidation=Strict` validates against the Kubernetes 1.33 schemas (kubernetes-validate). What is kind-specific
is what a client observes from the API server itself, not from controllers: Secret `stringData` folded into
`data`, Service cluster IPs allocated, namespaces that terminate (content removed, then themselves) shortly after
a DELETE, and protobuf bodies read for the kinds client-go sends that way (Secret, ConfigMap).

What helm 4.1.4 sends (logged from the real binary against this server): discovery, GET of the release Secrets
by label (`owner=helm,name=<release>`), GETs of `lookup`ed objects, the OpenAPI v3 documents (only to learn that
the server validates fields, so it leaves validation to the server), server-side apply
(`application/apply-patch+yaml`, `fieldManager=helm`, `fieldValidation=Strict`, `force` true on upgrades with
`--force-conflicts`) of every manifest object, POST/PUT of the release Secret as protobuf, and DELETEs on
uninstall; with `--wait=watcher`, watches with `sendInitialEvents`.

Simplifications, stated so no test leans on them: server-side apply assumes one field manager per object (an
apply replaces everything but server-owned metadata, allocated fields and status, which is what a sole manager
sees); strategic merge patches merge lists of objects by `name` and replace other lists; watches keep no history;
no admission, defaulting or controllers (tests that need ready workloads set their status themselves).
"""

from __future__ import annotations

import base64
import copy
import ipaddress
import json
import re
import ssl
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jsonpatch
import kubernetes_validate
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class Resource:
    group: str  # "" is the core group
    version: str
    name: str  # the plural, as in URLs
    kind: str
    namespaced: bool = True

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """How the API server names the resource in messages: `secrets`, `deployments.apps`."""
        return f"{self.name}.{self.group}" if self.group else self.name


def _r(gv: str, name: str, kind: str, namespaced: bool = True) -> Resource:
    group, _, version = gv.rpartition("/")
    return Resource(group, version, name, kind, namespaced)


# What a cluster with the Prometheus operator's CRDs installed serves (the chart's ServiceMonitor needs them).
RESOURCES: tuple[Resource, ...] = (
    _r("v1", "namespaces", "Namespace", namespaced=False),
    _r("v1", "secrets", "Secret"),
    _r("v1", "configmaps", "ConfigMap"),
    _r("v1", "services", "Service"),
    _r("v1", "serviceaccounts", "ServiceAccount"),
    _r("v1", "persistentvolumeclaims", "PersistentVolumeClaim"),
    _r("v1", "pods", "Pod"),
    _r("v1", "endpoints", "Endpoints"),
    _r("v1", "events", "Event"),
    _r("v1", "resourcequotas", "ResourceQuota"),
    _r("v1", "limitranges", "LimitRange"),
    _r("v1", "persistentvolumes", "PersistentVolume", namespaced=False),
    _r("apps/v1", "deployments", "Deployment"),
    _r("apps/v1", "statefulsets", "StatefulSet"),
    _r("apps/v1", "daemonsets", "DaemonSet"),
    _r("apps/v1", "replicasets", "ReplicaSet"),
    _r("batch/v1", "jobs", "Job"),
    _r("batch/v1", "cronjobs", "CronJob"),
    _r("networking.k8s.io/v1", "networkpolicies", "NetworkPolicy"),
    _r("networking.k8s.io/v1", "ingresses", "Ingress"),
    _r("networking.k8s.io/v1", "ingressclasses", "IngressClass", namespaced=False),
    _r("policy/v1", "poddisruptionbudgets", "PodDisruptionBudget"),
    _r("autoscaling/v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler"),
    _r("rbac.authorization.k8s.io/v1", "roles", "Role"),
    _r("rbac.authorization.k8s.io/v1", "rolebindings", "RoleBinding"),
    _r("rbac.authorization.k8s.io/v1", "clusterroles", "ClusterRole", namespaced=False),
    _r("rbac.authorization.k8s.io/v1", "clusterrolebindings", "ClusterRoleBinding", namespaced=False),
    _r("monitoring.coreos.com/v1", "servicemonitors", "ServiceMonitor"),
    _r("monitoring.coreos.com/v1", "podmonitors", "PodMonitor"),
    _r("monitoring.coreos.com/v1", "prometheuses", "Prometheus"),
    _r("monitoring.coreos.com/v1", "prometheusrules", "PrometheusRule"),
)

# Object names: DNS subdomains; namespace names: DNS labels (what the API server enforces).
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_SERVER_METADATA = ("uid", "creationTimestamp", "resourceVersion", "generation", "deletionTimestamp", "namespace")


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details or {}

    def status(self) -> dict[str, Any]:
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "details": self.details,
            "code": self.code,
        }


def _self_signed_cert() -> tuple[bytes, bytes]:
    """(certificate PEM, certificate + key PEM) for 127.0.0.1, its own CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake-kube-api")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert_pem, cert_pem + key_pem


def _validate_schema(obj: dict[str, Any]) -> None:
    """`fieldValidation=Strict`: the kind's Kubernetes 1.33 schema, unknown fields refused (kinds the package has
    no schema for, i.e. custom resources, pass as with a CRD without a structural schema)."""
    try:
        kubernetes_validate.validate(obj, "1.33", strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        return
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(part) for part in exc.path)
        name = obj.get("metadata", {}).get("name")
        raise ApiError(
            422, "Invalid", f'{obj["kind"]} "{name}" is invalid: {path}: {exc.message}', {"name": name}
        ) from None


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """Strategic merge as far as the built-in kinds need it: lists of objects merge by `name`."""
    if isinstance(patch, list) and isinstance(target, list) and _named(patch) and _named(target):
        merged = {item["name"]: item for item in target}
        order = [item["name"] for item in target]
        for item in patch:
            if item.get("$patch") == "delete":
                merged.pop(item["name"], None)
                continue
            if item["name"] not in merged:
                order.append(item["name"])
            merged[item["name"]] = strategic_merge_patch(merged.get(item["name"]), item)
        return [merged[name] for name in order if name in merged]
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        if value is None:
            result.pop(key, None)
        else:
            result[key] = strategic_merge_patch(result.get(key), value)
    return result


def _named(items: list[Any]) -> bool:
    return all(isinstance(item, dict) and "name" in item for item in items)


_SELECTOR_TERM = re.compile(
    r"^\s*(?:(?P<not>!)\s*(?P<absent>[\w./-]+)"
    r"|(?P<key>[\w./-]+)\s*(?:(?P<op>==|!=|=)\s*(?P<value>[\w.-]*)|\s+(?P<set>in|notin)\s*\((?P<values>[^)]*)\))?)\s*$"
)


def _split_terms(selector: str) -> list[str]:
    """Commas separate terms except inside `in (a,b)`."""
    terms, depth, current = [], 0, ""
    for char in selector:
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += char
    if current.strip():
        terms.append(current)
    return terms


def selector_matches(selector: str, labels: dict[str, str]) -> bool:
    """Kubernetes label selector syntax: `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`."""
    for term in _split_terms(selector):
        m = _SELECTOR_TERM.match(term)
        if m is None:
            raise ApiError(400, "BadRequest", f"unable to parse requirement: {term!r}")
        if m["absent"]:
            if m["absent"] in labels:
                return False
            continue
        value = labels.get(m["key"])
        if m["op"] in ("=", "=="):
            ok = value == m["value"]
        elif m["op"] == "!=":
            ok = value != m["value"]
        elif m["set"]:
            choices = {v.strip() for v in m["values"].split(",") if v.strip()}
            ok = value in choices if m["set"] == "in" else value not in choices
        else:
            ok = value is not None
        if not ok:
            return False
    return True


def _field_matches(selector: str, obj: dict[str, Any]) -> bool:
    for term in _split_terms(selector):
        path, op, expected = re.split(r"(!=|==|=)", term.strip(), maxsplit=1)
        value: Any = obj
        for part in path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        actual = "" if value is None else str(value)
        if (actual == expected) != (op != "!="):
            return False
    return True


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    content_type: str | None
    user_agent: str
    at: float = field(default_factory=time.monotonic)


@dataclass
class _Watcher:
    resource: Resource
    namespace: str | None
    label_selector: str
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    wake: threading.Condition = field(default_factory=threading.Condition)


class FakeKubeApi:
    """Start with `with FakeKubeApi() as kube:` (or start()/stop()); `kube.write_kubeconfig(path)` for clients."""

    def __init__(self, *, token: str | None = None, namespace_termination_s: float = 0.2) -> None:
        self.token = token or uuid.uuid4().hex
        self.namespace_termination_s = namespace_termination_s
        self.requests: list[Request] = []
        self._resources = {(r.group_version, r.name): r for r in RESOURCES}
        self._objects: dict[tuple[str, str, str, str], dict[str, Any]] = {}
        self._watchers: list[_Watcher] = []
        self._rv = 0
        self._services = 0
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._timers: list[threading.Timer] = []
        self.ca_pem = b""

    # --- lifecycle ---------------------------------------------------------------------------------------------
    def start(self) -> FakeKubeApi:
        handler = type("Handler", (_Handler,), {"api": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        # HTTPS because client-go (helm) sends a kubeconfig's credentials only over TLS.
        self.ca_pem, cert_chain = _self_signed_cert()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "tls.pem").write_bytes(cert_chain)
            context.load_cert_chain(Path(tmp) / "tls.pem")
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-kube-api", daemon=True
        ).start()
        return self

    def stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
        with self._lock:
            for watcher in self._watchers:
                with watcher.wake:
                    watcher.events.append(("STOP", {}))
                    watcher.wake.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeKubeApi:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        return f"https://127.0.0.1:{self._server.server_address[1]}"

    def write_kubeconfig(self, path: Path, *, context: str = "fake") -> Path:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "fake",
                    "cluster": {
                        "server": self.url,
                        "certificate-authority-data": base64.b64encode(self.ca_pem).decode(),
                    },
                }
            ],
            "users": [{"name": "billing", "user": {"token": self.token}}],
            "contexts": [{"name": context, "context": {"cluster": "fake", "user": "billing"}}],
            "current-context": context,
        }
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path

    # --- inspection for tests ----------------------------------------------------------------------------------
    def get(self, kind: str, name: str, namespace: str = "") -> dict[str, Any] | None:
        resource = self._by_kind(kind)
        with self._lock:
            obj = self._objects.get((resource.group_version, resource.name, namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    def list(self, kind: str, namespace: str | None = None) -> list[dict[str, Any]]:
        resource = self._by_kind(kind)
        with self._lock:
            return [
                copy.deepcopy(obj)
                for (gv, plural, ns, _), obj in sorted(self._objects.items())
                if (gv, plural) == (resource.group_version, resource.name) and namespace in (None, ns)
            ]

    def namespaced_kinds(self, namespace: str) -> set[str]:
        with self._lock:
            return {obj["kind"] for (_, _, ns, _), obj in self._objects.items() if ns == namespace}

    def _by_kind(self, kind: str) -> Resource:
        for resource in RESOURCES:
            if resource.kind == kind:
                return resource
        raise KeyError(kind)

    # --- discovery ---------------------------------------------------------------------------------------------
    def discovery(self, path: str) -> dict[str, Any] | None:
        if path == "/version":
            return {"major": "1", "minor": "33", "gitVersion": "v1.33.0", "platform": "linux/amd64"}
        if path == "/api":
            return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
        groups: dict[str, list[str]] = {}
        for resource in RESOURCES:
            if resource.group and resource.version not in groups.setdefault(resource.group, []):
                groups[resource.group].append(resource.version)
        if path == "/apis":
            return {
                "kind": "APIGroupList",
                "apiVersion": "v1",
                "groups": [
                    {
                        "name": name,
                        "versions": [{"groupVersion": f"{name}/{v}", "version": v} for v in versions],
                        "preferredVersion": {"groupVersion": f"{name}/{versions[0]}", "version": versions[0]},
                    }
                    for name, versions in groups.items()
                ],
            }
        if path.startswith("/openapi/v3"):
            return self.openapi_v3(path.removeprefix("/openapi/v3").lstrip("/"))
        gv = "v1" if path == "/api/v1" else path.removeprefix("/apis/")
        if path.startswith("/apis/") and gv.count("/") == 0 and gv in groups:
            versions = groups[gv]
            return {
                "kind": "APIGroup",
                "apiVersion": "v1",
                "name": gv,
                "versions": [{"groupVersion": f"{gv}/{v}", "version": v} for v in versions],
                "preferredVersion": {"groupVersion": f"{gv}/{versions[0]}", "version": versions[0]},
            }
        served = [r for r in RESOURCES if r.group_version == gv]
        if (path == "/api/v1" or path.startswith("/apis/")) and served:
            verbs = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
            return {
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": gv,
                "resources": [
                    {
                        "name": r.name,
                        "singularName": r.kind.lower(),
                        "namespaced": r.namespaced,
                        "kind": r.kind,
                        "verbs": verbs,
                    }
                    for r in served
                ],
            }
        return None

    def openapi_v3(self, gv_path: str) -> dict[str, Any] | None:
        """The OpenAPI v3 index and per-group-version documents, reduced to what clients read from them.

        kubectl's machinery in helm reads them only to learn that PATCH takes `fieldValidation` (every API server
        since 1.27 validates fields itself); without them helm refuses to apply anything. The schemas of the kinds
        are left out: helm then leaves validation to the server, as it does with a real one."""
        by_path: dict[str, list[Resource]] = {}
        for resource in RESOURCES:
            prefix = "api/v1" if not resource.group else f"apis/{resource.group_version}"
            by_path.setdefault(prefix, []).append(resource)
        if not gv_path:
            return {"paths": {p: {"serverRelativeURL": f"/openapi/v3/{p}?hash=fake"} for p in by_path}}
        if gv_path not in by_path:
            return None
        parameters = [
            {"name": name, "in": "query", "schema": {"type": "string"}}
            for name in ("dryRun", "fieldManager", "fieldValidation", "force")
        ]
        paths = {}
        for r in by_path[gv_path]:
            scope = "/namespaces/{namespace}" if r.namespaced else ""
            gvk = {"group": r.group, "version": r.version, "kind": r.kind}
            paths[f"/{gv_path}{scope}/{r.name}/{{name}}"] = {
                "patch": {
                    "operationId": f"patch{r.kind}",
                    "parameters": parameters,
                    "responses": {"200": {"description": "OK"}},
                    "x-kubernetes-action": "patch",
                    "x-kubernetes-group-version-kind": gvk,
                }
            }
        return {
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes", "version": "v1.33.0"},
            "paths": paths,
            "components": {"schemas": {}},
        }

    # --- the store ---------------------------------------------------------------------------------------------
    def resource(self, gv: str, plural: str) -> Resource:
        resource = self._resources.get((gv, plural))
        if resource is None:
            raise ApiError(404, "NotFound", f"the server could not find the requested resource ({plural})")
        return resource

    def _not_found(self, resource: Resource, name: str) -> ApiError:
        details = {"name": name, "group": resource.group, "kind": resource.name}
        return ApiError(404, "NotFound", f'{resource.qualified} "{name}" not found', details)

    def _require_namespace(self, namespace: str, *, creating: bool) -> None:
        ns = self._objects.get(("v1", "namespaces", "", namespace))
        if ns is None:
            details = {"name": namespace, "kind": "namespaces"}
            raise ApiError(404, "NotFound", f'namespaces "{namespace}" not found', details)
        if creating and ns["status"].get("phase") == "Terminating":
            raise ApiError(
                403,
                "Forbidden",
                f"unable to create new content in namespace {namespace} because it is being terminated",
            )

    def read(self, resource: Resource, namespace: str, name: str) -> dict[str, Any]:
        with self._lock:
            obj = self._objects.get((resource.group_version, resource.name, namespace, name))
            if obj is None:
                raise self._not_found(resource, name)
            return copy.deepcopy(obj)

    def list_objects(self, resource: Resource, namespace: str | None, query: dict[str, str]) -> dict[str, Any]:
        label_selector, field_selector = query.get("labelSelector", ""), query.get("fieldSelector", "")
        with self._lock:
            items = [
                copy.deepcopy(obj)
                for (gv, plural, ns, _), obj in sorted(self._objects.items())
                if (gv, plural) == (resource.group_version, resource.name)
                and namespace in (None, ns)
                and selector_matches(label_selector, obj["metadata"].get("labels") or {})
                and (not field_selector or _field_matches(field_selector, obj))
            ]
            return {
                "kind": f"{resource.kind}List",
                "apiVersion": resource.group_version,
                "metadata": {"resourceVersion": str(self._rv)},
                "items": items,
            }

    def _check_body(
        self, resource: Resource, namespace: str, body: Any, name: str | None, *, strict: bool = False
    ) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the body of the request was not a JSON object")
        if body.get("kind", resource.kind) != resource.kind or body.get("apiVersion", resource.group_version) != (
            resource.group_version
        ):
            raise ApiError(
                400,
                "BadRequest",
                f"the API version in the data ({body.get('apiVersion')}) and kind ({body.get('kind')}) do not match "
                f"the endpoint ({resource.group_version}, {resource.kind})",
            )
        meta = body.setdefault("metadata", {})
        if name is not None and meta.get("name", name) != name:
            raise ApiError(400, "BadRequest", "the name of the object does not match the name on the URL")
        if meta.get("namespace", namespace) != namespace:
            raise ApiError(400, "BadRequest", "the namespace of the object does not match the namespace on the URL")
        body["kind"], body["apiVersion"] = resource.kind, resource.group_version
        if strict:
            _validate_schema(body)
        if resource.namespaced:
            meta["namespace"] = namespace
        if resource.kind == "Secret" and "stringData" in body:
            data = body.setdefault("data", {}) or {}
            for key, value in body.pop("stringData").items():
                data[key] = base64.b64encode(str(value).encode()).decode()
            body["data"] = data
        return body

    def _validate_name(self, resource: Resource, name: str) -> None:
        pattern = _LABEL if resource.kind == "Namespace" else _SUBDOMAIN
        if not pattern.fullmatch(name or ""):
            raise ApiError(
                422,
                "Invalid",
                f'{resource.kind} "{name}" is invalid: metadata.name: Invalid value: "{name}": '
                "a lowercase RFC 1123 name must consist of lower case alphanumeric characters, '-' or '.'",
                {"name": name, "kind": resource.kind},
            )

    def _bump(self) -> str:
        self._rv += 1
        return str(self._rv)

    def create(
        self, resource: Resource, namespace: str, body: Any, *, dry_run: bool = False, strict: bool = False
    ) -> dict[str, Any]:
        with self._lock:
            obj = self._check_body(resource, namespace, copy.deepcopy(body), None, strict=strict)
            meta = obj["metadata"]
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
            name = meta.get("name", "")
            self._validate_name(resource, name)
            if resource.namespaced:
                self._require_namespace(namespace, creating=True)
            key = (resource.group_version, resource.name, namespace, name)
            if key in self._objects:
                details = {"name": name, "group": resource.group, "kind": resource.name}
                raise ApiError(409, "AlreadyExists", f'{resource.qualified} "{name}" already exists', details)
            meta.pop("resourceVersion", None)
            meta.update(uid=str(uuid.uuid4()), creationTimestamp=_now(), generation=1)
            if resource.kind == "Namespace":
                obj.setdefault("spec", {"finalizers": ["kubernetes"]})
                obj["status"] = {"phase": "Active"}
            if resource.kind == "Service" and obj.setdefault("spec", {}).get("clusterIP") != "None":
                self._services += 1
                address = f"10.96.{self._services // 250}.{self._services % 250 + 1}"
                obj["spec"].update(clusterIP=address, clusterIPs=[address])
            if dry_run:
                return obj
            meta["resourceVersion"] = self._bump()
            self._objects[key] = obj
            self._notify("ADDED", resource, obj)
            return copy.deepcopy(obj)

    def replace(
        self, resource: Resource, namespace: str, name: str, body: Any, *, dry_run: bool = False, strict: bool = False
    ) -> dict[str, Any]:
        with self._lock:
            key = (resource.group_version, resource.name, namespace, name)
            current = self._objects.get(key)
            if current is None:
                raise self._not_found(resource, name)
            obj = self._check_body(resource, namespace, copy.deepcopy(body), name, strict=strict)
            sent_rv = obj["metadata"].get("resourceVersion")
            if sent_rv and sent_rv != current["metadata"]["resourceVersion"]:
                raise ApiError(
                    409,
                    "Conflict",
                    f'Operation cannot be fulfilled on {resource.qualified} "{name}": the object has been modified; '
                    "please apply your changes to the latest version and try again",
                    {"name": name, "group": resource.group, "kind": resource.name},
                )
            return self._store_update(resource, key, current, obj, dry_run=dry_run)

    def _store_update(
        self,
        resource: Resource,
        key: tuple[str, str, str, str],
        current: dict[str, Any],
        obj: dict[str, Any],
        *,
        dry_run: bool,
    ) -> dict[str, Any]:
        meta = obj.setdefault("metadata", {})
        for server_owned in _SERVER_METADATA:
            if server_owned in current["metadata"]:
                meta[server_owned] = current["metadata"][server_owned]
            else:
                meta.pop(server_owned, None)
        if "status" in current:
            obj["status"] = current["status"]
        if resource.kind == "Service":  # allocated by the server at creation, kept when an update leaves them out
            for allocated in ("clusterIP", "clusterIPs"):
                if allocated in current.get("spec", {}):
                    obj.setdefault("spec", {}).setdefault(allocated, current["spec"][allocated])
        content = {k: v for k, v in obj.items() if k not in ("metadata", "status")}
        old_content = {k: v for k, v in current.items() if k not in ("metadata", "status")}
        if content != old_content:
            meta["generation"] = current["metadata"].get("generation", 1) + 1
        if obj == current or dry_run:
            return copy.deepcopy(obj)  # an update that changes nothing keeps its resourceVersion, as the API server
        meta["resourceVersion"] = self._bump()
        self._objects[key] = obj
        self._notify("MODIFIED", resource, obj)
        return copy.deepcopy(obj)

    def replace_status(self, resource: Resource, namespace: str, name: str, body: Any) -> dict[str, Any]:
        """The status subresource: only `status` changes (what controllers write, and what readiness reads)."""
        with self._lock:
            key = (resource.group_version, resource.name, namespace, name)
            current = self._objects.get(key)
            if current is None:
                raise self._not_found(resource, name)
            if not isinstance(body, dict) or not isinstance(body.get("status", {}), dict):
                raise ApiError(400, "BadRequest", "the body must be an object with a status object")
            if body.get("status") == current.get("status"):
                return copy.deepcopy(current)
            obj = copy.deepcopy(current)
            obj["status"] = copy.deepcopy(body.get("status", {}))
            obj["metadata"]["resourceVersion"] = self._bump()
            self._objects[key] = obj
            self._notify("MODIFIED", resource, obj)
            return copy.deepcopy(obj)

    def set_status(self, kind: str, name: str, namespace: str, status: dict[str, Any]) -> dict[str, Any]:
        """For tests playing a controller (the fake runs none)."""
        return self.replace_status(self._by_kind(kind), namespace, name, {"status": status})

    def patch(
        self,
        resource: Resource,
        namespace: str,
        name: str,
        content_type: str,
        raw: bytes,
        query: dict[str, str],
    ) -> tuple[int, dict[str, Any]]:
        dry_run, strict = query.get("dryRun") == "All", query.get("fieldValidation") == "Strict"
        with self._lock:
            key = (resource.group_version, resource.name, namespace, name)
            current = self._objects.get(key)
            if content_type == "application/apply-patch+yaml":
                if not query.get("fieldManager"):
                    raise ApiError(400, "BadRequest", "PATCH with apply requires a fieldManager")
                applied = yaml.safe_load(raw)
                if current is None:
                    created = self.create(resource, namespace, applied, dry_run=dry_run, strict=strict)
                    return 201, created
                obj = self._check_body(resource, namespace, applied, name, strict=strict)
                return 200, self._store_update(resource, key, current, obj, dry_run=dry_run)
            if current is None:
                raise self._not_found(resource, name)
            try:
                patch = json.loads(raw)
                if content_type == "application/merge-patch+json":
                    obj = merge_patch(current, patch)
                elif content_type == "application/strategic-merge-patch+json":
                    obj = strategic_merge_patch(current, patch)
                elif content_type == "application/json-patch+json":
                    obj = jsonpatch.apply_patch(current, patch)
                else:
                    raise ApiError(415, "UnsupportedMediaType", f"the media type {content_type!r} is not supported")
            except (ValueError, jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
                raise ApiError(400, "BadRequest", f"the patch could not be applied: {exc}") from exc
            obj = self._check_body(resource, namespace, obj, name, strict=strict)
            return 200, self._store_update(resource, key, current, obj, dry_run=dry_run)

    def delete(self, resource: Resource, namespace: str, name: str, *, dry_run: bool = False) -> dict[str, Any]:
        with self._lock:
            key = (resource.group_version, resource.name, namespace, name)
            obj = self._objects.get(key)
            if obj is None:
                raise self._not_found(resource, name)
            if dry_run:
                return copy.deepcopy(obj)
            if resource.kind != "Namespace":
                del self._objects[key]
                self._bump()
                self._notify("DELETED", resource, obj)
                return copy.deepcopy(obj)
            if obj["status"].get("phase") != "Terminating":
                # The namespace controller empties a terminating namespace, then removes it.
                obj["metadata"]["deletionTimestamp"] = _now()
                obj["status"]["phase"] = "Terminating"
                obj["metadata"]["resourceVersion"] = self._bump()
                self._notify("MODIFIED", resource, obj)
                timer = threading.Timer(self.namespace_termination_s, self._finish_termination, (name,))
                timer.daemon = True
                self._timers.append(timer)
                timer.start()
            return copy.deepcopy(obj)

    def _finish_termination(self, namespace: str) -> None:
        with self._lock:
            for key in [k for k in self._objects if k[2] == namespace]:
                self._notify("DELETED", self._resources[key[:2]], self._objects.pop(key))
            ns = self._objects.pop(("v1", "namespaces", "", namespace), None)
            if ns is not None:
                self._notify("DELETED", self._resources[("v1", "namespaces")], ns)
            self._bump()

    # --- watch -------------------------------------------------------------------------------------------------
    def _notify(self, kind: str, resource: Resource, obj: dict[str, Any]) -> None:
        for watcher in self._watchers:
            if watcher.resource != resource or watcher.namespace not in (None, obj["metadata"].get("namespace", "")):
                continue
            if selector_matches(watcher.label_selector, obj["metadata"].get("labels") or {}):
                with watcher.wake:
                    watcher.events.append((kind, copy.deepcopy(obj)))
                    watcher.wake.notify_all()

    def watch(
        self, resource: Resource, namespace: str | None, query: dict[str, str]
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Changes from now on; first the existing objects as ADDED when no resourceVersion (or "0") is given or
        `sendInitialEvents` asks, closed by the bookmark that streaming lists (helm's readiness watcher) wait for.
        No history is kept: a watch from an older resourceVersion sees only later changes."""
        watcher = _Watcher(resource, namespace, query.get("labelSelector", ""))
        with self._lock:
            listed = self.list_objects(resource, namespace, query)
            initial = query.get("sendInitialEvents") == "true"
            if initial or query.get("resourceVersion", "0") == "0":
                watcher.events.extend(("ADDED", obj) for obj in listed["items"])
            if initial:
                bookmark = {
                    "kind": resource.kind,
                    "apiVersion": resource.group_version,
                    "metadata": {
                        "resourceVersion": listed["metadata"]["resourceVersion"],
                        "annotations": {"k8s.io/initial-events-end": "true"},
                    },
                }
                watcher.events.append(("BOOKMARK", bookmark))
            self._watchers.append(watcher)
        deadline = time.monotonic() + float(query.get("timeoutSeconds") or 30)
        try:
            while time.monotonic() < deadline:
                with watcher.wake:
                    if not watcher.events:
                        watcher.wake.wait(timeout=min(0.5, max(0.0, deadline - time.monotonic())))
                    events, watcher.events = watcher.events, []
                for event in events:
                    if event[0] == "STOP":
                        return
                    yield event
        finally:
            with self._lock:
                self._watchers.remove(watcher)


# --- protobuf request bodies --------------------------------------------------------------------------------------
# client-go sends built-in kinds as protobuf and helm's release storage has no JSON switch, so the fake reads the
# kinds helm stores releases in (Secret, and ConfigMap for the configmap driver). Field numbers: k8s.io/api
# generated.proto. The responses stay JSON, which client-go accepts whatever it asked for.
_OBJECT_META = {1: "name", 2: "generateName", 3: "namespace", 5: "uid", 6: "resourceVersion", 11: "labels",
                12: "annotations", 14: "finalizers"}
_BODIES: dict[str, dict[int, tuple[str, str]]] = {
    "Secret": {2: ("data", "bytes_map"), 3: ("type", "str"), 4: ("stringData", "str_map"), 5: ("immutable", "bool")},
    "ConfigMap": {2: ("data", "str_map"), 3: ("binaryData", "bytes_map"), 4: ("immutable", "bool")},
}


def _fields(buf: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) pairs of one protobuf message: varints as int, length-delimited as bytes."""
    pos = 0

    def varint() -> int:
        nonlocal pos
        shift = result = 0
        while True:
            byte = buf[pos]
            pos += 1
            result |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return result

    while pos < len(buf):
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            yield number, varint()
        elif wire == 2:
            size = varint()
            yield number, buf[pos : pos + size]
            pos += size
        elif wire in (1, 5):  # fixed 64/32-bit: no field the fake reads
            pos += 8 if wire == 1 else 4
        else:
            raise ApiError(400, "BadRequest", f"unsupported protobuf wire type {wire}")


def _map_entry(entry: bytes) -> tuple[str, bytes]:
    values = dict(_fields(entry))
    key, value = values.get(1, b""), values.get(2, b"")
    assert isinstance(key, bytes) and isinstance(value, bytes)
    return key.decode(), value


def decode_protobuf(raw: bytes) -> dict[str, Any]:
    if not raw.startswith(b"k8s\x00"):
        raise ApiError(400, "BadRequest", "protobuf body without the k8s envelope")
    envelope = dict(_fields(raw[4:]))
    type_meta = {n: v.decode() for n, v in _fields(envelope.get(1, b"")) if isinstance(v, bytes)}  # type: ignore[arg-type]
    api_version, kind = type_meta.get(1, ""), type_meta.get(2, "")
    if kind not in _BODIES:
        raise ApiError(415, "UnsupportedMediaType", f"the fake reads no protobuf {kind or 'object'}; send JSON")
    obj: dict[str, Any] = {"apiVersion": api_version, "kind": kind, "metadata": {}}
    for number, value in _fields(envelope.get(2, b"")):  # type: ignore[arg-type]
        assert isinstance(value, bytes) or number == 5
        if number == 1:
            for meta_number, meta_value in _fields(value):  # type: ignore[arg-type]
                name = _OBJECT_META.get(meta_number)
                if name in ("labels", "annotations"):
                    key, item = _map_entry(meta_value)  # type: ignore[arg-type]
                    obj["metadata"].setdefault(name, {})[key] = item.decode()
                elif name == "finalizers":
                    obj["metadata"].setdefault(name, []).append(meta_value.decode())  # type: ignore[union-attr]
                elif name is not None and meta_value:
                    obj["metadata"][name] = meta_value.decode()  # type: ignore[union-attr]
            continue
        if number not in _BODIES[kind]:
            continue
        name, shape = _BODIES[kind][number]
        if shape == "bool":
            obj[name] = bool(value)
        elif shape == "str":
            obj[name] = value.decode()  # type: ignore[union-attr]
        else:
            key, item = _map_entry(value)  # type: ignore[arg-type]
            text = base64.b64encode(item).decode() if shape == "bytes_map" else item.decode()
            obj.setdefault(name, {})[key] = text
    return obj


_RESOURCE_PATH = re.compile(
    r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))"
    r"(?:/namespaces/(?P<namespace>[^/]+)(?=/[^/]+))?/(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?(?:/(?P<sub>[^/]+))?$"
)


class _Handler(BaseHTTPRequestHandler):
    api: FakeKubeApi
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as two writes: no 40 ms delayed-ACK stall each

    def log_message(self, format: str, *args: Any) -> None:  # the test output stays quiet
        pass

    def _send(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip() or None
        self.api.requests.append(
            Request(self.command, url.path, query, content_type, self.headers.get("User-Agent", ""))
        )
        try:
            if self.headers.get("Authorization") != f"Bearer {self.api.token}":
                raise ApiError(401, "Unauthorized", "Unauthorized")
            self._route(url.path, query, content_type or "", raw)
        except ApiError as exc:
            self._send(exc.code, exc.status())

    def _route(self, path: str, query: dict[str, str], content_type: str, raw: bytes) -> None:
        api = self.api
        if self.command == "GET":
            found = api.discovery(path.rstrip("/"))
            if found is not None:
                self._send(200, found)
                return
        m = _RESOURCE_PATH.match(path)
        if m is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        gv = m["core"] or f"{m['group']}/{m['version']}"
        resource = api.resource(gv, m["plural"])
        namespace, name = m["namespace"], m["name"]
        if m["sub"] is not None and m["sub"] != "status":
            raise ApiError(404, "NotFound", f"the server could not find the requested resource ({m['sub']})")
        if resource.namespaced and namespace is None and name is not None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if not resource.namespaced and namespace is not None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        dry_run, strict = query.get("dryRun") == "All", query.get("fieldValidation") == "Strict"
        ns = namespace or ""
        if m["sub"] == "status" and name is not None:
            if self.command == "GET":
                self._send(200, api.read(resource, ns, name))
            elif self.command == "PUT":
                self._send(200, api.replace_status(resource, ns, name, self._json(raw)))
            else:
                raise ApiError(405, "MethodNotAllowed", f"{self.command} is not supported on {path}")
        elif self.command == "GET" and name is None:
            if query.get("watch") in ("1", "true"):
                self._stream(api.watch(resource, namespace, query))
            else:
                self._send(200, api.list_objects(resource, namespace, query))
        elif self.command == "GET":
            self._send(200, api.read(resource, ns, name))
        elif self.command == "POST" and name is None:
            self._send(201, api.create(resource, ns, self._json(raw), dry_run=dry_run, strict=strict))
        elif self.command == "PUT" and name is not None:
            self._send(200, api.replace(resource, ns, name, self._json(raw), dry_run=dry_run, strict=strict))
        elif self.command == "PATCH" and name is not None:
            self._send(*api.patch(resource, ns, name, content_type, raw, query))
        elif self.command == "DELETE" and name is not None:
            self._send(200, api.delete(resource, ns, name, dry_run=dry_run))
        else:
            raise ApiError(405, "MethodNotAllowed", f"{self.command} is not supported on {path}")

    def _json(self, raw: bytes) -> Any:
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        if content_type == "application/vnd.kubernetes.protobuf":
            return decode_protobuf(raw)
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise ApiError(400, "BadRequest", f"the body is not JSON: {exc}") from exc

    def _stream(self, events: Iterator[tuple[str, dict[str, Any]]]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for kind, obj in events:
                chunk = json.dumps({"type": kind, "object": obj}).encode() + b"\n"
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        except OSError:  # the client closed the watch (TLS: SSLEOFError); nothing to tell it any more
            pass

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle
