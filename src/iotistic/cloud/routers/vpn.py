"""Device VPN configurations: the device asks again while registration said `pending`; an admin downloads a
device's `.ovpn` (e.g. from the dashboard). The certificate manager does the work (`services/vpn.py`)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from iotistic.cloud.deps import Admin, Ctx, CurrentDevice, Session, ensure_same_device, require_feature
from iotistic.cloud.errors import ApiError
from iotistic.cloud.schemas import VpnInfo
from iotistic.cloud.services import audit, devices
from iotistic.cloud.services import vpn as vpn_service

router = APIRouter(tags=["vpn"])

RETRY_AFTER_SECONDS = 30


def _issued_or_error(info: VpnInfo) -> VpnInfo:
    """An issued configuration, or the 4xx/503 that says why there is none."""
    if info.status == "issued":
        return info
    if info.status == "disabled":
        raise ApiError(404, "vpn_disabled", "VPN is not enabled in this cloud (VPN_ENABLED)")
    if info.status == "not_licensed":
        raise ApiError(402, "feature_not_licensed", info.message or "VPN is not included in the plan")
    if info.status == "pending":
        raise ApiError(503, "vpn_unavailable", f"{info.message}; try again later",
                       headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
    raise ApiError(409, "vpn_refused", info.message or "the certificate manager refused this device")


@router.get("/api/v1/device/{uuid}/vpn", response_model=VpnInfo, response_model_exclude_none=True,
            responses={402: {}, 404: {}, 409: {}, 503: {}})
async def device_vpn(uuid: str, device: CurrentDevice, ctx: Ctx, session: Session) -> VpnInfo:
    """For the device itself (device API key): its VPN block with the configuration, issuing the certificate when
    it has none yet. 503 (with Retry-After) while the certificate manager cannot be reached."""
    ensure_same_device(device, uuid)
    licence = await ctx.licenses.current(session)
    return _issued_or_error(await vpn_service.device_vpn(ctx.settings, licence, device.uuid))


@router.get("/api/v1/devices/{uuid}/vpn/config", response_class=Response,
            dependencies=[Depends(require_feature("vpn", "VPN"))],
            responses={200: {"content": {"application/x-openvpn-profile": {}}}, 402: {}, 404: {}, 409: {},
                       503: {}})
async def download_config(uuid: str, principal: Admin, ctx: Ctx, session: Session) -> Response:
    """The device's complete `.ovpn` (admins only: it holds the device's private key). Audited."""
    device = await devices.get_device(session, uuid)
    licence = await ctx.licenses.current(session)
    info = _issued_or_error(await vpn_service.device_vpn(ctx.settings, licence, device.uuid))
    audit.record(session, actor=principal.name, action="device.vpn_config_downloaded", target_type="device",
                 target_id=device.uuid, ip=principal.ip)
    await session.commit()
    return Response(info.config, media_type="application/x-openvpn-profile",
                    headers={"Content-Disposition": f'attachment; filename="{device.uuid}.ovpn"',
                             "Cache-Control": "no-store"})
