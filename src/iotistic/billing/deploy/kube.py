"""The customer's namespace, through the official Kubernetes client.

The namespace is created by billing (not by `helm --create-namespace`) so that it carries the labels that say whose
it is; billing only ever installs into or deletes a namespace with both labels, so a name collision with a
namespace someone else made is an error instead of a takeover. The client is synchronous: the deployer runs these
calls in a worker thread.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from iotistic.billing.deploy.errors import NamespaceError
from iotistic.billing.deploy.spec import namespace_for

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "iotistic-billing"
CUSTOMER_LABEL = "iotistic.io/customer-id"


def namespace_labels(customer_id: str) -> dict[str, str]:
    return {MANAGED_BY_LABEL: MANAGED_BY, CUSTOMER_LABEL: customer_id}


def is_ours(labels: Mapping[str, str] | None, customer_id: str) -> bool:
    labels = labels or {}
    return labels.get(MANAGED_BY_LABEL) == MANAGED_BY and labels.get(CUSTOMER_LABEL) == customer_id


def client_factory(kubeconfig: Path | None = None, context: str | None = None) -> Callable[[], client.ApiClient]:
    """A maker of API clients: the kubeconfig (and context) when given, else the pod's service account when
    running in a cluster, else the default kubeconfig. A client per operation reads credentials afresh, so
    rotated service-account tokens and kubeconfig edits are picked up without a restart."""

    def make() -> client.ApiClient:
        try:
            if kubeconfig is None and context is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
                configuration = client.Configuration()
                config.load_incluster_config(client_configuration=configuration)
                return client.ApiClient(configuration)
            return config.new_client_from_config(
                config_file=str(kubeconfig) if kubeconfig else None, context=context, persist_config=False
            )
        except config.ConfigException as exc:
            raise NamespaceError(f"no usable Kubernetes configuration: {exc}") from None

    return make


def _reason(exc: ApiException) -> str:
    """The API server's own message (its Status body), else the HTTP reason."""
    try:
        message = json.loads(exc.body or "")["message"]
    except (ValueError, KeyError, TypeError):
        message = exc.reason
    return f"{message} (HTTP {exc.status})"


@dataclass
class Namespaces:
    make_client: Callable[[], client.ApiClient]
    request_timeout_s: float = 30.0
    delete_timeout_s: float = 120.0  # the namespace controller deletes every object inside first
    poll_max_s: float = 1.0

    @contextmanager
    def _core(self) -> Iterator[client.CoreV1Api]:
        api = self.make_client()
        try:
            yield client.CoreV1Api(api)
        except HTTPError as exc:  # connection refused, TLS failure, timeout: no Status to read
            raise NamespaceError(f"Kubernetes API unreachable: {exc}") from None
        finally:
            api.close()

    def _read(self, core: client.CoreV1Api, name: str) -> Any | None:
        try:
            return core.read_namespace(name, _request_timeout=self.request_timeout_s)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise NamespaceError(f"cannot read namespace {name}: {_reason(exc)}") from None

    def _check_ours(self, namespace: Any, customer_id: str) -> None:
        if not is_ours(namespace.metadata.labels, customer_id):
            raise NamespaceError(
                f"namespace {namespace.metadata.name} exists but is not labelled {MANAGED_BY_LABEL}={MANAGED_BY}, "
                f"{CUSTOMER_LABEL}={customer_id}: refusing to use it"
            )

    def ensure(self, customer_id: str) -> bool:
        """Create the labelled namespace if missing; True when it was created. NamespaceError when a namespace of
        that name is not this customer's, or is still being deleted (a retry after the removal finishes works)."""
        name = namespace_for(customer_id)
        with self._core() as core:
            existing = self._read(core, name)
            if existing is None:
                body = client.V1Namespace(
                    metadata=client.V1ObjectMeta(name=name, labels=namespace_labels(customer_id))
                )
                try:
                    core.create_namespace(body, _request_timeout=self.request_timeout_s)
                    return True
                except ApiException as exc:
                    if exc.status != 409:  # 409: created meanwhile by a concurrent apply; checked below
                        raise NamespaceError(f"cannot create namespace {name}: {_reason(exc)}") from None
                existing = self._read(core, name)
                if existing is None:
                    raise NamespaceError(f"namespace {name} vanished while being created; retry") from None
            self._check_ours(existing, customer_id)
            if existing.metadata.deletion_timestamp is not None or existing.status.phase == "Terminating":
                raise NamespaceError(f"namespace {name} is being deleted; retry once it is gone")
            return False

    def exists(self, customer_id: str) -> bool:
        """Whether the customer's namespace exists (also while terminating); NamespaceError when it is not ours."""
        name = namespace_for(customer_id)
        with self._core() as core:
            existing = self._read(core, name)
            if existing is None:
                return False
            self._check_ours(existing, customer_id)
            return True

    def delete(self, customer_id: str) -> bool:
        """Delete the customer's namespace and wait until it is gone; False when there was none."""
        name = namespace_for(customer_id)
        with self._core() as core:
            existing = self._read(core, name)
            if existing is None:
                return False
            self._check_ours(existing, customer_id)
            if existing.metadata.deletion_timestamp is None:
                try:
                    core.delete_namespace(name, _request_timeout=self.request_timeout_s)
                except ApiException as exc:
                    if exc.status != 404:
                        raise NamespaceError(f"cannot delete namespace {name}: {_reason(exc)}") from None
            deadline = time.monotonic() + self.delete_timeout_s
            pause = 0.05
            while self._read(core, name) is not None:
                if time.monotonic() >= deadline:
                    raise NamespaceError(
                        f"namespace {name} still terminating after {self.delete_timeout_s:.0f} s "
                        "(objects with finalizers inside?)"
                    )
                time.sleep(pause)
                pause = min(pause * 2, self.poll_max_s)
            return True
