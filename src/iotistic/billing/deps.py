"""FastAPI dependencies of the billing API: the context, a session, and who is calling.

Two kinds of caller: a customer (Bearer session token from `POST /api/auth/login`), who may only see itself, and
an operator (Bearer BILLING_OPERATOR_TOKEN), for internal routes and for support reads of any customer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from iotistic.billing.context import BillingContext
from iotistic.billing.errors import ApiError, not_found, unauthorized
from iotistic.billing.tokens import decode_customer_token

_bearer = HTTPBearer(auto_error=False, description="Customer session token, or the operator token")


def get_context(request: Request) -> BillingContext:
    ctx: BillingContext = request.app.state.ctx
    return ctx


Ctx = Annotated[BillingContext, Depends(get_context)]


async def get_session(ctx: Ctx) -> AsyncIterator[AsyncSession]:
    """A session per request. Write paths commit explicitly; anything uncommitted is rolled back."""
    async with ctx.sessions() as session:
        yield session


Session = Annotated[AsyncSession, Depends(get_session)]
BearerCreds = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


@dataclass(frozen=True)
class Caller:
    customer_id: str | None  # None: the operator

    @property
    def is_operator(self) -> bool:
        return self.customer_id is None

    def may_see(self, customer_id: str) -> bool:
        return self.is_operator or self.customer_id == customer_id


async def current_caller(creds: BearerCreds, ctx: Ctx) -> Caller:
    if creds is None or creds.scheme.lower() != "bearer":
        raise unauthorized()
    if ctx.operator.matches(creds.credentials):
        return Caller(customer_id=None)
    customer_id = decode_customer_token(ctx.jwt_secret, creds.credentials)
    if customer_id is None:
        raise unauthorized("token invalid or expired")
    return Caller(customer_id=customer_id)


CurrentCaller = Annotated[Caller, Depends(current_caller)]


async def operator_only(caller: CurrentCaller) -> Caller:
    if not caller.is_operator:
        raise ApiError(403, "forbidden", "this route needs the operator token")
    return caller


Operator = Annotated[Caller, Depends(operator_only)]


def visible_customer(caller: Caller, customer_id: str) -> str:
    """The id, if the caller may see that customer. Another customer's id is a 404 exactly like an unknown one,
    so ids cannot be probed."""
    if not caller.may_see(customer_id):
        raise not_found("customer")
    return customer_id
