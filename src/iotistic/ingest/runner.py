"""Ingest kept running: inside the cloud API (INGEST_IN_API, `iotistic up`) or alone (`iotistic ingest`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from iotistic.cloud.services.license import LicenseService
from iotistic.core.settings import CloudSettings
from iotistic.ingest.account import credentials
from iotistic.ingest.live import LiveBus
from iotistic.ingest.service import IngestService

log = logging.getLogger(__name__)

RETRY_SECONDS = 2.0
# Young-generation collections every this many allocations (CPython's default: 700).
GC_YOUNG_THRESHOLD = 100_000


def tune_gc_for_throughput() -> None:
    """Ingest allocates a handful of short-lived objects per message and makes no reference cycles on that path.
    With CPython's default a young-generation collection ran every 700 allocations, and older generations were
    rescanned with tens of thousands of messages in flight: measured here, a third of ingest's CPU. Collecting
    every 100,000 allocations, with what start-up made frozen out of the scans, took that back (benchmarks/ingest.py:
    61 -> 36 us per reading). Memory stays bounded: unreferenced objects are freed by reference counting at once."""
    import gc

    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 50, 100)


async def run_ingest(settings: CloudSettings, engine: AsyncEngine, live: LiveBus | None, stop: asyncio.Event, *,
                     licenses: LicenseService | None = None, ready: asyncio.Event | None = None,
                     on_started: Callable[[IngestService], None] | None = None) -> None:
    """Connect (retrying while the broker is away or does not know the account yet), then run until `stop`."""
    username, password = await credentials(settings, engine)
    service: IngestService | None = None
    try:
        while not stop.is_set():
            service = IngestService(settings, engine, live, username=username, password=password,
                                    licenses=licenses)
            try:
                await service.start(connect_timeout=10)
                break
            except Exception as exc:  # broker not up, account not synced yet, database away
                await service.stop()
                service = None
                log.warning("ingest: cannot start yet (%s: %s); retrying in %.0f s", type(exc).__name__,
                            str(exc)[:200], RETRY_SECONDS)
                try:
                    await asyncio.wait_for(stop.wait(), RETRY_SECONDS)
                except TimeoutError:
                    pass
        if service is not None:
            log.info("ingest: running (client id %s, %s subscription)", service.client_id,
                     "shared" if service.shared else "plain")
            if on_started is not None:
                on_started(service)
            if ready is not None:
                ready.set()
            await stop.wait()
    finally:
        if service is not None:
            await service.stop()


def run_forever(settings: CloudSettings) -> None:
    """`iotistic ingest`: the worker on uvloop when installed (it comes with uvicorn[standard], which also runs
    the API on it): its faster socket and callback handling is most of what a message costs besides ours."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(run_service(settings))
    else:
        uvloop.run(run_service(settings))


async def run_service(settings: CloudSettings) -> None:
    """`iotistic ingest` as a process: runs until SIGTERM or SIGINT, then commits and acknowledges what it has."""
    import signal

    from iotistic.core.db import make_engine
    from iotistic.ingest.live import make_live_bus

    engine = make_engine(settings.sqlalchemy_url)
    live = make_live_bus(settings)
    tune_gc_for_throughput()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await run_ingest(settings, engine, live, stop)
    finally:
        await live.close()
        await engine.dispose()
