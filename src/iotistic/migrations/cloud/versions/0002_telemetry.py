"""telemetry: readings (partitioned by day on PostgreSQL), latest values, device connection state

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 02:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import iotistic.core.db

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # On PostgreSQL this is only the parent: ingest creates a partition per day before writing into it.
    op.create_table(
        "telemetry",
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("metric", sa.String(length=128), nullable=False),
        sa.Column("ts", iotistic.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("device_id", "metric", "ts", name=op.f("pk_telemetry")),
        postgresql_partition_by="RANGE (ts)",
    )
    op.create_table(
        "telemetry_latest",
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("metric", sa.String(length=128), nullable=False),
        sa.Column("ts", iotistic.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("unit", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_telemetry_latest_device_id_devices"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("device_id", "metric", name=op.f("pk_telemetry_latest")),
    )
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("connection_state", sa.String(length=16), nullable=True))
        batch_op.add_column(
            sa.Column("connection_changed_at", iotistic.core.db.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.create_check_constraint(
            batch_op.f("ck_devices_connection_state"), "connection_state IN ('online','offline')"
        )


def downgrade() -> None:
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_devices_connection_state"), type_="check")
        batch_op.drop_column("connection_changed_at")
        batch_op.drop_column("connection_state")
    op.drop_table("telemetry_latest")
    op.drop_table("telemetry")  # on PostgreSQL this drops every partition with it
