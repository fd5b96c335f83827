"""Internal routes: the operator token only."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from iotistic.billing import queue
from iotistic.billing.deps import Operator, Session
from iotistic.billing.errors import conflict, not_found
from iotistic.billing.models import Deployment, JobKind, SubscriptionStatus
from iotistic.billing.schemas import (
    CustomerPage,
    CustomerSummary,
    DeploymentOut,
    SubscriptionChangeIn,
    SubscriptionChangeOut,
    SubscriptionOut,
)
from iotistic.billing.services import customers, subscriptions
from iotistic.billing.views import deployment_out

router = APIRouter(prefix="/api/operator", tags=["operator"])


@router.get("/customers", response_model=CustomerPage)
async def list_customers(
    _: Operator, session: Session,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> CustomerPage:
    rows, total = await customers.page(session, limit=limit, offset=offset)
    return CustomerPage(total=total, items=[
        CustomerSummary(id=c.id, email=c.email, company=c.company, plan=s.plan, status=s.status,
                        deployment_status=d.status if d is not None else None, created_at=c.created_at)
        for c, s, d in rows
    ])


@router.post("/customers/{customer_id}/redeploy", response_model=DeploymentOut, status_code=202)
async def redeploy(customer_id: str, _: Operator, session: Session) -> DeploymentOut:
    """Queue an `apply` of the customer's current spec (e.g. after a chart upgrade, or a failed deployment)."""
    async with session.begin():
        found = await customers.get(session, customer_id)
        if found is None:
            raise not_found("customer")
        if found[1].status == SubscriptionStatus.canceled:
            # An apply would supersede the scheduled removal; reactivate the subscription instead.
            raise conflict("the subscription is canceled and its instance scheduled for removal")
        await queue.enqueue(session, customer_id, JobKind.apply)
    deployment = await session.get(Deployment, customer_id)
    assert deployment is not None  # enqueue creates it
    return await deployment_out(session, deployment)


@router.patch("/customers/{customer_id}/subscription", response_model=SubscriptionChangeOut)
async def change_subscription(customer_id: str, body: SubscriptionChangeIn, _: Operator,
                              session: Session) -> SubscriptionChangeOut:
    """Change a plan or status outside Stripe (e.g. a plan given by contract): new licence and redeploy."""
    async with session.begin():
        if await customers.get(session, customer_id) is None:
            raise not_found("customer")
        changed = await subscriptions.change(session, customer_id, plan=body.plan, status=body.status)
    found = await customers.get(session, customer_id)
    assert found is not None
    return SubscriptionChangeOut(changed=changed, subscription=SubscriptionOut.model_validate(found[1]))
