"""The VPN server's configuration, from the environment (`VPN_*`)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from iotistic.core.settings import ConfigError, LogLevel, describe_validation_error

DEFAULT_PORT = 1194


class VpnSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", populate_by_name=True)

    subnet: str = Field(default="10.8.0.0", alias="VPN_SUBNET")
    netmask: str = Field(default="255.255.255.0", alias="VPN_NETMASK")
    # Addresses per customer block (a power of two): the default 16 gives 14 devices per block, 15 blocks in a /24.
    # A customer whose block is full gets another one.
    customer_block: int = Field(default=16, alias="VPN_CUSTOMER_BLOCK", ge=4, le=65536)

    pki_dir: Path = Field(default=Path("/etc/openvpn/pki"), alias="VPN_PKI_DIR")
    # Encrypts the CA, server and device private keys at rest. Required by every command that signs.
    key_passphrase: str | None = Field(default=None, alias="VPN_KEY_PASSPHRASE", min_length=12, repr=False)
    service_token: str | None = Field(default=None, alias="VPN_SERVICE_TOKEN", min_length=24, repr=False)

    # What devices dial: written into every .ovpn.
    server_host: str | None = Field(default=None, alias="VPN_SERVER_HOST", pattern=r"^[A-Za-z0-9.:-]{1,253}$")
    server_port: int = Field(default=DEFAULT_PORT, alias="VPN_SERVER_PORT", ge=1, le=65535)
    # The OpenVPN server's own files, read by the certificate manager for connected devices and error counts.
    status_file: Path = Field(default=Path("/var/log/openvpn/status.log"), alias="VPN_STATUS_FILE")
    log_file: Path = Field(default=Path("/var/log/openvpn/openvpn.log"), alias="VPN_LOG_FILE")
    # OpenVPN's management interface (unix socket): when set, revoking a device also ends its live session.
    management_socket: Path | None = Field(default=None, alias="VPN_MANAGEMENT_SOCKET")
    # OpenVPN rewrites the status file every 10 s (as rendered); an older file means the server is not running.
    status_max_age: int = Field(default=60, alias="VPN_STATUS_MAX_AGE", ge=1, le=86400)
    # Push a default route through the tunnel to devices (off: devices keep their own internet access).
    redirect_gateway: bool = Field(default=False, alias="VPN_REDIRECT_GATEWAY")

    ca_days: int = Field(default=3650, alias="VPN_CA_DAYS", ge=1, le=36500)
    server_cert_days: int = Field(default=825, alias="VPN_SERVER_CERT_DAYS", ge=1, le=3650)
    device_cert_days: int = Field(default=825, alias="VPN_DEVICE_CERT_DAYS", ge=1, le=3650)
    # OpenVPN refuses every client once the CRL's nextUpdate has passed: `vpn serve` re-signs it when half of this
    # is left.
    crl_days: int = Field(default=30, alias="VPN_CRL_DAYS", ge=2, le=365)
    log_level: LogLevel = Field(default="INFO", alias="LOG_LEVEL")

    @field_validator("subnet", "netmask")
    @classmethod
    def _ipv4(cls, value: str) -> str:
        try:
            return str(ipaddress.IPv4Address(value))
        except ValueError:
            raise ValueError("must be an IPv4 address such as 10.8.0.0") from None

    @field_validator("customer_block")
    @classmethod
    def _power_of_two(cls, value: int) -> int:
        if value & (value - 1):
            raise ValueError("must be a power of two (4, 8, 16, ... 65536)")
        return value

    @model_validator(mode="after")
    def _network_fits(self) -> VpnSettings:
        network = self.network  # raises ValueError for a bad netmask or host bits set
        if network.num_addresses < 2 * self.customer_block:
            raise ValueError(f"VPN_SUBNET/VPN_NETMASK ({network}) must hold at least two blocks of "
                             f"VPN_CUSTOMER_BLOCK={self.customer_block} addresses (one is the server's)")
        return self

    @property
    def network(self) -> ipaddress.IPv4Network:
        try:
            return ipaddress.IPv4Network(f"{self.subnet}/{self.netmask}")
        except ValueError as exc:
            raise ValueError(f"VPN_SUBNET/VPN_NETMASK: {exc}") from None

    def require_passphrase(self) -> str:
        if not self.key_passphrase:
            raise ConfigError("VPN_KEY_PASSPHRASE is not set (at least 12 characters): it encrypts the private keys")
        return self.key_passphrase

    def require_server_host(self) -> str:
        if not self.server_host:
            raise ConfigError("VPN_SERVER_HOST is not set: devices need the server's public name or address")
        return self.server_host


def load_vpn_settings(**overrides: object) -> VpnSettings:
    """Read the environment; raise ConfigError with one readable line when something is wrong."""
    try:
        return VpnSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None
