"""Configuration of the usage exporter: the instance's own settings (database, broker, licence, online rule)
plus a few `EXPORTER_*` names of its own."""

from __future__ import annotations

from pydantic import Field, SecretStr, ValidationError

from iotistic.core.settings import CloudSettings, ConfigError, describe_validation_error


class ExporterSettings(CloudSettings):
    """CloudSettings, so DATABASE_URL / DB_*, MQTT_BROKER_URL, the licence and DEVICE_OFFLINE_AFTER_SECONDS mean
    exactly what they mean to the instance's API (one online rule, one database)."""

    # Unset: the customerId of the instance's licence (installed through the API, else IOTISTIC_LICENSE_KEY).
    customer_id: str | None = Field(default=None, alias="CUSTOMER_ID", min_length=1, max_length=128,
                                    pattern=r"^[A-Za-z0-9_.-]+$")
    host: str = Field(default="0.0.0.0", alias="EXPORTER_HOST")  # noqa: S104 - scraped from other pods
    port: int = Field(default=9100, alias="EXPORTER_PORT", ge=0, le=65535)  # 0: any free port
    # Scrapes within this many seconds of the last one are answered from the same sample, so a burst of scrapes
    # (several Prometheus replicas, someone with curl) costs the database one round of queries.
    cache_seconds: float = Field(default=5.0, alias="EXPORTER_CACHE_SECONDS", ge=0, le=300)
    # Longest a scrape waits for the database or the broker before answering without that source.
    source_timeout_seconds: float = Field(default=5.0, alias="EXPORTER_SOURCE_TIMEOUT_SECONDS", gt=0, le=60)
    # Set: /metrics answers only `Authorization: Bearer <token>` (Prometheus: `authorization.credentials`).
    # Unset: open, for a cluster where a NetworkPolicy lets only Prometheus reach the exporter.
    exporter_token: SecretStr | None = Field(default=None, alias="EXPORTER_TOKEN", min_length=16, max_length=512)
    # MQTT service account that may read $SYS/broker/# (`iotistic exporter create-account` makes one). Unset: the
    # exporter keeps an account of its own (iotistic-exporter, password in a 0600 file under IOTISTIC_DATA_DIR),
    # unless EXPORTER_MQTT_LOCAL_ACCOUNT is false: then no MQTT message count is exported.
    mqtt_local_account: bool = Field(default=True, alias="EXPORTER_MQTT_LOCAL_ACCOUNT")
    mqtt_username: str | None = Field(default=None, alias="EXPORTER_MQTT_USERNAME", min_length=1, max_length=128)
    mqtt_password: SecretStr | None = Field(default=None, alias="EXPORTER_MQTT_PASSWORD", max_length=256)


def load_exporter_settings(**overrides: object) -> ExporterSettings:
    """Read the environment; raise ConfigError with one readable line when something is wrong."""
    try:
        settings = ExporterSettings(**overrides)  # type: ignore[arg-type]
        settings.license_public_key_pem()
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None
    if (settings.mqtt_username is None) != (settings.mqtt_password is None):
        raise ConfigError("set both EXPORTER_MQTT_USERNAME and EXPORTER_MQTT_PASSWORD, or neither")
    return settings
