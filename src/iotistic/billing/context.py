"""What one running billing service holds. Built once by `create_app`."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from iotistic.billing.deploy.spec import Deployer
from iotistic.billing.rate_guard import RateGuard
from iotistic.billing.settings import BillingSettings
from iotistic.billing.stripe_gateway import StripeGateway
from iotistic.billing.tokens import OperatorToken


@dataclass
class BillingContext:
    settings: BillingSettings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    jwt_secret: str
    operator: OperatorToken
    public_key_pem: str
    login_guard: RateGuard  # failed logins per email
    signup_guard: RateGuard  # signups per client address
    deployer: Deployer | None = None  # when set, the queue worker runs inside the service
    stripe: StripeGateway | None = None  # None without STRIPE_API_KEY: checkout and webhooks answer 503
