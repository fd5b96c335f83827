from __future__ import annotations

from fastapi import APIRouter, Request

from iotistic.billing.deps import Ctx, CurrentCaller, Session, visible_customer
from iotistic.billing.errors import ApiError, conflict, not_found
from iotistic.billing.models import Deployment
from iotistic.billing.routers.auth import session_token
from iotistic.billing.schemas import CustomerOut, DeploymentOut, LicenseOut, SignupIn, SignupOut
from iotistic.billing.services import customers, licences
from iotistic.billing.views import customer_out, deployment_out, license_out

router = APIRouter(prefix="/api/customers", tags=["customers"])


@router.post("/signup", response_model=SignupOut, status_code=201)
async def signup(body: SignupIn, request: Request, ctx: Ctx, session: Session) -> SignupOut:
    """Public: a new customer with a 14-day trial, its licence and a queued deployment (all or nothing)."""
    client = request.client.host if request.client else "unknown"
    wait = ctx.signup_guard.retry_after(client)
    if wait is not None:
        raise ApiError(429, "too_many_requests", f"too many signups from this address; try again in {int(wait)} s",
                       headers={"Retry-After": str(int(wait))})
    ctx.signup_guard.record(client)
    try:
        async with session.begin():
            customer = await customers.signup(session, email=str(body.email), password=body.password,
                                              company=body.company, plan=body.plan)
    except customers.DuplicateEmail:
        raise conflict("a customer with this email already exists") from None
    found = await customers.get(session, customer.id)
    licence = await licences.current(session, customer.id)
    deployment = await session.get(Deployment, customer.id)
    assert found is not None and licence is not None and deployment is not None  # committed just above
    return SignupOut(customer=customer_out(*found), license=license_out(licence, ctx.public_key_pem),
                     deployment=await deployment_out(session, deployment), session=session_token(ctx, customer.id))


@router.get("/{customer_id}", response_model=CustomerOut)
async def get_customer(customer_id: str, caller: CurrentCaller, session: Session) -> CustomerOut:
    found = await customers.get(session, visible_customer(caller, customer_id))
    if found is None:
        raise not_found("customer")
    return customer_out(*found)


@router.get("/{customer_id}/license", response_model=LicenseOut)
async def get_license(customer_id: str, caller: CurrentCaller, ctx: Ctx, session: Session) -> LicenseOut:
    """The licence in force: the JWT the instance runs with, and its claims."""
    licence = await licences.current(session, visible_customer(caller, customer_id))
    if licence is None:
        raise not_found("customer")
    return license_out(licence, ctx.public_key_pem)


@router.get("/{customer_id}/deployment", response_model=DeploymentOut)
async def get_deployment(customer_id: str, caller: CurrentCaller, session: Session) -> DeploymentOut:
    """The instance's state (what was last applied) and the newest deployment job."""
    deployment = await session.get(Deployment, visible_customer(caller, customer_id))
    if deployment is None:
        raise not_found("customer")
    return await deployment_out(session, deployment)
