"""Starting a plan purchase or upgrade: a Stripe Checkout Session for the customer and the plan's price.

The plan changes only when Stripe says the customer paid (the webhook), never here. Our customer id travels
with the session (client_reference_id, metadata) and the Stripe customer is created once per customer and kept
(`customers.stripe_customer_id`), so every later event maps back to the customer.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from iotistic.billing.models import Customer, Subscription
from iotistic.billing.settings import BillingSettings
from iotistic.billing.stripe_gateway import CheckoutSession, StripeGateway
from iotistic.core.plans import get_plan


class CheckoutRefused(Exception):
    """The purchase cannot start; `status` is the HTTP status to answer with, the message says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def return_urls(settings: BillingSettings, customer_id: str) -> tuple[str, str]:
    """Where Stripe sends the customer back: configured, else the customer's own instance."""
    base = f"https://{customer_id}.{settings.ingress_domain}/"
    success = settings.stripe_checkout_success_url or base + "?checkout=success&session_id={CHECKOUT_SESSION_ID}"
    cancel = settings.stripe_checkout_cancel_url or base + "?checkout=canceled"
    return success.replace("{customerId}", customer_id), cancel.replace("{customerId}", customer_id)


async def start_checkout(sessions: async_sessionmaker[AsyncSession], gateway: StripeGateway,
                         settings: BillingSettings, customer_id: str, plan: str) -> CheckoutSession:
    plan = get_plan(plan).name  # ValueError for a plan not in the catalogue
    price = settings.stripe_price_for(plan)
    if not price:
        raise CheckoutRefused(503, f"plan {plan} is not on sale: STRIPE_PRICE_{plan.upper()} is not configured")

    # Read what we need and let go of the database before talking to Stripe.
    async with sessions() as session:
        customer = await session.get(Customer, customer_id)
        subscription = await session.get(Subscription, customer_id)
        if customer is None or subscription is None:
            raise LookupError(f"customer {customer_id} not found")
        email, company, stripe_customer = customer.email, customer.company, customer.stripe_customer_id
        paid = subscription.stripe_subscription_id is not None and subscription.status != "canceled"
        if paid and subscription.plan == plan:
            raise CheckoutRefused(409, f"already subscribed to the {plan} plan")
        replaces = subscription.stripe_subscription_id if paid else None

    if stripe_customer is None:
        # The idempotency key makes concurrent or retried calls return the one Stripe customer.
        stripe_customer = await gateway.create_customer(customer_id=customer_id, email=email, company=company)
        await _link_stripe_customer(sessions, customer_id, stripe_customer)

    success_url, cancel_url = return_urls(settings, customer_id)
    return await gateway.create_checkout_session(
        customer_id=customer_id, stripe_customer_id=stripe_customer, price_id=price, plan=plan,
        success_url=success_url, cancel_url=cancel_url, replaces=replaces,
    )


async def _link_stripe_customer(sessions: async_sessionmaker[AsyncSession], customer_id: str,
                                stripe_customer: str) -> None:
    async with sessions() as session:
        customer = await session.get(Customer, customer_id, with_for_update=True)
        if customer is None:
            raise LookupError(f"customer {customer_id} not found")
        if customer.stripe_customer_id is None:
            customer.stripe_customer_id = stripe_customer
            await session.commit()
        elif customer.stripe_customer_id != stripe_customer:
            # Linked meanwhile by a webhook (a checkout from another session); keep the link in place.
            raise CheckoutRefused(409, "the customer's payment account changed meanwhile; try again")
