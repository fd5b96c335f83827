"""First run: create the first owner with the one-time setup link (public routes; see services/setup.py)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from iotistic.cloud.deps import Ctx, Session, client_ip
from iotistic.cloud.schemas import SetupRequest, SetupStatus, TokenResponse
from iotistic.cloud.services import setup

router = APIRouter(prefix="/api/v1/setup", tags=["auth"])


@router.get("", response_model=SetupStatus)
async def setup_status(session: Session, response: Response) -> SetupStatus:
    """Whether the instance still needs its first owner. Public: the dashboard asks before anyone logs in."""
    response.headers["Cache-Control"] = "no-store"
    return SetupStatus(needed=await setup.setup_needed(session))


@router.post("", response_model=TokenResponse, status_code=201,
             responses={410: {"description": "the link was used or expired, or a user exists already"},
                        429: {"description": "too many wrong links from this address"}})
async def complete_setup(body: SetupRequest, request: Request, ctx: Ctx, session: Session) -> TokenResponse:
    """Create the first owner with the setup link's token and log them in. 403 for a wrong token; 410 once
    the token is used or expired, or when a user exists already."""
    _user, pair = await setup.complete_setup(session, ctx.settings, ctx.jwt_secret, token=body.token,
                                             email=str(body.email), password=body.password,
                                             ip=client_ip(request) or "unknown")
    return TokenResponse(access_token=pair.access_token, refresh_token=pair.refresh_token,
                         expires_in=pair.expires_in)
