from __future__ import annotations

from fastapi import APIRouter

from iotistic.cloud.deps import Admin, Session
from iotistic.cloud.schemas import ProvisioningKeyCreate, ProvisioningKeyCreated, ProvisioningKeyOut
from iotistic.cloud.services import audit, provisioning

router = APIRouter(prefix="/api/v1/provisioning-keys", tags=["provisioning keys"])


@router.post("", response_model=ProvisioningKeyCreated, status_code=201)
async def create_key(body: ProvisioningKeyCreate, principal: Admin, session: Session) -> ProvisioningKeyCreated:
    key, secret = await provisioning.create_key(
        session, fleet=body.fleet, max_devices=body.max_devices, expires_at=body.expires_at,
        description=body.description, created_by=principal.name,
    )
    audit.record(session, actor=principal.name, action="provisioning_key.created", target_type="provisioning_key",
                 target_id=key.id, details={"maxDevices": key.max_devices, "fleetId": key.fleet_id},
                 ip=principal.ip)
    await session.commit()
    return ProvisioningKeyCreated.model_validate({**ProvisioningKeyOut.model_validate(key).model_dump(),
                                                  "key": secret})


@router.get("", response_model=list[ProvisioningKeyOut])
async def list_keys(_: Admin, session: Session, include_revoked: bool = False) -> list[ProvisioningKeyOut]:
    return [ProvisioningKeyOut.model_validate(k) for k in await provisioning.list_keys(session, include_revoked)]


@router.delete("/{key_id}", status_code=204)
async def revoke_key(key_id: str, principal: Admin, session: Session) -> None:
    await provisioning.revoke_key(session, key_id)
    audit.record(session, actor=principal.name, action="provisioning_key.revoked", target_type="provisioning_key",
                 target_id=key_id, ip=principal.ip)
    await session.commit()
