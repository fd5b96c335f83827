"""Devices' VPN configurations, from the certificate manager (`iotistic vpn serve`) over HTTP.

The cloud keeps no VPN state of its own: the certificate manager holds the certificates (keys encrypted at rest)
and renders a device's `.ovpn` on request, so the cloud asks it each time, with its service token. The
certificate's common name is `device-<device uuid>-<customer id>`; the customer id is the licence's.

When the certificate manager cannot be reached, registration still succeeds: the device is complete without a
VPN, and its reply says `vpn: {status: "pending", retry: "/api/v1/device/<uuid>/vpn"}`; the device asks that
route until it gets the configuration (the agent does, with backoff). Registration never fails, nor is any of
it rolled back, over the VPN, and nothing VPN-related is written to the cloud's database, so there is nothing
half-written either way. A certificate issued but whose reply was lost is found again: issuing answers 409 for
a device that has one, and the existing certificate's configuration is fetched instead.

A device uuid is chosen by the device. If the uuid already holds a certificate of *another* customer, the
configuration is refused, never handed out: it holds that device's private key.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import httpx

from iotistic.cloud.schemas import VpnInfo
from iotistic.core.licensing import LicenseState
from iotistic.core.settings import CloudSettings

log = logging.getLogger(__name__)


class CertManagerUnavailable(Exception):
    """Not reachable, timed out, a 5xx, or our service token refused (a misconfiguration): try again later."""


class CertManagerRefused(Exception):
    """The certificate manager, or this cloud, refuses the device (invalid id, address space full, another
    customer's device): asking again will not help. The message says why."""


class NoCertificate(Exception):
    """The device has no valid certificate."""


@dataclass(frozen=True)
class DeviceConfig:
    ovpn: str
    address: str
    common_name: str
    serial: str


def retry_path(device_uuid: str) -> str:
    return f"/api/v1/device/{device_uuid}/vpn"


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    text = body.get("message") if isinstance(body, dict) else None
    return " ".join(str(text or response.reason_phrase or "error").split())[:300]


def _error_code(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("error") if isinstance(body, dict) else None


class CertManager:
    """A client of the certificate manager's API (`/api/v1/certificates`). Use as an async context manager."""

    def __init__(self, base_url: str, token: str, timeout: float) -> None:
        self._http = httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
                                       headers={"Authorization": f"Bearer {token}"}, follow_redirects=False)

    @classmethod
    def from_settings(cls, settings: CloudSettings) -> CertManager:
        if not (settings.vpn_cert_manager_url and settings.vpn_service_token):
            raise CertManagerUnavailable("VPN_CERT_MANAGER_URL and VPN_SERVICE_TOKEN are not set")
        return cls(settings.vpn_cert_manager_url, settings.vpn_service_token, settings.vpn_cert_manager_timeout)

    async def __aenter__(self) -> CertManager:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self._http.aclose()

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise CertManagerUnavailable(f"certificate manager not reachable: {type(exc).__name__}") from None
        if response.status_code in (401, 403):
            log.error("the certificate manager refuses VPN_SERVICE_TOKEN (HTTP %s)", response.status_code)
            raise CertManagerUnavailable("the certificate manager refuses this cloud's service token")
        if response.status_code >= 500 or response.status_code == 429:
            raise CertManagerUnavailable(f"certificate manager: HTTP {response.status_code}: {_message(response)}")
        return response

    async def issue(self, device_uuid: str, customer_id: str) -> DeviceConfig:
        """The device's configuration: a new certificate, or the one it already has (same customer only)."""
        response = await self._request("POST", "/api/v1/certificates",
                                       json={"deviceId": device_uuid, "customerId": customer_id})
        if response.status_code == 201:
            body = response.json()
            return _config(body["certificate"], body["ovpn"])
        if response.status_code == 409 and _error_code(response) == "conflict":
            return await self.existing(device_uuid, customer_id)
        raise CertManagerRefused(f"certificate manager: {_message(response)}")

    async def existing(self, device_uuid: str, customer_id: str) -> DeviceConfig:
        """The configuration of the device's valid certificate; NoCertificate when it has none."""
        response = await self._request("GET", f"/api/v1/certificates/{device_uuid}")
        if response.status_code == 404:
            raise NoCertificate(f"device {device_uuid} has no VPN certificate")
        if response.status_code != 200:
            raise CertManagerRefused(f"certificate manager: {_message(response)}")
        certificate = response.json()
        if certificate.get("customerId") != customer_id:
            log.warning("device uuid %s holds a VPN certificate of another customer: configuration refused",
                        device_uuid)
            raise CertManagerRefused(f"device id {device_uuid} already holds a VPN certificate of another customer")
        if certificate.get("status") != "valid":
            raise NoCertificate(f"device {device_uuid} has no valid VPN certificate ({certificate.get('status')})")
        response = await self._request("GET", f"/api/v1/certificates/{device_uuid}/ovpn")
        if response.status_code == 404:
            raise NoCertificate(f"device {device_uuid} has no valid VPN certificate")
        if response.status_code != 200:
            raise CertManagerRefused(f"certificate manager: {_message(response)}")
        return _config(certificate, response.text)

    async def revoke(self, device_uuid: str, customer_id: str, reason: str = "cessation_of_operation") -> bool:
        """Revoke the device's certificate (only ours); False when it had none."""
        try:
            await self.existing(device_uuid, customer_id)
        except NoCertificate:
            return False
        response = await self._request("POST", f"/api/v1/certificates/{device_uuid}/revoke",
                                       json={"reason": reason})
        if response.status_code == 404:
            return False
        if response.status_code != 200:
            raise CertManagerRefused(f"certificate manager: {_message(response)}")
        return True


def _config(certificate: dict[str, Any], ovpn: str) -> DeviceConfig:
    return DeviceConfig(ovpn=ovpn, address=str(certificate["address"]), common_name=str(certificate["commonName"]),
                        serial=str(certificate["serial"]))


# --- what devices and users get ---------------------------------------------------------------------------------
def vpn_gate(settings: CloudSettings, licence: LicenseState) -> VpnInfo | None:
    """The answer when the device gets no VPN (off here, or not in the plan); None when it may have one."""
    if not settings.vpn_enabled:
        return VpnInfo(enabled=False, status="disabled")
    if not licence.feature_enabled("vpn") or not licence.customer_id:
        return VpnInfo(enabled=False, status="not_licensed",
                       message=f"VPN is not included in the {licence.plan} plan ({licence.mode} mode)")
    return None


async def device_vpn(settings: CloudSettings, licence: LicenseState, device_uuid: str) -> VpnInfo:
    """The device's VPN block: issued with its configuration, pending, refused, or why there is none."""
    gated = vpn_gate(settings, licence)
    if gated is not None:
        return gated
    assert licence.customer_id is not None  # vpn_gate checked it
    try:
        async with CertManager.from_settings(settings) as manager:
            config = await manager.issue(device_uuid, licence.customer_id)
    except CertManagerUnavailable as exc:
        log.warning("VPN configuration for device %s pending: %s", device_uuid, exc)
        return VpnInfo(enabled=True, status="pending", message=str(exc), retry=retry_path(device_uuid))
    except (CertManagerRefused, NoCertificate) as exc:
        return VpnInfo(enabled=True, status="refused", message=str(exc))
    return VpnInfo(enabled=True, status="issued", config=config.ovpn, address=config.address,
                   common_name=config.common_name)


async def revoke_deleted(settings: CloudSettings, licence: LicenseState, device_uuid: str) -> None:
    """A deleted device must not keep its tunnel: revoke its certificate. Best effort: the deletion stands either
    way, and a failure is logged with what to run instead."""
    if vpn_gate(settings, licence) is not None:
        return
    assert licence.customer_id is not None
    try:
        async with CertManager.from_settings(settings) as manager:
            revoked = await manager.revoke(device_uuid, licence.customer_id)
    except (CertManagerUnavailable, CertManagerRefused) as exc:
        log.error("VPN certificate of deleted device %s not revoked (%s): run `iotistic vpn revoke-client %s` on "
                  "the VPN server", device_uuid, exc, device_uuid)
        return
    if revoked:
        log.info("VPN certificate of deleted device %s revoked", device_uuid)
