"""Device and customer ids, and the certificate common name `device-<deviceId>-<customerId>` made from them.

Both ids end up in a certificate subject and in a client-config-dir file name that OpenVPN opens by the common
name, so they are restricted to letters, digits, `_` and (device ids only) `-`: no `/`, `..`, spaces or control
characters. Customer ids have no `-`, which makes the common name split unambiguously at its last `-` even for
device ids that are UUIDs. RFC 5280 bounds a common name at 64 characters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PREFIX = "device-"
MAX_COMMON_NAME = 64
DEVICE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,55}$"
CUSTOMER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_]{0,55}$"
_DEVICE_ID = re.compile(DEVICE_ID_PATTERN)
_CUSTOMER_ID = re.compile(CUSTOMER_ID_PATTERN)


class InvalidName(ValueError):
    """An id or common name that cannot be used; the message says why."""


@dataclass(frozen=True)
class DeviceName:
    device_id: str
    customer_id: str

    @property
    def common_name(self) -> str:
        return f"{PREFIX}{self.device_id}-{self.customer_id}"


def check_device_id(device_id: str) -> str:
    if not _DEVICE_ID.fullmatch(device_id):
        raise InvalidName(f"device id {device_id!r} must be 1-56 letters, digits, '_' or '-', starting with a "
                          "letter or digit")
    return device_id


def check_customer_id(customer_id: str) -> str:
    if not _CUSTOMER_ID.fullmatch(customer_id):
        raise InvalidName(f"customer id {customer_id!r} must be 1-56 letters, digits or '_' (no '-'), starting "
                          "with a letter or digit")
    return customer_id


def device_name(device_id: str, customer_id: str) -> DeviceName:
    """The validated pair; raises InvalidName when either id or the resulting common name is unusable."""
    name = DeviceName(check_device_id(device_id), check_customer_id(customer_id))
    if len(name.common_name) > MAX_COMMON_NAME:
        raise InvalidName(f"common name {name.common_name!r} is longer than {MAX_COMMON_NAME} characters "
                          "(device id and customer id together at most 56)")
    return name


def parse_common_name(common_name: str) -> DeviceName:
    """`device-<deviceId>-<customerId>` back into its ids; raises InvalidName for anything else."""
    if not common_name.startswith(PREFIX):
        raise InvalidName(f"common name {common_name!r} does not start with {PREFIX!r}")
    device_id, sep, customer_id = common_name.removeprefix(PREFIX).rpartition("-")
    if not sep:
        raise InvalidName(f"common name {common_name!r} is not device-<deviceId>-<customerId>")
    return device_name(device_id, customer_id)
