"""twin: the digital twin's graph (nodes and typed edges)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 03:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import iotistic.core.db

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "twin_nodes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("global_id", sa.String(length=64), nullable=True),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("ifc_class", sa.String(length=64), nullable=True),
        sa.Column("properties", _JSON, nullable=False),
        sa.Column("digest", sa.String(length=32), nullable=True),
        sa.Column("device_id", sa.Integer(), nullable=True),
        sa.Column("source", sa.String(length=128), nullable=True),
        sa.Column("created_at", iotistic.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", iotistic.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "kind IN ('Project', 'Site', 'Building', 'Storey', 'Space', 'Zone', 'Element', 'Device')",
            name=op.f("ck_twin_nodes_kind"),
        ),
        sa.CheckConstraint("(kind = 'Device') = (device_id IS NOT NULL)", name=op.f("ck_twin_nodes_device")),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_twin_nodes_device_id_devices"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_twin_nodes")),
        sa.UniqueConstraint("device_id", name=op.f("uq_twin_nodes_device_id")),
        sa.UniqueConstraint("global_id", name=op.f("uq_twin_nodes_global_id")),
    )
    op.create_index("ix_twin_nodes_kind_name", "twin_nodes", ["kind", "name"], unique=False)
    op.create_index("ix_twin_nodes_source", "twin_nodes", ["source"], unique=False)
    op.create_table(
        "twin_edges",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("target_id", sa.Integer(), nullable=False),
        sa.Column("properties", _JSON, nullable=False),
        sa.Column("origin", sa.String(length=128), nullable=True),
        sa.Column("created_at", iotistic.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["source_id"], ["twin_nodes.id"], name=op.f("fk_twin_edges_source_id_twin_nodes"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["target_id"], ["twin_nodes.id"], name=op.f("fk_twin_edges_target_id_twin_nodes"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_twin_edges")),
        sa.UniqueConstraint("source_id", "kind", "target_id", name="uq_twin_edges_source_kind_target"),
    )
    op.create_index("ix_twin_edges_target_kind_source", "twin_edges", ["target_id", "kind", "source_id"],
                    unique=False)
    op.create_index("ix_twin_edges_origin", "twin_edges", ["origin"], unique=False)


def downgrade() -> None:
    op.drop_table("twin_edges")  # its indexes go with it
    op.drop_table("twin_nodes")
