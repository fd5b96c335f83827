"""The twin graph's tables, on the cloud database's declarative `Base` (one database, one migration history).

Nodes and edges are two plain tables, so the recursive questions ("every device inside building X") are
recursive CTEs that run unchanged on SQLite and PostgreSQL; the indexes below are the ones those walks use.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from iotistic.cloud.models import Base
from iotistic.core.db import JSONType, UTCDateTime, utcnow
from iotistic.twin.graph import NodeType

_KINDS = ", ".join(f"'{k.value}'" for k in NodeType)


class TwinNode(Base):
    __tablename__ = "twin_nodes"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    # The IFC GlobalId: the key re-imports match on. NULL for Device nodes (they come from the registry).
    global_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(Text, default="")
    ifc_class: Mapped[str | None] = mapped_column(String(64))
    properties: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # Hash of kind, name, class and properties as last imported: a re-import compares this instead of
    # reading back and decoding every property set.
    digest: Mapped[str | None] = mapped_column(String(32))
    device_id: Mapped[int | None] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), unique=True)
    # Which import made the node (apply_snapshot's `source`); NULL for nodes made by users or by mapping.
    source: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (
        CheckConstraint(f"kind IN ({_KINDS})", name="kind"),
        CheckConstraint("(kind = 'Device') = (device_id IS NOT NULL)", name="device"),
        Index("ix_twin_nodes_kind_name", "kind", "name"),
        Index("ix_twin_nodes_source", "source"),
    )


class TwinEdge(Base):
    """A typed, directed edge. Directions: CONTAINS parent -> child, GROUPS zone -> member, LOCATED_IN and
    REFERENCES thing -> place, MONITORS watcher -> watched; user-defined kinds as the user means them."""

    __tablename__ = "twin_edges"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    source_id: Mapped[int] = mapped_column(ForeignKey("twin_nodes.id", ondelete="CASCADE"))
    target_id: Mapped[int] = mapped_column(ForeignKey("twin_nodes.id", ondelete="CASCADE"))
    properties: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # The import that made the edge (a re-import replaces exactly these); NULL for user-made edges and
    # device mappings, which imports leave alone.
    origin: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (
        # Leading with source_id, it also serves the downward walks (children of a node).
        UniqueConstraint("source_id", "kind", "target_id", name="uq_twin_edges_source_kind_target"),
        # The upward walks and LOCATED_IN lookups (what is in this space).
        Index("ix_twin_edges_target_kind_source", "target_id", "kind", "source_id"),
        Index("ix_twin_edges_origin", "origin"),
    )


class TwinImport(Base):
    """An IFC import job (`iotistic.twin.jobs`): kept so its status and report survive restarts."""

    __tablename__ = "twin_imports"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # random hex, the job id in the API
    source: Mapped[str] = mapped_column(String(128))  # the apply_snapshot source (the file's name by default)
    filename: Mapped[str] = mapped_column(String(255))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))  # queued, running, succeeded, failed
    phase: Mapped[str] = mapped_column(String(32))
    percent: Mapped[int] = mapped_column(Integer, default=0)
    report: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    error: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str | None] = mapped_column(String(320))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Written with the progress, at least every few seconds while the job runs: a queued or running job whose
    # heartbeat is old was interrupted (its process stopped) and is marked failed.
    heartbeat_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        CheckConstraint("status IN ('queued', 'running', 'succeeded', 'failed')", name="status"),
        Index("ix_twin_imports_created_at", "created_at"),
        Index("ix_twin_imports_status", "status"),
    )
