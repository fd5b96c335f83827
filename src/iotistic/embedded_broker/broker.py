"""amqtt as the embedded default's broker, with the database's MQTT accounts and ACL rules.

- Accounts come from the database (one query) into an in-memory cache, reloaded every `refresh_interval`
  seconds (1 s by default) and on demand (`EmbeddedBroker.refresh()`), so a deleted or disabled device loses
  access within about a second.
- CONNECT: username + password checked against the account's Mosquitto `$7$` hash; unknown, inactive or
  anonymous logins are refused, and so is a last will on a topic the account may not publish to (amqtt sends
  wills without any topic check, so it is done here, as Mosquitto does).
- PUBLISH / SUBSCRIBE / delivery: `iotistic.core.acl.may_publish` / `may_subscribe` / `may_receive` with the
  account's rules, looked up per packet (a changed rule applies to the next packet, also on existing subscriptions,
  because amqtt asks again for every delivery).
- After each reload, live sessions whose account was deleted, disabled or given a new password are closed (without
  sending their will): amqtt has no kick API, so this stops the session's protocol handler, as a network error would.

amqtt speaks MQTT 3.1.1 only (no MQTT 5 shared subscriptions) and is meant for a handful of devices; production
runs Mosquitto.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
from dataclasses import dataclass
from typing import Any

from amqtt.broker import Broker
from amqtt.contexts import Action
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from iotistic.cloud.services import mqtt_accounts
from iotistic.core.acl import AccountAcl, may_publish, may_receive, may_subscribe
from iotistic.core.db import make_engine, make_sessionmaker
from iotistic.core.security import verify_mosquitto_password
from iotistic.core.settings import CloudSettings
from iotistic.core.tasks import cancel_and_wait

log = logging.getLogger(__name__)

DEFAULT_REFRESH_INTERVAL = 1.0
# amqtt's shutdown cleans up every client session in turn; one that never finishes must not hang the platform's stop.
SHUTDOWN_TIMEOUT_S = 5.0


async def load_accounts(session: AsyncSession) -> list[AccountAcl]:
    """Every account with its hash, active flag and rules, in one consistent read."""
    return await mqtt_accounts.load_acl_snapshot(session)


class AccountCache:
    """The accounts as last read from the database, and the decisions the broker asks for."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, min_reload_interval: float = 0.2) -> None:
        self._sessions = sessions
        self._lock = asyncio.Lock()
        self._min_reload_interval = min_reload_interval
        self.loaded_at = -math.inf  # loop time of the last reload's start
        self.accounts: dict[str, AccountAcl] = {}

    async def reload(self) -> None:
        async with self._lock:
            await self._reload_locked()

    async def _reload_locked(self) -> None:
        started = asyncio.get_running_loop().time()
        async with self._sessions() as session:
            snapshot = await load_accounts(session)
        self.accounts = {account.username: account for account in snapshot}
        self.loaded_at = started

    async def reload_if_stale(self) -> None:
        """Reload, unless a reload started since this call: a login the cache refuses may be a device registered a
        moment ago. Reloads are at least `min_reload_interval` apart (refused logins wait for the next one, so they
        never become a stream of database queries, and concurrent ones share it)."""
        loop = asyncio.get_running_loop()
        requested = loop.time()
        async with self._lock:
            if self.loaded_at >= requested:
                return
            delay = self.loaded_at + self._min_reload_interval - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await self._reload_locked()

    def active(self, username: str | None) -> AccountAcl | None:
        account = self.accounts.get(username) if username else None
        return account if account is not None and account.is_active else None

    def authenticate(self, username: str | None, password: str | None, client_id: str | None,
                     will_topic: str | None) -> AccountAcl | None:
        """The account if this login may connect; None if not."""
        account = self.active(username)
        if account is None or password is None or not verify_mosquitto_password(account.password_hash, password):
            return None
        if will_topic is not None and not may_publish(account.rules, username, client_id, will_topic):
            return None
        return account

    def allowed(self, username: str | None, client_id: str | None, topic: str, action: str) -> bool:
        account = self.active(username)
        if account is None:
            return False
        if action == Action.PUBLISH:
            return may_publish(account.rules, username, client_id, topic)
        if action == Action.SUBSCRIBE:
            return may_subscribe(account.rules, username, client_id, topic)
        if action == Action.RECEIVE:
            return may_receive(account.rules, username, client_id, topic)
        return False


def _cache_of(plugin: Any) -> AccountCache | None:
    cache = getattr(plugin, "accounts", None)
    return cache if isinstance(cache, AccountCache) else None


class AuthPlugin(BaseAuthPlugin):
    """CONNECT: the database's accounts (the cache is attached by `start_embedded_broker`; without it, refuse)."""

    accounts: AccountCache | None = None

    async def authenticate(self, *, session: Any) -> bool | None:
        cache = _cache_of(self)
        if cache is None:
            return False
        will_topic = session.will_topic if session.will_flag else None
        account = cache.authenticate(session.username, session.password, session.client_id, will_topic)
        if account is None and session.username:
            # Perhaps registered (or given a new password) since the last reload: look again, at most 5 times a second.
            await cache.reload_if_stale()
            account = cache.authenticate(session.username, session.password, session.client_id, will_topic)
        if account is None:
            log.info("MQTT login refused for %r (client id %r)", session.username, session.client_id)
            return False
        # What this session authenticated with: a later change of password closes it (see EmbeddedBroker.refresh).
        session.iotistic_password_hash = account.password_hash
        return True


class TopicPlugin(BaseTopicPlugin):
    """PUBLISH, SUBSCRIBE and each delivery: `iotistic.core.acl` with the account's current rules."""

    accounts: AccountCache | None = None

    async def topic_filtering(self, *, session: Any = None, topic: str | None = None,
                              action: Any = None) -> bool | None:
        cache = _cache_of(self)
        if cache is None or session is None or topic is None:
            return False
        return cache.allowed(session.username, session.client_id, topic, action)


_PLUGINS: dict[str, dict[str, Any]] = {f"{AuthPlugin.__module__}.{AuthPlugin.__qualname__}": {},
            f"{TopicPlugin.__module__}.{TopicPlugin.__qualname__}": {}}


@dataclass
class EmbeddedBroker:
    """A running embedded broker: `url`, `refresh()` to apply database changes now, `stop()`."""

    broker: Any  # amqtt.broker.Broker
    cache: AccountCache
    host: str
    port: int
    refresh_interval: float
    _engine: AsyncEngine | None = None
    _task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"mqtt://{host}:{self.port}"

    async def refresh(self) -> int:
        """Reload the accounts and close the sessions that lost access; returns how many were closed."""
        await self.cache.reload()
        closed = 0
        for session, handler in list(self.broker.sessions.values()):
            if session.transitions.state != "connected":
                continue
            account = self.cache.active(session.username)
            if account is not None and account.password_hash == getattr(session, "iotistic_password_hash", None):
                continue
            log.info("closing MQTT session %r of %r: its account was removed, disabled or changed",
                     session.client_id, session.username)
            session.will_flag = False  # a revoked account publishes nothing more, not even its will
            with contextlib.suppress(Exception):
                await handler.stop()
            closed += 1
        return closed

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_interval)
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception:
                # A database hiccup: keep enforcing the last snapshot and try again next time.
                log.exception("reloading the MQTT accounts failed; keeping the previous ones")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        try:
            await asyncio.wait_for(self.broker.shutdown(), SHUTDOWN_TIMEOUT_S)
        except TimeoutError:
            log.warning("the MQTT broker did not finish its shutdown within %.0f s; stopped without waiting",
                        SHUTDOWN_TIMEOUT_S)
        finally:
            if self._engine is not None:
                await self._engine.dispose()
                self._engine = None


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


async def start_embedded_broker(source: CloudSettings | async_sessionmaker[AsyncSession], host: str = "127.0.0.1",
                                port: int = 1883, *, refresh_interval: float = DEFAULT_REFRESH_INTERVAL
                                ) -> EmbeddedBroker:
    """Start the broker on `host:port` (0: a free port) in the running event loop, with the accounts of the
    database given by `source` (the cloud settings, or a session maker of an already open database). The accounts
    are read once before it listens (a database error raises here) and then every `refresh_interval` seconds."""
    if not 0 < refresh_interval <= 60:
        raise ValueError("refresh_interval must be in (0, 60] seconds")
    engine: AsyncEngine | None = None
    if isinstance(source, CloudSettings):
        engine = make_engine(source.sqlalchemy_url)
        sessions = make_sessionmaker(engine.execution_options(read_only=True))
    else:
        sessions = source
    cache = AccountCache(sessions)
    try:
        await cache.reload()
        if port == 0:
            port = _free_port(host)
        bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        broker = Broker({
            "listeners": {"default": {"type": "tcp", "bind": bind}},
            "plugins": _PLUGINS,
        })
        for plugin in broker.plugins_manager.plugins:
            if isinstance(plugin, AuthPlugin | TopicPlugin):
                plugin.accounts = cache
        await broker.start()
    except BaseException:
        if engine is not None:
            await engine.dispose()
        raise
    handle = EmbeddedBroker(broker, cache, host, port, refresh_interval, engine)
    handle._task = asyncio.create_task(handle._refresh_loop(), name="embedded-broker-accounts")
    return handle
