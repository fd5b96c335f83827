"""OpenVPN status files (versions 2 and 3) and the connection errors counted from its log (pure parsers and the
log follower)."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

from iotistic.vpn.connection_log import ErrorTally, LogScanner, classify_line
from iotistic.vpn.status import StatusFormatError, parse_status

# As written by OpenVPN 2.6.14 (tests/vpn/test_tunnel.py): one device connected.
STATUS_V2 = """\
TITLE,OpenVPN 2.6.14 x86_64-pc-linux-gnu [SSL (OpenSSL)] [LZO] [LZ4] [EPOLL] [PKCS11] [MH/PKTINFO] [AEAD] [DCO]
TIME,2026-11-27 05:17:50,1795756670
HEADER,CLIENT_LIST,Common Name,Real Address,Virtual Address,Virtual IPv6 Address,Bytes Received,Bytes Sent,\
Connected Since,Connected Since (time_t),Username,Client ID,Peer ID,Data Channel Cipher
CLIENT_LIST,device-dev-a-custA,10.213.0.2:35804,10.8.0.17,,2492,2448,2026-11-27 05:17:44,1795756664,UNDEF,0,0,\
AES-256-GCM
CLIENT_LIST,legacy-client,10.213.0.3:1194,10.8.0.40,,10,20,2026-11-27 05:17:45,1795756665,UNDEF,1,1,AES-256-GCM
HEADER,ROUTING_TABLE,Virtual Address,Common Name,Real Address,Last Ref,Last Ref (time_t)
ROUTING_TABLE,10.8.0.17,device-dev-a-custA,10.213.0.2:35804,2026-11-27 05:17:44,1795756664
GLOBAL_STATS,Max bcast/mcast queue length,1
GLOBAL_STATS,dco_enabled,0
END
"""


def test_version_2_status() -> None:
    status = parse_status(STATUS_V2)
    assert status.updated_at == dt.datetime.fromtimestamp(1795756670, dt.UTC)
    first, legacy = status.clients
    assert (first.common_name, first.device_id, first.customer_id) == ("device-dev-a-custA", "dev-a", "custA")
    assert (first.real_address, first.virtual_address) == ("10.213.0.2:35804", "10.8.0.17")
    assert (first.bytes_received, first.bytes_sent) == (2492, 2448)
    assert first.connected_since == dt.datetime.fromtimestamp(1795756664, dt.UTC)
    # A common name of another form is listed, not attributed to a device.
    assert legacy.device_id is None and legacy.customer_id is None
    assert (status.bytes_received, status.bytes_sent) == (2502, 2468)


def test_version_3_status_is_the_same_with_tabs() -> None:
    v3 = STATUS_V2.replace(",", "\t")
    assert parse_status(v3) == parse_status(STATUS_V2)


def test_no_clients() -> None:
    text = "\n".join(line for line in STATUS_V2.splitlines() if not line.startswith(("CLIENT_LIST", "ROUTING")))
    assert parse_status(text).clients == []


@pytest.mark.parametrize("text", [
    "", "garbage\n", "OpenVPN CLIENT LIST\nUpdated,Thu Jan 1\n",  # version 1 is not what we render
    STATUS_V2.replace("2492", "many"), "TITLE,x\nCLIENT_LIST,a,b\n",
])
def test_unreadable_status_is_a_format_error(text: str) -> None:
    with pytest.raises(StatusFormatError):
        parse_status(text)


# Log lines as OpenVPN 2.6 writes them (from the tunnel tests).
REVOKED = [
    "2026-11-27 05:17:45 10.213.0.3:60421 VERIFY ERROR: depth=0, error=certificate revoked: CN=device-r-c, serial=1",
    "2026-11-27 05:17:45 10.213.0.3:60421 OpenSSL: error:0A000086:SSL routines::certificate verify failed:",
    "2026-11-27 05:17:45 10.213.0.3:60421 TLS Error: TLS handshake failed",
]
NO_CCD = ("2026-11-27 05:20:35 10.213.0.2:38696 TLS Auth Error: --client-config-dir authentication failed for "
          "common name 'device-x-c' file='/pki/ccd/device-x-c'")
TIMEOUT = [
    "2026-11-27 05:21:00 10.213.0.4:5000 TLS Error: TLS key negotiation failed to occur within 60 seconds",
    "2026-11-27 05:21:00 10.213.0.4:5000 TLS Error: TLS handshake failed",
]
CRYPT = "2026-11-27 05:21:01 tls-crypt unwrapping failed from [AF_INET]10.213.0.9:4000"
NORMAL = [
    "2026-11-27 05:17:44 device-a-c/10.213.0.2:35804 MULTI: Learn: 10.8.0.17 -> device-a-c/10.213.0.2:35804",
    "2026-11-27 05:17:44 10.213.0.2:35804 VERIFY OK: depth=0, CN=device-a-c",
    "2026-11-27 05:17:44 10.213.0.2:35804 CRL: cannot read CRL from file /pki/crl.pem",  # a known 2.6 false alarm
]


def test_line_classification() -> None:
    assert classify_line(REVOKED[0]) == ("certificate", "10.213.0.3:60421")
    assert classify_line(REVOKED[2]) == ("handshake", "10.213.0.3:60421")
    assert classify_line(NO_CCD) == ("no_config", "10.213.0.2:38696")
    assert classify_line(CRYPT) is not None and classify_line(CRYPT)[0] == "tls_crypt"  # type: ignore[index]
    assert classify_line("2026-11-27 05:17:44 10.213.0.2:1 VERIFY EKU ERROR") == ("certificate", "10.213.0.2:1")
    assert all(classify_line(line) is None for line in NORMAL)


def test_each_failed_attempt_counts_once() -> None:
    tally = ErrorTally()
    for line in [*NORMAL, *REVOKED, NO_CCD, *TIMEOUT, CRYPT, *REVOKED]:
        tally.feed(line)
    assert dict(tally.counts) == {"certificate": 2, "tls": 1, "no_config": 1, "tls_crypt": 1}


def test_scanner_reads_what_was_appended_and_follows_rotation(tmp_path: Path) -> None:
    log = tmp_path / "openvpn.log"
    log.write_text(REVOKED[0] + "\n")  # before the service started: not counted
    scanner = LogScanner(log)
    assert scanner.scan()["certificate"] == 0
    with open(log, "a") as handle:
        handle.write("\n".join(REVOKED) + "\n" + NO_CCD[:40])  # the last line is still being written
    assert scanner.scan()["certificate"] == 1 and scanner.scan()["no_config"] == 0
    with open(log, "a") as handle:
        handle.write(NO_CCD[40:] + "\n")
    assert scanner.scan()["no_config"] == 1
    # Rotated: a new file under the same name is read from its start.
    log.rename(tmp_path / "openvpn.log.1")
    log.write_text("\n".join(TIMEOUT) + "\n")
    assert scanner.scan()["tls"] == 1
    # Truncated in place (copytruncate): read from the start again.
    os.truncate(log, 0)
    with open(log, "a") as handle:
        handle.write("\n".join(REVOKED) + "\n")
    counts = scanner.scan()
    assert (counts["certificate"], counts["tls"]) == (2, 1)


def test_scanner_without_a_log_file(tmp_path: Path) -> None:
    scanner = LogScanner(tmp_path / "missing.log")
    assert sum(scanner.scan().values()) == 0
    (tmp_path / "missing.log").write_text(REVOKED[0] + "\n")
    assert scanner.scan()["certificate"] == 1  # created after start: all of it is new
