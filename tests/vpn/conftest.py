"""Fixtures of the VPN tests: a PKI in a fresh directory, a network lab (namespaces, veth, OpenVPN)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from iotistic.vpn.addressing import AddressPlan
from iotistic.vpn.pki import Pki
from tests.vpn.netns import NetLab

PASSPHRASE = "test-passphrase-" + "p" * 16


@pytest.fixture
def netlab() -> Iterator[NetLab]:
    lab = NetLab()
    try:
        yield lab
    finally:
        lab.close()


def make_pki(root, *, subnet: str = "10.8.0.0", netmask: str = "255.255.255.0", block: int = 16) -> Pki:
    pki = Pki(root, PASSPHRASE, AddressPlan.from_strings(subnet, netmask, block))
    pki.initialise()
    return pki


@pytest.fixture
def lab_pki(netlab: NetLab) -> Pki:
    """A PKI inside the lab's directory (reachable by OpenVPN after it drops to nobody)."""
    return make_pki(netlab.workdir / "pki")
