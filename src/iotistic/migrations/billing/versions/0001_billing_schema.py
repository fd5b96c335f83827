"""billing schema

Revision ID: 0001
Revises:
Create Date: 2026-11-27 05:12:35.420079
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import iotistic.core.db

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "customers",
        sa.Column("id", sa.String(length=13), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("company", sa.String(length=200), nullable=False),
        sa.Column("stripe_customer_id", sa.String(length=255), nullable=True),
        sa.Column("created_at", iotistic.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customers")),
        sa.UniqueConstraint("email", name=op.f("uq_customers_email")),
        sa.UniqueConstraint("stripe_customer_id", name=op.f("uq_customers_stripe_customer_id")),
    )
    op.create_table(
        "stripe_events",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("type", sa.String(length=100), nullable=False),
        sa.Column("created", iotistic.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("received_at", iotistic.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stripe_events")),
    )
    op.create_table(
        "deployment_jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.String(length=13), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("run_after", iotistic.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", iotistic.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", iotistic.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('apply', 'remove')", name=op.f("ck_deployment_jobs_kind")),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'succeeded', 'failed', 'superseded')",
            name=op.f("ck_deployment_jobs_status"),
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_deployment_jobs_customer_id_customers"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deployment_jobs")),
    )
    with op.batch_alter_table("deployment_jobs", schema=None) as batch_op:
        batch_op.create_index("ix_deployment_jobs_customer_id_id", ["customer_id", "id"], unique=False)
        batch_op.create_index("ix_deployment_jobs_status_run_after", ["status", "run_after"], unique=False)
        batch_op.create_index(
            "uq_deployment_jobs_queued_customer",
            ["customer_id"],
            unique=True,
            postgresql_where=sa.text("status = 'queued'"),
            sqlite_where=sa.text("status = 'queued'"),
        )

    op.create_table(
        "deployments",
        sa.Column("customer_id", sa.String(length=13), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("namespace", sa.String(length=63), nullable=False),
        sa.Column("values_digest", sa.String(length=64), nullable=True),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("updated_at", iotistic.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'deploying', 'deployed', 'failed', 'removing', 'removed')",
            name=op.f("ck_deployments_status"),
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_deployments_customer_id_customers"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_deployments")),
    )
    op.create_table(
        "licenses",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.String(length=13), nullable=False),
        sa.Column("token", sa.Text(), nullable=False),
        sa.Column("plan", sa.String(length=32), nullable=False),
        sa.Column("subscription_status", sa.String(length=16), nullable=False),
        sa.Column("issued_at", iotistic.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", iotistic.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_licenses_customer_id_customers"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_licenses")),
    )
    with op.batch_alter_table("licenses", schema=None) as batch_op:
        batch_op.create_index("ix_licenses_customer_id_id", ["customer_id", "id"], unique=False)

    op.create_table(
        "subscriptions",
        sa.Column("customer_id", sa.String(length=13), nullable=False),
        sa.Column("plan", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("trial_ends_at", iotistic.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("current_period_start", iotistic.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("current_period_end", iotistic.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("stripe_subscription_id", sa.String(length=255), nullable=True),
        sa.Column("cancel_effective_at", iotistic.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("stripe_state_at", iotistic.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("updated_at", iotistic.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('trialing', 'active', 'past_due', 'unpaid', 'canceled')", name=op.f("ck_subscriptions_status")
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_subscriptions_customer_id_customers"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_subscriptions")),
        sa.UniqueConstraint("stripe_subscription_id", name=op.f("uq_subscriptions_stripe_subscription_id")),
    )
    op.create_table(
        "usage_records",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.String(length=13), nullable=False),
        sa.Column("period_start", iotistic.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("period_end", iotistic.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("metric", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("limit", sa.Float(), nullable=True),
        sa.Column("over_limit", sa.Boolean(), nullable=False),
        sa.Column("recorded_at", iotistic.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_usage_records_customer_id_customers"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_records")),
        sa.UniqueConstraint("customer_id", "period_start", "metric", name=op.f("uq_usage_records_customer_id")),
    )


def downgrade() -> None:
    op.drop_table("usage_records")
    op.drop_table("subscriptions")
    with op.batch_alter_table("licenses", schema=None) as batch_op:
        batch_op.drop_index("ix_licenses_customer_id_id")

    op.drop_table("licenses")
    op.drop_table("deployments")
    with op.batch_alter_table("deployment_jobs", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_deployment_jobs_queued_customer",
            postgresql_where=sa.text("status = 'queued'"),
            sqlite_where=sa.text("status = 'queued'"),
        )
        batch_op.drop_index("ix_deployment_jobs_status_run_after")
        batch_op.drop_index("ix_deployment_jobs_customer_id_id")

    op.drop_table("deployment_jobs")
    op.drop_table("stripe_events")
    op.drop_table("customers")
