"""The agent's VPN state machine, management-line parser and log classification (pure: no processes)."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from iotistic.agent.vpn.management import ByteCount, Fatal, parse_line
from iotistic.agent.vpn.state import OpenVpnState, Phase, VpnTracker, error_in_log

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
CONNECTED = OpenVpnState("CONNECTED", "SUCCESS", "10.8.0.18", "10.213.0.1", "1194")


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def tracker(**kwargs: object) -> VpnTracker:
    options: dict[str, object] = {"enabled": True, "auto_reconnect": True, "backoff_base": 2.0,
                                  "backoff_max": 60.0, "rng": random.Random(7)}
    options.update(kwargs)
    return VpnTracker(**options)  # type: ignore[arg-type]


def test_disabled_tracker_says_so() -> None:
    snapshot = tracker(enabled=False).snapshot()
    assert (snapshot["enabled"], snapshot["state"], snapshot["connected"]) == (False, "disabled", False)


def test_connection_gives_address_server_and_since() -> None:
    t = tracker()
    t.started(101, "vpn.example.com:1194")
    assert (t.phase, t.pid, t.server) == (Phase.starting, 101, "vpn.example.com:1194")
    t.openvpn_state(OpenVpnState("WAIT"), at(0))
    t.openvpn_state(OpenVpnState("ASSIGN_IP", "", "10.8.0.18"), at(0.5))
    assert not t.connected
    t.openvpn_state(CONNECTED, at(1))
    snapshot = t.snapshot()
    assert snapshot["connected"] is True
    assert snapshot["tunnelAddress"] == "10.8.0.18"
    assert snapshot["server"] == "10.213.0.1:1194"  # where it actually connected
    assert snapshot["since"] == at(1).isoformat()
    assert (snapshot["reconnects"], snapshot["restarts"]) == (0, 0)


def test_drop_then_restart_counts_one_reconnect_and_backs_off_from_the_base() -> None:
    t = tracker()
    t.started(1, "s:1194")
    t.openvpn_state(CONNECTED, at(0))
    t.openvpn_state(OpenVpnState("EXITING", "server-pushed-connection-reset"), at(5))
    assert not t.connected and t.tunnel_address is None
    delay = t.exited(0, at(5.1))
    assert delay is not None and 1.0 <= delay <= 2.0  # first failure: up to the base
    assert t.phase == Phase.retrying
    assert "server-pushed-connection-reset" in (t.last_error or "")
    assert t.snapshot()["nextAttemptAt"] == (at(5.1) + dt.timedelta(seconds=delay)).isoformat()
    t.started(2, "s:1194")
    t.openvpn_state(CONNECTED, at(8))
    assert (t.reconnects, t.restarts, t.connected) == (1, 1, True)


def test_failures_without_a_connection_back_off_exponentially_up_to_the_cap() -> None:
    t = tracker(backoff_base=1.0, backoff_max=8.0)
    ceilings = []
    for attempt in range(6):
        t.started(attempt, "s:1194")
        t.openvpn_state(OpenVpnState("EXITING", "tls-error"), at(attempt))
        delay = t.exited(0, at(attempt))
        assert delay is not None
        ceilings.append(delay)
    # Equal jitter: each delay lies in the upper half of min(cap, base * 2**(n-1)).
    for n, delay in enumerate(ceilings, 1):
        ceiling = min(8.0, 2.0 ** (n - 1))
        assert ceiling / 2 <= delay <= ceiling
    assert t.reconnects == 0 and t.restarts == 5


def test_a_flapping_connection_keeps_backing_off_a_stable_one_starts_over() -> None:
    t = tracker(backoff_base=1.0, backoff_max=64.0, stable_seconds=60)
    for n in range(4):  # accepted, then dropped after 1 s: a flap, not a stable connection
        t.started(n, "s:1194")
        t.openvpn_state(CONNECTED, at(n * 10))
        t.exited(0, at(n * 10 + 1))
    assert t.failures == 4
    t.started(9, "s:1194")
    t.openvpn_state(CONNECTED, at(100))
    delay = t.exited(0, at(100 + 61))  # up for 61 s: the next failure counts from one again
    assert t.failures == 1 and delay is not None and delay <= 1.0


def test_without_auto_reconnect_the_client_stays_down_and_says_so() -> None:
    t = tracker(auto_reconnect=False)
    t.started(1, "s:1194")
    t.openvpn_state(CONNECTED, at(0))
    t.openvpn_state(OpenVpnState("EXITING", "ping-restart"), at(30))
    assert t.exited(0, at(30)) is None
    snapshot = t.snapshot()
    assert (snapshot["state"], snapshot["connected"], snapshot["autoReconnect"]) == ("down", False, False)
    assert "ping-restart" in snapshot["lastError"] and "VPN_AUTO_RECONNECT" in snapshot["lastError"]
    assert snapshot["nextAttemptAt"] is None
    t.config_replaced()  # a new configuration may run again
    assert t.phase == Phase.no_config


def test_stopping_is_not_a_failure() -> None:
    t = tracker()
    t.started(1, "s:1194")
    t.openvpn_state(CONNECTED, at(0))
    assert t.exited(0, at(3), stopping=True) is None
    assert (t.phase, t.failures, t.last_error) == (Phase.stopped, 0, None)


def test_late_state_lines_of_an_ended_client_are_ignored() -> None:
    t = tracker()
    t.started(1, "s:1194")
    t.exited(1, at(1))
    t.openvpn_state(CONNECTED, at(2))
    assert not t.connected and t.phase == Phase.retrying


def test_missing_configuration_is_reported() -> None:
    t = tracker()
    t.no_config("no VPN configuration at /x yet", at(0))
    snapshot = t.snapshot()
    assert (snapshot["state"], snapshot["lastError"]) == ("no_config", "no VPN configuration at /x yet")


@pytest.mark.parametrize(("line", "expected"), [
    (">STATE:1795756497,CONNECTED,SUCCESS,10.8.0.18,10.213.0.1,1194,,",
     OpenVpnState("CONNECTED", "SUCCESS", "10.8.0.18", "10.213.0.1", "1194")),
    ("1795756497,ASSIGN_IP,,10.8.0.18,,,,", OpenVpnState("ASSIGN_IP", "", "10.8.0.18", "", "")),
    (">STATE:1795756507,EXITING,server-pushed-connection-reset,,,,,",
     OpenVpnState("EXITING", "server-pushed-connection-reset")),
    (">BYTECOUNT:2313,2377\r\n", ByteCount(2313, 2377)),
    (">FATAL:Cannot open TUN/TAP dev /dev/net/tun", Fatal("Cannot open TUN/TAP dev /dev/net/tun")),
    (">INFO:OpenVPN Management Interface Version 5 -- type 'help' for more info", None),
    (">HOLD:Waiting for hold release:0", None),
    ("SUCCESS: hold release succeeded", None),
    ("END", None),
    (">BYTECOUNT:x,1", None),
])
def test_management_lines(line: str, expected: object) -> None:
    assert parse_line(line) == expected


@pytest.mark.parametrize(("line", "is_error"), [
    ("TLS Error: TLS handshake failed", True),
    ("VERIFY ERROR: depth=0, error=certificate revoked", True),
    ("AUTH: Received control message: AUTH_FAILED", True),
    ("Options error: Unrecognized option or missing or extra parameter(s)", True),
    ("VERIFY KU OK", False),
    ("Initialization Sequence Completed", False),
    ("Note: --cipher is not set. ... when cipher negotiation failed in this case.", False),
    ("", False),
])
def test_log_lines_that_explain_a_failure(line: str, is_error: bool) -> None:
    assert (error_in_log(line) is not None) is is_error
