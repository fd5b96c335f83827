"""Request and response bodies of the cloud API (camelCase on the wire)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, EmailStr, Field, field_validator
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from iotistic.cloud.models import DeviceStatus, MqttAccountKind, Role
from iotistic.cloud.services.rollout import RolloutState
from iotistic.core.acl import Access, validate_rule_topic
from iotistic.core.schemas.target_state import TargetState, must_match

UUID_PATTERN = r"^[A-Za-z0-9_-]{8,64}$"  # also a valid MQTT topic level: no '/', '+' or '#'
NAME_PATTERN = r"^[^\x00-\x1f/]{1,128}$"
TAG_KEY_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"  # no ":" (the tag filter is key:value)
FLEET_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, from_attributes=True,
                              extra="forbid")


# Auth and users ----------------------------------------------------------------------------------------------

class LoginRequest(Wire):
    email: str = Field(min_length=3, max_length=254)
    password: str = Field(min_length=1, max_length=1024)


class TokenResponse(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = "bearer"
    expires_in: int


class RefreshRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    refresh_token: str = Field(alias="refresh_token", min_length=1, max_length=512)


class SetupStatus(Wire):
    needed: bool = Field(description="true while no user exists: the setup link can create the first owner")


class SetupRequest(Wire):
    token: str = Field(min_length=1, max_length=256, description="the token from the setup link's #token=")
    email: EmailStr
    password: str = Field(min_length=1, max_length=1024)


class UserOut(Wire):
    id: int
    email: str
    role: Role
    is_active: bool
    created_at: dt.datetime
    last_login_at: dt.datetime | None = None


class UserCreate(Wire):
    email: EmailStr
    password: str = Field(min_length=1, max_length=1024)
    role: Role = Role.viewer


class UserUpdate(Wire):
    role: Role | None = None
    password: str | None = Field(default=None, min_length=1, max_length=1024)
    is_active: bool | None = None


# Provisioning keys --------------------------------------------------------------------------------------------

class ProvisioningKeyCreate(Wire):
    max_devices: int | None = Field(default=None, ge=1, le=1_000_000)
    fleet: int | str | None = Field(default=None, description="fleet id or name")
    expires_at: AwareDatetime | None = None
    description: str | None = Field(default=None, max_length=500)


class FleetRef(Wire):
    id: int
    name: str


class ProvisioningKeyOut(Wire):
    id: str
    key_prefix: str
    description: str | None
    fleet: FleetRef | None
    max_devices: int | None
    devices_registered: int
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None
    created_at: dt.datetime
    created_by: str | None


class ProvisioningKeyCreated(ProvisioningKeyOut):
    key: str = Field(description="the secret; shown only in this response")


# Devices ------------------------------------------------------------------------------------------------------

class DeviceRegister(Wire):
    uuid: str = Field(pattern=UUID_PATTERN)
    device_name: str = Field(pattern=NAME_PATTERN)
    device_type: str = Field(min_length=1, max_length=64)
    device_api_key: str = Field(min_length=32, max_length=256, pattern=r"^[\x21-\x7e]+$")
    application_id: int | None = Field(default=None, description="ignored: the key decides the fleet")
    mac_address: str | None = Field(default=None, max_length=64)
    os_version: str | None = Field(default=None, max_length=128)
    agent_version: str | None = Field(default=None, max_length=64)


class MqttCredentials(Wire):
    username: str
    password: str
    broker: str


class VpnInfo(Wire):
    """The device's VPN at registration (and from `GET /api/v1/device/{uuid}/vpn`). `status`: `disabled` (VPN is
    off in this cloud), `not_licensed` (the plan has no VPN), `issued` (`config` holds the complete .ovpn),
    `pending` (the certificate manager could not be reached: the device asks `retry` again later), `refused` (the
    certificate manager refused this device, e.g. its uuid is too long for a certificate name; `message` says
    why)."""

    enabled: bool = False
    status: Literal["disabled", "not_licensed", "issued", "pending", "refused"] = "disabled"
    message: str | None = None
    config: str | None = Field(default=None, description="the device's .ovpn; it holds the device's private key")
    address: str | None = Field(default=None, description="the device's fixed VPN address")
    common_name: str | None = None
    retry: str | None = Field(default=None, description="where the device asks again while `pending`")


class DeviceRegistered(Wire):
    id: int
    uuid: str
    device_name: str
    device_type: str
    status: DeviceStatus
    fleet: FleetRef | None
    mqtt: MqttCredentials
    vpn: VpnInfo
    created_at: dt.datetime


class RotateKeyRequest(Wire):
    device_api_key: str | None = Field(default=None, min_length=32, max_length=256, pattern=r"^[\x21-\x7e]+$")


class RotateKeyResponse(Wire):
    device_api_key: str


class DeviceOut(Wire):
    id: int
    uuid: str
    name: str
    device_type: str
    status: DeviceStatus
    online: bool
    fleet: FleetRef | None
    tags: dict[str, str]
    last_seen_at: dt.datetime | None
    os_version: str | None
    agent_version: str | None
    ip_address: str | None
    created_at: dt.datetime


class DeviceCreate(Wire):
    uuid: str | None = Field(default=None, pattern=UUID_PATTERN)
    name: str = Field(pattern=NAME_PATTERN)
    device_type: str = Field(default="generic", min_length=1, max_length=64)
    fleet: int | str | None = None


class DeviceCreated(DeviceOut):
    device_api_key: str = Field(description="shown only in this response")


class DeviceUpdate(Wire):
    name: str | None = Field(default=None, pattern=NAME_PATTERN)
    device_type: str | None = Field(default=None, min_length=1, max_length=64)
    fleet: int | str | None = None
    status: DeviceStatus | None = None


class DevicePage(Wire):
    items: list[DeviceOut]
    total: int
    limit: int
    offset: int


Tags = dict[str, str]


# Target state -------------------------------------------------------------------------------------------------

class TargetOut(Wire):
    staged: dict[str, Any]
    deployed: dict[str, Any]
    version: int
    release_id: int | None
    staged_at: dt.datetime
    deployed_at: dt.datetime | None
    pending: bool = Field(description="staged differs from deployed")


class DeploymentOut(Wire):
    version: int
    document: dict[str, Any]
    release_id: int | None
    deployed_by: str
    deployed_at: dt.datetime


class FleetCreate(Wire):
    name: Annotated[str, Field(json_schema_extra={"pattern": FLEET_NAME_PATTERN}), must_match(
        FLEET_NAME_PATTERN, "use letters, digits, '.', '_' and '-', starting with a letter or digit (at most 64 "
        "characters)")]
    description: str | None = Field(default=None, max_length=500)


class FleetUpdate(Wire):
    description: str | None = Field(default=None, max_length=500)


class FleetOut(Wire):
    id: int
    name: str
    description: str | None
    device_count: int = 0
    created_at: dt.datetime


class ReleaseCreate(Wire):
    name: str = Field(min_length=1, max_length=128)
    fleet: int | str | None = None
    target: TargetState
    notes: str | None = Field(default=None, max_length=10_000)


class ReleaseOut(Wire):
    id: int
    name: str
    fleet_id: int | None
    document: dict[str, Any]
    notes: str | None
    created_by: str
    created_at: dt.datetime


class ReleaseDeploy(Wire):
    fleet: int | str | None = None
    tag: str | None = Field(default=None, max_length=321, description="key or key:value")
    devices: list[str] | None = Field(default=None, max_length=10_000)


class ReleaseDeployed(Wire):
    release_id: int
    devices: list[str]
    count: int


class RolloutDeviceOut(Wire):
    uuid: str
    name: str
    online: bool
    target_version: int = Field(description="the version of the target deployed to the device")
    target_release_id: int | None = Field(description="the release that version came from (null: none)")
    applied_version: int | None = Field(description="the version the device reports running")
    status: str | None = Field(description="the device's reported status: idle, applying, applied, error")
    reported_at: dt.datetime | None
    state: RolloutState


class RolloutOut(Wire):
    """`summary` counts every selected device per state; `items` is the page (problems first), `total` what
    matched the `state` filter."""

    release_id: int
    summary: dict[RolloutState, int]
    items: list[RolloutDeviceOut]
    total: int
    limit: int
    offset: int


# Reports ------------------------------------------------------------------------------------------------------

class CurrentStateOut(Wire):
    uuid: str
    state: dict[str, Any] | None
    reported_at: dt.datetime | None


class LogOut(Wire):
    timestamp: dt.datetime
    service_name: str | None
    message: str
    is_stderr: bool


class MetricOut(Wire):
    recorded_at: dt.datetime
    cpu: float | None
    memory: float | None
    memory_total: float | None
    storage: float | None
    storage_total: float | None
    temperature: float | None
    uptime: float | None


class LogsAccepted(Wire):
    accepted: int


# Licence and audit --------------------------------------------------------------------------------------------

class LicenseOut(Wire):
    mode: str
    plan: str
    customer_id: str | None
    features: dict[str, Any]
    limits: dict[str, Any]
    trial: dict[str, Any]
    subscription: dict[str, Any]
    expires_at: dt.datetime | None
    reason: str | None
    usage: dict[str, Any]


class LicenseInstall(Wire):
    token: str = Field(min_length=10, max_length=20_000)


class AuditOut(Wire):
    id: int
    at: dt.datetime
    actor: str
    action: str
    target_type: str | None
    target_id: str | None
    details: dict[str, Any]
    ip: str | None


# MQTT accounts and ACL rules ----------------------------------------------------------------------------------

# Usernames end up in Mosquitto's password_file (`user:hash`) and acl_file (`user <name>`), and in topics through
# `%u`: no ':', whitespace, control characters, '/', '+', '#' or '%', so a conservative set of characters.
MQTT_USERNAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$"


def _rule_topic(value: str) -> str:
    try:
        validate_rule_topic(value)
    except ValueError as e:
        raise PydanticCustomError("topic_filter", str(e)) from None
    return value


RuleTopic = Annotated[str, Field(max_length=512, description="topic filter with + and #; whole levels %u and %c "
                                 "stand for the username and client id"), AfterValidator(_rule_topic)]


class MqttRuleIn(Wire):
    topic: RuleTopic
    access: Access


class MqttRuleOut(Wire):
    id: int
    topic: str
    access: Access


class MqttAccountCreate(Wire):
    username: Annotated[str, Field(json_schema_extra={"pattern": MQTT_USERNAME_PATTERN}), must_match(
        MQTT_USERNAME_PATTERN, "use letters, digits and '.', '_', '@', '-', starting with a letter or digit (at most "
        "128 characters)")] = Field(description="letters, digits and . _ @ - (starting with a letter or digit), up "
                                    "to 128")
    kind: Literal["service", "integration"]
    password: str | None = Field(default=None, max_length=256,
                                 description="at least 16 characters; omitted: one is generated and shown once")
    rules: list[MqttRuleIn] = Field(default_factory=list, max_length=100)

    @field_validator("kind", mode="before")
    @classmethod
    def _not_device(cls, value: Any) -> Any:
        if value == MqttAccountKind.device:
            raise PydanticCustomError("device_account", "device accounts are created by registering the device, "
                                      "not by hand: kind must be service or integration")
        return value


class MqttAccountOut(Wire):
    id: int
    username: str
    kind: MqttAccountKind
    device_uuid: str | None = Field(description="the device a device account belongs to")
    is_active: bool
    created_at: dt.datetime
    rules: list[MqttRuleOut]


class MqttAccountCreated(MqttAccountOut):
    password: str | None = Field(description="the generated password, shown only in this response (null when "
                                 "the request chose one)")


class MqttAccountUpdate(Wire):
    is_active: bool | None = None
    reset_password: bool = Field(default=False, description="generate a new password, shown once in the response")
    password: str | None = Field(default=None, max_length=256, description="set this password instead")


class MqttAccountUpdated(MqttAccountOut):
    password: str | None = Field(description="the new generated password if resetPassword was asked, shown only "
                                 "in this response")


class MqttAccountPage(Wire):
    items: list[MqttAccountOut]
    total: int
    limit: int
    offset: int
