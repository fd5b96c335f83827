"""`KubernetesDeployer`: the `Deployer` of the deployment queue for a real cluster.

apply  = the labelled namespace `customer-<id>` (created if missing) + `helm upgrade --install` of
         charts/customer-instance with `build_values(spec)` (a release left pending by a dead helm is recovered);
remove = `helm uninstall` (nothing to do when not installed) + the namespace deleted, waited for until gone.

Both are idempotent, so the queue may retry either after any failure. The customer id is checked
(`namespace_for`) before anything reaches the cluster or the helm command line.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from iotistic.billing.deploy.errors import DeployError, HelmError
from iotistic.billing.deploy.helm import Helm
from iotistic.billing.deploy.kube import Namespaces, client_factory
from iotistic.billing.deploy.spec import InstanceSpec, namespace_for
from iotistic.billing.deploy.values import Platform, build_values
from iotistic.billing.settings import BillingSettings

# One release per namespace (InstanceSpec.release); remove() has only the customer id.
RELEASE = "iotistic"
PENDING = frozenset({"pending-install", "pending-upgrade", "pending-rollback"})


@dataclass
class KubernetesDeployer:
    helm: Helm
    namespaces: Namespaces
    chart: Path
    platform: Platform = field(default_factory=Platform)

    @classmethod
    def from_settings(cls, settings: BillingSettings, platform: Platform | None = None) -> KubernetesDeployer:
        """HELM_BIN, KUBECONFIG / BILLING_KUBE_CONTEXT (else the in-cluster service account), BILLING_CHART_PATH,
        BILLING_HELM_TIMEOUT_SECONDS, BILLING_HELM_WAIT; what instances share from BILLING_INSTANCE_IMAGE(_TAG),
        BILLING_INGRESS_CLASS, BILLING_TLS_CLUSTER_ISSUER, BILLING_STORAGE_CLASS, BILLING_INGRESS_NAMESPACE,
        BILLING_MONITORING_NAMESPACE, BILLING_SERVICE_MONITOR_LABELS; instances verify licences with the billing
        public key."""
        if platform is None:
            platform = Platform(
                license_public_key=settings.public_key_pem,
                image_repository=settings.instance_image,
                image_tag=settings.instance_image_tag,
                ingress_class=settings.ingress_class,
                tls_cluster_issuer=settings.tls_cluster_issuer,
                storage_class=settings.storage_class,
                ingress_namespace=settings.ingress_namespace,
                monitoring_namespace=settings.monitoring_namespace,
                service_monitor_labels=dict(settings.service_monitor_labels),
                vpn_cert_manager_url=settings.vpn_cert_manager_url or "",
                vpn_service_token=(settings.vpn_service_token.get_secret_value()
                                   if settings.vpn_service_token else ""),
            )
        return cls(
            helm=Helm(
                binary=settings.helm_bin,
                kubeconfig=settings.kubeconfig,
                kube_context=settings.kube_context,
                timeout_s=settings.helm_timeout_seconds,
                wait=settings.helm_wait,
            ),
            namespaces=Namespaces(client_factory(settings.kubeconfig, settings.kube_context)),
            chart=settings.chart_path,
            platform=platform,
        )

    def values(self, spec: InstanceSpec) -> dict[str, Any]:
        """Exactly the values `apply` installs (e.g. for the deployments row's values digest)."""
        return build_values(spec, self.platform)

    async def apply(self, spec: InstanceSpec) -> None:
        if spec.release != RELEASE:
            raise ValueError(f"release {spec.release!r}: this deployer manages only {RELEASE!r}")
        values = self.values(spec)  # ValueError on a spec the chart must never see, before any cluster call
        secrets = [spec.license_jwt, self.platform.vpn_service_token]  # kept out of errors helm reports
        await asyncio.to_thread(self.namespaces.ensure, spec.customer_id)
        try:
            await self.helm.upgrade_install(RELEASE, self.chart, spec.namespace, values, secrets=secrets)
        except HelmError as exc:
            if "another operation (install/upgrade/rollback) is in progress" not in exc.stderr:
                raise
            await self._unstick(spec.namespace, exc)
            await self.helm.upgrade_install(RELEASE, self.chart, spec.namespace, values, secrets=secrets)

    async def _unstick(self, namespace: str, error: HelmError) -> None:
        """A helm that died mid-operation (killed at its deadline, or with its worker) leaves the release pending,
        and helm refuses every later upgrade. Once the pending revision is older than any helm call of ours can
        run, nobody is at work on it: a first install is uninstalled, an upgrade or rollback rolled back."""
        latest = await self.helm.latest(RELEASE, namespace)
        if latest is None or latest.status not in PENDING:
            raise error
        age = (datetime.now(UTC) - latest.updated).total_seconds()
        if age < self.helm.deadline_s:
            raise DeployError(
                f"release {RELEASE} in {namespace} is {latest.status} since {age:.0f} s and another helm may still "
                f"be at work on it; retry after {self.helm.deadline_s:.0f} s"
            )
        if latest.status == "pending-install":
            await self.helm.uninstall(RELEASE, namespace)
        else:
            await self.helm.rollback(RELEASE, namespace)

    async def remove(self, customer_id: str) -> None:
        namespace = namespace_for(customer_id)  # ValueError for an id that cannot be ours
        # Helm keeps its releases in the namespace: none there, nothing installed. A namespace that is not ours
        # raises here, before helm touches anything in it.
        if not await asyncio.to_thread(self.namespaces.exists, customer_id):
            return
        # Uninstall first so the chart's delete hooks run while the namespace still exists.
        await self.helm.uninstall(RELEASE, namespace)
        await asyncio.to_thread(self.namespaces.delete, customer_id)
