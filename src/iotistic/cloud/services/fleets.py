"""Fleets: named groups of devices (the product's "applications")."""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from iotistic.cloud.errors import conflict, not_found
from iotistic.cloud.models import Device, Fleet, ProvisioningKey


async def create(session: AsyncSession, name: str, description: str | None) -> Fleet:
    if await session.scalar(select(Fleet.id).where(Fleet.name == name)) is not None:
        raise conflict(f"fleet {name!r} exists")
    fleet = Fleet(name=name, description=description)
    session.add(fleet)
    await session.flush()
    return fleet


async def get(session: AsyncSession, fleet_id: int) -> Fleet:
    fleet = await session.get(Fleet, fleet_id)
    if fleet is None:
        raise not_found("fleet")
    return fleet


async def list_with_counts(session: AsyncSession) -> list[tuple[Fleet, int]]:
    counts = (select(Device.fleet_id, func.count().label("n")).group_by(Device.fleet_id).subquery())
    rows = await session.execute(
        select(Fleet, func.coalesce(counts.c.n, 0)).outerjoin(counts, counts.c.fleet_id == Fleet.id)
        .order_by(Fleet.name)
    )
    return [(fleet, int(n)) for fleet, n in rows.all()]


async def delete(session: AsyncSession, fleet: Fleet) -> None:
    in_use = await session.scalar(select(func.count()).select_from(Device).where(Device.fleet_id == fleet.id))
    keys = await session.scalar(select(func.count()).select_from(ProvisioningKey)
                                .where(ProvisioningKey.fleet_id == fleet.id, ProvisioningKey.revoked_at.is_(None)))
    if in_use or keys:
        raise conflict(f"fleet {fleet.name!r} still has {in_use} devices and {keys} active provisioning keys")
    # Revoked keys may still name the fleet; they are history, not a reason to keep it.
    await session.execute(update(ProvisioningKey).where(ProvisioningKey.fleet_id == fleet.id).values(fleet_id=None))
    await session.delete(fleet)
