from __future__ import annotations

from fastapi import APIRouter

from iotistic.billing.deps import Ctx, Session
from iotistic.billing.errors import ApiError, unauthorized
from iotistic.billing.schemas import LoginIn, TokenOut
from iotistic.billing.services import customers
from iotistic.billing.tokens import create_customer_token

router = APIRouter(prefix="/api/auth", tags=["auth"])


def session_token(ctx: Ctx, customer_id: str) -> TokenOut:
    minutes = ctx.settings.access_token_minutes
    return TokenOut(access_token=create_customer_token(ctx.jwt_secret, customer_id, minutes=minutes),
                    expires_in=minutes * 60, customer_id=customer_id)


@router.post("/login", response_model=TokenOut)
async def login(body: LoginIn, ctx: Ctx, session: Session) -> TokenOut:
    """Public: a customer's email and password for a short-lived session token."""
    email = customers.normalise_email(str(body.email))
    wait = ctx.login_guard.retry_after(email)
    if wait is not None:
        raise ApiError(429, "too_many_requests", f"too many failed logins; try again in {int(wait)} s",
                       headers={"Retry-After": str(int(wait))})
    customer = await customers.authenticate(session, email, body.password)
    if customer is None:
        ctx.login_guard.record(email)
        raise unauthorized("email or password incorrect")
    ctx.login_guard.clear(email)
    return session_token(ctx, customer.id)
