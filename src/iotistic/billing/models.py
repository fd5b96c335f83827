"""ORM models of the billing database (its own metadata and Alembic tree: `iotistic/migrations/billing`).

Passwords are Argon2id hashes (core.security). Licences are kept whole: they are signed statements the
customer may read anyway, and the newest row is the licence in force.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from sqlalchemy import Boolean, CheckConstraint, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from iotistic.core.db import UTCDateTime, new_metadata, utcnow


class Base(DeclarativeBase):
    metadata = new_metadata()


class SubscriptionStatus(StrEnum):
    trialing = "trialing"
    active = "active"
    past_due = "past_due"
    unpaid = "unpaid"
    canceled = "canceled"


class JobKind(StrEnum):
    apply = "apply"  # make the instance match the customer's current spec (install or upgrade)
    remove = "remove"  # uninstall the instance and delete its namespace


class JobStatus(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"  # gave up after max_attempts
    superseded = "superseded"  # a newer job for the same customer made this one pointless


class DeploymentStatus(StrEnum):
    pending = "pending"
    deploying = "deploying"
    deployed = "deployed"
    failed = "failed"
    removing = "removing"
    removed = "removed"


def _values(enum: type[StrEnum]) -> str:
    return ", ".join(f"'{member.value}'" for member in enum)


# `c` + 12 lower-case hex digits: a valid DNS label, so `namespace_for(id)` always works.
CUSTOMER_ID_LENGTH = 13


class Customer(Base):
    __tablename__ = "customers"

    id: Mapped[str] = mapped_column(String(CUSTOMER_ID_LENGTH), primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)  # stored lower-cased
    password_hash: Mapped[str] = mapped_column(String(255))
    company: Mapped[str] = mapped_column(String(200))
    stripe_customer_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Subscription(Base):
    __tablename__ = "subscriptions"
    __table_args__ = (CheckConstraint(f"status IN ({_values(SubscriptionStatus)})", name="status"),)

    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True)
    plan: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    trial_ends_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    current_period_start: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    current_period_end: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    stripe_subscription_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    # When the instance of a canceled subscription is removed (end of the grace period).
    cancel_effective_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    # `created` time of the newest Stripe event applied: an older event arriving later changes nothing.
    stripe_state_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class License(Base):
    __tablename__ = "licenses"
    __table_args__ = (Index("ix_licenses_customer_id_id", "customer_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    token: Mapped[str] = mapped_column(Text)
    plan: Mapped[str] = mapped_column(String(32))
    subscription_status: Mapped[str] = mapped_column(String(16))
    issued_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class StripeEvent(Base):
    """Every Stripe event handled, by its id: a redelivered event is recognised and changes nothing."""

    __tablename__ = "stripe_events"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(100))
    created: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    outcome: Mapped[str] = mapped_column(Text)


class DeploymentJob(Base):
    """One unit of work for the deployment worker. Jobs carry no spec: `apply` always applies the customer's
    current one, so running a job twice (a retry, a crashed worker's job taken over) is harmless."""

    __tablename__ = "deployment_jobs"
    __table_args__ = (
        CheckConstraint(f"kind IN ({_values(JobKind)})", name="kind"),
        CheckConstraint(f"status IN ({_values(JobStatus)})", name="status"),
        # At most one queued job per customer: enqueueing supersedes the older one in the same transaction.
        Index("uq_deployment_jobs_queued_customer", "customer_id", unique=True,
              postgresql_where=text("status = 'queued'"), sqlite_where=text("status = 'queued'")),
        # What the worker looks for: due queued jobs and running jobs whose lease ran out.
        Index("ix_deployment_jobs_status_run_after", "status", "run_after"),
        Index("ix_deployment_jobs_customer_id_id", "customer_id", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.queued.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    run_after: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # For a running job, also its lease: the worker renews it while the deployer works.
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Deployment(Base):
    """What the API shows about a customer's instance: the outcome of the newest finished job."""

    __tablename__ = "deployments"
    __table_args__ = (CheckConstraint(f"status IN ({_values(DeploymentStatus)})", name="status"),)

    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), default=DeploymentStatus.pending.value)
    namespace: Mapped[str] = mapped_column(String(63))
    values_digest: Mapped[str | None] = mapped_column(String(64))  # sha256 hex of the values last applied
    revision: Mapped[int] = mapped_column(Integer, default=0)  # +1 per successful apply
    last_error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class UsageRecord(Base):
    __tablename__ = "usage_records"
    __table_args__ = (UniqueConstraint("customer_id", "period_start", "metric"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    period_start: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    period_end: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    metric: Mapped[str] = mapped_column(String(64))
    value: Mapped[float] = mapped_column(Float)
    limit: Mapped[float | None] = mapped_column(Float)
    over_limit: Mapped[bool] = mapped_column(Boolean, default=False)
    recorded_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
