"""The device registry: registration and credentials, listing, editing, tags, deletion."""

from __future__ import annotations

import datetime as dt
import uuid as uuidlib
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, not_, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from iotistic.cloud.errors import ApiError, conflict, not_found
from iotistic.cloud.models import Device, DeviceStatus, DeviceTag, ProvisioningKey
from iotistic.cloud.services import mqtt_accounts, provisioning, targets
from iotistic.cloud.services.license import LicenseService
from iotistic.core.db import utcnow
from iotistic.core.security import hash_token, new_token

# Any fixed number: it names the lock that serialises device creation on PostgreSQL (licence limit).
_DEVICE_LIMIT_LOCK = 7_240_001


@dataclass
class Registration:
    device: Device
    mqtt_username: str
    mqtt_password: str
    created: bool


async def _enforce_device_limit(session: AsyncSession, licenses: LicenseService) -> None:
    """Refuse one more device beyond the licence. Serialised so concurrent registrations cannot overshoot."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _DEVICE_LIMIT_LOCK})
    state = await licenses.current(session)
    limit = state.max_devices
    if limit is None:
        return
    count = int(await session.scalar(select(func.count()).select_from(Device)) or 0)
    if count >= limit:
        raise ApiError(
            402, "device_limit_reached",
            f"device limit reached: the {state.plan} plan ({state.mode} mode) allows {limit} devices",
        )


async def _new_device(session: AsyncSession, *, device_uuid: str, name: str, device_type: str,
                      fleet_id: int | None, api_key: str, key: ProvisioningKey | None,
                      extra: dict[str, str | None]) -> Device:
    device = Device(uuid=device_uuid, name=name, device_type=device_type, fleet_id=fleet_id,
                    api_key_hash=hash_token(api_key), status=DeviceStatus.registered,
                    provisioning_key_id=key.id if key else None, **extra)
    session.add(device)
    await session.flush()
    session.add(targets.new_device_target(device))
    return device


async def register(
    session: AsyncSession, licenses: LicenseService, key: ProvisioningKey, *, device_uuid: str, name: str,
    device_type: str, api_key: str, extra: dict[str, str | None],
) -> Registration:
    existing = await session.scalar(select(Device).where(Device.uuid == device_uuid))
    if existing is not None:
        # Same device coming back (e.g. lost its reply): idempotent, and the old credentials stop working.
        if existing.provisioning_key_id != key.id or existing.status == DeviceStatus.disabled:
            raise conflict(f"device {device_uuid} is already registered")
        if await session.scalar(select(Device.id).where(Device.api_key_hash == hash_token(api_key),
                                                        Device.id != existing.id)) is not None:
            raise conflict("deviceApiKey is already in use; generate a new one")
        existing.api_key_hash = hash_token(api_key)
        existing.name = name
        existing.device_type = device_type
        for field, value in extra.items():
            if value is not None:
                setattr(existing, field, value)
        username, password = await mqtt_accounts.issue_device_account(session, existing)
        return Registration(existing, username, password, created=False)
    if await session.scalar(select(Device.id).where(Device.api_key_hash == hash_token(api_key))):
        raise conflict("deviceApiKey is already in use; generate a new one")
    await _enforce_device_limit(session, licenses)
    await provisioning.consume_slot(session, key)
    device = await _new_device(session, device_uuid=device_uuid, name=name, device_type=device_type,
                               fleet_id=key.fleet_id, api_key=api_key, key=key, extra=extra)
    username, password = await mqtt_accounts.issue_device_account(session, device)
    return Registration(device, username, password, created=True)


async def create_by_user(
    session: AsyncSession, licenses: LicenseService, *, device_uuid: str | None, name: str, device_type: str,
    fleet: int | str | None,
) -> tuple[Device, str]:
    """Pre-register a device (manual provisioning). Returns it and its API key, shown once."""
    device_uuid = device_uuid or uuidlib.uuid4().hex
    if await session.scalar(select(Device.id).where(Device.uuid == device_uuid)) is not None:
        raise conflict(f"device {device_uuid} already exists")
    fleet_row = await provisioning.resolve_fleet(session, fleet)
    await _enforce_device_limit(session, licenses)
    api_key = new_token("dk_")
    device = await _new_device(session, device_uuid=device_uuid, name=name, device_type=device_type,
                               fleet_id=fleet_row.id if fleet_row else None, api_key=api_key, key=None, extra={})
    await mqtt_accounts.issue_device_account(session, device)
    return device, api_key


def key_exchange(device: Device) -> None:
    """The device proved it holds the key it registered with: it becomes active."""
    if device.status == DeviceStatus.registered:
        device.status = DeviceStatus.active
    if device.key_exchanged_at is None:
        device.key_exchanged_at = utcnow()


async def rotate_key(session: AsyncSession, device: Device, new_key: str | None) -> str:
    key = new_key or new_token("dk_")
    if await session.scalar(
        select(Device.id).where(Device.api_key_hash == hash_token(key), Device.id != device.id)
    ) is not None:
        raise conflict("that key is already in use; generate a new one")
    device.api_key_hash = hash_token(key)
    return key


def is_online(device: Device, offline_after_seconds: int) -> bool:
    """Heard from recently, and its MQTT last will ('offline' on `status`) has not come since."""
    if device.last_seen_at is None:
        return False
    if (device.connection_state == "offline" and device.connection_changed_at is not None
            and device.connection_changed_at >= device.last_seen_at):
        return False
    return utcnow() - device.last_seen_at < dt.timedelta(seconds=offline_after_seconds)


async def get_device(session: AsyncSession, device_uuid: str) -> Device:
    device = await session.scalar(select(Device).where(Device.uuid == device_uuid))
    if device is None:
        raise not_found(f"device {device_uuid}")
    return device


def online_clause(offline_after_seconds: int) -> ColumnElement[bool]:
    """The same rule as is_online, in SQL. NULL (never seen) when the device never spoke; callers that negate it
    must allow for that."""
    cutoff = utcnow() - dt.timedelta(seconds=offline_after_seconds)
    # (coalesce: a NULL here would make NOT(...) NULL and hide the device from both filters)
    said_offline = and_(func.coalesce(Device.connection_state, "") == "offline",
                        func.coalesce(Device.connection_changed_at >= Device.last_seen_at, False))
    return and_(Device.last_seen_at >= cutoff, not_(said_offline))


@dataclass
class DeviceFilter:
    status: str | None = None
    online: bool | None = None
    tag_key: str | None = None
    tag_value: str | None = None
    text: str | None = None
    fleet_id: int | None = None


def _filtered(query: Select[Any], f: DeviceFilter, offline_after_seconds: int) -> Select[Any]:
    if f.status:
        query = query.where(Device.status == f.status)
    if f.fleet_id is not None:
        query = query.where(Device.fleet_id == f.fleet_id)
    if f.online is not None:
        online = online_clause(offline_after_seconds)
        query = query.where(online if f.online else or_(Device.last_seen_at.is_(None), not_(online)))
    if f.tag_key:
        tags = select(DeviceTag.device_id).where(DeviceTag.key == f.tag_key)
        if f.tag_value is not None:
            tags = tags.where(DeviceTag.value == f.tag_value)
        query = query.where(Device.id.in_(tags))
    if f.text:
        pattern = "%" + f.text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = query.where(or_(func.lower(Device.name).like(pattern, escape="\\"),
                                func.lower(Device.uuid).like(pattern, escape="\\")))
    return query


async def list_devices(session: AsyncSession, f: DeviceFilter, *, limit: int, offset: int,
                       offline_after_seconds: int) -> tuple[list[Device], int]:
    total = await session.scalar(_filtered(select(func.count()).select_from(Device), f, offline_after_seconds))
    rows = await session.scalars(
        _filtered(select(Device), f, offline_after_seconds).order_by(Device.id).limit(limit).offset(offset)
    )
    return list(rows.unique().all()), int(total or 0)


async def set_tags(session: AsyncSession, device: Device, tags: dict[str, str]) -> None:
    """Replace the device's tags with `tags`."""
    device.tags = [DeviceTag(device_id=device.id, key=k, value=v) for k, v in sorted(tags.items())]
    await session.flush()


async def set_status(session: AsyncSession, device: Device, status: DeviceStatus) -> None:
    if status == DeviceStatus.registered and device.status != DeviceStatus.registered:
        raise ApiError(422, "invalid_status", "a device cannot be put back to registered; use active or disabled")
    device.status = status
    await mqtt_accounts.set_device_account_active(session, device, status != DeviceStatus.disabled)


async def delete(session: AsyncSession, device: Device) -> None:
    """Delete the device with every credential it has (API key, MQTT account, ACLs) in one transaction."""
    await session.delete(device)
