"""The agent's configuration, from the environment.

Invalid configuration is reported once, at start, as one line (`ConfigError`), like every other part.

Where the agent keeps its state (`AGENT_DATA_DIR`): the default is an absolute path that does not depend on the
working directory, because the data folder holds the device's identity: an agent started from another folder
must never find an empty store and provision itself as a second device. As root (the systemd unit, or a
container) it is `/var/lib/iotistic-agent`, the conventional place for a service's persistent state (it survives
reboots, unlike /run or /tmp). As an ordinary user, who cannot write there, it is
`$XDG_STATE_HOME/iotistic-agent` (by default `~/.local/state/iotistic-agent`).
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from iotistic.core.broker_url import BrokerAddress
from iotistic.core.broker_url import parse_broker_url as _parse_broker_url
from iotistic.core.settings import ConfigError, LogLevel, describe_validation_error

DEFAULT_DEVICE_API_PORT = 48484
#: The same rule the cloud applies to device names: no control characters, no '/'.
_NAME_PATTERN = r"^[^\x00-\x1f/]{1,128}$"


def parse_broker_url(url: str) -> BrokerAddress:
    """`mqtt://host[:port]` or `mqtts://host[:port]` (also `tcp://`, `ssl://`): (host, port, tls). The agent's
    configuration must name the scheme (no bare `host:port`). Raises ValueError with a readable reason."""
    if "://" not in url:
        raise ValueError("must be an mqtt:// or mqtts:// URL with a host, e.g. mqtt://broker.example.com:1883")
    return _parse_broker_url(url)


def default_data_dir() -> Path:
    """`/var/lib/iotistic-agent` for root, `$XDG_STATE_HOME/iotistic-agent` otherwise (see the module doc)."""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/lib/iotistic-agent")
    state_home = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state_home) / "iotistic-agent"


class AgentSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", populate_by_name=True)

    # Cloud. Without an endpoint the agent runs in local mode: the target comes from the Device API.
    cloud_api_endpoint: str | None = Field(default=None, alias="CLOUD_API_ENDPOINT")
    provisioning_key: str | None = Field(default=None, alias="PROVISIONING_KEY", min_length=8,
                                          repr=False)
    device_name: str | None = Field(default=None, alias="DEVICE_NAME", pattern=_NAME_PATTERN)
    device_type: str | None = Field(default=None, alias="DEVICE_TYPE", min_length=1, max_length=64)
    application_id: int | None = Field(default=None, alias="APPLICATION_ID", ge=1)

    # Device API. Localhost only unless told otherwise (remote callers then need the local API key).
    device_api_host: str = Field(default="127.0.0.1", alias="DEVICE_API_HOST", min_length=1)
    device_api_port: int = Field(default=DEFAULT_DEVICE_API_PORT, alias="DEVICE_API_PORT", ge=1, le=65535)

    data_dir: Path = Field(default_factory=default_data_dir, alias="AGENT_DATA_DIR")
    docker_host: str | None = Field(default=None, alias="DOCKER_HOST")

    # Timing (seconds). Polls are spread by +/- poll_jitter (a fraction of the interval) so that a fleet that
    # booted together does not poll together; errors back off exponentially from backoff_base to backoff_max.
    poll_interval: float = Field(default=60.0, alias="POLL_INTERVAL_SECONDS", ge=1, le=86_400)
    poll_jitter: float = Field(default=0.2, alias="POLL_JITTER", ge=0, lt=1)
    backoff_base: float = Field(default=2.0, alias="BACKOFF_BASE_SECONDS", gt=0, le=3600)
    backoff_max: float = Field(default=300.0, alias="BACKOFF_MAX_SECONDS", gt=0, le=86_400)
    report_throttle: float = Field(default=10.0, alias="REPORT_THROTTLE_SECONDS", ge=0, le=3600)
    metrics_interval: float = Field(default=300.0, alias="METRICS_INTERVAL_SECONDS", ge=1, le=86_400)
    log_batch_interval: float = Field(default=5.0, alias="LOG_BATCH_SECONDS", gt=0, le=3600)
    http_timeout: float = Field(default=30.0, alias="HTTP_TIMEOUT_SECONDS", gt=0, le=600)

    # The persistent outbox (reports and log batches waiting for the cloud). Oldest dropped first when full.
    outbox_max_items: int = Field(default=10_000, alias="OUTBOX_MAX_ITEMS", ge=10)
    outbox_max_mb: float = Field(default=20.0, alias="OUTBOX_MAX_MB", gt=0, le=10_240)

    # Host actions for /v1/reboot and /v1/shutdown: a command line, run without a shell. Unset: refused.
    host_reboot_command: str | None = Field(default=None, alias="HOST_REBOOT_COMMAND")
    host_shutdown_command: str | None = Field(default=None, alias="HOST_SHUTDOWN_COMMAND")

    # MQTT to the broker (reports over MQTT, HTTP as the fallback; see `iotistic.agent.sync.mqtt`). Unset
    # MQTT_ENABLED means: on when registration gave the device MQTT credentials. MQTT_BROKER_URL replaces the
    # broker address the cloud handed out (e.g. `mqtt://127.0.0.1:1883`, useless on another machine).
    mqtt_enabled: bool | None = Field(default=None, alias="MQTT_ENABLED")
    mqtt_broker_url: str | None = Field(default=None, alias="MQTT_BROKER_URL")
    mqtt_ack_timeout: float = Field(default=10.0, alias="MQTT_ACK_TIMEOUT_SECONDS", gt=0, le=600)
    mqtt_keepalive: int = Field(default=60, alias="MQTT_KEEPALIVE_SECONDS", ge=5, le=3600)

    # VPN (see `iotistic.agent.vpn`): an OpenVPN client kept running with the configuration the cloud handed out
    # at registration (or one placed at VPN_CONFIG_PATH by hand). VPN_SERVER_HOST/PORT, when set, replace the
    # configuration's `remote`. VPN_CONFIG_PATH defaults to <AGENT_DATA_DIR>/vpn/device.ovpn.
    vpn_enabled: bool = Field(default=False, alias="VPN_ENABLED")
    vpn_server_host: str | None = Field(default=None, alias="VPN_SERVER_HOST", pattern=r"^[A-Za-z0-9.:_-]{1,253}$")
    vpn_server_port: int = Field(default=1194, alias="VPN_SERVER_PORT", ge=1, le=65535)
    vpn_config_path: Path | None = Field(default=None, alias="VPN_CONFIG_PATH")
    vpn_auto_reconnect: bool = Field(default=True, alias="VPN_AUTO_RECONNECT")
    # The openvpn binary, and a command line put before it (run without a shell), e.g. `nsenter --net=...`.
    vpn_openvpn_binary: str = Field(default="openvpn", alias="VPN_OPENVPN_BINARY", min_length=1)
    vpn_command_prefix: str | None = Field(default=None, alias="VPN_COMMAND_PREFIX")
    # Restarts of the client after it ended back off exponentially between these (seconds).
    vpn_backoff_base: float = Field(default=2.0, alias="VPN_BACKOFF_BASE_SECONDS", gt=0, le=3600)
    vpn_backoff_max: float = Field(default=60.0, alias="VPN_BACKOFF_MAX_SECONDS", gt=0, le=86_400)

    log_level: LogLevel = Field(default="INFO", alias="LOG_LEVEL")

    @field_validator("cloud_api_endpoint", "provisioning_key", "device_name", "device_type", "docker_host",
                     "host_reboot_command", "host_shutdown_command", "mqtt_broker_url", "vpn_server_host",
                     "vpn_command_prefix", "vpn_config_path", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("application_id", "mqtt_enabled", mode="before")
    @classmethod
    def _empty_optional_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("cloud_api_endpoint")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().rstrip("/")
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL, e.g. https://iot.example.com")
        return value

    @field_validator("mqtt_broker_url")
    @classmethod
    def _mqtt_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        parse_broker_url(value)  # raises ValueError with the reason
        return value

    @field_validator("host_reboot_command", "host_shutdown_command", "vpn_command_prefix")
    @classmethod
    def _command_line(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            parts = shlex.split(value)
        except ValueError as exc:
            raise ValueError(f"not a valid command line ({exc})") from None
        if not parts:
            raise ValueError("empty command")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> AgentSettings:
        if self.provisioning_key and not self.cloud_api_endpoint:
            raise ValueError("PROVISIONING_KEY is set but CLOUD_API_ENDPOINT is not (which cloud should it join?)")
        if self.backoff_base > self.backoff_max:
            raise ValueError("BACKOFF_BASE_SECONDS must not exceed BACKOFF_MAX_SECONDS")
        if self.vpn_backoff_base > self.vpn_backoff_max:
            raise ValueError("VPN_BACKOFF_BASE_SECONDS must not exceed VPN_BACKOFF_MAX_SECONDS")
        return self

    # --- derived ------------------------------------------------------------------------------------------------
    @property
    def local_mode(self) -> bool:
        """No cloud: the target state is set through the Device API (`/v2/local/target-state`)."""
        return self.cloud_api_endpoint is None

    @property
    def store_path(self) -> Path:
        return self.data_dir / "agent.db"

    @property
    def outbox_max_bytes(self) -> int:
        return int(self.outbox_max_mb * 1024 * 1024)

    @property
    def api_localhost_only(self) -> bool:
        return self.device_api_host in {"127.0.0.1", "::1", "localhost"}

    @property
    def reboot_argv(self) -> list[str] | None:
        return shlex.split(self.host_reboot_command) if self.host_reboot_command else None

    @property
    def shutdown_argv(self) -> list[str] | None:
        return shlex.split(self.host_shutdown_command) if self.host_shutdown_command else None

    @property
    def vpn_config_file(self) -> Path:
        """Where the VPN client's configuration is kept (VPN_CONFIG_PATH, else under the data folder)."""
        return self.vpn_config_path if self.vpn_config_path is not None else self.data_dir / "vpn" / "device.ovpn"

    @property
    def vpn_argv_prefix(self) -> list[str]:
        return shlex.split(self.vpn_command_prefix) if self.vpn_command_prefix else []


def load_agent_settings(**overrides: object) -> AgentSettings:
    """Read the environment (overrides win, by variable name); raise ConfigError with one readable line."""
    try:
        settings = AgentSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None
    data_dir = settings.data_dir.expanduser()
    if not data_dir.is_absolute():
        data_dir = data_dir.resolve()
    settings.data_dir = data_dir
    if settings.vpn_config_path is not None:
        settings.vpn_config_path = settings.vpn_config_path.expanduser().absolute()
    return settings
