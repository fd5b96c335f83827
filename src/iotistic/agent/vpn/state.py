"""The VPN client's state machine. Pure: the supervisor feeds it events with the time they happened and asks it
what to do when the client ends; `/v2/device/vpn` shows its snapshot.

Phases:

    disabled   VPN_ENABLED is off
    no_config  enabled, but there is no usable configuration yet (registration did not hand one out, the cloud
               could not issue it yet, or the stored one is refused); the supervisor keeps asking
    starting   `openvpn` runs and is connecting
    connected  the tunnel is up (OpenVPN's CONNECTED state): the device has its tunnel address
    retrying   the client ended (dropped by the server, failed to connect, crashed); it starts again after a delay
    down       the client ended and is not started again (VPN_AUTO_RECONNECT=false)
    stopped    the agent is stopping

Every drop ends the client (it runs with `--remap-usr1 SIGTERM`), so the supervisor owns reconnection and this
machine counts it: `reconnects` is how often the tunnel came back after it had been up, `restarts` how often
the client was started again. Consecutive failures back off exponentially; a connection that stayed up for
`stable_seconds` resets the count, so a server that accepts and drops at once does not cause a tight loop.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from iotistic.agent.sync.backoff import backoff_delay

#: A connection that lasted this long was not a flap: the next failure starts the backoff from the beginning.
STABLE_SECONDS = 60.0


class Phase(StrEnum):
    disabled = "disabled"
    no_config = "no_config"
    starting = "starting"
    connected = "connected"
    retrying = "retrying"
    down = "down"
    stopped = "stopped"


@dataclass(frozen=True)
class OpenVpnState:
    """One state of OpenVPN's own (`>STATE:` on the management interface)."""

    name: str  # CONNECTING, WAIT, AUTH, GET_CONFIG, ASSIGN_IP, ADD_ROUTES, CONNECTED, RECONNECTING, EXITING, ...
    reason: str = ""  # e.g. SUCCESS, ping-restart, tls-error, server-pushed-connection-reset
    local_ip: str = ""
    remote: str = ""
    port: str = ""


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


class VpnTracker:
    def __init__(self, *, enabled: bool, auto_reconnect: bool, backoff_base: float, backoff_max: float,
                 rng: random.Random | None = None, stable_seconds: float = STABLE_SECONDS) -> None:
        self.enabled = enabled
        self.auto_reconnect = auto_reconnect
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.stable_seconds = stable_seconds
        self._rng = rng or random.Random()
        self.phase = Phase.no_config if enabled else Phase.disabled
        self.tunnel_address: str | None = None
        self.server: str | None = None
        self.since: dt.datetime | None = None  # when the current phase's connection came up (connected only)
        self.reconnects = 0
        self.restarts = 0
        self.failures = 0
        self.last_error: str | None = None
        self.last_error_at: dt.datetime | None = None
        self.next_attempt_at: dt.datetime | None = None
        self.pid: int | None = None
        self.bytes_in = 0
        self.bytes_out = 0
        self._starts = 0
        self._ever_connected = False
        self._end_reason: str | None = None
        self._last_up: float | None = None  # how long the last connection of the running client lasted

    @property
    def connected(self) -> bool:
        return self.phase == Phase.connected

    # --- events ---------------------------------------------------------------------------------------------------
    def no_config(self, reason: str, now: dt.datetime) -> None:
        """Nothing to run yet; `reason` says what is missing or wrong."""
        self.phase = Phase.no_config
        self.since = self.tunnel_address = None
        self._error(reason, now)

    def started(self, pid: int | None, server: str | None) -> None:
        """A client process was started (towards `server`, from the configuration)."""
        self._starts += 1
        if self._starts > 1:
            self.restarts += 1
        self.phase = Phase.starting
        self.pid = pid
        self.server = server
        self.next_attempt_at = None
        self.bytes_in = self.bytes_out = 0
        self._end_reason = None
        self._last_up = None

    def openvpn_state(self, state: OpenVpnState, now: dt.datetime) -> None:
        if self.phase not in (Phase.starting, Phase.connected):
            return  # a late line from a client that already ended
        if state.name == "CONNECTED":
            if self.phase != Phase.connected and self._ever_connected:
                self.reconnects += 1
            self._ever_connected = True
            self.phase = Phase.connected
            self.since = now
            self.tunnel_address = state.local_ip or None
            if state.remote:
                self.server = f"{state.remote}:{state.port}" if state.port else state.remote
        elif state.name in ("RECONNECTING", "EXITING"):
            self._end_reason = state.reason or state.name.lower()
            self._connection_ended(now)

    def start_failed(self, reason: str, now: dt.datetime) -> float | None:
        """The client could not even be started (e.g. no openvpn binary); like an exit, with `reason` as its cause."""
        self._end_reason = reason
        return self.exited(None, now)

    def byte_count(self, bytes_in: int, bytes_out: int) -> None:
        self.bytes_in, self.bytes_out = bytes_in, bytes_out

    def error(self, message: str, now: dt.datetime) -> None:
        """An error the client reported (a log line, a fatal message)."""
        self._error(message, now)

    def exited(self, code: int | None, now: dt.datetime, *, stopping: bool = False) -> float | None:
        """The client process ended. Returns the delay before starting it again, or None to stay down."""
        self._connection_ended(now)
        lasted = self._last_up is not None and self._last_up >= self.stable_seconds
        self.pid = None
        if stopping:
            self.phase = Phase.stopped
            return None
        why = self._end_reason or f"openvpn exited with code {code}"
        if not self.auto_reconnect:
            self.phase = Phase.down
            self._error(f"client ended ({why}); not restarted: VPN_AUTO_RECONNECT is off", now)
            return None
        self._error(f"client ended ({why})", now)
        self.failures = 1 if lasted else self.failures + 1
        delay = backoff_delay(self.failures, self.backoff_base, self.backoff_max, self._rng)
        self.phase = Phase.retrying
        self.next_attempt_at = now + dt.timedelta(seconds=delay)
        return delay

    def config_replaced(self) -> None:
        """A new configuration arrived: a client that stayed down may run again, failures start over."""
        self.failures = 0
        if self.phase == Phase.down:
            self.phase = Phase.no_config

    def stopping(self, now: dt.datetime) -> None:
        self._connection_ended(now)
        self.phase = Phase.stopped

    # --- helpers --------------------------------------------------------------------------------------------------
    def _connection_ended(self, now: dt.datetime) -> None:
        if self.phase == Phase.connected and self.since is not None:
            self._last_up = (now - self.since).total_seconds()
            self.phase = Phase.starting
        self.since = self.tunnel_address = None

    def _error(self, message: str, now: dt.datetime) -> None:
        self.last_error = message
        self.last_error_at = now

    def snapshot(self) -> dict[str, Any]:
        """What `/v2/device/vpn` and `iotistic agent status --json` show (no secrets)."""
        return {
            "enabled": self.enabled,
            "state": self.phase.value,
            "connected": self.connected,
            "tunnelAddress": self.tunnel_address,
            "server": self.server,
            "since": _iso(self.since) if self.connected else None,
            "reconnects": self.reconnects,
            "restarts": self.restarts,
            "autoReconnect": self.auto_reconnect,
            "nextAttemptAt": _iso(self.next_attempt_at) if self.phase == Phase.retrying else None,
            "lastError": self.last_error,
            "lastErrorAt": _iso(self.last_error_at),
            "bytesIn": self.bytes_in,
            "bytesOut": self.bytes_out,
            "pid": self.pid,
        }


# Lines of OpenVPN's own log (at --verb 3) that explain why a client fails; the supervisor keeps the last one.
_ERROR_MARKERS = ("error", "fatal", "auth_failed", "failed", "cannot", "refused", "revoked")
_NOT_ERRORS = ("note:", "warning:", "deprecated")


def error_in_log(line: str) -> str | None:
    """The line, trimmed, when it reports a problem; None for progress lines, notes and deprecation warnings."""
    text = " ".join(line.split())
    lowered = text.lower()
    if not text or lowered.startswith(_NOT_ERRORS):
        return None
    return text[:300] if any(marker in lowered for marker in _ERROR_MARKERS) else None
