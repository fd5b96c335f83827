"""FastAPI dependencies: database session, the calling user or device, role checks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Header, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from iotistic.cloud.context import CloudContext
from iotistic.cloud.errors import ApiError, forbidden, unauthorized
from iotistic.cloud.models import MAX_ID, Device, DeviceStatus, Role, User, UserSession
from iotistic.core.db import utcnow
from iotistic.core.security import hash_token
from iotistic.core.tokens import decode_access_token

_bearer = HTTPBearer(auto_error=False, description="User access token, or a device API key on device routes")


def get_context(request: Request) -> CloudContext:
    ctx: CloudContext = request.app.state.ctx
    return ctx


Ctx = Annotated[CloudContext, Depends(get_context)]


async def get_session(ctx: Ctx) -> AsyncIterator[AsyncSession]:
    """A session per request. Write paths commit explicitly; anything uncommitted is rolled back."""
    async with ctx.sessions() as session:
        yield session


Session = Annotated[AsyncSession, Depends(get_session)]
# A row id in a path: out-of-range values are a 422, not a database driver error.
RowId = Annotated[int, Path(ge=1, le=MAX_ID)]
BearerCreds = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


@dataclass(frozen=True)
class Principal:
    user: User
    session_id: str
    ip: str | None

    @property
    def role(self) -> Role:
        return Role(self.user.role)

    @property
    def name(self) -> str:
        return self.user.email


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


async def authenticate(ctx: CloudContext, session: AsyncSession, token: str, ip: str | None) -> Principal:
    """The user behind an access token, or 401. Shared by HTTP routes and the WebSocket's auth message."""
    claims = decode_access_token(ctx.jwt_secret, token)
    if claims is None:
        raise unauthorized("access token invalid or expired")
    return await load_principal(session, claims.user_id, claims.session_id, ip)


async def load_principal(session: AsyncSession, user_id: int, session_id: str, ip: str | None) -> Principal:
    """The user of a login session that is still valid (also used to re-check long-lived WebSockets), or 401."""
    row = (
        await session.execute(
            select(User, UserSession)
            .join(UserSession, UserSession.user_id == User.id)
            .where(User.id == user_id, UserSession.id == session_id)
        )
    ).first()
    if row is None:
        raise unauthorized("session not found")
    user, user_session = row
    if not user.is_active:
        raise unauthorized("user disabled")
    if user_session.revoked_at is not None or user_session.expires_at <= utcnow():
        raise unauthorized("session ended")
    return Principal(user=user, session_id=user_session.id, ip=ip)


async def current_user(request: Request, creds: BearerCreds, ctx: Ctx, session: Session) -> Principal:
    if creds is None or creds.scheme.lower() != "bearer":
        raise unauthorized()
    return await authenticate(ctx, session, creds.credentials, client_ip(request))


CurrentUser = Annotated[Principal, Depends(current_user)]


def require(role: Role) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """Dependency factory: the caller must hold `role` or a higher one."""

    async def _check(principal: CurrentUser) -> Principal:
        if not principal.role.at_least(role):
            raise forbidden(f"this action needs the {role.value} role or higher (you are {principal.role.value})")
        return principal

    return _check


def require_feature(feature: str, label: str) -> Callable[..., Coroutine[Any, Any, None]]:
    """Dependency factory: the licence must include `feature` (402 otherwise, like the device limit). It runs
    after authentication, so callers who are not logged in learn nothing about the plan."""

    async def _check(_principal: CurrentUser, ctx: Ctx, session: Session) -> None:
        state = await ctx.licenses.current(session)
        if not state.feature_enabled(feature):
            raise ApiError(402, "feature_not_licensed",
                           f"{label} is not included in the {state.plan} plan ({state.mode} mode)")

    return _check


Viewer = Annotated[Principal, Depends(require(Role.viewer))]
Operator = Annotated[Principal, Depends(require(Role.operator))]
Admin = Annotated[Principal, Depends(require(Role.admin))]
Owner = Annotated[Principal, Depends(require(Role.owner))]


def device_key_from(creds: HTTPAuthorizationCredentials | None, header_key: str | None) -> str | None:
    if header_key:
        return header_key
    if creds is not None and creds.scheme.lower() == "bearer":
        return creds.credentials
    return None


async def current_device(
    creds: BearerCreds,
    session: Session,
    x_device_api_key: Annotated[str | None, Header(alias="X-Device-API-Key")] = None,
) -> Device:
    key = device_key_from(creds, x_device_api_key)
    if not key:
        raise unauthorized("device API key required (X-Device-API-Key or Bearer)")
    device = await session.scalar(select(Device).where(Device.api_key_hash == hash_token(key)))
    if device is None or device.status == DeviceStatus.disabled:
        raise unauthorized("device API key invalid")
    return device


CurrentDevice = Annotated[Device, Depends(current_device)]


def ensure_same_device(device: Device, uuid: str) -> None:
    """A device can read and report only itself."""
    if device.uuid != uuid:
        raise forbidden("a device may only access its own resources")
