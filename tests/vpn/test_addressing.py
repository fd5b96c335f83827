"""Per-customer blocks and fixed device addresses (pure), and the VPN settings that define them."""

from __future__ import annotations

import ipaddress

import pytest

from iotistic.core.settings import ConfigError
from iotistic.vpn.addressing import AddressPlan, AddressSpaceExhausted, allocate
from iotistic.vpn.settings import load_vpn_settings

A = ipaddress.IPv4Address


@pytest.fixture(autouse=True)
def _no_vpn_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The defaults under test, whatever the machine's environment holds."""
    import os

    for name in list(os.environ):
        if name.startswith("VPN_"):
            monkeypatch.delenv(name)


def test_default_plan_matches_the_product_readme() -> None:
    settings = load_vpn_settings()
    plan = AddressPlan(settings.network, settings.customer_block)
    assert str(plan.network) == "10.8.0.0/24" and plan.server_address == A("10.8.0.1")
    assert plan.block_count == 16
    assert plan.device_addresses(1)[0] == A("10.8.0.17") and plan.device_addresses(1)[-1] == A("10.8.0.30")
    with pytest.raises(ValueError, match="server"):
        plan.device_addresses(0)


def test_customers_get_distinct_blocks_in_order_and_keep_them() -> None:
    plan = AddressPlan.from_strings("10.8.0.0", "255.255.255.0", 16)
    blocks: dict[str, list[int]] = {}
    used: set[ipaddress.IPv4Address] = set()

    def add(customer: str) -> ipaddress.IPv4Address:
        allocation = allocate(plan, blocks, used, customer)
        if allocation.new_block:
            blocks.setdefault(customer, []).append(allocation.block)
        used.add(allocation.address)
        return allocation.address

    assert [add("acme"), add("globex"), add("acme"), add("initech")] == [
        A("10.8.0.17"), A("10.8.0.33"), A("10.8.0.18"), A("10.8.0.49")]
    assert blocks == {"acme": [1], "globex": [2], "initech": [3]}
    # A released address is reused before the customer's block grows.
    used.discard(A("10.8.0.17"))
    assert add("acme") == A("10.8.0.17")
    # A full block: the customer gets the next free block, never another customer's.
    for _ in range(12):
        add("acme")
    assert add("acme") == A("10.8.0.65") and blocks["acme"] == [1, 4]
    for customer, indexes in blocks.items():
        for other, others in blocks.items():
            assert customer == other or not set(indexes) & set(others)


def test_no_address_is_the_server_the_network_or_the_broadcast() -> None:
    plan = AddressPlan.from_strings("10.8.0.0", "255.255.255.0", 16)
    every = [a for index in range(1, plan.block_count) for a in plan.device_addresses(index)]
    assert len(every) == len(set(every)) == 15 * 14
    assert plan.server_address not in every and A("10.8.0.255") not in every and A("10.8.0.0") not in every
    assert all(a in plan.network for a in every)


def test_exhaustion_is_an_error_not_a_collision() -> None:
    plan = AddressPlan.from_strings("10.8.0.0", "255.255.255.0", 64)  # 3 customer blocks
    blocks = {"a": [1], "b": [2], "c": [3]}
    with pytest.raises(AddressSpaceExhausted, match="larger VPN_SUBNET"):
        allocate(plan, blocks, set(), "d")
    full = set(plan.device_addresses(1))
    with pytest.raises(AddressSpaceExhausted):
        allocate(plan, blocks, full, "a")


def test_a_larger_subnet_holds_more_customers() -> None:
    settings = load_vpn_settings(VPN_SUBNET="10.8.0.0", VPN_NETMASK="255.255.0.0", VPN_CUSTOMER_BLOCK=256)
    plan = AddressPlan(settings.network, settings.customer_block)
    assert plan.block_count == 256
    assert plan.block(2) == ipaddress.IPv4Network("10.8.2.0/24")
    assert allocate(plan, {"a": [1]}, set(), "b").address == A("10.8.2.1")
    assert plan.block_of(A("10.8.7.9")) == 7


@pytest.mark.parametrize(("env", "message"), [
    ({"VPN_SUBNET": "10.8.0.0", "VPN_NETMASK": "255.0.255.0"}, "VPN_SUBNET/VPN_NETMASK"),
    ({"VPN_SUBNET": "10.8.0.1"}, "host bits"),
    ({"VPN_SUBNET": "not-an-address"}, "IPv4 address"),
    ({"VPN_CUSTOMER_BLOCK": 24}, "power of two"),
    ({"VPN_NETMASK": "255.255.255.240"}, "at least two blocks"),
    ({"VPN_KEY_PASSPHRASE": "short"}, "VPN_KEY_PASSPHRASE"),
    ({"VPN_SERVICE_TOKEN": "short"}, "VPN_SERVICE_TOKEN"),
    ({"VPN_SERVER_HOST": "bad host; rm"}, "VPN_SERVER_HOST"),
])
def test_bad_settings_are_one_clear_line(env: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_vpn_settings(**env)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_passphrase_and_host_are_required_where_needed() -> None:
    settings = load_vpn_settings()
    with pytest.raises(ConfigError, match="VPN_KEY_PASSPHRASE"):
        settings.require_passphrase()
    with pytest.raises(ConfigError, match="VPN_SERVER_HOST"):
        settings.require_server_host()
    assert "secret-passphrase" not in repr(load_vpn_settings(VPN_KEY_PASSPHRASE="secret-passphrase"))
