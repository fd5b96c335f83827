"""Configuration from the environment.

Every part reads its settings here so that a misconfiguration is reported once, at start, as one clear line
(`ConfigError`), instead of surfacing later as a confusing stack trace.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

from pydantic import AfterValidator, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _log_level(value: str) -> str:
    level = value.upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise ValueError("must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return level


LogLevel = Annotated[str, AfterValidator(_log_level)]
"""A logging level name, any case in, upper case out."""


class ConfigError(Exception):
    """Configuration that cannot work; its message is one line meant for the operator."""


class CloudSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", populate_by_name=True)

    database_url: str | None = Field(default=None, alias="DATABASE_URL")
    db_host: str | None = Field(default=None, alias="DB_HOST")
    db_port: int = Field(default=5432, alias="DB_PORT", ge=1, le=65535)
    db_name: str = Field(default="iotistic", alias="DB_NAME")
    db_user: str = Field(default="iotistic", alias="DB_USER")
    db_password: str | None = Field(default=None, alias="DB_PASSWORD")

    data_dir: Path = Field(default=Path(".iotistic"), alias="IOTISTIC_DATA_DIR")

    # Signs user access tokens. Unset: a random secret is created once under data_dir (mode 0600).
    jwt_secret: str | None = Field(default=None, alias="JWT_SECRET", min_length=32)
    access_token_minutes: int = Field(default=15, alias="ACCESS_TOKEN_MINUTES", ge=1, le=24 * 60)
    refresh_token_days: int = Field(default=14, alias="REFRESH_TOKEN_DAYS", ge=1, le=365)
    # Argon2id cost for user passwords (argon2-cffi's defaults: RFC 9106's low-memory profile).
    argon2_time_cost: int = Field(default=3, alias="ARGON2_TIME_COST", ge=1, le=20)
    argon2_memory_kib: int = Field(default=65536, alias="ARGON2_MEMORY_KIB", ge=64, le=4 * 1024 * 1024)
    argon2_parallelism: int = Field(default=4, alias="ARGON2_PARALLELISM", ge=1, le=16)
    login_max_failures: int = Field(default=5, alias="LOGIN_MAX_FAILURES", ge=1)
    login_lockout_seconds: int = Field(default=900, alias="LOGIN_LOCKOUT_SECONDS", ge=1)
    # How long the one-time link that creates the first owner stays valid (`iotistic up`, `admin setup-link`).
    setup_token_hours: int = Field(default=24, alias="SETUP_TOKEN_HOURS", ge=1, le=24 * 30)
    # The dashboard's build (index.html and assets/) served at `/`. Unset: the copy bundled in the wheel, else
    # dashboard/dist of the source checkout this package runs from.
    dashboard_dir: Path | None = Field(default=None, alias="DASHBOARD_DIR")

    license_public_key: str | None = Field(default=None, alias="LICENSE_PUBLIC_KEY")
    license_key: str | None = Field(default=None, alias="IOTISTIC_LICENSE_KEY")

    mqtt_broker_url: str = Field(default="mqtt://127.0.0.1:1883", alias="MQTT_BROKER_URL")
    # Live readings for /ws: Redis Streams `metrics:<uuid>` when set (ingest may run in other processes),
    # else in-process (ingest must then run inside the API: `iotistic up`).
    redis_url: str | None = Field(default=None, alias="REDIS_URL")
    live_stream_maxlen: int = Field(default=1000, alias="LIVE_STREAM_MAXLEN", ge=10, le=1_000_000)
    # IFC uploads for the digital twin larger than this get a 413 as soon as the size is known.
    twin_max_upload_mb: int = Field(default=200, ge=1, le=100_000, alias="TWIN_MAX_UPLOAD_MB")

    # Ingest (`iotistic ingest`, or inside the API with INGEST_IN_API). Its MQTT service account needs read on
    # iot/device/+/#; `iotistic ingest create-account` makes one. The client id must be stable per worker: the
    # broker keeps the worker's persistent session (and queues its share of readings) under that id.
    ingest_in_api: bool = Field(default=False, alias="INGEST_IN_API")
    ingest_mqtt_username: str | None = Field(default=None, alias="INGEST_MQTT_USERNAME", max_length=128)
    ingest_mqtt_password: str | None = Field(default=None, alias="INGEST_MQTT_PASSWORD", max_length=256)
    ingest_client_id: str | None = Field(default=None, alias="INGEST_CLIENT_ID", max_length=128)
    ingest_share_group: str = Field(default="ingest", alias="INGEST_SHARE_GROUP", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    # Use MQTT v5 shared subscriptions ($share/<group>/...); the embedded broker (MQTT 3.1.1) cannot.
    ingest_shared_subscription: bool = Field(default=True, alias="INGEST_SHARED_SUBSCRIPTION")
    ingest_batch_size: int = Field(default=5000, alias="INGEST_BATCH_SIZE", ge=1, le=100_000)
    ingest_flush_ms: int = Field(default=200, alias="INGEST_FLUSH_MS", ge=1, le=60_000)

    # VPN: registration hands each device its OpenVPN configuration, issued by the certificate manager
    # (`iotistic vpn serve`), which the API reaches over HTTP with the manager's service token. Devices get it only
    # when the licence includes the `vpn` feature too.
    vpn_enabled: bool = Field(default=False, alias="VPN_ENABLED")
    vpn_cert_manager_url: str | None = Field(default=None, alias="VPN_CERT_MANAGER_URL")
    vpn_service_token: str | None = Field(default=None, alias="VPN_SERVICE_TOKEN", min_length=24, repr=False)
    # A registration waits at most this long for the certificate manager before answering `vpn: pending`.
    vpn_cert_manager_timeout: float = Field(default=10.0, alias="VPN_CERT_MANAGER_TIMEOUT_SECONDS", gt=0, le=120)

    # A device counts as online while its last contact is younger than this.
    device_offline_after_seconds: int = Field(default=180, alias="DEVICE_OFFLINE_AFTER_SECONDS", ge=5)
    # Bearer token that Prometheus may use for /metrics (users with the admin role may always read it).
    metrics_token: str | None = Field(default=None, alias="METRICS_TOKEN", min_length=16)
    public_url: str | None = Field(default=None, alias="PUBLIC_URL")
    log_level: LogLevel = Field(default="INFO", alias="LOG_LEVEL")

    @field_validator("database_url")
    @classmethod
    def _supported_database(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if value.startswith("postgres://"):
            value = "postgresql://" + value.removeprefix("postgres://")
        if value.startswith("postgresql://"):
            value = "postgresql+asyncpg://" + value.removeprefix("postgresql://")
        if value.startswith("sqlite://") and not value.startswith("sqlite+aiosqlite://"):
            value = "sqlite+aiosqlite://" + value.removeprefix("sqlite://")
        if not (value.startswith("postgresql+asyncpg://") or value.startswith("sqlite+aiosqlite://")):
            raise ValueError("must be a postgresql:// or sqlite:// URL")
        return value

    @field_validator("vpn_cert_manager_url", "vpn_service_token", "dashboard_dir", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("vpn_cert_manager_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from urllib.parse import urlsplit

        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL, e.g. http://vpn-cert-manager:8080")
        return value.strip().rstrip("/")

    @model_validator(mode="after")
    def _one_database(self) -> CloudSettings:
        if self.database_url and self.db_host:
            raise ValueError("set DATABASE_URL or DB_HOST, not both")
        return self

    @model_validator(mode="after")
    def _vpn_complete(self) -> CloudSettings:
        if self.vpn_enabled and not (self.vpn_cert_manager_url and self.vpn_service_token):
            raise ValueError("VPN_ENABLED needs VPN_CERT_MANAGER_URL and VPN_SERVICE_TOKEN (the certificate manager "
                             "that issues the devices' configurations)")
        return self

    @cached_property
    def sqlalchemy_url(self) -> str:
        """The async SQLAlchemy URL: DATABASE_URL, else DB_HOST & co, else SQLite under the data dir."""
        if self.database_url:
            return self.database_url
        if self.db_host:
            auth = quote(self.db_user, safe="")
            if self.db_password:
                auth += ":" + quote(self.db_password, safe="")
            return f"postgresql+asyncpg://{auth}@{self.db_host}:{self.db_port}/{quote(self.db_name, safe='')}"
        return f"sqlite+aiosqlite:///{(self.data_dir / 'iotistic.db').resolve()}"

    @property
    def is_sqlite(self) -> bool:
        return self.sqlalchemy_url.startswith("sqlite")

    def resolved_jwt_secret(self) -> str:
        """The access-token secret; created once (0600) under the data dir when not configured."""
        if self.jwt_secret:
            return self.jwt_secret
        path = self.data_dir / "jwt-secret"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            fd = _create_private_file(path)
        except FileExistsError:  # made earlier, or by a process starting beside us
            return _read_secret(path)
        import secrets

        with open(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(48))
        return _read_secret(path)

    def license_public_key_pem(self) -> str | None:
        """LICENSE_PUBLIC_KEY may be PEM text or a path to a PEM file."""
        value = self.license_public_key
        if not value:
            return None
        if "BEGIN" in value:
            return _checked_public_key(value.replace("\\n", "\n"), "PEM text")
        path = Path(value)
        if not path.is_file():
            raise ConfigError(f"LICENSE_PUBLIC_KEY: {value!r} is neither PEM text nor a readable file")
        return _checked_public_key(path.read_text(), f"file {value!r}")


def _checked_public_key(pem: str, source: str) -> str:
    """A PEM that does not hold a public key is a misconfiguration: report it at start, not at first use."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        load_pem_public_key(pem.encode())
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        reason = " ".join(str(exc).split())
        raise ConfigError(f"LICENSE_PUBLIC_KEY: {source} is not a PEM public key ({reason})") from None
    return pem


def _read_secret(path: Path) -> str:
    import time

    for _ in range(50):  # another process may have created the file and not yet written it
        secret = path.read_text().strip()
        if secret:
            break
        time.sleep(0.01)
    if len(secret) < 32:
        raise ConfigError(f"{path}: stored JWT secret shorter than 32 characters; delete it or set JWT_SECRET")
    return secret


def _create_private_file(path: Path) -> int:
    import os

    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)


def load_cloud_settings(**overrides: object) -> CloudSettings:
    """Read the environment; raise ConfigError with one readable line when something is wrong."""
    try:
        settings = CloudSettings(**overrides)  # type: ignore[arg-type]
        settings.license_public_key_pem()
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None
    return settings


def describe_validation_error(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "configuration"
        parts.append(f"{where}: {error['msg']}")
    return "invalid configuration: " + "; ".join(parts)
