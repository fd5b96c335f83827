from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query

from iotistic.cloud.deps import Admin, Session
from iotistic.cloud.routers.devices import _aware
from iotistic.cloud.schemas import AuditOut
from iotistic.cloud.services import audit

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])


@router.get("", response_model=list[AuditOut])
async def list_audit(
    _: Admin, session: Session,
    action: Annotated[str | None, Query(max_length=64)] = None,
    actor: Annotated[str | None, Query(max_length=254)] = None,
    since: dt.datetime | None = None,
    until: Annotated[dt.datetime | None, Query(description="events before this time")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> list[AuditOut]:
    rows = await audit.list_events(session, action=action, actor=actor, since=_aware(since),
                                   until=_aware(until), limit=limit, offset=offset)
    return [AuditOut.model_validate(r) for r in rows]
