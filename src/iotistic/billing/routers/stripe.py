"""Stripe: Checkout for a logged-in customer, and the (public, signature-checked) webhook endpoint."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from pydantic import BaseModel

from iotistic.billing.context import BillingContext
from iotistic.billing.deps import Ctx, CurrentCaller
from iotistic.billing.errors import ApiError, bad_request, not_found
from iotistic.billing.schemas import PlanName, Strict
from iotistic.billing.services import checkout, stripe_webhooks
from iotistic.billing.stripe_gateway import (
    StripeGateway,
    StripeGatewayError,
    StripeUnavailable,
    WebhookSignatureError,
)

log = logging.getLogger(__name__)
router = APIRouter(tags=["stripe"])

# Stripe's events are a few kilobytes; anything far larger is not from Stripe.
MAX_WEBHOOK_BYTES = 512 * 1024


class CheckoutIn(Strict):
    plan: PlanName


class CheckoutOut(BaseModel):
    session_id: str
    url: str  # Stripe's hosted payment page; the plan changes when Stripe reports the payment (webhook)


class WebhookOut(BaseModel):
    received: bool = True
    event_id: str
    duplicate: bool
    outcome: str


def _gateway(ctx: BillingContext) -> StripeGateway:
    if ctx.stripe is None:
        raise ApiError(503, "unavailable", "payments are not configured (STRIPE_API_KEY is unset)")
    return ctx.stripe


def _upstream(exc: StripeGatewayError) -> ApiError:
    # Non-2xx so that Stripe redelivers a webhook later; the message carries no secrets (see stripe_gateway).
    log.warning("%s", exc)
    if isinstance(exc, StripeUnavailable):
        return ApiError(503, "unavailable", "the payment provider is unavailable; try again later")
    return ApiError(502, "bad_gateway", "the payment provider refused the request")


@router.post("/api/billing/checkout", response_model=CheckoutOut, status_code=201)
async def start_checkout(body: CheckoutIn, caller: CurrentCaller, ctx: Ctx) -> CheckoutOut:
    """A Stripe Checkout Session buying `plan` for the calling customer (purchase after the trial, or upgrade)."""
    if caller.customer_id is None:
        raise ApiError(403, "forbidden", "checkout is for a customer's own login, not the operator token")
    gateway = _gateway(ctx)
    try:
        session = await checkout.start_checkout(ctx.sessions, gateway, ctx.settings, caller.customer_id,
                                                body.plan)
    except checkout.CheckoutRefused as exc:
        raise ApiError(exc.status, "conflict" if exc.status == 409 else "unavailable", exc.message) from None
    except LookupError:
        raise not_found("customer") from None
    except StripeGatewayError as exc:
        raise _upstream(exc) from None
    return CheckoutOut(session_id=session.id, url=session.url)


@router.post("/api/webhooks/stripe", response_model=WebhookOut)
async def stripe_webhook(request: Request, ctx: Ctx) -> WebhookOut:
    """Public, authenticated by the Stripe-Signature header. Every verified event is answered 200 once recorded
    (also when it changes nothing, so Stripe stops redelivering it); 5xx only when Stripe itself could not be
    asked, so the redelivery tries again."""
    gateway = _gateway(ctx)
    payload = bytearray()
    async for chunk in request.stream():
        payload += chunk
        if len(payload) > MAX_WEBHOOK_BYTES:
            raise ApiError(413, "payload_too_large", f"webhook body over {MAX_WEBHOOK_BYTES} bytes")
    try:
        event = gateway.verify_event(bytes(payload), request.headers.get("stripe-signature"))
    except WebhookSignatureError as exc:
        raise bad_request(str(exc)) from None
    try:
        result = await stripe_webhooks.handle_event(ctx.sessions, gateway, ctx.settings, event)
    except ValueError as exc:
        raise bad_request(f"not a Stripe event: {exc}") from None
    except StripeGatewayError as exc:
        raise _upstream(exc) from None
    return WebhookOut(event_id=result.event_id, duplicate=result.duplicate, outcome=result.outcome)
