"""Licence issuing: the customer's subscription, turned into claims (`licence_terms`) and signed with the
billing private key (RS256, `iotistic.core.licensing`). The newest row of `licenses` is the licence in force."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from iotistic.billing.db import settings_of
from iotistic.billing.licence_terms import licence_claims, licence_terms
from iotistic.billing.models import Customer, License, Subscription
from iotistic.core.db import utcnow
from iotistic.core.licensing import sign_license


async def issue(session: AsyncSession, customer: Customer | str, *, now: dt.datetime | None = None) -> License:
    """Sign a licence for the customer's current subscription and add it (flushed, not committed)."""
    customer_id = customer if isinstance(customer, str) else customer.id
    subscription = await session.get(Subscription, customer_id)
    if subscription is None:
        raise LookupError(f"customer {customer_id} has no subscription")
    settings = settings_of(session)
    # Whole seconds: the JWT's iat/exp are, and the row should say the same.
    now = (now or utcnow()).replace(microsecond=0)
    terms = licence_terms(
        status=subscription.status,
        trial_ends_at=subscription.trial_ends_at,
        period_end=subscription.current_period_end,
        cancel_effective_at=subscription.cancel_effective_at,
        now=now,
        grace_days=settings.license_grace_days,
    )
    claims = licence_claims(customer_id=customer_id, plan=subscription.plan, terms=terms, now=now)
    licence = License(
        customer_id=customer_id,
        token=sign_license(claims, settings.private_key_pem()),
        plan=subscription.plan,
        subscription_status=subscription.status,
        issued_at=now,
        expires_at=terms.expires_at,
    )
    session.add(licence)
    await session.flush()
    return licence


async def current(session: AsyncSession, customer_id: str) -> License | None:
    """The licence in force: the newest one issued."""
    return await session.scalar(
        select(License).where(License.customer_id == customer_id).order_by(License.id.desc()).limit(1)
    )
