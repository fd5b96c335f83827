from __future__ import annotations

from fastapi import APIRouter

from iotistic.cloud.deps import Admin, RowId, Session
from iotistic.cloud.models import Role
from iotistic.cloud.schemas import UserCreate, UserOut, UserUpdate
from iotistic.cloud.services import audit, users

router = APIRouter(prefix="/api/v1/users", tags=["users"])


@router.get("", response_model=list[UserOut])
async def list_users(_: Admin, session: Session) -> list[UserOut]:
    return [UserOut.model_validate(u) for u in await users.list_users(session)]


@router.post("", response_model=UserOut, status_code=201)
async def create_user(body: UserCreate, principal: Admin, session: Session) -> UserOut:
    users.ensure_may_manage(principal.user, body.role)
    user = await users.create_user(session, email=body.email, password=body.password, role=body.role)
    audit.record(session, actor=principal.name, action="user.created", target_type="user", target_id=user.id,
                 details={"email": user.email, "role": user.role}, ip=principal.ip)
    await session.commit()
    return UserOut.model_validate(user)


@router.patch("/{user_id}", response_model=UserOut)
async def update_user(user_id: RowId, body: UserUpdate, principal: Admin, session: Session) -> UserOut:
    user = await users.update_user(session, principal.user, user_id, role=body.role, password=body.password,
                                   is_active=body.is_active)
    changed = body.model_dump(exclude_none=True, exclude={"password"})
    if body.password is not None:
        changed["password"] = "changed"
    audit.record(session, actor=principal.name, action="user.updated", target_type="user", target_id=user.id,
                 details={k: (v.value if isinstance(v, Role) else v) for k, v in changed.items()}, ip=principal.ip)
    await session.commit()
    return UserOut.model_validate(user)


@router.delete("/{user_id}", status_code=204)
async def delete_user(user_id: RowId, principal: Admin, session: Session) -> None:
    user = await users.delete_user(session, principal.user, user_id)
    audit.record(session, actor=principal.name, action="user.deleted", target_type="user", target_id=user_id,
                 details={"email": user.email}, ip=principal.ip)
    await session.commit()
