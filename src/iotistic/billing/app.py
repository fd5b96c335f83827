"""The billing service's application factory."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

import iotistic
from iotistic.billing import worker
from iotistic.billing.context import BillingContext
from iotistic.billing.db import billing_sessionmaker
from iotistic.billing.deploy.spec import Deployer
from iotistic.billing.errors import ErrorBody, install_error_handlers
from iotistic.billing.rate_guard import RateGuard
from iotistic.billing.routers import auth, customers, health, license, operator, stripe, usage
from iotistic.billing.services import usage as usage_collection
from iotistic.billing.settings import BillingSettings
from iotistic.billing.stripe_gateway import StripeGateway
from iotistic.billing.tokens import OperatorToken
from iotistic.core.db import make_engine
from iotistic.core.security import configure_password_hashing

log = logging.getLogger(__name__)

ROUTERS = (health, auth, customers, license, operator, stripe, usage)
# How long a stopping service lets the worker finish the job in hand before cancelling it (the job is then handed
# back to the queue at once).
WORKER_STOP_SECONDS = 10.0


def _stripe_gateway(settings: BillingSettings) -> StripeGateway | None:
    if settings.stripe_api_key is None:
        return None
    secret = settings.stripe_webhook_secret
    return StripeGateway(settings.stripe_api_key.get_secret_value(),
                         secret.get_secret_value() if secret else None, api_base=settings.stripe_api_base)


def create_app(settings: BillingSettings, *, deployer: Deployer | None = None) -> FastAPI:
    """Build the API. The database must already be migrated (`iotistic billing migrate`). With a `deployer`, the
    deployment worker runs inside the service; without one, jobs wait for `iotistic billing worker`."""
    configure_password_hashing(time_cost=settings.argon2_time_cost, memory_kib=settings.argon2_memory_kib,
                               parallelism=settings.argon2_parallelism)
    engine = make_engine(settings.sqlalchemy_url)
    ctx = BillingContext(
        settings=settings,
        engine=engine,
        sessions=billing_sessionmaker(engine, settings),
        jwt_secret=settings.resolved_jwt_secret(),
        operator=OperatorToken(settings.operator_token.get_secret_value() if settings.operator_token else None),
        public_key_pem=settings.public_key_pem,  # ConfigError now, not at the first signup, when no key is set
        login_guard=RateGuard(settings.login_max_failures, settings.login_lockout_seconds),
        signup_guard=RateGuard(settings.signup_max_per_hour, 3600),
        deployer=deployer,
        stripe=_stripe_gateway(settings),
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        stop = asyncio.Event()
        task = None
        if deployer is not None:
            task = asyncio.create_task(worker.run_forever(ctx.sessions, deployer, stop), name="deployment-worker")
        # Usage: every customer's current period from Prometheus, at start and then every interval (idempotent
        # upserts, so several replicas doing it is harmless).
        prometheus = usage_collection.PrometheusClient(settings.prometheus_url) if settings.prometheus_url else None
        usage_task = None if prometheus is None else asyncio.create_task(usage_collection.run_forever(
            ctx.sessions, prometheus, stop, interval_seconds=settings.usage_collect_seconds), name="usage-collection")
        try:
            yield
        finally:
            if usage_task is not None and prometheus is not None:
                usage_task.cancel()  # a collection cut short writes nothing (its upsert is one transaction)
                with contextlib.suppress(asyncio.CancelledError):
                    await usage_task
                await prometheus.aclose()
            if task is not None:
                stop.set()
                try:
                    await asyncio.wait_for(asyncio.shield(task), WORKER_STOP_SECONDS)
                except TimeoutError:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            if ctx.stripe is not None:
                await ctx.stripe.aclose()
            await engine.dispose()

    app = FastAPI(
        title="Iotistic billing",
        version=iotistic.__version__,
        lifespan=lifespan,
        responses={400: {"model": ErrorBody}, 401: {"model": ErrorBody}, 403: {"model": ErrorBody},
                   404: {"model": ErrorBody}, 409: {"model": ErrorBody}, 422: {"model": ErrorBody}},
    )
    app.state.ctx = ctx
    install_error_handlers(app)
    for module in ROUTERS:
        app.include_router(module.router)
    return app
