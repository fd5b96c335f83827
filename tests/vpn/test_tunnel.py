"""A real OpenVPN server and devices in network namespaces, configured only by what iotistic.vpn renders: the
server config from render_server_config, each device's .ovpn from the PKI."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from iotistic.vpn.pki import Pki
from iotistic.vpn.service import VpnService
from iotistic.vpn.settings import VpnSettings
from tests.vpn.conftest import PASSPHRASE
from tests.vpn.netns import CONNECTED, SERVER_UNDERLAY, NetLab, OpenVpnProcess, OpenVpnServer, wait_until

PORT = 7000  # of the TCP listeners the reachability checks talk to


def _connect(lab: NetLab, pki: Pki, device: str, customer: str) -> tuple[str, str, OpenVpnProcess]:
    """Issue a certificate, start a device with its .ovpn in a new namespace, wait for the tunnel."""
    bundle = pki.issue(device, customer)
    ns = lab.device_namespace()
    client = lab.start_client(ns, pki.client_config(bundle, str(SERVER_UNDERLAY), 1194), name=device)
    client.wait_for(CONNECTED)
    return ns, bundle.record.address, client


@pytest.fixture
def server(netlab: NetLab, lab_pki: Pki) -> OpenVpnServer:
    return netlab.start_server(netlab.server_namespace(), lab_pki, PASSPHRASE)


def test_valid_devices_get_their_customers_fixed_addresses(netlab: NetLab, lab_pki: Pki,
                                                            server: OpenVpnServer) -> None:
    ns_a1, addr_a1, _ = _connect(netlab, lab_pki, "dev-a1", "custA")
    ns_b1, addr_b1, _ = _connect(netlab, lab_pki, "dev-b1", "custB")
    ns_a2, addr_a2, _ = _connect(netlab, lab_pki, "dev-a2", "custA")
    # The addresses come from the client-config-dir entries: customer A's block, then B's, then A's again.
    assert (addr_a1, addr_b1, addr_a2) == ("10.8.0.17", "10.8.0.33", "10.8.0.18")
    assert netlab.addresses(ns_a1, "tun0") == ["10.8.0.17/24"]
    assert netlab.addresses(ns_b1, "tun0") == ["10.8.0.33/24"]
    assert netlab.addresses(ns_a2, "tun0") == ["10.8.0.18/24"]
    log = server.log()
    assert "MULTI: primary virtual IP for device-dev-a1-custA/" in log and ": 10.8.0.17" in log
    # No default route through the tunnel: the device's own routes are untouched.
    assert "10.8.0.1" not in netlab.exec(ns_a1, "ip", "route", "show", "default").stdout
    # AES-256-GCM on the data channel, as rendered.
    assert "Data Channel: cipher 'AES-256-GCM'" in server.wait_for("Data Channel: cipher")


def test_revoked_device_is_refused_by_the_running_server(netlab: NetLab, lab_pki: Pki,
                                                          server: OpenVpnServer) -> None:
    ns, address, client = _connect(netlab, lab_pki, "dev-r", "custA")
    assert netlab.addresses(ns, "tun0") == [f"{address}/24"]
    client.stop()
    # Revoked while the server runs: OpenVPN re-reads the CRL at the next handshake, no restart.
    lab_pki.revoke("dev-r", "key_compromise")
    mark = len(server.log())
    again = netlab.start_client(ns, client.log_path.with_suffix(".ovpn").read_text(), name="dev-r-again")
    line = server.wait_for(r"VERIFY ERROR: depth=0, error=certificate revoked", start=mark)
    assert "CN=device-dev-r-custA" in line
    server.wait_for("TLS handshake failed", start=mark)
    assert CONNECTED not in again.log()
    assert netlab.addresses(ns, "tun0") == []
    assert "device-dev-r-custA" not in server.status_path.read_text()


def test_revoking_through_the_service_ends_the_live_session(netlab: NetLab, lab_pki: Pki,
                                                            server: OpenVpnServer) -> None:
    service = VpnService(VpnSettings(VPN_PKI_DIR=str(lab_pki.paths.root), VPN_KEY_PASSPHRASE=PASSPHRASE,
                                     VPN_SERVER_HOST=str(SERVER_UNDERLAY),
                                     VPN_MANAGEMENT_SOCKET=str(server.management_socket)))
    ns, _, client = _connect(netlab, lab_pki, "dev-live", "custA")
    _connect(netlab, lab_pki, "dev-other", "custA")
    server_addr = str(lab_pki.plan.server_address)
    netlab.listen(server.namespace, server_addr, PORT)
    assert netlab.reachable(ns, server_addr, PORT)
    revocation = service.revoke("dev-live", "key_compromise")
    assert revocation.sessions_ended == 1
    # The server drops the session at once (the device notices at its next keepalive timeout, and its
    # reconnection is refused by the CRL, as test_revoked_device_is_refused_by_the_running_server shows).
    assert not netlab.can_connect(ns, server_addr, PORT, timeout=1.5)
    assert client.running()
    assert wait_until(lambda: "device-dev-live-custA" not in server.status_path.read_text(), 10)
    assert "device-dev-other-custA" in server.status_path.read_text()  # only that device was cut off
    assert service.revoke("dev-other", "unspecified").sessions_ended == 1
    lab_pki.issue("dev-idle", "custA")
    assert service.revoke("dev-idle", "unspecified").sessions_ended == 0  # not connected: nothing to end


def test_a_certificate_without_client_config_is_refused(netlab: NetLab, lab_pki: Pki,
                                                         server: OpenVpnServer) -> None:
    """ccd-exclusive: a certificate the CA signed but whose fixed address is gone does not get in."""
    bundle = lab_pki.issue("dev-x", "custA")
    (lab_pki.paths.ccd / bundle.record.common_name).unlink()
    ns = netlab.device_namespace()
    mark = len(server.log())
    client = netlab.start_client(ns, lab_pki.client_config(bundle, str(SERVER_UNDERLAY), 1194), name="dev-x")
    line = server.wait_for("client-config-dir authentication failed", start=mark)
    assert "device-dev-x-custA" in line
    assert wait_until(lambda: "AUTH_FAILED" in client.log(), 15), client.log()[-2000:]
    assert netlab.addresses(ns, "tun0") == []


def test_devices_cannot_reach_each_other_only_the_server(netlab: NetLab, lab_pki: Pki,
                                                          server: OpenVpnServer) -> None:
    ns_a, addr_a, _ = _connect(netlab, lab_pki, "dev-a", "cust1")
    ns_b, addr_b, _ = _connect(netlab, lab_pki, "dev-b", "cust2")
    ns_a2, _, _ = _connect(netlab, lab_pki, "dev-a2", "cust1")
    server_ns = server.namespace
    server_addr = str(lab_pki.plan.server_address)
    netlab.listen(server_ns, server_addr, PORT)
    netlab.listen(ns_a, addr_a, PORT)
    netlab.listen(ns_b, addr_b, PORT)
    # Each device reaches the server's tunnel address, and the server reaches each device (remote access): the
    # tunnels carry traffic, so what fails below fails for isolation, not for a tunnel that is not up.
    assert netlab.reachable(ns_a, server_addr, PORT)
    assert netlab.reachable(ns_b, server_addr, PORT)
    assert netlab.reachable(ns_a2, server_addr, PORT)
    assert netlab.reachable(server_ns, addr_a, PORT)
    assert netlab.reachable(server_ns, addr_b, PORT)
    # Customer 1's device cannot reach customer 2's through the tunnel, nor the other way round ...
    assert not netlab.can_connect(ns_a, addr_b, PORT, timeout=1.5)
    assert not netlab.can_connect(ns_b, addr_a, PORT, timeout=1.5)
    # ... and (no client-to-client, no forwarding on the server) neither can two devices of one customer.
    assert not netlab.can_connect(ns_a2, addr_a, PORT, timeout=1.5)
    assert "client-to-client" not in server.config_path.read_text()


def test_client_reconnects_after_the_server_restarts(netlab: NetLab, lab_pki: Pki, server: OpenVpnServer) -> None:
    ns, address, client = _connect(netlab, lab_pki, "dev-re", "custA")
    server.stop()  # explicit-exit-notify: the device is told the server is going
    client.wait_for("SIGUSR1", timeout=15)
    restarted = netlab.start_server(server.namespace, lab_pki, PASSPHRASE, name="server-2")
    mark = client.log().rfind("SIGUSR1")
    client.wait_for(CONNECTED, timeout=40, start=mark)
    assert netlab.addresses(ns, "tun0") == [f"{address}/24"]
    assert restarted.running()


def test_connected_devices_and_metrics_from_the_real_server(netlab: NetLab, lab_pki: Pki,
                                                             server: OpenVpnServer) -> None:
    settings = VpnSettings(VPN_PKI_DIR=str(lab_pki.paths.root), VPN_KEY_PASSPHRASE=PASSPHRASE,
                           VPN_SERVER_HOST=str(SERVER_UNDERLAY), VPN_STATUS_FILE=str(server.status_path),
                           VPN_LOG_FILE=str(server.log_path))
    service = VpnService(settings)
    ns_a, addr_a, _ = _connect(netlab, lab_pki, "dev-m1", "custM")
    _connect(netlab, lab_pki, "dev-m2", "custN")
    revoked = lab_pki.issue("dev-m3", "custM")
    lab_pki.revoke("dev-m3")
    netlab.start_client(netlab.device_namespace(), lab_pki.client_config(revoked, str(SERVER_UNDERLAY), 1194),
                        name="dev-m3")
    server.wait_for("certificate revoked")
    netlab.listen(server.namespace, str(lab_pki.plan.server_address), PORT)
    assert netlab.reachable(ns_a, str(lab_pki.plan.server_address), PORT)

    def both_listed() -> bool:
        connected = service.connected()
        return not connected.stale and {c.device_id for c in connected.clients} == {"dev-m1", "dev-m2"}

    assert wait_until(both_listed, 10), server.status_path.read_text()
    clients = {c.device_id: c for c in service.connected().clients}
    assert clients["dev-m1"].virtual_address == addr_a and clients["dev-m1"].customer_id == "custM"
    assert clients["dev-m1"].bytes_received > 0 and clients["dev-m1"].bytes_sent > 0
    assert service.connection_errors()["certificate"] == 1
    assert service.connection_errors()["tls"] == 0  # the handshake failure is the same attempt


def _netns_names() -> set[str]:
    listing = subprocess.run(["ip", "-j", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {entry["name"] for entry in json.loads(listing or "[]")}


def test_lab_cleans_up_namespaces_and_processes() -> None:
    other = NetLab()
    ns = other.device_namespace()
    server_ns = other.server_namespace()
    process = other.listen(ns, "10.213.0.2", PORT)
    assert {ns, server_ns} <= _netns_names()
    other.close()
    assert process.poll() is not None
    assert not {ns, server_ns} & _netns_names()
    assert not Path(other.workdir).exists()


def test_namespaces_of_a_killed_run_are_removed_by_the_next_lab() -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()  # its pid names a process that no longer exists
    stale = f"ivpn{gone.pid}x0"
    subprocess.run(["ip", "netns", "add", stale], check=True)
    try:
        NetLab().close()
        assert stale not in _netns_names()
    finally:
        subprocess.run(["ip", "netns", "del", stale], capture_output=True, check=False)
