"""Customers: signup (customer, trial subscription, first licence, first deployment job, all or nothing), login,
and the reads behind the API."""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from iotistic.billing import queue
from iotistic.billing.models import Customer, Deployment, JobKind, Subscription, SubscriptionStatus
from iotistic.billing.services import licences
from iotistic.core.db import utcnow
from iotistic.core.plans import PLANS, TRIAL_DAYS
from iotistic.core.security import burn_password_check, hash_password, verify_password


class DuplicateEmail(Exception):
    pass


def new_customer_id() -> str:
    """`c` + 12 lower-case hex digits (48 random bits): a DNS label, so it can name the customer's namespace."""
    return "c" + secrets.token_hex(6)


def normalise_email(email: str) -> str:
    return email.strip().lower()


async def signup(session: AsyncSession, *, email: str, password: str, company: str, plan: str,
                 now: dt.datetime | None = None) -> Customer:
    """Create the customer with a 14-day trial, its first licence and a queued deployment, in the caller's
    transaction (flushed, not committed): the caller's rollback undoes all of it."""
    if plan not in PLANS:
        raise ValueError(f"unknown plan {plan!r}; plans are {', '.join(PLANS)}")
    email = normalise_email(email)
    # Hash before the first query: on SQLite that query starts the write transaction, which should not wait on
    # Argon2.
    password_hash = await asyncio.to_thread(hash_password, password)
    if await session.scalar(select(Customer.id).where(Customer.email == email)) is not None:
        raise DuplicateEmail(email)
    now = now or utcnow()
    customer = Customer(id=new_customer_id(), email=email, password_hash=password_hash, company=company,
                        created_at=now)
    session.add(customer)
    try:
        await session.flush()
    except IntegrityError:  # the same email signing up twice at once
        raise DuplicateEmail(email) from None
    session.add(Subscription(customer_id=customer.id, plan=plan, status=SubscriptionStatus.trialing,
                             trial_ends_at=now + dt.timedelta(days=TRIAL_DAYS), updated_at=now))
    await session.flush()
    await licences.issue(session, customer, now=now)
    await queue.enqueue(session, customer.id, JobKind.apply)
    return customer


async def authenticate(session: AsyncSession, email: str, password: str) -> Customer | None:
    customer = await session.scalar(select(Customer).where(Customer.email == normalise_email(email)))
    if customer is None:
        # Take as long as a real check, so response times do not tell which emails have accounts.
        await asyncio.to_thread(burn_password_check, password)
        return None
    if not await asyncio.to_thread(verify_password, customer.password_hash, password):
        return None
    return customer


async def get(session: AsyncSession, customer_id: str) -> tuple[Customer, Subscription] | None:
    row = (await session.execute(
        select(Customer, Subscription).join(Subscription, Subscription.customer_id == Customer.id)
        .where(Customer.id == customer_id)
    )).first()
    return None if row is None else (row[0], row[1])


async def page(session: AsyncSession, *, limit: int, offset: int
               ) -> tuple[list[tuple[Customer, Subscription, Deployment | None]], int]:
    total = int(await session.scalar(select(func.count()).select_from(Customer)) or 0)
    rows = (await session.execute(
        select(Customer, Subscription, Deployment)
        .join(Subscription, Subscription.customer_id == Customer.id)
        .outerjoin(Deployment, Deployment.customer_id == Customer.id)
        .order_by(Customer.created_at, Customer.id).limit(limit).offset(offset)
    )).all()
    return [(r[0], r[1], r[2]) for r in rows], total
