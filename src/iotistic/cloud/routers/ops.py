"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from iotistic.cloud.deps import BearerCreds, Ctx, Session, current_user
from iotistic.cloud.errors import ApiError, forbidden, unauthorized
from iotistic.cloud.models import Role
from iotistic.core.security import tokens_equal
from iotistic.core.tokens import decode_access_token

router = APIRouter(tags=["operations"])


@router.get("/health")
async def health() -> dict[str, str]:
    """Liveness: the process answers. Open to all."""
    return {"status": "ok"}


@router.get("/ready")
async def ready(session: Session) -> dict[str, str]:
    """Readiness: the database answers. Open to all (orchestrators probe it)."""
    try:
        await session.execute(text("SELECT 1"))
    except Exception as exc:  # any driver error means not ready
        raise ApiError(503, "not_ready", f"database unreachable: {type(exc).__name__}") from None
    return {"status": "ready"}


@router.get("/metrics", response_class=Response)
async def metrics(request: Request, creds: BearerCreds, ctx: Ctx, session: Session) -> Response:
    """Prometheus metrics. Bearer METRICS_TOKEN (for the scraper) or an admin's access token."""
    if creds is None:
        raise unauthorized()
    token = creds.credentials
    if not (ctx.settings.metrics_token and tokens_equal(token, ctx.settings.metrics_token)):
        if decode_access_token(ctx.jwt_secret, token) is None:
            raise unauthorized("metrics token or access token invalid")
        # The same checks as every route: a logged-out session or a demoted user is refused.
        principal = await current_user(request, creds, ctx, session)
        if not principal.role.at_least(Role.admin):
            raise forbidden("metrics need the admin role")
    return Response(generate_latest(request.app.state.registry), media_type=CONTENT_TYPE_LATEST)
