"""The running exporter: `/metrics` over HTTP for one customer instance.

prometheus_client's threaded WSGI server answers scrapes; the collector's reads (async SQLAlchemy, the broker)
run on the event loop that `serve` runs on, handed over with `run_coroutine_threadsafe`. The loop itself does
nothing between scrapes but wait for the stop signal.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from iotistic.cloud.services.license import LicenseService
from iotistic.core.broker_url import parse_broker_url
from iotistic.core.db import make_engine, make_sessionmaker
from iotistic.core.settings import ConfigError
from iotistic.exporter.account import credentials
from iotistic.exporter.broker import BrokerReadError, read_publish_counter
from iotistic.exporter.collector import UsageCollector, UsageSample
from iotistic.exporter.database import DatabaseUsage, read_usage
from iotistic.exporter.settings import ExporterSettings

log = logging.getLogger(__name__)


async def resolve_customer_id(settings: ExporterSettings, sessions: async_sessionmaker[AsyncSession]) -> str:
    """CUSTOMER_ID, else the customerId of the licence the instance runs under (as its API evaluates it)."""
    if settings.customer_id:
        return settings.customer_id
    licenses = LicenseService(settings.license_public_key_pem(), settings.license_key)
    async with sessions() as session:
        state = await licenses.current(session)
    if not state.customer_id:
        why = f" ({state.reason})" if state.reason else ""
        raise ConfigError(f"no customer id: set CUSTOMER_ID, or give the instance a valid licence{why}")
    return state.customer_id


class Sampler:
    """Reads the database and the broker concurrently, each within the source timeout. A failing source is left
    out and logged when it starts failing, when the reason changes and when it recovers (type and reason, never
    credentials): not at every scrape."""

    def __init__(self, settings: ExporterSettings, sessions: async_sessionmaker[AsyncSession],
                 mqtt_credentials: tuple[str, str] | None) -> None:
        self.settings = settings
        self.sessions = sessions
        self.broker = parse_broker_url(settings.mqtt_broker_url)
        self.mqtt_credentials = mqtt_credentials
        self._failing: dict[str, str] = {}  # source -> the reason last logged

    async def sample(self) -> UsageSample:
        start = time.perf_counter()
        database, mqtt = await asyncio.gather(self._database(), self._mqtt())
        return UsageSample(database=database, mqtt_messages_received=mqtt,
                           mqtt_configured=self.mqtt_credentials is not None, seconds=time.perf_counter() - start)

    def _outcome(self, source: str, error: str | None) -> None:
        before = self._failing.get(source)
        if error is None:
            if before is not None:
                log.info("exporter: reading the %s works again", source)
                del self._failing[source]
        elif error != before:
            log.warning("exporter: reading the %s failed: %s", source, error)
            self._failing[source] = error

    async def _database(self) -> DatabaseUsage | None:
        try:
            async with self.sessions() as session:
                usage = await asyncio.wait_for(read_usage(session, self.settings.device_offline_after_seconds),
                                               self.settings.source_timeout_seconds)
        except Exception as exc:  # database away or slow: this scrape goes without it
            self._outcome("database", f"{type(exc).__name__}: {str(exc)[:200]}")
            return None
        self._outcome("database", None)
        return usage

    async def _mqtt(self) -> float | None:
        if self.mqtt_credentials is None:
            return None
        username, password = self.mqtt_credentials
        try:
            value = await asyncio.to_thread(read_publish_counter, self.broker, username, password,
                                            timeout=self.settings.source_timeout_seconds)
        except BrokerReadError as exc:
            self._outcome("broker's message count", str(exc))
            return None
        self._outcome("broker's message count", None)
        return value


def threadsafe_sampler(sampler: Sampler, loop: asyncio.AbstractEventLoop, timeout: float) -> Callable[[], UsageSample]:
    """`sampler.sample()` as a blocking call for the HTTP server's threads (never call it on `loop` itself)."""

    def sample() -> UsageSample:
        return asyncio.run_coroutine_threadsafe(sampler.sample(), loop).result(timeout)

    return sample


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every few seconds would flood the log."""


def bearer_token_guard(app: Any, token: str) -> Any:
    """A WSGI wrapper refusing requests without `Authorization: Bearer <token>` (compared in constant time)."""
    expected = hashlib.sha256(f"Bearer {token}".encode()).digest()

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        given = hashlib.sha256(environ.get("HTTP_AUTHORIZATION", "").encode("latin-1", "replace")).digest()
        if not hmac.compare_digest(given, expected):
            start_response("401 Unauthorized", [("Content-Type", "text/plain; charset=utf-8"),
                                                ("WWW-Authenticate", 'Bearer realm="metrics"')])
            return [b"a bearer token is required for /metrics\n"]
        result: Iterable[bytes] = app(environ, start_response)
        return result

    return guarded


def _server_class(host: str, port: int) -> type[ThreadingWSGIServer]:
    """The threaded WSGI server, listening on IPv6 when the host is an IPv6 address (e.g. `::`)."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]

    class Server(ThreadingWSGIServer):
        address_family = family

    return Server


@dataclass
class RunningExporter:
    customer_id: str
    port: int


async def serve(settings: ExporterSettings, stop: asyncio.Event,
                on_ready: Callable[[RunningExporter], None] | None = None) -> None:
    """Serve /metrics until `stop` is set. ConfigError when the customer id cannot be known."""
    engine = make_engine(settings.sqlalchemy_url, **({} if settings.is_sqlite else {"pool_size": 2}))
    sessions = make_sessionmaker(engine.execution_options(read_only=True))
    try:
        customer_id = await resolve_customer_id(settings, sessions)
        sampler = Sampler(settings, sessions, await credentials(settings, engine))
        # The server thread waits a little longer than the sources may take, so a slow source ends in its own
        # timeout (and the scrape still answers) rather than in this one.
        sample = threadsafe_sampler(sampler, asyncio.get_running_loop(), settings.source_timeout_seconds + 5)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(UsageCollector(customer_id, sample, cache_seconds=settings.cache_seconds))
        app = make_wsgi_app(registry)
        if settings.exporter_token is not None:
            app = bearer_token_guard(app, settings.exporter_token.get_secret_value())
        server = make_server(settings.host, settings.port, app, _server_class(settings.host, settings.port),
                             handler_class=_QuietHandler)
        thread = threading.Thread(target=server.serve_forever, name="exporter-http", daemon=True)
        thread.start()
        try:
            running = RunningExporter(customer_id, int(server.server_port))
            log.info("exporter: serving /metrics for customer %s on %s:%d", customer_id, settings.host, running.port)
            if on_ready is not None:
                on_ready(running)
            await stop.wait()
        finally:
            await asyncio.to_thread(server.shutdown)  # waits for serve_forever to return
            server.server_close()
    finally:
        await engine.dispose()


async def run_service(settings: ExporterSettings) -> None:
    """`iotistic exporter` as a process: serves until SIGTERM or SIGINT."""
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await serve(settings, stop)
