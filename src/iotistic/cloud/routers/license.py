from __future__ import annotations

import datetime as dt

from fastapi import APIRouter
from sqlalchemy import func, select

from iotistic.cloud.deps import Ctx, Owner, Session, Viewer
from iotistic.cloud.errors import ApiError
from iotistic.cloud.models import Device
from iotistic.cloud.schemas import LicenseInstall, LicenseOut
from iotistic.cloud.services import audit
from iotistic.core.licensing import LicenseState

router = APIRouter(prefix="/api/v1/license", tags=["licence"])


async def license_out(state: LicenseState, session: Session) -> LicenseOut:
    devices = int(await session.scalar(select(func.count()).select_from(Device)) or 0)
    return LicenseOut(
        mode=state.mode, plan=state.plan, customer_id=state.customer_id, features=state.features,
        limits=state.limits, trial=state.trial, subscription=state.subscription,
        expires_at=dt.datetime.fromtimestamp(state.expires_at, dt.UTC) if state.expires_at else None,
        reason=state.reason, usage={"devices": devices, "maxDevices": state.max_devices},
    )


@router.get("", response_model=LicenseOut)
async def get_license(_: Viewer, ctx: Ctx, session: Session) -> LicenseOut:
    """The licence in force, what it allows, and current usage. Free mode says why."""
    return await license_out(await ctx.licenses.current(session), session)


@router.put("", response_model=LicenseOut)
async def install_license(body: LicenseInstall, principal: Owner, ctx: Ctx, session: Session) -> LicenseOut:
    """Install a new licence without a restart (owners only). A licence that does not verify is refused."""
    try:
        state = await ctx.licenses.install(session, body.token, principal.name)
    except ValueError as exc:
        raise ApiError(422, "invalid_license", str(exc)) from None
    audit.record(session, actor=principal.name, action="license.installed", target_type="license",
                 target_id=state.customer_id, details={"plan": state.plan}, ip=principal.ip)
    await session.commit()
    ctx.licenses.forget_cache()
    return await license_out(state, session)
