"""Provisioning keys: created by admins, consumed by devices registering themselves."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from iotistic.cloud.errors import ApiError, bad_request, not_found, unauthorized
from iotistic.cloud.models import MAX_ID, Fleet, ProvisioningKey
from iotistic.core.db import utcnow
from iotistic.core.security import hash_token, new_token


async def resolve_fleet(session: AsyncSession, fleet: int | str | None) -> Fleet | None:
    """A fleet by id or by name; None for none."""
    if fleet is None:
        return None
    if isinstance(fleet, str) and fleet.isascii() and fleet.isdigit() and len(fleet) <= 12:
        fleet = int(fleet)
    if isinstance(fleet, int):
        found = await session.get(Fleet, fleet) if 1 <= fleet <= MAX_ID else None
    else:
        found = await session.scalar(select(Fleet).where(Fleet.name == fleet))
    if found is None:
        raise bad_request(f"fleet {fleet!r} does not exist", "unknown_fleet")
    return found


async def create_key(
    session: AsyncSession, *, fleet: int | str | None, max_devices: int | None, expires_at: dt.datetime | None,
    description: str | None, created_by: str,
) -> tuple[ProvisioningKey, str]:
    """Returns the stored key and its secret, which is shown this once and never again."""
    if expires_at is not None and expires_at <= utcnow():
        # details name the field, as a validation error does, so a form can show the message next to it
        raise ApiError(400, "bad_request", "expiresAt must be in the future",
                       details=[{"loc": ["body", "expiresAt"], "msg": "must be in the future"}])
    secret = new_token("pk_")
    key = ProvisioningKey(
        id=str(uuid.uuid4()), key_hash=hash_token(secret), key_prefix=secret[:10],
        fleet=await resolve_fleet(session, fleet), max_devices=max_devices, expires_at=expires_at,
        description=description, created_by=created_by, devices_registered=0,
    )
    session.add(key)
    await session.flush()
    return key, secret


async def list_keys(session: AsyncSession, include_revoked: bool) -> list[ProvisioningKey]:
    query = select(ProvisioningKey).order_by(ProvisioningKey.created_at.desc())
    if not include_revoked:
        query = query.where(ProvisioningKey.revoked_at.is_(None))
    return list((await session.scalars(query)).all())


async def revoke_key(session: AsyncSession, key_id: str) -> ProvisioningKey:
    key = await session.get(ProvisioningKey, key_id)
    if key is None:
        raise not_found("provisioning key")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
    return key


async def authenticate_key(session: AsyncSession, secret: str) -> ProvisioningKey:
    key = await session.scalar(select(ProvisioningKey).where(ProvisioningKey.key_hash == hash_token(secret)))
    if key is None or key.revoked_at is not None:
        raise unauthorized("provisioning key invalid or revoked")
    if key.expires_at is not None and key.expires_at <= utcnow():
        raise unauthorized("provisioning key expired")
    return key


async def consume_slot(session: AsyncSession, key: ProvisioningKey) -> None:
    """Count one more device against the key, atomically: a single conditional UPDATE decides."""
    now = utcnow()
    result = await session.execute(
        update(ProvisioningKey)
        .where(
            ProvisioningKey.id == key.id,
            ProvisioningKey.revoked_at.is_(None),
            or_(ProvisioningKey.expires_at.is_(None), ProvisioningKey.expires_at > now),
            or_(ProvisioningKey.max_devices.is_(None),
                ProvisioningKey.devices_registered < ProvisioningKey.max_devices),
        )
        .values(devices_registered=ProvisioningKey.devices_registered + 1)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise ApiError(
            403, "provisioning_key_exhausted",
            f"provisioning key has reached its maxDevices limit ({key.max_devices})",
        )
