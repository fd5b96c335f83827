"""Configuration of the billing service from the environment (`BILLING_*`, `STRIPE_*` and a few shared names).

Like the cloud API's settings, a misconfiguration is reported once, at start, as one line (`ConfigError`). The
licence signing key is never in the repository: it comes from `BILLING_PRIVATE_KEY` (PEM text) or from a mounted
file (`BILLING_PRIVATE_KEY_FILE`), and is checked to be an RSA private key when the settings are loaded.
"""

from __future__ import annotations

import secrets
from functools import cached_property
from pathlib import Path

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from iotistic.core.plans import PLANS
from iotistic.core.settings import ConfigError, LogLevel, describe_validation_error


def normalise_database_url(value: str) -> str:
    """postgres(ql):// and sqlite:// as the async drivers SQLAlchemy needs; anything else is refused."""
    if value.startswith("postgres://"):
        value = "postgresql://" + value.removeprefix("postgres://")
    if value.startswith("postgresql://"):
        value = "postgresql+asyncpg://" + value.removeprefix("postgresql://")
    if value.startswith("sqlite://") and not value.startswith("sqlite+aiosqlite://"):
        value = "sqlite+aiosqlite://" + value.removeprefix("sqlite://")
    if not (value.startswith("postgresql+asyncpg://") or value.startswith("sqlite+aiosqlite://")):
        raise ValueError("must be a postgresql:// or sqlite:// URL")
    return value


# A Kubernetes object name that is a DNS label (ingress classes, issuers, storage classes, namespaces).
_DNS_NAME = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"

class BillingSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", populate_by_name=True)

    # Database: PostgreSQL in production; unset means a SQLite file under the data directory.
    database_url: str | None = Field(default=None, alias="BILLING_DATABASE_URL")
    data_dir: Path = Field(default=Path(".iotistic-billing"), alias="BILLING_DATA_DIR")

    # The licence signing key (RSA, PEM). Exactly one of the two may be set.
    private_key: SecretStr | None = Field(default=None, alias="BILLING_PRIVATE_KEY")
    private_key_file: Path | None = Field(default=None, alias="BILLING_PRIVATE_KEY_FILE")

    # Customer session tokens (HS256). Unset: a random secret is created once under the data dir (mode 0600).
    jwt_secret: SecretStr | None = Field(default=None, alias="BILLING_JWT_SECRET", min_length=32)
    access_token_minutes: int = Field(default=15, alias="BILLING_ACCESS_TOKEN_MINUTES", ge=1, le=24 * 60)
    # Internal routes (operators, other services). Unset: every internal route refuses every caller.
    operator_token: SecretStr | None = Field(default=None, alias="BILLING_OPERATOR_TOKEN", min_length=24)
    # Argon2id cost of customer passwords (same names and defaults as the cloud API).
    argon2_time_cost: int = Field(default=3, alias="ARGON2_TIME_COST", ge=1, le=20)
    argon2_memory_kib: int = Field(default=65536, alias="ARGON2_MEMORY_KIB", ge=64, le=4 * 1024 * 1024)
    argon2_parallelism: int = Field(default=4, alias="ARGON2_PARALLELISM", ge=1, le=16)
    login_max_failures: int = Field(default=5, alias="BILLING_LOGIN_MAX_FAILURES", ge=1)
    login_lockout_seconds: int = Field(default=900, alias="BILLING_LOGIN_LOCKOUT_SECONDS", ge=1)
    # Signups per client address and hour: each one queues a deployment, so a script must not make thousands.
    signup_max_per_hour: int = Field(default=20, alias="BILLING_SIGNUP_MAX_PER_HOUR", ge=1)

    # Subscriptions and licences.
    cancel_grace_days: int = Field(default=7, alias="BILLING_CANCEL_GRACE_DAYS", ge=0, le=365)
    # A paid licence stays valid this long past the end of the paid period, so a late renewal never stops an
    # instance before the renewal's webhook arrives.
    license_grace_days: int = Field(default=7, alias="BILLING_LICENSE_GRACE_DAYS", ge=0, le=90)
    # Each instance is served at `<customer id>.<domain>`.
    ingress_domain: str = Field(default="iotistic.example", alias="BILLING_INGRESS_DOMAIN", max_length=200,
                                pattern=r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")

    # Deployment queue and worker.
    queue_max_attempts: int = Field(default=5, alias="BILLING_QUEUE_MAX_ATTEMPTS", ge=1, le=100)
    queue_backoff_seconds: float = Field(default=10.0, alias="BILLING_QUEUE_BACKOFF_SECONDS", gt=0, le=3600)
    queue_backoff_max_seconds: float = Field(default=900.0, alias="BILLING_QUEUE_BACKOFF_MAX_SECONDS", gt=0)
    # A running job whose worker has not renewed its lease for this long is taken over by another worker.
    queue_lease_seconds: float = Field(default=300.0, alias="BILLING_QUEUE_LEASE_SECONDS", ge=1)
    worker_poll_seconds: float = Field(default=2.0, alias="BILLING_WORKER_POLL_SECONDS", gt=0, le=300)

    # Stripe (the tests point STRIPE_API_BASE at a local fake).
    stripe_api_key: SecretStr | None = Field(default=None, alias="STRIPE_API_KEY")
    stripe_webhook_secret: SecretStr | None = Field(default=None, alias="STRIPE_WEBHOOK_SECRET")
    stripe_api_base: str | None = Field(default=None, alias="STRIPE_API_BASE")
    stripe_price_starter: str | None = Field(default=None, alias="STRIPE_PRICE_STARTER")
    stripe_price_professional: str | None = Field(default=None, alias="STRIPE_PRICE_PROFESSIONAL")
    stripe_price_enterprise: str | None = Field(default=None, alias="STRIPE_PRICE_ENTERPRISE")
    # Where Stripe's Checkout sends the customer back ("{customerId}" is replaced; Stripe fills in
    # "{CHECKOUT_SESSION_ID}"). Unset: the customer's own instance, https://<id>.<BILLING_INGRESS_DOMAIN>/.
    stripe_checkout_success_url: str | None = Field(default=None, alias="STRIPE_CHECKOUT_SUCCESS_URL",
                                                    pattern=r"^https?://\S+$")
    stripe_checkout_cancel_url: str | None = Field(default=None, alias="STRIPE_CHECKOUT_CANCEL_URL",
                                                   pattern=r"^https?://\S+$")

    # Usage: the Prometheus that scrapes every instance's exporter.
    prometheus_url: str | None = Field(default=None, alias="PROMETHEUS_URL", pattern=r"^https?://\S+$")
    # How often the service collects every customer's current period into usage_records (with PROMETHEUS_URL).
    usage_collect_seconds: float = Field(default=3600.0, alias="BILLING_USAGE_COLLECT_SECONDS", ge=10, le=86400)

    # Kubernetes and Helm.
    helm_bin: str = Field(default="helm", alias="HELM_BIN")
    kubeconfig: Path | None = Field(default=None, alias="KUBECONFIG")
    kube_context: str | None = Field(default=None, alias="BILLING_KUBE_CONTEXT")
    chart_path: Path = Field(default=Path("charts/customer-instance"), alias="BILLING_CHART_PATH")
    # Deadline of one helm call; with BILLING_HELM_WAIT an apply also waits (that long) for every object to be
    # ready, so a deployment is `deployed` only once the instance runs, and a stuck one fails and is retried.
    helm_timeout_seconds: float = Field(default=300.0, alias="BILLING_HELM_TIMEOUT_SECONDS", ge=5, le=3600)
    helm_wait: bool = Field(default=False, alias="BILLING_HELM_WAIT")

    # What every customer instance of this installation shares (deploy.values.Platform; defaults = the chart's).
    instance_image: str = Field(default="ghcr.io/iotistic/iotistic", alias="BILLING_INSTANCE_IMAGE",
                                pattern=r"^[a-z0-9][a-z0-9._/:-]*$", max_length=255)
    instance_image_tag: str = Field(default="", alias="BILLING_INSTANCE_IMAGE_TAG",
                                    pattern=r"^([A-Za-z0-9_][A-Za-z0-9._-]{0,127})?$")
    ingress_class: str = Field(default="nginx", alias="BILLING_INGRESS_CLASS", pattern=_DNS_NAME)
    tls_cluster_issuer: str = Field(default="", alias="BILLING_TLS_CLUSTER_ISSUER", pattern=f"^$|{_DNS_NAME}")
    storage_class: str = Field(default="", alias="BILLING_STORAGE_CLASS", pattern=f"^$|{_DNS_NAME}")
    ingress_namespace: str = Field(default="ingress-nginx", alias="BILLING_INGRESS_NAMESPACE", pattern=_DNS_NAME)
    monitoring_namespace: str = Field(default="monitoring", alias="BILLING_MONITORING_NAMESPACE", pattern=_DNS_NAME)
    # JSON object: the labels the shared Prometheus selects ServiceMonitors by.
    service_monitor_labels: dict[str, str] = Field(default_factory=lambda: {"release": "prometheus"},
                                                   alias="BILLING_SERVICE_MONITOR_LABELS")
    # The VPN certificate manager instances of plans with the `vpn` feature use (both set, or VPN stays off).
    vpn_cert_manager_url: str | None = Field(default=None, alias="BILLING_VPN_CERT_MANAGER_URL",
                                             pattern=r"^https?://\S+$")
    vpn_service_token: SecretStr | None = Field(default=None, alias="BILLING_VPN_SERVICE_TOKEN", min_length=24)

    log_level: LogLevel = Field(default="INFO", alias="LOG_LEVEL")

    @field_validator("database_url")
    @classmethod
    def _supported_database(cls, value: str | None) -> str | None:
        return normalise_database_url(value) if value else None

    @model_validator(mode="after")
    def _one_key_source(self) -> BillingSettings:
        if self.private_key is not None and self.private_key_file is not None:
            raise ValueError("set BILLING_PRIVATE_KEY or BILLING_PRIVATE_KEY_FILE, not both")
        if self.queue_backoff_max_seconds < self.queue_backoff_seconds:
            raise ValueError("BILLING_QUEUE_BACKOFF_MAX_SECONDS must not be below BILLING_QUEUE_BACKOFF_SECONDS")
        return self

    @cached_property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'billing.db').resolve()}"

    @property
    def is_sqlite(self) -> bool:
        return self.sqlalchemy_url.startswith("sqlite")

    def stripe_price_for(self, plan: str) -> str | None:
        """The Stripe price id configured for a plan of the catalogue (None when not configured)."""
        if plan not in PLANS:
            raise ValueError(f"unknown plan {plan!r}")
        value: str | None = getattr(self, f"stripe_price_{plan}", None)
        return value

    @cached_property
    def _private_key_pem(self) -> str | None:
        if self.private_key is not None:
            return _checked_private_key(self.private_key.get_secret_value().replace("\\n", "\n"),
                                        "BILLING_PRIVATE_KEY")
        if self.private_key_file is not None:
            try:
                text = self.private_key_file.read_text()
            except OSError as exc:
                raise ConfigError(f"BILLING_PRIVATE_KEY_FILE: cannot read {self.private_key_file}: "
                                  f"{exc.strerror or exc}") from None
            return _checked_private_key(text, f"BILLING_PRIVATE_KEY_FILE ({self.private_key_file})")
        return None

    def private_key_pem(self) -> str:
        """The licence signing key; ConfigError when none is configured."""
        pem = self._private_key_pem
        if pem is None:
            raise ConfigError("no licence signing key: set BILLING_PRIVATE_KEY (PEM text) or "
                              "BILLING_PRIVATE_KEY_FILE (a mounted file); `iotistic billing keygen` makes one")
        return pem

    @cached_property
    def public_key_pem(self) -> str:
        """The public half of the signing key: what customer instances verify licences with."""
        from cryptography.hazmat.primitives import serialization

        key = serialization.load_pem_private_key(self.private_key_pem().encode(), password=None)
        return key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()

    def resolved_jwt_secret(self) -> str:
        """The session-token secret; created once (0600) under the data dir when not configured."""
        if self.jwt_secret is not None:
            return self.jwt_secret.get_secret_value()
        import os

        path = self.data_dir / "jwt-secret"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            secret = path.read_text().strip()
            if len(secret) < 32:
                raise ConfigError(f"{path}: stored secret shorter than 32 characters; delete it or set "
                                  "BILLING_JWT_SECRET") from None
            return secret
        secret = secrets.token_urlsafe(48)
        with open(fd, "w") as handle:
            handle.write(secret)
        return secret


def _checked_private_key(pem: str, source: str) -> str:
    """An unusable signing key is a misconfiguration: report it at start, not at the first signup."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        reason = " ".join(str(exc).split())
        raise ConfigError(f"{source}: not an unencrypted PEM private key ({reason})") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError(f"{source}: licences are RS256, the key must be RSA")
    return pem


def load_billing_settings(*, require_key: bool = False, **overrides: object) -> BillingSettings:
    """Read the environment; raise ConfigError with one readable line when something is wrong."""
    try:
        settings = BillingSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None
    except SettingsError as exc:  # a JSON-valued variable that is not JSON: name the variable, not the field
        names = [f.alias for name, f in BillingSettings.model_fields.items() if f'"{name}"' in str(exc) and f.alias]
        raise ConfigError(f"invalid configuration: {', '.join(names) or exc}: not valid JSON") from None
    if require_key:
        settings.private_key_pem()
    else:
        _ = settings._private_key_pem  # a configured but broken key is reported now
    return settings
