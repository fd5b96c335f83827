"""Rows of the billing database as API bodies."""

from __future__ import annotations

from typing import Any

import jwt
from sqlalchemy.ext.asyncio import AsyncSession

from iotistic.billing import queue
from iotistic.billing.models import Customer, Deployment, License, Subscription
from iotistic.billing.schemas import CustomerOut, DeploymentOut, JobOut, LicenseOut, SubscriptionOut
from iotistic.core.licensing import ALGORITHM


def customer_out(customer: Customer, subscription: Subscription) -> CustomerOut:
    return CustomerOut(id=customer.id, email=customer.email, company=customer.company,
                       created_at=customer.created_at, subscription=SubscriptionOut.model_validate(subscription))


def license_out(licence: License, public_key_pem: str) -> LicenseOut:
    # Decoded with our own key, expired or not: the customer sees what its instance is told.
    claims: dict[str, Any] = jwt.decode(licence.token, public_key_pem, algorithms=[ALGORITHM],
                                        options={"verify_exp": False, "verify_aud": False})
    return LicenseOut(token=licence.token, plan=licence.plan, subscription_status=licence.subscription_status,
                      issued_at=licence.issued_at, expires_at=licence.expires_at, claims=claims)


async def deployment_out(session: AsyncSession, deployment: Deployment) -> DeploymentOut:
    job = await queue.newest_job(session, deployment.customer_id)
    return DeploymentOut(customer_id=deployment.customer_id, status=deployment.status,
                         namespace=deployment.namespace, revision=deployment.revision,
                         values_digest=deployment.values_digest, last_error=deployment.last_error,
                         updated_at=deployment.updated_at,
                         job=JobOut.model_validate(job) if job is not None else None)
