"""The cloud API application factory."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from sqlalchemy.orm import Session

import iotistic
from iotistic.cloud.context import CloudContext
from iotistic.cloud.dashboard import default_dashboard_dir, install_dashboard
from iotistic.cloud.errors import ErrorBody, install_error_handlers
from iotistic.cloud.observability import RequestMetrics
from iotistic.cloud.routers import (
    audit,
    auth,
    device_api,
    devices,
    fleets,
    license,
    live,
    mqtt,
    ops,
    provisioning_keys,
    setup,
    telemetry,
    twin,
    twin_imports,
    users,
    vpn,
)
from iotistic.cloud.services.device_cache import DeviceAuthCache, DeviceChangeListener, install_invalidation
from iotistic.cloud.services.license import LicenseService
from iotistic.cloud.services.presence import PresenceTracker
from iotistic.core.db import make_engine, make_sessionmaker
from iotistic.core.security import configure_password_hashing
from iotistic.core.settings import CloudSettings
from iotistic.ingest.live import make_live_bus
from iotistic.ingest.metrics import IngestCollector
from iotistic.ingest.runner import run_ingest

ROUTERS = (ops, auth, setup, users, provisioning_keys, device_api, devices, fleets, license, audit, mqtt, telemetry,
           live, twin, twin_imports, vpn)


def create_app(settings: CloudSettings) -> FastAPI:
    """Build the API. The database must already be migrated (`iotistic db upgrade`, done by `up`)."""
    configure_password_hashing(time_cost=settings.argon2_time_cost, memory_kib=settings.argon2_memory_kib,
                               parallelism=settings.argon2_parallelism)
    engine = make_engine(settings.sqlalchemy_url)
    on_postgres = engine.dialect.name == "postgresql"
    # A Session class of this app's own, so the cache hooks see only this app's transactions.
    session_class = type("CloudSession", (Session,), {})
    # On PostgreSQL other replicas may change devices: the cache waits for the change listener.
    device_cache = DeviceAuthCache(enabled=not on_postgres)
    install_invalidation(session_class, device_cache, notify=on_postgres)
    listener = None
    if on_postgres:
        dsn = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        listener = DeviceChangeListener(dsn, device_cache)
    ctx = CloudContext(
        settings=settings,
        engine=engine,
        sessions=make_sessionmaker(engine, sync_session_class=session_class),
        read_sessions=make_sessionmaker(engine.execution_options(read_only=True), sync_session_class=session_class),
        jwt_secret=settings.resolved_jwt_secret(),
        licenses=LicenseService(settings.license_public_key_pem(), settings.license_key),
        device_cache=device_cache,
        presence=PresenceTracker(engine),
        device_listener=listener,
        live=make_live_bus(settings),
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        ctx.presence.start()
        if listener is not None:
            listener.start()
        ingest_stop = asyncio.Event()
        ingest = None
        if settings.ingest_in_api:
            # The embedded default: telemetry ingest in this process, feeding the in-process live bus. It keeps
            # retrying in the background until the broker takes its account, so the API starts without waiting.
            ingest = asyncio.create_task(run_ingest(settings, engine, ctx.live, ingest_stop, licenses=ctx.licenses,
                                                    on_started=functools.partial(setattr, ctx, "ingest")),
                                         name="ingest")
        try:
            yield
        finally:
            if ingest is not None:
                ingest_stop.set()
                await ingest  # commits and acknowledges what it holds
            if listener is not None:
                await listener.stop()
            await ctx.presence.stop()
            await ctx.live.close()
            await engine.dispose()

    app = FastAPI(
        title="Iotistic cloud API",
        version=iotistic.__version__,
        lifespan=lifespan,
        responses={400: {"model": ErrorBody}, 401: {"model": ErrorBody}, 403: {"model": ErrorBody},
                   404: {"model": ErrorBody}, 409: {"model": ErrorBody}, 422: {"model": ErrorBody}},
    )
    app.state.ctx = ctx
    app.state.registry = CollectorRegistry()
    app.add_middleware(RequestMetrics, registry=app.state.registry)
    if settings.ingest_in_api:
        app.state.registry.register(IngestCollector(lambda: ctx.ingest.pipeline.stats
                                                    if ctx.ingest and ctx.ingest.pipeline else None))
    install_error_handlers(app)
    for module in ROUTERS:
        app.include_router(module.router)
    install_dashboard(app, settings.dashboard_dir or default_dashboard_dir())
    return app
