"""Every call billing makes to Stripe, through the official `stripe` library.

`STRIPE_API_BASE` points the library elsewhere (the tests' local fake Stripe); in production it is unset.
Errors come out as `StripeUnavailable` (Stripe could not be reached or failed: worth retrying later) or
`StripeRejected` (Stripe refused the request: retrying will not help); neither carries the API key.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import stripe

log = logging.getLogger(__name__)

# Seconds per HTTP request to Stripe; a webhook or checkout request waits for it, so keep it short.
_TIMEOUT = 20.0
_NETWORK_RETRIES = 2


class StripeGatewayError(Exception):
    """A Stripe call failed; the message is safe to show (no keys, no payloads)."""


class StripeUnavailable(StripeGatewayError):
    pass


class StripeRejected(StripeGatewayError):
    pass


class WebhookSignatureError(Exception):
    """The webhook's Stripe-Signature is missing, wrong or too old."""


@dataclass(frozen=True)
class CheckoutSession:
    id: str
    url: str


def _error(action: str, exc: stripe.StripeError) -> StripeGatewayError:
    # user_message is Stripe's text for end users; the class name tells the operator what kind of failure.
    detail = exc.user_message or type(exc).__name__
    if isinstance(exc, stripe.APIConnectionError | stripe.RateLimitError | stripe.APIError):
        return StripeUnavailable(f"Stripe unavailable while trying to {action}: {detail}")
    return StripeRejected(f"Stripe refused to {action}: {detail}")


class StripeGateway:
    """One per process. Only the async methods of the library are used (its httpx client)."""

    def __init__(self, api_key: str, webhook_secret: str | None, *, api_base: str | None = None) -> None:
        self._webhook_secret = webhook_secret
        self._http = stripe.HTTPXClient(timeout=_TIMEOUT)
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base.rstrip("/")} if api_base else None,
            http_client=self._http,
            max_network_retries=_NETWORK_RETRIES,
        )

    async def aclose(self) -> None:
        await self._http.close_async()

    # -- webhooks --------------------------------------------------------------------------------------------

    def verify_event(self, payload: bytes, signature_header: str | None) -> dict[str, Any]:
        """The event of a webhook request, after checking its signature and timestamp (Stripe's 5-minute
        tolerance against replays of old captures)."""
        if not self._webhook_secret:
            raise WebhookSignatureError("webhooks are not configured (STRIPE_WEBHOOK_SECRET is unset)")
        if not signature_header:
            raise WebhookSignatureError("missing Stripe-Signature header")
        try:
            event = stripe.Webhook.construct_event(payload, signature_header, self._webhook_secret)
        except stripe.SignatureVerificationError as exc:
            raise WebhookSignatureError(f"invalid Stripe signature: {exc.user_message or exc}") from None
        except (ValueError, IndexError, UnicodeDecodeError) as exc:
            # Signed (or unparsable header) but not JSON, or a header like "t=abc": not something Stripe sent.
            raise WebhookSignatureError(f"malformed webhook: {type(exc).__name__}") from None
        data: dict[str, Any] = event.to_dict()
        return data

    # -- customers and checkout --------------------------------------------------------------------------------

    async def create_customer(self, *, customer_id: str, email: str, company: str) -> str:
        """A Stripe customer for one of ours; the idempotency key makes a retried call return the same one."""
        try:
            created = await self._client.v1.customers.create_async(
                {"email": email, "name": company, "metadata": {"customerId": customer_id}},
                {"idempotency_key": f"iotistic-customer-{customer_id}"},
            )
        except stripe.StripeError as exc:
            raise _error("create a customer", exc) from None
        return str(created.id)

    async def create_checkout_session(
        self, *, customer_id: str, stripe_customer_id: str, price_id: str, plan: str, success_url: str,
        cancel_url: str, replaces: str | None = None,
    ) -> CheckoutSession:
        """A hosted Checkout page selling `price_id` as a subscription. Our customer id travels as
        client_reference_id and in the subscription's metadata, so every later event can be mapped back."""
        subscription_metadata = {"customerId": customer_id, "plan": plan}
        if replaces:
            subscription_metadata["replaces"] = replaces
        try:
            session = await self._client.v1.checkout.sessions.create_async({
                "mode": "subscription",
                "customer": stripe_customer_id,
                "client_reference_id": customer_id,
                "line_items": [{"price": price_id, "quantity": 1}],
                "success_url": success_url,
                "cancel_url": cancel_url,
                "metadata": {"customerId": customer_id, "plan": plan},
                "subscription_data": {"metadata": subscription_metadata},
            })
        except stripe.StripeError as exc:
            raise _error("create a checkout session", exc) from None
        if not session.url:
            raise StripeRejected("Stripe returned a checkout session without a URL")
        return CheckoutSession(id=str(session.id), url=str(session.url))

    # -- subscriptions -----------------------------------------------------------------------------------------

    async def retrieve_subscription(self, subscription_id: str) -> dict[str, Any] | None:
        """The subscription as Stripe has it now, or None when Stripe does not know it."""
        try:
            sub = await self._client.v1.subscriptions.retrieve_async(subscription_id)
        except stripe.InvalidRequestError as exc:
            if exc.code == "resource_missing":
                return None
            raise _error("read a subscription", exc) from None
        except stripe.StripeError as exc:
            raise _error("read a subscription", exc) from None
        data: dict[str, Any] = sub.to_dict()
        return data

    async def cancel_subscription(self, subscription_id: str) -> None:
        """Cancel now, prorated; nothing to do when it is already cancelled or gone."""
        current = await self.retrieve_subscription(subscription_id)
        if current is None or current.get("status") in ("canceled", "incomplete_expired"):
            return
        try:
            await self._client.v1.subscriptions.cancel_async(subscription_id, {"prorate": True})
        except stripe.StripeError as exc:
            raise _error("cancel a subscription", exc) from None
        log.info("cancelled Stripe subscription %s", subscription_id)
