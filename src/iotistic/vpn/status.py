"""OpenVPN's status file (`status-version` 2: comma separated, 3: tab separated) parsed into connected devices
(pure: text in, values out).

The file is rewritten by OpenVPN every few seconds (`status FILE SECONDS`) and left as it was when OpenVPN stops,
so its `TIME` line says how old the picture is; a caller treats a picture older than a few intervals as "server
not running" rather than trusting its client list.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from iotistic.vpn.names import InvalidName, parse_common_name


class StatusFormatError(ValueError):
    """Not an OpenVPN status file of version 2 or 3."""


@dataclass(frozen=True)
class ConnectedClient:
    common_name: str
    device_id: str | None  # None when the common name is not device-<deviceId>-<customerId>
    customer_id: str | None
    real_address: str
    virtual_address: str | None
    bytes_received: int  # from the device, this session
    bytes_sent: int  # to the device, this session
    connected_since: dt.datetime


@dataclass(frozen=True)
class ServerStatus:
    updated_at: dt.datetime | None
    clients: list[ConnectedClient]

    @property
    def bytes_received(self) -> int:
        return sum(c.bytes_received for c in self.clients)

    @property
    def bytes_sent(self) -> int:
        return sum(c.bytes_sent for c in self.clients)


def _timestamp(value: str) -> dt.datetime:
    return dt.datetime.fromtimestamp(int(value), dt.UTC)


def parse_status(text: str) -> ServerStatus:
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise StatusFormatError("the status file is empty")
    separator = "\t" if "\t" in lines[0] else ","
    if not lines[0].startswith(f"TITLE{separator}"):
        raise StatusFormatError("not an OpenVPN status file of version 2 or 3 (no TITLE line)")
    updated_at: dt.datetime | None = None
    header: list[str] | None = None
    clients: list[ConnectedClient] = []
    for line in lines:
        fields = line.split(separator)
        kind = fields[0]
        try:
            if kind == "TIME" and len(fields) >= 3:
                updated_at = _timestamp(fields[2])
            elif kind == "HEADER" and len(fields) > 2 and fields[1] == "CLIENT_LIST":
                header = fields[2:]
            elif kind == "CLIENT_LIST":
                if header is None:
                    raise StatusFormatError("CLIENT_LIST before its HEADER line")
                clients.append(_client(dict(zip(header, fields[1:], strict=False))))
        except (KeyError, ValueError) as exc:
            if isinstance(exc, StatusFormatError):
                raise
            raise StatusFormatError(f"unreadable {kind} line: {exc}") from None
    return ServerStatus(updated_at, clients)


def _client(row: dict[str, str]) -> ConnectedClient:
    common_name = row["Common Name"]
    device_id: str | None = None
    customer_id: str | None = None
    try:
        name = parse_common_name(common_name)
        device_id, customer_id = name.device_id, name.customer_id
    except InvalidName:
        pass  # a certificate of another form (e.g. signed before the naming rule): listed, not attributed
    return ConnectedClient(
        common_name=common_name,
        device_id=device_id,
        customer_id=customer_id,
        real_address=row["Real Address"],
        virtual_address=row.get("Virtual Address") or None,
        bytes_received=int(row["Bytes Received"]),
        bytes_sent=int(row["Bytes Sent"]),
        connected_since=_timestamp(row["Connected Since (time_t)"]),
    )
