from __future__ import annotations

from fastapi import APIRouter, Request

from iotistic.cloud.deps import Ctx, CurrentUser, Session, client_ip
from iotistic.cloud.schemas import LoginRequest, RefreshRequest, TokenResponse, UserOut
from iotistic.cloud.services import users

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])


@router.post("/login", response_model=TokenResponse)
async def login(body: LoginRequest, request: Request, ctx: Ctx, session: Session) -> TokenResponse:
    pair = await users.login(session, ctx.settings, ctx.jwt_secret, email=body.email, password=body.password,
                             ip=client_ip(request) or "unknown")
    return TokenResponse(access_token=pair.access_token, refresh_token=pair.refresh_token,
                         expires_in=pair.expires_in)


@router.post("/refresh", response_model=TokenResponse)
async def refresh(body: RefreshRequest, ctx: Ctx, session: Session) -> TokenResponse:
    pair = await users.refresh(session, ctx.settings, ctx.jwt_secret, body.refresh_token)
    return TokenResponse(access_token=pair.access_token, refresh_token=pair.refresh_token,
                         expires_in=pair.expires_in)


@router.post("/logout", status_code=204)
async def logout(principal: CurrentUser, session: Session) -> None:
    await users.logout(session, principal.user, principal.session_id)


@router.get("/me", response_model=UserOut)
async def me(principal: CurrentUser) -> UserOut:
    return UserOut.model_validate(principal.user)
