"""MQTT to the broker: the agent's reports over MQTT, and its presence on `status` (topics: `iotistic.core.topics`).

- **Connection**: the device's own credentials from the registration reply (kept in the store beside the device
  API key, mode 0600, never logged), client id = the device uuid, clean session off (MQTT 5: a session expiry
  of 30 days, the broker's `persistent_client_expiration`). MQTT 5 first; when the broker refuses it, closes the
  connection or does not answer within MQTT_ACK_TIMEOUT_SECONDS (the embedded broker, amqtt, is 3.1.1 only and
  stays silent), 3.1.1 is tried at once, and once it worked it is kept for the rest of the run. `MQTT_BROKER_URL`
  replaces the broker URL the cloud handed out.
- **Presence**: the last will is `offline` on `status` (retained, QoS 1), so a power cut or a dead link shows up;
  every connect publishes `online` (retained, QoS 1); a clean stop publishes `offline` itself, because a clean
  DISCONNECT makes the broker discard the will.
- **Reports** (`publish_report`): one outbox item, a `DeviceReport` in wire form, goes as QoS 1: its `metrics`
  as a `Metrics` document on `metrics`, the rest (apps, status... or osVersion/agentVersion) as a partial
  `DeviceReport` on `state`, which the cloud merges like a partial HTTP report. It returns once the broker
  acknowledged every part and raises `MqttNotDelivered` otherwise: not connected, no PUBACK within
  `MQTT_ACK_TIMEOUT_SECONDS` (the link is then dropped as unhealthy, and reconnected), or refused (an MQTT 5
  PUBACK reason code of 0x80 or more, e.g. 0x87 not authorised; a 3.1.1 broker cannot say so).

The persistent outbox is the only retry mechanism (`iotistic.agent.sync.client` chooses the transport per item):
gmqtt keeps no copy of an unacknowledged message and replays nothing after a reconnect, so an item either was
acknowledged (and leaves the outbox) or stays queued and goes again, over whichever transport is up then.
Delivery is at least once, as over HTTP: an acknowledgement lost after the broker accepted the message means the
item is sent again (state reports are idempotent; metrics carry their `recordedAt`, which identifies a repeat).

Reconnection is the agent's, with its backoff helper (`backoff_delay`, BACKOFF_BASE/MAX_SECONDS) and a new
client for each attempt; gmqtt's own loop (a fixed delay, its replay queue) is switched off. A broker refusing
the credentials is logged once, clearly, and retried at the slowest rate; reports go over HTTP meanwhile.

gmqtt is imported on the first connection attempt, not with this module (the agent's idle footprint).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import json
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from iotistic.agent.settings import parse_broker_url
from iotistic.agent.sync.backoff import backoff_delay
from iotistic.core import topics

if TYPE_CHECKING:
    from iotistic.agent.settings import AgentSettings
    from iotistic.agent.store import Identity

log = logging.getLogger(__name__)

#: gmqtt's own log lines are about its internals; ours say what happened to the link.
_GMQTT_LOG = logging.getLogger(__name__ + ".gmqtt")
_GMQTT_LOG.setLevel(logging.ERROR)

MQTT_V5 = 5
MQTT_V311 = 4
#: How long the broker keeps the session (and anything queued for it) while the device is away: 30 days, the
#: shipped Mosquitto's `persistent_client_expiration`.
SESSION_EXPIRY_SECONDS = 30 * 24 * 3600
#: The goodbye (`offline`, then DISCONNECT) is bounded: the agent's whole stop waits at most 5 s for the cloud.
GOODBYE_SECONDS = 2.0

# CONNACK codes (3.1.1 and 5) meaning "these credentials are not accepted": retrying soon cannot help.
_CREDENTIALS_REFUSED = {4: "bad user name or password", 5: "not authorised",
                        134: "bad user name or password", 135: "not authorised", 138: "banned"}
# CONNACK codes meaning "I do not speak this protocol version".
_VERSION_REFUSED = {1, 132}


class MqttNotDelivered(Exception):
    """A report was not acknowledged by the broker (the message is one line); it stays in the outbox."""


class MqttRefused(Exception):
    """The broker refused the device's credentials."""


class _NoConnack(Exception):
    """The broker closed the connection without accepting it, or refused the protocol version."""


@dataclass(frozen=True)
class MqttEndpoint:
    """Where and as whom the agent connects; `describe()` is safe to log."""

    host: str
    port: int
    tls: bool
    username: str
    password: str = field(repr=False)

    def describe(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


def mqtt_endpoint(settings: AgentSettings, identity: Identity) -> MqttEndpoint | None:
    """The broker to use, or None when MQTT is off: `MQTT_ENABLED=false`, or no MQTT credentials (a device
    registered before the cloud handed them out, or whose registration reply was lost) or no usable broker URL."""
    if settings.mqtt_enabled is False:
        return None
    if not identity.mqtt_username or not identity.mqtt_password:
        if settings.mqtt_enabled:
            log.warning("MQTT_ENABLED is set but the registration gave this device no MQTT credentials; "
                        "reports go over HTTP")
        return None
    url = settings.mqtt_broker_url or identity.mqtt_broker
    if not url:
        log.warning("no MQTT broker URL (the registration gave none; set MQTT_BROKER_URL); reports go over HTTP")
        return None
    try:
        host, port, tls = parse_broker_url(url)
    except ValueError as exc:
        log.warning("the MQTT broker URL %r is not usable (%s); set MQTT_BROKER_URL; reports go over HTTP", url, exc)
        return None
    return MqttEndpoint(host, port, tls, identity.mqtt_username, identity.mqtt_password)


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


@functools.cache
def _client_class() -> type[Any]:
    """gmqtt's client, adapted (built on first use so that gmqtt is imported only then)."""
    import gmqtt
    from gmqtt.storage import PersistentStorage

    class NoReplay(PersistentStorage):
        """Keeps no copy of unacknowledged messages (the outbox is the retry mechanism, module doc); remembers
        the packet id of the last publish, which gmqtt's `publish()` does not return."""

        last_mid: int | None = None

        def push_message(self, mid: int, raw_package: bytes) -> None:
            self.last_mid = mid

    class AgentClient(gmqtt.Client):
        """One connection's client: no automatic reconnect, PUBACKs (with their MQTT 5 reason code) awaitable,
        and a way to drop the link without DISCONNECT (the broker then publishes the will)."""

        def __init__(self, client_id: str, **kwargs: Any) -> None:
            self.storage = NoReplay()
            self.acks: dict[int, asyncio.Future[int]] = {}
            self.lost = asyncio.Event()
            super().__init__(client_id, persistent_storage=self.storage, logger=_GMQTT_LOG, **kwargs)
            self.on_disconnect = lambda _client, _packet, exc=None: self.lost.set()
            # gmqtt drops the PUBACK's reason code; read it first (its handler looks the method up on the instance).
            handler = self._package_handler
            original = handler._handle_puback_packet

            def on_puback(cmd: int, packet: bytes) -> None:
                original(cmd, packet)
                waiter = self.acks.pop(int.from_bytes(packet[:2], "big"), None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(packet[2] if len(packet) > 2 else 0)

            handler._handle_puback_packet = on_puback

        async def reconnect(self, delay: bool = False) -> None:
            """Switched off: `MqttLink.run` reconnects with the agent's backoff and a new client."""

        def publish_qos1(self, topic: str, payload: bytes, *, retain: bool = False) -> asyncio.Future[int]:
            """Publish; the future gets the PUBACK's reason code (0 on 3.1.1)."""
            waiter: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            self.publish(topic, payload, qos=1, retain=retain)
            assert self.storage.last_mid is not None
            self.acks[self.storage.last_mid] = waiter
            return waiter

        def abort(self) -> None:
            """Close the socket at once, without DISCONNECT: to the broker, like a power cut."""
            transport = getattr(getattr(self, "_connection", None), "_transport", None)
            if transport is not None:
                transport.abort()
            self.lost.set()

    return AgentClient


class MqttLink:
    """The agent's MQTT connection. `run(stop)` keeps it up until `stop` is set (then says `offline`);
    `publish_report()` sends one report; `connected` and `status()` tell how it goes. `on_change` is called
    when the link comes up or goes down."""

    def __init__(self, settings: AgentSettings, identity: Identity, endpoint: MqttEndpoint, *,
                 on_change: Callable[[], None] | None = None, rng: random.Random | None = None) -> None:
        self.settings = settings
        self.endpoint = endpoint
        self.uuid = identity.uuid
        self._on_change = on_change or (lambda: None)
        self._rng = rng or random.Random()
        self._client: Any = None
        self._v311_only = False
        self._protocol: str | None = None
        self._connected_at: str | None = None
        self._last_error: str | None = None
        self._last_error_at: str | None = None
        self._published = 0
        self._not_delivered = 0

    # --- state ------------------------------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        client = self._client
        return client is not None and not client.lost.is_set() and bool(client.is_connected)

    def status(self) -> dict[str, Any]:
        """For the sync status (`iotistic agent status`, `/v1/device`): no credentials in it."""
        return {"enabled": True, "broker": self.endpoint.describe(), "connected": self.connected,
                "protocol": self._protocol if self.connected else None, "connectedAt": self._connected_at,
                "lastError": self._last_error, "lastErrorAt": self._last_error_at,
                "reportsPublished": self._published, "reportsNotDelivered": self._not_delivered}

    def _error(self, message: str) -> None:
        self._last_error, self._last_error_at = message, _now_iso()

    def _changed(self) -> None:
        try:
            self._on_change()
        except Exception:
            log.exception("MQTT link change callback failed")

    # --- connection -------------------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Connect, stay connected, reconnect with backoff; on `stop`, say `offline` and disconnect. Never raises
        because of the broker."""
        failures = 0
        refused = False
        while not stop.is_set():
            try:
                client = await self._connect()
            except MqttRefused as exc:
                failures += 1
                self._error(str(exc))
                if not refused:
                    log.error("the MQTT broker %s refuses this device's credentials (%s): reports go over HTTP; "
                              "retrying every %.0f s. Check the device's MQTT account in the cloud.",
                              self.endpoint.describe(), exc, self.settings.backoff_max)
                    refused = True
                delay = self.settings.backoff_max
            except Exception as exc:  # OSError, TimeoutError, another refusal: the broker is away or unwell
                failures += 1
                reason = " ".join(str(exc).split()) or type(exc).__name__
                self._error(f"connect: {reason}")
                delay = backoff_delay(failures, self.settings.backoff_base, self.settings.backoff_max, self._rng)
                log_at = logging.WARNING if failures == 1 else logging.DEBUG  # once per outage, not every retry
                log.log(log_at, "MQTT broker %s not reachable (%s); reports go over HTTP, retrying in %.1f s",
                        self.endpoint.describe(), reason, delay)
            else:
                failures, refused = 0, False
                await self._stay_connected(client, stop)
                # Lost: come back soon (the first step of the backoff), then slower if the broker stays away.
                delay = backoff_delay(1, self.settings.backoff_base, self.settings.backoff_max, self._rng)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)

    async def _connect(self) -> Any:
        """A connected client: MQTT 5, or 3.1.1 when the broker does not speak 5."""
        versions = [MQTT_V311] if self._v311_only else [MQTT_V5, MQTT_V311]
        for version in versions:
            client = self._new_client(version)
            try:
                await self._handshake(client, version)
            except (_NoConnack, TimeoutError):
                self._discard(client)
                if version == MQTT_V311:
                    raise
                continue  # the broker may not speak MQTT 5 (amqtt does not answer it at all): try 3.1.1
            except BaseException:
                self._discard(client)
                raise
            if version == MQTT_V311 and not self._v311_only:
                log.info("the MQTT broker %s does not speak MQTT 5; using 3.1.1", self.endpoint.describe())
                self._v311_only = True
            self._protocol = "5" if version == MQTT_V5 else "3.1.1"
            return client
        raise AssertionError("unreachable")

    def _new_client(self, version: int) -> Any:
        import gmqtt

        will = gmqtt.Message(topics.status_topic(self.uuid), topics.STATUS_OFFLINE, qos=1, retain=True)
        extra = {"session_expiry_interval": SESSION_EXPIRY_SECONDS} if version == MQTT_V5 else {}
        client = _client_class()(self.uuid, clean_session=False, will_message=will, **extra)
        client.set_auth_credentials(self.endpoint.username, self.endpoint.password)
        return client

    async def _handshake(self, client: Any, version: int) -> None:
        """CONNECT and wait for the CONNACK, the connection closing, or the timeout, whichever comes first."""
        ep = self.endpoint
        connect = asyncio.ensure_future(client.connect(ep.host, ep.port, ssl=ep.tls,
                                                       keepalive=self.settings.mqtt_keepalive, version=version))
        lost = asyncio.ensure_future(client.lost.wait())
        try:
            done, _ = await asyncio.wait({connect, lost}, timeout=self.settings.mqtt_ack_timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
            if not connect.done():
                connect.cancel()
                await asyncio.gather(connect, return_exceptions=True)
        if connect in done:
            try:
                connect.result()
            except Exception as exc:
                code = getattr(exc, "_code", None)  # gmqtt's MQTTConnectError
                if code in _CREDENTIALS_REFUSED:
                    raise MqttRefused(f"CONNACK {code}: {_CREDENTIALS_REFUSED[code]}") from None
                if code in _VERSION_REFUSED:
                    raise _NoConnack(f"CONNACK {code}: protocol version refused") from None
                raise
            return
        if lost in done:
            raise _NoConnack("the broker closed the connection before accepting it")
        raise TimeoutError(f"no CONNACK within {self.settings.mqtt_ack_timeout:.0f} s")

    @staticmethod
    def _discard(client: Any) -> None:
        with contextlib.suppress(Exception):
            client.abort()

    async def _stay_connected(self, client: Any, stop: asyncio.Event) -> None:
        self._client = client
        self._connected_at = _now_iso()
        log.info("MQTT connected to %s (MQTT %s) as %s", self.endpoint.describe(), self._protocol,
                 self.endpoint.username)
        try:
            await self._publish(client, [(topics.status_topic(self.uuid), topics.STATUS_ONLINE.encode(), True)])
        except MqttNotDelivered as exc:
            log.warning("MQTT: `online` was not acknowledged (%s)", exc)
        self._changed()
        stopping = asyncio.ensure_future(stop.wait())
        lost = asyncio.ensure_future(client.lost.wait())
        try:
            await asyncio.wait({stopping, lost}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            lost.cancel()
            self._client = None
        if client.lost.is_set():
            self._error("connection lost")
            log.warning("MQTT connection to %s lost; reports go over HTTP until it is back", self.endpoint.describe())
        else:
            await self._goodbye(client)
        self._changed()

    async def _goodbye(self, client: Any) -> None:
        """`offline` (retained), then a clean DISCONNECT: the broker drops the will, so it is said explicitly."""
        try:
            async with asyncio.timeout(GOODBYE_SECONDS):
                ack = client.publish_qos1(topics.status_topic(self.uuid), topics.STATUS_OFFLINE.encode(),
                                          retain=True)
                await ack
                await client.disconnect()
            log.info("MQTT disconnected from %s", self.endpoint.describe())
        except Exception as exc:
            log.warning("MQTT: could not say goodbye cleanly (%s); the broker will publish the last will",
                        " ".join(str(exc).split()) or type(exc).__name__)
            self._discard(client)

    # --- publishing -------------------------------------------------------------------------------------------
    async def publish_report(self, report: dict[str, Any]) -> None:
        """Publish one outbox report (module doc); raises `MqttNotDelivered` unless the broker acknowledged all."""
        client = self._client
        if client is None or not self.connected:
            raise MqttNotDelivered("MQTT is not connected")
        messages: list[tuple[str, bytes, bool]] = []
        if report.get("metrics") is not None:
            messages.append((topics.metrics_topic(self.uuid), _json(report["metrics"]), False))
        rest = {k: v for k, v in report.items() if k != "metrics"}
        if rest:
            messages.append((topics.state_topic(self.uuid), _json(rest), False))
        try:
            await self._publish(client, messages)
        except MqttNotDelivered as exc:
            self._not_delivered += 1
            self._error(str(exc))
            raise
        self._published += 1

    async def _publish(self, client: Any, messages: list[tuple[str, bytes, bool]]) -> None:
        """QoS 1, all at once; returns when every PUBACK is in (and says yes). A missing PUBACK drops the link."""
        acks = [client.publish_qos1(topic, payload, retain=retain) for topic, payload, retain in messages]
        all_acked = asyncio.ensure_future(asyncio.gather(*acks))
        lost = asyncio.ensure_future(client.lost.wait())
        try:
            done, _ = await asyncio.wait({all_acked, lost}, timeout=self.settings.mqtt_ack_timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
            if not all_acked.done():
                all_acked.cancel()
                for waiter in acks:
                    waiter.cancel()
                for mid in [mid for mid, waiter in client.acks.items() if waiter in acks]:
                    del client.acks[mid]
        if all_acked not in done:
            if client.lost.is_set():
                raise MqttNotDelivered("the MQTT connection was lost before the PUBACK")
            # The link says nothing for this long: treat it as dead (the broker publishes the will) and reconnect.
            self._discard(client)
            raise MqttNotDelivered(f"no PUBACK within {self.settings.mqtt_ack_timeout:g} s")
        refused = [code for code in all_acked.result() if code >= 0x80]
        if refused:
            raise MqttNotDelivered(f"the broker refused the message (PUBACK reason 0x{refused[0]:02x})")

    def drop(self) -> None:
        """Drop the connection without DISCONNECT (as a power cut would); `run` reconnects with backoff."""
        client = self._client
        if client is not None:
            self._discard(client)


__all__ = ["MqttEndpoint", "MqttLink", "MqttNotDelivered", "MqttRefused", "mqtt_endpoint"]
