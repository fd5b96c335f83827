"""Routes the devices call: registration, key exchange and rotation, target state, reports, logs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import select, update

from iotistic.cloud.deps import (
    BearerCreds,
    Ctx,
    CurrentDevice,
    Session,
    client_ip,
    device_key_from,
    ensure_same_device,
)
from iotistic.cloud.errors import ApiError, forbidden, unauthorized
from iotistic.cloud.models import Device, DeviceStatus, DeviceTarget
from iotistic.cloud.schemas import (
    DeviceRegister,
    DeviceRegistered,
    FleetRef,
    LogsAccepted,
    MqttCredentials,
    RotateKeyRequest,
    RotateKeyResponse,
    VpnInfo,
)
from iotistic.cloud.services import audit, devices, provisioning, reports
from iotistic.core.db import utcnow
from iotistic.core.schemas.reports import DeviceReport
from iotistic.core.security import hash_token

router = APIRouter(prefix="/api/v1/device", tags=["device (called by agents)"])

MAX_LOG_BODY = 4 * 1024 * 1024


@router.post("/register", response_model=DeviceRegistered, status_code=201,
             responses={200: {"model": DeviceRegistered, "description": "already registered (idempotent)"}})
async def register(body: DeviceRegister, request: Request, response: Response, creds: BearerCreds, ctx: Ctx,
                   session: Session) -> DeviceRegistered:
    if creds is None:
        raise unauthorized("provisioning key required (Authorization: Bearer <key>)")
    key = await provisioning.authenticate_key(session, creds.credentials)
    extra = {"os_version": body.os_version, "agent_version": body.agent_version,
             "mac_address": body.mac_address, "ip_address": client_ip(request)}
    reg = await devices.register(session, ctx.licenses, key, device_uuid=body.uuid, name=body.device_name,
                                 device_type=body.device_type, api_key=body.device_api_key, extra=extra)
    audit.record(session, actor=f"provisioning_key:{key.id}", action="device.registered" if reg.created
                 else "device.reregistered", target_type="device", target_id=body.uuid, ip=client_ip(request))
    await session.commit()
    await session.refresh(reg.device, ["fleet"])
    if not reg.created:
        response.status_code = 200
    d = reg.device
    return DeviceRegistered(
        id=d.id, uuid=d.uuid, device_name=d.name, device_type=d.device_type, status=DeviceStatus(d.status),
        fleet=FleetRef.model_validate(d.fleet) if d.fleet else None,
        mqtt=MqttCredentials(username=reg.mqtt_username, password=reg.mqtt_password,
                             broker=ctx.settings.mqtt_broker_url),
        vpn=VpnInfo(enabled=False), created_at=d.created_at,
    )


@router.post("/{uuid}/key-exchange")
async def key_exchange(uuid: str, device: CurrentDevice, session: Session) -> dict[str, object]:
    ensure_same_device(device, uuid)
    devices.key_exchange(device)
    devices.touch(device)
    audit.record(session, actor=f"device:{uuid}", action="device.key_exchanged", target_type="device",
                 target_id=uuid)
    await session.commit()
    return {"status": "ok", "uuid": device.uuid, "deviceId": device.id, "deviceStatus": device.status}


@router.post("/{uuid}/rotate-key", response_model=RotateKeyResponse)
async def rotate_key(uuid: str, device: CurrentDevice, session: Session,
                     body: RotateKeyRequest | None = None) -> RotateKeyResponse:
    """Replace the device API key; the old one stops working when this returns."""
    ensure_same_device(device, uuid)
    new_key = await devices.rotate_key(session, device, body.device_api_key if body else None)
    audit.record(session, actor=f"device:{uuid}", action="device.key_rotated", target_type="device",
                 target_id=uuid)
    await session.commit()
    return RotateKeyResponse(device_api_key=new_key)


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    for candidate in header.split(","):
        candidate = candidate.strip().removeprefix("W/").strip('"')
        if candidate in ("*", etag):
            return True
    return False


@router.get("/{uuid}/state", responses={304: {"description": "unchanged since If-None-Match"}})
async def get_state(
    uuid: str, creds: BearerCreds, session: Session,
    x_device_api_key: Annotated[str | None, Header(alias="X-Device-API-Key")] = None,
    if_none_match: Annotated[str | None, Header(alias="If-None-Match")] = None,
) -> Response:
    """The deployed target state. Hot path: one indexed query, and 304 when the ETag still matches."""
    key = device_key_from(creds, x_device_api_key)
    if not key:
        raise unauthorized("device API key required (X-Device-API-Key or Bearer)")
    row = (await session.execute(
        select(Device.id, Device.uuid, Device.status, Device.last_seen_at, DeviceTarget.version,
               DeviceTarget.etag)
        .join(DeviceTarget, DeviceTarget.device_id == Device.id)
        .where(Device.api_key_hash == hash_token(key))
    )).first()
    if row is None or row.status == DeviceStatus.disabled:
        raise unauthorized("device API key invalid")
    if row.uuid != uuid:
        raise forbidden("a device may only access its own resources")
    now = utcnow()
    if row.last_seen_at is None or now - row.last_seen_at >= devices.TOUCH_EVERY:
        await session.execute(update(Device).where(Device.id == row.id).values(last_seen_at=now))
        await session.commit()
    headers = {"ETag": f'"{row.etag}"', "Cache-Control": "no-cache"}
    if _etag_matches(if_none_match, row.etag):
        return Response(status_code=304, headers=headers)
    target = await session.get(DeviceTarget, row.id)
    assert target is not None
    body = {row.uuid: {**target.deployed, "version": target.version}}
    return JSONResponse(body, headers=headers)


@router.patch("/state", status_code=204)
async def report_state(body: dict[str, DeviceReport], request: Request, device: CurrentDevice,
                       session: Session) -> None:
    """Current state, keyed by the reporting device's uuid (a device reports only itself)."""
    if not body:
        raise ApiError(422, "validation_error", "report is empty: expected {<uuid>: {...}}")
    for reported_uuid, report in body.items():
        ensure_same_device(device, reported_uuid)
        await reports.save_report(session, device, report)
    devices.touch(device, client_ip(request))
    await session.commit()


@router.post("/{uuid}/logs", response_model=LogsAccepted, openapi_extra={
    "requestBody": {"content": {"application/x-ndjson": {"schema": {"type": "string"}}}, "required": True}})
async def post_logs(uuid: str, request: Request, device: CurrentDevice, session: Session) -> LogsAccepted:
    """NDJSON: one `{timestamp, message, serviceName?, isStderr?}` per line. All lines are stored, or none."""
    ensure_same_device(device, uuid)
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > MAX_LOG_BODY:
        raise ApiError(413, "payload_too_large", f"log batches are limited to {MAX_LOG_BODY} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > MAX_LOG_BODY:
            raise ApiError(413, "payload_too_large", f"log batches are limited to {MAX_LOG_BODY} bytes")
    lines = reports.parse_ndjson(bytes(body))
    accepted = await reports.save_logs(session, device, lines)
    devices.touch(device)
    await session.commit()
    return LogsAccepted(accepted=accepted)
