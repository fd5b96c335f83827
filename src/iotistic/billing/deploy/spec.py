"""What the deployment queue hands to a deployer: one customer instance, described as data.

The queue worker builds an `InstanceSpec` from the billing database; `values.build_values` turns it into the
Helm values of `charts/customer-instance`; a `Deployer` makes the cluster match it. Keeping the three apart
lets the worker be tested with any deployer and the values be tested without a cluster."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

# Kubernetes namespace names are DNS labels: lower-case alphanumerics and '-', at most 63 characters.
_CUSTOMER_ID = re.compile(r"^[a-z0-9]([a-z0-9-]{0,52}[a-z0-9])?$")


def namespace_for(customer_id: str) -> str:
    """`customer-<id>`: unique per customer id, and a valid namespace name for every id billing issues."""
    if not _CUSTOMER_ID.fullmatch(customer_id):
        raise ValueError(f"customer id {customer_id!r} cannot name a namespace (lower-case a-z, 0-9 and '-')")
    return f"customer-{customer_id}"


@dataclass(frozen=True)
class InstanceSpec:
    customer_id: str
    plan: str  # a name from iotistic.core.plans.PLANS
    license_jwt: str  # the RS256 licence the instance's cloud API verifies
    subscription_status: str  # trialing / active / past_due / canceled / unpaid
    ingress_host: str  # e.g. "<id>.iotistic.example"; the cloud API and dashboard are served there

    @property
    def namespace(self) -> str:
        return namespace_for(self.customer_id)

    @property
    def release(self) -> str:
        """The Helm release name inside the namespace (one release per namespace)."""
        return "iotistic"


class Deployer(Protocol):
    """Makes the cluster match a spec. Both calls are idempotent: repeating one after a crash or a retry is safe."""

    async def apply(self, spec: InstanceSpec) -> None:
        """Create the namespace if needed and `helm upgrade --install` the instance with the spec's values."""
        ...

    async def remove(self, customer_id: str) -> None:
        """`helm uninstall` the instance and delete its namespace; nothing to do when it is already gone."""
        ...
