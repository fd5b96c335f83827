"""How a release's rollout is going: each selected device's deployed target against what it reports running."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, and_, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from iotistic.cloud.models import Device, DeviceCurrentState, DeviceTag, DeviceTarget, Release, TargetDeployment
from iotistic.cloud.services.devices import online_clause
from iotistic.cloud.services.provisioning import resolve_fleet

_Q = TypeVar("_Q", bound=Select[*tuple[Any, ...]])


class RolloutState(StrEnum):
    failed = "failed"  # the device reports an error (its last known report, even when offline)
    offline = "offline"  # not running the target yet, and not connected to pick it up
    updating = "updating"  # connected, not running the target yet
    other_release = "other_release"  # its deployed target is not this release (never deployed, or since replaced)
    converged = "converged"  # it reports running the deployed version of this release


@dataclass(frozen=True)
class DeviceRollout:
    uuid: str
    name: str
    online: bool
    target_version: int
    target_release_id: int | None
    applied_version: int | None
    status: str | None
    reported_at: dt.datetime | None
    state: RolloutState


@dataclass(frozen=True)
class Rollout:
    total: int
    summary: dict[RolloutState, int]
    items: list[DeviceRollout]


async def rollout(
    session: AsyncSession, release: Release, *, fleet: int | str | None, tag_key: str | None,
    tag_value: str | None, state: RolloutState | None, limit: int, offset: int, offline_after_seconds: int,
) -> Rollout:
    """The devices of a fleet and/or tag (the selection a deploy used), or without one every device whose deployed
    target is this release; counted per state, listed problems first. The view is read every few seconds for
    fleets of thousands: states are worked out and counted in SQL, and only the page is loaded."""
    # The release of the version a device runs is the one recorded when that version was deployed. (The
    # target's own release_id describes the staged document and is cleared when someone stages an edit.)
    deployed_release = TargetDeployment.release_id
    report = DeviceCurrentState.document
    applied = report["appliedVersion"].as_integer()
    status = report["status"].as_string()
    online = func.coalesce(online_clause(offline_after_seconds), False)
    state_of: ColumnElement[str] = case(
        (or_(deployed_release.is_(None), deployed_release != release.id), RolloutState.other_release.value),
        (status == "error", RolloutState.failed.value),
        (applied == DeviceTarget.version, RolloutState.converged.value),
        (online, RolloutState.updating.value),
        else_=RolloutState.offline.value,
    )
    # Problems first: the devices an operator has to look at come at the top of the list.
    rank = case({s.value: i for i, s in enumerate(RolloutState)}, value=state_of)

    def selected(query: _Q) -> _Q:
        query = (query.select_from(Device)
                 .join(DeviceTarget, DeviceTarget.device_id == Device.id)
                 .outerjoin(TargetDeployment, and_(TargetDeployment.device_id == Device.id,
                                                   TargetDeployment.version == DeviceTarget.version))
                 .outerjoin(DeviceCurrentState, DeviceCurrentState.device_id == Device.id))
        if fleet_id is not None:
            query = query.where(Device.fleet_id == fleet_id)
        if tag_key is not None:
            tagged = select(DeviceTag.device_id).where(DeviceTag.key == tag_key)
            if tag_value is not None:
                tagged = tagged.where(DeviceTag.value == tag_value)
            query = query.where(Device.id.in_(tagged))
        if fleet is None and tag_key is None:
            query = query.where(deployed_release == release.id)
        return query

    fleet_row = await resolve_fleet(session, fleet)
    fleet_id = fleet_row.id if fleet_row is not None else None
    counted = await session.execute(selected(select(state_of.label("state"), func.count())).group_by(state_of))
    summary = {s: 0 for s in RolloutState}
    for name, n in counted.all():
        summary[RolloutState(name)] = int(n)
    page = selected(select(Device.uuid, Device.name, online.label("online"), DeviceTarget.version, deployed_release,
                           applied.label("applied"), status.label("status"), DeviceCurrentState.reported_at,
                           state_of.label("state")))
    if state is not None:
        page = page.where(state_of == state.value)
    rows = await session.execute(page.order_by(rank, func.lower(Device.name), Device.uuid).limit(limit).offset(offset))
    items = [
        DeviceRollout(uuid=r.uuid, name=r.name, online=bool(r.online), target_version=r.version,
                      target_release_id=r.release_id, applied_version=r.applied, status=r.status,
                      reported_at=r.reported_at, state=RolloutState(r.state))
        for r in rows.all()
    ]
    total = summary[state] if state is not None else sum(summary.values())
    return Rollout(total=total, summary=summary, items=items)
