"""The VPN configuration from the cloud, for a device whose registration did not carry one: the certificate
manager was unreachable at the time (the cloud then answers `vpn: {status: "pending"}`), or VPN was switched on
for the device afterwards. `GET /api/v1/device/{uuid}/vpn` issues the certificate when needed and returns the
same `vpn` block as registration."""

from __future__ import annotations

from iotistic.agent.sync.http import CloudError, make_client, send


class VpnPending(CloudError):
    """The cloud answered without a configuration (not issued yet); ask again later."""


async def fetch_config(endpoint: str, http_timeout: float, device_uuid: str, device_api_key: str) -> str:
    """The `.ovpn` text. Raises `CloudError` subclasses: unavailable (retry), unauthorized, rejected (e.g. 402: the
    plan has no VPN; 404: VPN is not enabled in the cloud) or `VpnPending`."""
    async with make_client(endpoint, http_timeout) as client:
        response = await send(client, "GET", f"/api/v1/device/{device_uuid}/vpn", "VPN configuration",
                              headers={"X-Device-API-Key": device_api_key})
    try:
        body = response.json()
    except ValueError:
        raise VpnPending("VPN configuration: the cloud's answer is not JSON") from None
    config = body.get("config") if isinstance(body, dict) else None
    if not isinstance(config, str):
        status = body.get("status") if isinstance(body, dict) else None
        raise VpnPending(f"VPN configuration: not issued yet (status {status or 'unknown'})")
    return config
