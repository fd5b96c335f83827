"""setup_tokens: the one-time link that creates the first owner

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import iotistic.core.db

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "setup_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", iotistic.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", iotistic.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("used_at", iotistic.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_setup_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_setup_tokens_token_hash")),
    )


def downgrade() -> None:
    op.drop_table("setup_tokens")
