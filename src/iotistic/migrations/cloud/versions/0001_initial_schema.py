"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-26 22:21:55.019287
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import iotistic.core.db

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("at", iotistic.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=254), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target_type", sa.String(length=32), nullable=True),
        sa.Column("target_id", sa.String(length=128), nullable=True),
        sa.Column(
            "details",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.create_index("ix_audit_events_action", ["action"], unique=False)
        batch_op.create_index("ix_audit_events_at", ["at"], unique=False)

    op.create_table(
        "fleets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=True),
        sa.Column("created_at", iotistic.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fleets")),
        sa.UniqueConstraint("name", name=op.f("uq_fleets_name")),
    )
    op.create_table(
        "installed_licenses",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token", sa.Text(), nullable=False),
        sa.Column("installed_at", iotistic.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("installed_by", sa.String(length=254), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_installed_licenses")),
    )
    op.create_table(
        "login_failures",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("ip", sa.String(length=64), nullable=False),
        sa.Column("at", iotistic.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_failures")),
    )
    with op.batch_alter_table("login_failures", schema=None) as batch_op:
        batch_op.create_index("ix_login_failures_email_at", ["email", "at"], unique=False)
        batch_op.create_index("ix_login_failures_ip_at", ["ip", "at"], unique=False)

    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("created_at", iotistic.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_login_at", iotistic.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint("role IN ('viewer','operator','admin','owner')", name=op.f("ck_users_role")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("email", name=op.f("uq_users_email")),
    )
    op.create_table(
        "provisioning_keys",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("key_prefix", sa.String(length=16), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=True),
        sa.Column("fleet_id", sa.Integer(), nullable=True),
        sa.Column("max_devices", sa.Integer(), nullable=True),
        sa.Column("devices_registered", sa.Integer(), nullable=False),
        sa.Column("expires_at", iotistic.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", iotistic.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", iotistic.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=254), nullable=True),
        sa.CheckConstraint(
            "max_devices IS NULL OR devices_registered <= max_devices",
            name=op.f("ck_provisioning_keys_within_max"),
        ),
        sa.ForeignKeyConstraint(
            ["fleet_id"],
            ["fleets.id"],
            name=op.f("fk_provisioning_keys_fleet_id_fleets"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_provisioning_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_provisioning_keys_key_hash")),
    )
    with op.batch_alter_table("provisioning_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_provisioning_keys_fleet_id"), ["fleet_id"], unique=False)

    op.create_table(
        "releases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("fleet_id", sa.Integer(), nullable=True),
        sa.Column(
            "document",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(length=254), nullable=False),
        sa.Column("created_at", iotistic.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["fleet_id"], ["fleets.id"], name=op.f("fk_releases_fleet_id_fleets"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_releases")),
    )
    with op.batch_alter_table("releases", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_releases_fleet_id"), ["fleet_id"], unique=False)

    op.create_table(
        "user_sessions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created_at", iotistic.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", iotistic.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", iotistic.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_user_sessions_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_sessions")),
    )
    with op.batch_alter_table("user_sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_user_sessions_user_id"), ["user_id"], unique=False)

    op.create_table(
        "devices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("uuid", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("device_type", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("fleet_id", sa.Integer(), nullable=True),
        sa.Column("provisioning_key_id", sa.String(length=36), nullable=True),
        sa.Column("api_key_hash", sa.String(length=64), nullable=True),
        sa.Column("key_exchanged_at", iotistic.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_seen_at", iotistic.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("os_version", sa.String(length=128), nullable=True),
        sa.Column("agent_version", sa.String(length=64), nullable=True),
        sa.Column("ip_address", sa.String(length=64), nullable=True),
        sa.Column("mac_address", sa.String(length=64), nullable=True),
        sa.Column("created_at", iotistic.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("status IN ('registered','active','disabled')", name=op.f("ck_devices_status")),
        sa.ForeignKeyConstraint(
            ["fleet_id"], ["fleets.id"], name=op.f("fk_devices_fleet_id_fleets"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["provisioning_key_id"],
            ["provisioning_keys.id"],
            name=op.f("fk_devices_provisioning_key_id_provisioning_keys"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_devices")),
        sa.UniqueConstraint("api_key_hash", name=op.f("uq_devices_api_key_hash")),
        sa.UniqueConstraint("uuid", name=op.f("uq_devices_uuid")),
    )
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_devices_fleet_id"), ["fleet_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_devices_last_seen_at"), ["last_seen_at"], unique=False)
        batch_op.create_index("ix_devices_name", ["name"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_devices_provisioning_key_id"), ["provisioning_key_id"], unique=False
        )

    op.create_table(
        "refresh_tokens",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("session_id", sa.String(length=36), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", iotistic.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("used_at", iotistic.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["user_sessions.id"],
            name=op.f("fk_refresh_tokens_session_id_user_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refresh_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_refresh_tokens_token_hash")),
    )
    with op.batch_alter_table("refresh_tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_refresh_tokens_session_id"), ["session_id"], unique=False)

    op.create_table(
        "device_current_states",
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column(
            "document",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("reported_at", iotistic.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name=op.f("fk_device_current_states_device_id_devices"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("device_id", name=op.f("pk_device_current_states")),
    )
    op.create_table(
        "device_logs",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("timestamp", iotistic.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("service_name", sa.String(length=64), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("is_stderr", sa.Boolean(), nullable=False),
        sa.Column("received_at", iotistic.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_device_logs_device_id_devices"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_device_logs")),
    )
    with op.batch_alter_table("device_logs", schema=None) as batch_op:
        batch_op.create_index("ix_device_logs_device_time", ["device_id", "timestamp"], unique=False)

    op.create_table(
        "device_metrics",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("recorded_at", iotistic.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("cpu", sa.Float(), nullable=True),
        sa.Column("memory", sa.Float(), nullable=True),
        sa.Column("memory_total", sa.Float(), nullable=True),
        sa.Column("storage", sa.Float(), nullable=True),
        sa.Column("storage_total", sa.Float(), nullable=True),
        sa.Column("temperature", sa.Float(), nullable=True),
        sa.Column("uptime", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name=op.f("fk_device_metrics_device_id_devices"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_device_metrics")),
    )
    with op.batch_alter_table("device_metrics", schema=None) as batch_op:
        batch_op.create_index("ix_device_metrics_device_time", ["device_id", "recorded_at"], unique=False)

    op.create_table(
        "device_tags",
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.String(length=256), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_device_tags_device_id_devices"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("device_id", "key", name=op.f("pk_device_tags")),
    )
    with op.batch_alter_table("device_tags", schema=None) as batch_op:
        batch_op.create_index("ix_device_tags_key_value", ["key", "value"], unique=False)

    op.create_table(
        "device_targets",
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column(
            "staged",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "deployed",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("etag", sa.String(length=64), nullable=False),
        sa.Column("release_id", sa.Integer(), nullable=True),
        sa.Column("staged_at", iotistic.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("deployed_at", iotistic.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name=op.f("fk_device_targets_device_id_devices"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["release_id"],
            ["releases.id"],
            name=op.f("fk_device_targets_release_id_releases"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("device_id", name=op.f("pk_device_targets")),
    )
    op.create_table(
        "mqtt_accounts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=128), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=True),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("created_at", iotistic.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('device','service','integration')", name=op.f("ck_mqtt_accounts_kind")),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_mqtt_accounts_device_id_devices"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mqtt_accounts")),
        sa.UniqueConstraint("device_id", name=op.f("uq_mqtt_accounts_device_id")),
        sa.UniqueConstraint("username", name=op.f("uq_mqtt_accounts_username")),
    )
    op.create_table(
        "target_deployments",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column(
            "document",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("release_id", sa.Integer(), nullable=True),
        sa.Column("deployed_by", sa.String(length=254), nullable=False),
        sa.Column("deployed_at", iotistic.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name=op.f("fk_target_deployments_device_id_devices"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["release_id"],
            ["releases.id"],
            name=op.f("fk_target_deployments_release_id_releases"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_target_deployments")),
        sa.UniqueConstraint("device_id", "version", name="uq_target_deployments_device_version"),
    )
    op.create_table(
        "mqtt_acl_rules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("topic", sa.String(length=512), nullable=False),
        sa.Column("access", sa.String(length=16), nullable=False),
        sa.CheckConstraint("access IN ('read','write','readwrite')", name=op.f("ck_mqtt_acl_rules_access")),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["mqtt_accounts.id"],
            name=op.f("fk_mqtt_acl_rules_account_id_mqtt_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mqtt_acl_rules")),
    )
    with op.batch_alter_table("mqtt_acl_rules", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_mqtt_acl_rules_account_id"), ["account_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("mqtt_acl_rules", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_mqtt_acl_rules_account_id"))

    op.drop_table("mqtt_acl_rules")
    op.drop_table("target_deployments")
    op.drop_table("mqtt_accounts")
    op.drop_table("device_targets")
    with op.batch_alter_table("device_tags", schema=None) as batch_op:
        batch_op.drop_index("ix_device_tags_key_value")

    op.drop_table("device_tags")
    with op.batch_alter_table("device_metrics", schema=None) as batch_op:
        batch_op.drop_index("ix_device_metrics_device_time")

    op.drop_table("device_metrics")
    with op.batch_alter_table("device_logs", schema=None) as batch_op:
        batch_op.drop_index("ix_device_logs_device_time")

    op.drop_table("device_logs")
    op.drop_table("device_current_states")
    with op.batch_alter_table("refresh_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_refresh_tokens_session_id"))

    op.drop_table("refresh_tokens")
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_devices_provisioning_key_id"))
        batch_op.drop_index("ix_devices_name")
        batch_op.drop_index(batch_op.f("ix_devices_last_seen_at"))
        batch_op.drop_index(batch_op.f("ix_devices_fleet_id"))

    op.drop_table("devices")
    with op.batch_alter_table("user_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_user_sessions_user_id"))

    op.drop_table("user_sessions")
    with op.batch_alter_table("releases", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_releases_fleet_id"))

    op.drop_table("releases")
    with op.batch_alter_table("provisioning_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_provisioning_keys_fleet_id"))

    op.drop_table("provisioning_keys")
    op.drop_table("users")
    with op.batch_alter_table("login_failures", schema=None) as batch_op:
        batch_op.drop_index("ix_login_failures_ip_at")
        batch_op.drop_index("ix_login_failures_email_at")

    op.drop_table("login_failures")
    op.drop_table("installed_licenses")
    op.drop_table("fleets")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_events_at")
        batch_op.drop_index("ix_audit_events_action")

    op.drop_table("audit_events")
