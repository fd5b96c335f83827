"""ORM models of the cloud API's database (SQLAlchemy 2 declarative style).

Secrets never sit here in clear: passwords are Argon2 hashes, generated keys and tokens SHA-256 hashes,
MQTT passwords Mosquitto PBKDF2 hashes (see `iotistic.core.security`).
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from iotistic.core.db import BigIntPK, JSONType, UTCDateTime, new_metadata, utcnow


class Base(DeclarativeBase):
    metadata = new_metadata()


# The largest id of an INTEGER primary key (32-bit on PostgreSQL): anything larger cannot name a row.
MAX_ID = 2**31 - 1


class Role(StrEnum):
    viewer = "viewer"
    operator = "operator"
    admin = "admin"
    owner = "owner"

    @property
    def rank(self) -> int:
        return _ROLE_RANK[self]

    def at_least(self, other: Role) -> bool:
        return self.rank >= other.rank


_ROLE_RANK = {Role.viewer: 0, Role.operator: 1, Role.admin: 2, Role.owner: 3}


class DeviceStatus(StrEnum):
    registered = "registered"  # registered, key exchange not yet done
    active = "active"
    disabled = "disabled"  # kept, but every credential refused


class MqttAccountKind(StrEnum):
    device = "device"  # one per device, created and removed with it
    service = "service"  # the platform's own clients, e.g. ingest
    integration = "integration"  # third-party clients


def _created() -> Mapped[dt.datetime]:
    return mapped_column(UTCDateTime(), default=utcnow, nullable=False)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = _created()
    last_login_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (CheckConstraint("role IN ('viewer','operator','admin','owner')", name="role"),)


class UserSession(Base):
    """One login. Access tokens name it (`sid`), so logout or a detected refresh-token reuse ends them too."""

    __tablename__ = "user_sessions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[dt.datetime] = _created()
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class RefreshToken(Base):
    """Every refresh token ever issued for a session; a used one presented again means theft."""

    __tablename__ = "refresh_tokens"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("user_sessions.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = _created()
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class LoginFailure(Base):
    __tablename__ = "login_failures"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    email: Mapped[str] = mapped_column(String(254))
    ip: Mapped[str] = mapped_column(String(64))
    at: Mapped[dt.datetime] = _created()

    __table_args__ = (Index("ix_login_failures_email_at", "email", "at"), Index("ix_login_failures_ip_at", "ip", "at"))


class SetupToken(Base):
    """The one-time link that creates the first owner on a fresh instance (`iotistic up`, `admin setup-link`).
    Only its SHA-256 is kept; making a new link deletes the old one, so at most one row exists."""

    __tablename__ = "setup_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = _created()
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class Fleet(Base):
    __tablename__ = "fleets"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[dt.datetime] = _created()


class ProvisioningKey(Base):
    __tablename__ = "provisioning_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    key_prefix: Mapped[str] = mapped_column(String(16))
    description: Mapped[str | None] = mapped_column(String(500))
    fleet_id: Mapped[int | None] = mapped_column(ForeignKey("fleets.id", ondelete="RESTRICT"), index=True)
    max_devices: Mapped[int | None] = mapped_column(Integer)
    devices_registered: Mapped[int] = mapped_column(Integer, default=0)
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[dt.datetime] = _created()
    created_by: Mapped[str | None] = mapped_column(String(254))

    fleet: Mapped[Fleet | None] = relationship(lazy="joined")

    __table_args__ = (
        CheckConstraint("max_devices IS NULL OR devices_registered <= max_devices", name="within_max"),
    )


class Device(Base):
    __tablename__ = "devices"

    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(128))
    device_type: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default=DeviceStatus.registered)
    fleet_id: Mapped[int | None] = mapped_column(ForeignKey("fleets.id", ondelete="RESTRICT"), index=True)
    provisioning_key_id: Mapped[str | None] = mapped_column(
        ForeignKey("provisioning_keys.id", ondelete="SET NULL"), index=True
    )
    api_key_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    key_exchanged_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), index=True)
    os_version: Mapped[str | None] = mapped_column(String(128))
    agent_version: Mapped[str | None] = mapped_column(String(64))
    ip_address: Mapped[str | None] = mapped_column(String(64))
    mac_address: Mapped[str | None] = mapped_column(String(64))
    # The device's MQTT connection as its agent last said on `status` ('online', or 'offline' from its last
    # will); NULL while it never spoke MQTT. An 'offline' newer than the last contact wins over last_seen_at.
    connection_state: Mapped[str | None] = mapped_column(String(16))
    connection_changed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[dt.datetime] = _created()

    fleet: Mapped[Fleet | None] = relationship(lazy="joined")
    tags: Mapped[list[DeviceTag]] = relationship(
        lazy="selectin", cascade="all, delete-orphan", passive_deletes=True, order_by="DeviceTag.key"
    )

    __table_args__ = (
        CheckConstraint("status IN ('registered','active','disabled')", name="status"),
        CheckConstraint("connection_state IN ('online','offline')", name="connection_state"),
        Index("ix_devices_name", "name"),
    )


class DeviceTag(Base):
    __tablename__ = "device_tags"

    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(256), default="")

    __table_args__ = (Index("ix_device_tags_key_value", "key", "value"),)


class DeviceTarget(Base):
    """The staged target (edited by users) and the deployed one (fetched by the device)."""

    __tablename__ = "device_targets"

    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True)
    staged: Mapped[dict[str, Any]] = mapped_column(JSONType)
    deployed: Mapped[dict[str, Any]] = mapped_column(JSONType)
    version: Mapped[int] = mapped_column(Integer, default=0)
    etag: Mapped[str] = mapped_column(String(64))
    release_id: Mapped[int | None] = mapped_column(ForeignKey("releases.id", ondelete="SET NULL"))
    staged_at: Mapped[dt.datetime] = _created()
    deployed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class TargetDeployment(Base):
    """History: every deployed version of every device's target."""

    __tablename__ = "target_deployments"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    document: Mapped[dict[str, Any]] = mapped_column(JSONType)
    release_id: Mapped[int | None] = mapped_column(ForeignKey("releases.id", ondelete="SET NULL"))
    deployed_by: Mapped[str] = mapped_column(String(254))
    deployed_at: Mapped[dt.datetime] = _created()

    __table_args__ = (UniqueConstraint("device_id", "version", name="uq_target_deployments_device_version"),)


class Release(Base):
    """A named, immutable target document that can be deployed to many devices at once."""

    __tablename__ = "releases"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    fleet_id: Mapped[int | None] = mapped_column(ForeignKey("fleets.id", ondelete="SET NULL"), index=True)
    document: Mapped[dict[str, Any]] = mapped_column(JSONType)
    notes: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(254))
    created_at: Mapped[dt.datetime] = _created()


class DeviceCurrentState(Base):
    __tablename__ = "device_current_states"

    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True)
    document: Mapped[dict[str, Any]] = mapped_column(JSONType)
    reported_at: Mapped[dt.datetime] = _created()


class DeviceMetric(Base):
    __tablename__ = "device_metrics"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    recorded_at: Mapped[dt.datetime] = _created()
    cpu: Mapped[float | None] = mapped_column(Float)
    memory: Mapped[float | None] = mapped_column(Float)
    memory_total: Mapped[float | None] = mapped_column(Float)
    storage: Mapped[float | None] = mapped_column(Float)
    storage_total: Mapped[float | None] = mapped_column(Float)
    temperature: Mapped[float | None] = mapped_column(Float)
    uptime: Mapped[float | None] = mapped_column(Float)

    __table_args__ = (Index("ix_device_metrics_device_time", "device_id", "recorded_at"),)


class DeviceLog(Base):
    __tablename__ = "device_logs"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    timestamp: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    service_name: Mapped[str | None] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text)
    is_stderr: Mapped[bool] = mapped_column(Boolean, default=False)
    received_at: Mapped[dt.datetime] = _created()

    __table_args__ = (Index("ix_device_logs_device_time", "device_id", "timestamp"),)


TELEMETRY_PARTITION_PREFIX = "telemetry_p"
"""PostgreSQL: `telemetry` is partitioned by day into tables named telemetry_pYYYYMMDD, made by ingest on demand."""


def managed_by_migrations(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    """Alembic's include_object: the day partitions of `telemetry` are made at run time, not by migrations."""
    return not (type_ == "table" and reflected and name is not None and name.startswith(TELEMETRY_PARTITION_PREFIX))


class Telemetry(Base):
    """One sensor reading. The key makes a redelivered MQTT message (QoS 1 is at-least-once) a no-op.

    No foreign key to devices: a deleted device's readings age out with retention instead of costing a mass
    DELETE (device ids are never reused). On PostgreSQL the table is range-partitioned by day on `ts`, so
    retention drops whole partitions.
    """

    __tablename__ = "telemetry"

    device_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    metric: Mapped[str] = mapped_column(String(128), primary_key=True)
    ts: Mapped[dt.datetime] = mapped_column(UTCDateTime(), primary_key=True)
    value: Mapped[float] = mapped_column(Float)

    __table_args__ = ({"postgresql_partition_by": "RANGE (ts)"},)


class TelemetryLatest(Base):
    """The newest reading of every device and metric, kept by ingest (answers "latest" without scanning)."""

    __tablename__ = "telemetry_latest"

    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True)
    metric: Mapped[str] = mapped_column(String(128), primary_key=True)
    ts: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    value: Mapped[float] = mapped_column(Float)
    unit: Mapped[str | None] = mapped_column(String(32))


class MqttAccount(Base):
    """A broker login: one per device (username = device uuid), plus service and integration accounts."""

    __tablename__ = "mqtt_accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(128), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16))
    device_id: Mapped[int | None] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), unique=True)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = _created()

    rules: Mapped[list[MqttAclRule]] = relationship(
        lazy="selectin", cascade="all, delete-orphan", passive_deletes=True, order_by="MqttAclRule.id"
    )

    __table_args__ = (CheckConstraint("kind IN ('device','service','integration')", name="kind"),)


class MqttAclRule(Base):
    __tablename__ = "mqtt_acl_rules"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("mqtt_accounts.id", ondelete="CASCADE"), index=True)
    topic: Mapped[str] = mapped_column(String(512))
    access: Mapped[str] = mapped_column(String(16))

    __table_args__ = (CheckConstraint("access IN ('read','write','readwrite')", name="access"),)


class AuditEvent(Base):
    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = _created()
    actor: Mapped[str] = mapped_column(String(254))
    action: Mapped[str] = mapped_column(String(64))
    target_type: Mapped[str | None] = mapped_column(String(32))
    target_id: Mapped[str | None] = mapped_column(String(128))
    details: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    ip: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (Index("ix_audit_events_at", "at"), Index("ix_audit_events_action", "action"))


class InstalledLicense(Base):
    """A licence installed through the API; it overrides IOTISTIC_LICENSE_KEY without a restart."""

    __tablename__ = "installed_licenses"

    id: Mapped[int] = mapped_column(primary_key=True)
    token: Mapped[str] = mapped_column(Text)
    installed_at: Mapped[dt.datetime] = _created()
    installed_by: Mapped[str] = mapped_column(String(254))
