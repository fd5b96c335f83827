"""A real OpenVPN server and devices in network namespaces, configured only by what iotistic.vpn renders."""

from __future__ import annotations

from iotistic.vpn.pki import Pki
from tests.vpn.conftest import PASSPHRASE
from tests.vpn.netns import CONNECTED, SERVER_UNDERLAY, NetLab


def test_valid_device_gets_its_customers_fixed_address(netlab: NetLab, lab_pki: Pki) -> None:
    server_ns = netlab.server_namespace()
    netlab.start_server(server_ns, lab_pki, PASSPHRASE)
    first = lab_pki.issue("dev-a1", "custA")
    second = lab_pki.issue("dev-b1", "custB")
    ns_a, ns_b = netlab.device_namespace(), netlab.device_namespace()
    client_a = netlab.start_client(ns_a, lab_pki.client_config(first, str(SERVER_UNDERLAY), 1194), name="a")
    client_b = netlab.start_client(ns_b, lab_pki.client_config(second, str(SERVER_UNDERLAY), 1194), name="b")
    client_a.wait_for(CONNECTED)
    client_b.wait_for(CONNECTED)
    assert netlab.addresses(ns_a, "tun0") == [f"{first.record.address}/24"]
    assert netlab.addresses(ns_b, "tun0") == [f"{second.record.address}/24"]
