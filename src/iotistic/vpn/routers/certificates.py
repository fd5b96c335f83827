"""Device certificates: issue (with the complete .ovpn), list, show, download the .ovpn again, renew, revoke."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query
from fastapi.responses import Response

from iotistic.vpn.deps import Authenticated, DeviceId, Service
from iotistic.vpn.names import CUSTOMER_ID_PATTERN
from iotistic.vpn.schemas import (
    Certificate,
    CertificateList,
    IssuedCertificate,
    IssueRequest,
    RevokedCertificate,
    RevokeRequest,
)
from iotistic.vpn.service import CertState

router = APIRouter(prefix="/api/v1/certificates", tags=["certificates"], dependencies=[Authenticated])


@router.post("", status_code=201)
def issue(service: Service, body: IssueRequest) -> IssuedCertificate:
    """A certificate, a fixed address in the customer's block and the device's .ovpn (which holds its key)."""
    return IssuedCertificate.of(service.issue(body.device_id, body.customer_id))


@router.get("")
def list_certificates(
    service: Service,
    customer_id: Annotated[str | None, Query(alias="customerId", pattern=CUSTOMER_ID_PATTERN)] = None,
    status: Annotated[CertState | None, Query()] = None,
) -> CertificateList:
    return CertificateList(certificates=[Certificate.of(v) for v in service.list(customer_id, status)])


@router.get("/{device_id}")
def show(service: Service, device_id: DeviceId) -> Certificate:
    """The device's valid certificate, else its latest revoked or expired one."""
    return Certificate.of(service.get(device_id))


@router.get("/{device_id}/ovpn", response_class=Response,
            responses={200: {"content": {"application/x-openvpn-profile": {}}}})
def ovpn(service: Service, device_id: DeviceId) -> Response:
    return Response(service.ovpn(device_id), media_type="application/x-openvpn-profile",
                    headers={"Content-Disposition": f'attachment; filename="{device_id}.ovpn"',
                             "Cache-Control": "no-store"})


@router.post("/{device_id}/renew")
def renew(service: Service, device_id: DeviceId) -> IssuedCertificate:
    """A new key and certificate for the same address; the previous certificate is revoked (superseded)."""
    return IssuedCertificate.of(service.renew(device_id))


@router.post("/{device_id}/revoke")
def revoke(service: Service, device_id: DeviceId,
           body: Annotated[RevokeRequest | None, Body()] = None) -> RevokedCertificate:
    """Revoke the device's certificate: its client-config-dir entry goes and the CRL lists it; OpenVPN refuses it
    from the next handshake on, and ends its live session now when VPN_MANAGEMENT_SOCKET is set."""
    return RevokedCertificate.of_revocation(service.revoke(device_id, (body or RevokeRequest()).reason))
