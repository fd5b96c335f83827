"""The billing database's sessions. Each session carries the service's settings in `session.info`, so service
functions with the agreed signatures (`licences.issue(session, customer)`, `queue.enqueue(session, ...)`) reach
the signing key, the ingress domain and the queue's limits without every caller passing them along."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from iotistic.billing.settings import BillingSettings
from iotistic.core.db import make_sessionmaker

_SETTINGS_KEY = "billing_settings"


def billing_sessionmaker(engine: AsyncEngine, settings: BillingSettings) -> async_sessionmaker[AsyncSession]:
    return make_sessionmaker(engine, info={_SETTINGS_KEY: settings})


def settings_of(session: AsyncSession) -> BillingSettings:
    settings = session.info.get(_SETTINGS_KEY)
    if not isinstance(settings, BillingSettings):
        raise RuntimeError("not a billing session: make sessions with iotistic.billing.db.billing_sessionmaker")
    return settings
