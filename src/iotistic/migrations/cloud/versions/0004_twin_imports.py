"""twin_imports: IFC import jobs (status, progress, report)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 03:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import iotistic.core.db

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "twin_imports",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("source", sa.String(length=128), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("phase", sa.String(length=32), nullable=False),
        sa.Column("percent", sa.Integer(), nullable=False),
        sa.Column("report", _JSON, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(length=320), nullable=True),
        sa.Column("created_at", iotistic.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", iotistic.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", iotistic.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status IN ('queued', 'running', 'succeeded', 'failed')",
                           name=op.f("ck_twin_imports_status")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_twin_imports")),
    )
    op.create_index("ix_twin_imports_created_at", "twin_imports", ["created_at"], unique=False)
    op.create_index("ix_twin_imports_status", "twin_imports", ["status"], unique=False)


def downgrade() -> None:
    op.drop_table("twin_imports")
