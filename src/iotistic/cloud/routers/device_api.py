"""Routes the devices call: registration, key exchange and rotation, target state, reports, logs."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import select

from iotistic.cloud.context import CloudContext
from iotistic.cloud.deps import (
    BearerCreds,
    Ctx,
    CurrentDevice,
    Session,
    client_ip,
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
)
from iotistic.cloud.services import audit, devices, provisioning, reports
from iotistic.cloud.services import vpn as vpn_service
from iotistic.cloud.services.device_cache import CachedDevice
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
    # After the commit: the device is registered whatever the certificate manager says (services/vpn.py).
    vpn = await vpn_service.device_vpn(ctx.settings, await ctx.licenses.current(session), d.uuid)
    return DeviceRegistered(
        id=d.id, uuid=d.uuid, device_name=d.name, device_type=d.device_type, status=DeviceStatus(d.status),
        fleet=FleetRef.model_validate(d.fleet) if d.fleet else None,
        mqtt=MqttCredentials(username=reg.mqtt_username, password=reg.mqtt_password,
                             broker=ctx.settings.mqtt_broker_url),
        vpn=vpn, created_at=d.created_at,
    )


@router.post("/{uuid}/key-exchange")
async def key_exchange(uuid: str, device: CurrentDevice, ctx: Ctx, session: Session) -> dict[str, object]:
    ensure_same_device(device, uuid)
    devices.key_exchange(device)
    ctx.presence.note(device.id)
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


# Declared for the OpenAPI schema only: the hot route reads these headers itself (see get_state).
_STATE_HEADERS = {
    "parameters": [
        {"name": "X-Device-API-Key", "in": "header", "required": False, "schema": {"type": "string"},
         "description": "the device API key (or send it as `Authorization: Bearer <key>`)"},
        {"name": "If-None-Match", "in": "header", "required": False, "schema": {"type": "string"},
         "description": "the ETag of the target the device has: 304 while it is still current"},
    ],
    "security": [{"HTTPBearer": []}],
}


@router.get("/{uuid}/state", responses={304: {"description": "unchanged since If-None-Match"}},
            openapi_extra=_STATE_HEADERS)
async def get_state(uuid: str, request: Request) -> Response:
    """The deployed target state, with its ETag; `304` when If-None-Match still matches.

    The hot path of the whole API (every device, every poll): an unchanged target is answered from the
    device cache without touching the database, and contact is noted in memory (see `presence`). Headers are
    read directly rather than through FastAPI's dependency injection, which costs more than the rest of a 304.
    """
    ctx: CloudContext = request.app.state.ctx
    headers_in = request.headers
    if_none_match = headers_in.get("if-none-match")
    key = headers_in.get("x-device-api-key")
    if not key:
        scheme, _, credentials = headers_in.get("authorization", "").partition(" ")
        key = credentials.strip() if scheme.lower() == "bearer" else None
    if not key:
        raise unauthorized("device API key required (X-Device-API-Key or Bearer)")
    key_hash = hash_token(key)
    entry = ctx.device_cache.get(key_hash)
    if entry is None:
        entry = await _load_cached_device(ctx, key_hash)
    if entry.status == DeviceStatus.disabled:
        raise unauthorized("device API key invalid")
    if entry.uuid != uuid:
        raise forbidden("a device may only access its own resources")
    ctx.presence.note(entry.device_id)
    headers = {"ETag": f'"{entry.etag}"', "Cache-Control": "no-cache"}
    if _etag_matches(if_none_match, entry.etag):
        return Response(status_code=304, headers=headers)
    async with ctx.read_sessions() as session:
        target = await session.get(DeviceTarget, entry.device_id)
    if target is None:
        raise unauthorized("device API key invalid")
    headers["ETag"] = f'"{target.etag}"'
    return JSONResponse({entry.uuid: {**target.deployed, "version": target.version}}, headers=headers)


async def _load_cached_device(ctx: CloudContext, key_hash: str) -> CachedDevice:
    generation = ctx.device_cache.generation
    async with ctx.read_sessions() as session:
        row = (await session.execute(
            select(Device.id, Device.uuid, Device.status, DeviceTarget.etag)
            .join(DeviceTarget, DeviceTarget.device_id == Device.id)
            .where(Device.api_key_hash == key_hash)
        )).first()
    if row is None:
        raise unauthorized("device API key invalid")
    entry = CachedDevice(device_id=row.id, uuid=row.uuid, status=row.status, etag=row.etag)
    ctx.device_cache.put(key_hash, entry, generation)
    return entry


@router.patch("/state", status_code=204)
async def report_state(body: dict[str, DeviceReport], request: Request, device: CurrentDevice, ctx: Ctx,
                       session: Session) -> None:
    """Current state, keyed by the reporting device's uuid (a device reports only itself)."""
    if not body:
        raise ApiError(422, "validation_error", "report is empty: expected {<uuid>: {...}}")
    for reported_uuid, report in body.items():
        ensure_same_device(device, reported_uuid)
        await reports.save_report(session, device, report)
    ctx.presence.note(device.id, client_ip(request))
    await session.commit()


@router.post("/{uuid}/logs", response_model=LogsAccepted, openapi_extra={
    "requestBody": {"content": {"application/x-ndjson": {"schema": {"type": "string"}}}, "required": True}})
async def post_logs(uuid: str, request: Request, device: CurrentDevice, ctx: Ctx, session: Session) -> LogsAccepted:
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
    ctx.presence.note(device.id)
    await session.commit()
    return LogsAccepted(accepted=accepted)
