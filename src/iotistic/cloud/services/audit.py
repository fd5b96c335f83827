"""The audit log of security-relevant actions (keys, users, deploys, deletions, licence)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from iotistic.cloud.models import AuditEvent


def record(
    session: AsyncSession,
    *,
    actor: str,
    action: str,
    target_type: str | None = None,
    target_id: str | int | None = None,
    details: dict[str, Any] | None = None,
    ip: str | None = None,
) -> None:
    """Add an audit event to the caller's transaction, so it is written exactly when the action is."""
    session.add(
        AuditEvent(
            actor=actor,
            action=action,
            target_type=target_type,
            target_id=None if target_id is None else str(target_id),
            details=details or {},
            ip=ip,
        )
    )


async def list_events(
    session: AsyncSession, *, action: str | None, actor: str | None, since: dt.datetime | None,
    until: dt.datetime | None = None, limit: int, offset: int,
) -> list[AuditEvent]:
    query = select(AuditEvent).order_by(AuditEvent.id.desc())
    if action:
        query = query.where(AuditEvent.action == action)
    if actor:
        query = query.where(AuditEvent.actor == actor)
    if since:
        query = query.where(AuditEvent.at >= since)
    if until:
        query = query.where(AuditEvent.at < until)
    return list((await session.scalars(query.limit(limit).offset(offset))).all())
