from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from iotistic.cloud.deps import Admin, Ctx, Operator, RowId, Session, Viewer
from iotistic.cloud.models import Fleet
from iotistic.cloud.routers.devices import parse_tag
from iotistic.cloud.schemas import (
    FleetCreate,
    FleetOut,
    FleetUpdate,
    ReleaseCreate,
    ReleaseDeploy,
    ReleaseDeployed,
    ReleaseOut,
    RolloutDeviceOut,
    RolloutOut,
)
from iotistic.cloud.services import audit, fleets, rollout, targets
from iotistic.cloud.services.rollout import RolloutState

router = APIRouter(tags=["fleets and releases"])


def fleet_out(fleet: Fleet, count: int) -> FleetOut:
    return FleetOut(id=fleet.id, name=fleet.name, description=fleet.description, device_count=count,
                    created_at=fleet.created_at)


@router.get("/api/v1/fleets", response_model=list[FleetOut])
async def list_fleets(_: Viewer, session: Session) -> list[FleetOut]:
    return [fleet_out(f, n) for f, n in await fleets.list_with_counts(session)]


@router.post("/api/v1/fleets", response_model=FleetOut, status_code=201)
async def create_fleet(body: FleetCreate, principal: Admin, session: Session) -> FleetOut:
    fleet = await fleets.create(session, body.name, body.description)
    audit.record(session, actor=principal.name, action="fleet.created", target_type="fleet", target_id=fleet.id,
                 ip=principal.ip)
    await session.commit()
    return fleet_out(fleet, 0)


@router.get("/api/v1/fleets/{fleet_id}", response_model=FleetOut)
async def get_fleet(fleet_id: RowId, _: Viewer, session: Session) -> FleetOut:
    fleet = await fleets.get(session, fleet_id)
    counts = dict((f.id, n) for f, n in await fleets.list_with_counts(session))
    return fleet_out(fleet, counts.get(fleet.id, 0))


@router.patch("/api/v1/fleets/{fleet_id}", response_model=FleetOut)
async def update_fleet(fleet_id: RowId, body: FleetUpdate, principal: Admin, session: Session) -> FleetOut:
    fleet = await fleets.get(session, fleet_id)
    if "description" in body.model_fields_set:
        fleet.description = body.description
    await session.commit()
    counts = dict((f.id, n) for f, n in await fleets.list_with_counts(session))
    return fleet_out(fleet, counts.get(fleet.id, 0))


@router.delete("/api/v1/fleets/{fleet_id}", status_code=204)
async def delete_fleet(fleet_id: RowId, principal: Admin, session: Session) -> None:
    fleet = await fleets.get(session, fleet_id)
    await fleets.delete(session, fleet)
    audit.record(session, actor=principal.name, action="fleet.deleted", target_type="fleet", target_id=fleet_id,
                 ip=principal.ip)
    await session.commit()


@router.get("/api/v1/releases", response_model=list[ReleaseOut])
async def list_releases(
    _: Viewer, session: Session,
    fleet: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> list[ReleaseOut]:
    return [ReleaseOut.model_validate(r) for r in await targets.list_releases(session, fleet, limit, offset)]


@router.post("/api/v1/releases", response_model=ReleaseOut, status_code=201)
async def create_release(body: ReleaseCreate, principal: Operator, session: Session) -> ReleaseOut:
    release = await targets.create_release(session, name=body.name, fleet=body.fleet, document=body.target,
                                           notes=body.notes, actor=principal.name)
    audit.record(session, actor=principal.name, action="release.created", target_type="release",
                 target_id=release.id, ip=principal.ip)
    await session.commit()
    return ReleaseOut.model_validate(release)


@router.get("/api/v1/releases/{release_id}", response_model=ReleaseOut)
async def get_release(release_id: RowId, _: Viewer, session: Session) -> ReleaseOut:
    return ReleaseOut.model_validate(await targets.get_release(session, release_id))


@router.post("/api/v1/releases/{release_id}/deploy", response_model=ReleaseDeployed)
async def deploy_release(release_id: RowId, body: ReleaseDeploy, principal: Operator,
                         session: Session) -> ReleaseDeployed:
    """Deploy a release to every device of a fleet, every device with a tag, or a list: one call, one
    transaction."""
    release = await targets.get_release(session, release_id)
    tag_key, tag_value = parse_tag(body.tag) if body.tag else (None, None)
    uuids = await targets.deploy_release(session, release, fleet=body.fleet, tag_key=tag_key, tag_value=tag_value,
                                         device_uuids=body.devices, actor=principal.name)
    audit.record(session, actor=principal.name, action="release.deployed", target_type="release",
                 target_id=release.id, details={"devices": len(uuids), "fleet": body.fleet, "tag": body.tag},
                 ip=principal.ip)
    await session.commit()
    return ReleaseDeployed(release_id=release.id, devices=uuids, count=len(uuids))


@router.get("/api/v1/releases/{release_id}/rollout", response_model=RolloutOut)
async def release_rollout(
    release_id: RowId, _: Viewer, ctx: Ctx, session: Session,
    fleet: Annotated[str | None, Query(max_length=64, description="fleet id or name")] = None,
    tag: Annotated[str | None, Query(max_length=321, description="key or key:value")] = None,
    state: RolloutState | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> RolloutOut:
    """Watch devices converge: for the devices of a fleet and/or tag (without either, every device whose deployed
    target is this release), the deployed version against the version each reports running. States: `converged`,
    `updating`, `offline` (not converged and not connected), `failed` (reports an error), `other_release`."""
    release = await targets.get_release(session, release_id)
    tag_key, tag_value = parse_tag(tag) if tag else (None, None)
    result = await rollout.rollout(session, release, fleet=fleet, tag_key=tag_key, tag_value=tag_value, state=state,
                                   limit=limit, offset=offset,
                                   offline_after_seconds=ctx.settings.device_offline_after_seconds)
    return RolloutOut(
        release_id=release.id, summary=result.summary, total=result.total, limit=limit, offset=offset,
        items=[RolloutDeviceOut(uuid=d.uuid, name=d.name, online=d.online, target_version=d.target_version,
                                target_release_id=d.target_release_id, applied_version=d.applied_version,
                                status=d.status, reported_at=d.reported_at, state=d.state) for d in result.items],
    )
