"""How a release's rollout is going: each selected device's deployed target against what it reports running."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import Select, and_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import load_only, raiseload

from iotistic.cloud.errors import bad_request
from iotistic.cloud.models import Device, DeviceCurrentState, DeviceTag, DeviceTarget, Release, TargetDeployment
from iotistic.cloud.services.devices import is_online
from iotistic.cloud.services.provisioning import resolve_fleet

# A rollout view is read every few seconds: it must stay one query even for the largest fleets.
MAX_SELECTION = 20_000


class RolloutState(StrEnum):
    failed = "failed"  # the device reports an error (its last known report, even when offline)
    offline = "offline"  # not running the target yet, and not connected to pick it up
    updating = "updating"  # connected, not running the target yet
    other_release = "other_release"  # its deployed target is not this release (never deployed, or since replaced)
    converged = "converged"  # it reports running the deployed version of this release


# Problems first: the devices an operator has to look at come at the top of the list.
_ORDER = {s: i for i, s in enumerate(RolloutState)}


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


def _state(release_id: int, target_release: int | None, target_version: int, applied: int | None,
           status: str | None, online: bool) -> RolloutState:
    if target_release != release_id:
        return RolloutState.other_release
    if status == "error":
        return RolloutState.failed
    if applied == target_version:
        return RolloutState.converged
    return RolloutState.updating if online else RolloutState.offline


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


async def rollout(
    session: AsyncSession, release: Release, *, fleet: int | str | None, tag_key: str | None,
    tag_value: str | None, state: RolloutState | None, limit: int, offset: int, offline_after_seconds: int,
) -> Rollout:
    """The devices of a fleet and/or tag (the selection a deploy used), or without one every device whose deployed
    target is this release; counted per state, listed problems first."""
    # The release of the version a device runs is the one recorded when that version was deployed. (The
    # target's own release_id describes the staged document and is cleared when someone stages an edit.)
    query: Select[Any] = (
        select(Device, DeviceTarget.version, TargetDeployment.release_id, DeviceCurrentState.document,
               DeviceCurrentState.reported_at)
        .join(DeviceTarget, DeviceTarget.device_id == Device.id)
        .outerjoin(TargetDeployment, and_(TargetDeployment.device_id == Device.id,
                                          TargetDeployment.version == DeviceTarget.version))
        .outerjoin(DeviceCurrentState, DeviceCurrentState.device_id == Device.id)
        .options(load_only(Device.uuid, Device.name, Device.last_seen_at, Device.connection_state,
                           Device.connection_changed_at), raiseload(Device.fleet), raiseload(Device.tags))
    )
    if fleet is not None:
        fleet_row = await resolve_fleet(session, fleet)
        assert fleet_row is not None
        query = query.where(Device.fleet_id == fleet_row.id)
    if tag_key is not None:
        tagged = select(DeviceTag.device_id).where(DeviceTag.key == tag_key)
        if tag_value is not None:
            tagged = tagged.where(DeviceTag.value == tag_value)
        query = query.where(Device.id.in_(tagged))
    if fleet is None and tag_key is None:
        query = query.where(TargetDeployment.release_id == release.id)
    rows = (await session.execute(query.limit(MAX_SELECTION + 1))).all()
    if len(rows) > MAX_SELECTION:
        raise bad_request(f"the selection has more than {MAX_SELECTION} devices; narrow it with a fleet and a tag")

    devices: list[DeviceRollout] = []
    for device, version, target_release, document, reported_at in rows:
        report = document or {}
        applied = _int_or_none(report.get("appliedVersion"))
        status = report.get("status") if isinstance(report.get("status"), str) else None
        online = is_online(device, offline_after_seconds)
        devices.append(DeviceRollout(
            uuid=device.uuid, name=device.name, online=online, target_version=version,
            target_release_id=target_release, applied_version=applied, status=status, reported_at=reported_at,
            state=_state(release.id, target_release, version, applied, status, online),
        ))
    summary = {s: 0 for s in RolloutState}
    for d in devices:
        summary[d.state] += 1
    selected = [d for d in devices if state is None or d.state == state]
    selected.sort(key=lambda d: (_ORDER[d.state], d.name.lower(), d.uuid))
    return Rollout(total=len(selected), summary=summary, items=selected[offset:offset + limit])
