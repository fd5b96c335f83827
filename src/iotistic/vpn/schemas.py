"""Request and response bodies of the certificate manager API (camelCase on the wire)."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from iotistic.vpn.names import CUSTOMER_ID_PATTERN, DEVICE_ID_PATTERN
from iotistic.vpn.service import CertState, CertView, Connected, Issued, Revocation
from iotistic.vpn.status import ConnectedClient


class Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class IssueRequest(Wire):
    device_id: str = Field(pattern=DEVICE_ID_PATTERN, description="letters, digits, '_' and '-'; at most 56")
    customer_id: str = Field(pattern=CUSTOMER_ID_PATTERN, description="letters, digits and '_' (no '-')")


RevokeReason = Literal["unspecified", "key_compromise", "cessation_of_operation", "affiliation_changed"]


class RevokeRequest(Wire):
    reason: RevokeReason = "unspecified"


class Certificate(Wire):
    serial: str = Field(description="lower-case hex")
    device_id: str
    customer_id: str
    common_name: str
    address: str = Field(description="the device's fixed VPN address")
    not_before: dt.datetime
    not_after: dt.datetime
    status: CertState
    revoked_at: dt.datetime | None
    reason: str | None

    @classmethod
    def of(cls, view: CertView) -> Certificate:
        r = view.record
        return cls(serial=r.serial, device_id=r.device_id, customer_id=r.customer_id, common_name=r.common_name,
                   address=r.address, not_before=r.not_before, not_after=r.not_after, status=view.state,
                   revoked_at=r.revoked_at, reason=r.reason)


class RevokedCertificate(Certificate):
    sessions_ended: int | None = Field(description="live sessions ended through OpenVPN's management interface; "
                                                   "null when it is not configured or not reachable (the device is "
                                                   "refused from its next handshake on)")

    @classmethod
    def of_revocation(cls, revocation: Revocation) -> RevokedCertificate:
        base = Certificate.of(revocation.certificate).model_dump()
        return cls(**base, sessions_ended=revocation.sessions_ended)


class IssuedCertificate(Wire):
    certificate: Certificate
    ovpn: str = Field(description="the device's complete OpenVPN configuration (CA, certificate, key, tls-crypt "
                                  "inline); it holds the private key")

    @classmethod
    def of(cls, issued: Issued) -> IssuedCertificate:
        return cls(certificate=Certificate.of(issued.certificate), ovpn=issued.ovpn)


class CertificateList(Wire):
    certificates: list[Certificate]


class ConnectedDevice(Wire):
    common_name: str
    device_id: str | None
    customer_id: str | None
    real_address: str
    virtual_address: str | None
    bytes_received: int
    bytes_sent: int
    connected_since: dt.datetime

    @classmethod
    def of(cls, c: ConnectedClient) -> ConnectedDevice:
        return cls(common_name=c.common_name, device_id=c.device_id, customer_id=c.customer_id,
                   real_address=c.real_address, virtual_address=c.virtual_address, bytes_received=c.bytes_received,
                   bytes_sent=c.bytes_sent, connected_since=c.connected_since)


class ConnectedDevices(Wire):
    updated_at: dt.datetime | None
    stale: bool = Field(description="the server's status file is missing or old: the server is not running")
    devices: list[ConnectedDevice]

    @classmethod
    def of(cls, connected: Connected) -> ConnectedDevices:
        return cls(updated_at=connected.updated_at, stale=connected.stale,
                   devices=[ConnectedDevice.of(c) for c in connected.clients])
