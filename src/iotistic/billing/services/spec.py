"""The instance a customer should have now, as the deployer's `InstanceSpec`."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from iotistic.billing.db import settings_of
from iotistic.billing.deploy.spec import InstanceSpec
from iotistic.billing.models import Subscription
from iotistic.billing.services import licences


async def build_spec(session: AsyncSession, customer_id: str) -> InstanceSpec:
    subscription = await session.get(Subscription, customer_id)
    if subscription is None:
        raise LookupError(f"customer {customer_id} has no subscription")
    licence = await licences.current(session, customer_id)
    if licence is None:
        raise LookupError(f"customer {customer_id} has no licence")
    return InstanceSpec(
        customer_id=customer_id,
        plan=subscription.plan,
        license_jwt=licence.token,
        subscription_status=subscription.status,
        ingress_host=f"{customer_id}.{settings_of(session).ingress_domain}",
    )
