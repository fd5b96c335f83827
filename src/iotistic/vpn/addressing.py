"""Per-customer address blocks in the VPN subnet and a fixed address per device (pure: no I/O).

The subnet is cut into equal blocks of `block_size` addresses. Block 0 holds the server (the subnet's first host
address) and no device. Each customer gets the lowest free block when it gets its first device, and another one
when its blocks are full; the assignment is stored with the certificates, never derived from a hash, so two
customers cannot collide and a customer keeps its block across restarts. Inside a block the first and last
addresses stay unused, so every block is also a clean CIDR (e.g. 10.8.0.16/28) for per-customer firewall rules.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass


class AddressSpaceExhausted(Exception):
    """No free block is left for a new customer's device."""


@dataclass(frozen=True)
class AddressPlan:
    network: ipaddress.IPv4Network
    block_size: int

    def __post_init__(self) -> None:
        if self.block_size < 4 or self.block_size & (self.block_size - 1):
            raise ValueError("block size must be a power of two, at least 4")
        if self.network.num_addresses < 2 * self.block_size:
            raise ValueError(f"{self.network} holds fewer than two blocks of {self.block_size} addresses")

    @classmethod
    def from_strings(cls, subnet: str, netmask: str, block_size: int) -> AddressPlan:
        return cls(ipaddress.IPv4Network(f"{subnet}/{netmask}"), block_size)

    @property
    def server_address(self) -> ipaddress.IPv4Address:
        return self.network.network_address + 1

    @property
    def netmask(self) -> ipaddress.IPv4Address:
        return self.network.netmask

    @property
    def block_count(self) -> int:
        return self.network.num_addresses // self.block_size

    def block(self, index: int) -> ipaddress.IPv4Network:
        if not 0 <= index < self.block_count:
            raise ValueError(f"block {index} is outside {self.network}")
        prefix = 32 - (self.block_size.bit_length() - 1)
        return ipaddress.IPv4Network((int(self.network.network_address) + index * self.block_size, prefix))

    def device_addresses(self, index: int) -> list[ipaddress.IPv4Address]:
        """The addresses devices may get in a customer block (never block 0, the server's)."""
        if index == 0:
            raise ValueError("block 0 is the server's")
        first = self.block(index).network_address
        return [first + offset for offset in range(1, self.block_size - 1)]

    def block_of(self, address: ipaddress.IPv4Address) -> int:
        if address not in self.network:
            raise ValueError(f"{address} is outside {self.network}")
        return (int(address) - int(self.network.network_address)) // self.block_size


@dataclass(frozen=True)
class Allocation:
    address: ipaddress.IPv4Address
    block: int
    new_block: bool  # the customer got this block now: persist it with the device


def allocate(plan: AddressPlan, customer_blocks: Mapping[str, Sequence[int]],
             used: Collection[ipaddress.IPv4Address], customer_id: str) -> Allocation:
    """The lowest free address in the customer's blocks, else the first address of the lowest unassigned block."""
    for index in sorted(customer_blocks.get(customer_id, ())):
        for address in plan.device_addresses(index):
            if address not in used:
                return Allocation(address, index, new_block=False)
    taken = {index for blocks in customer_blocks.values() for index in blocks}
    for index in range(1, plan.block_count):
        if index not in taken:
            return Allocation(plan.device_addresses(index)[0], index, new_block=True)
    raise AddressSpaceExhausted(f"all {plan.block_count - 1} customer blocks of {plan.network} are assigned; "
                                "use a larger VPN_SUBNET/VPN_NETMASK")
