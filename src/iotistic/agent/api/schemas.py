"""Request bodies of the Device API. Unknown fields are refused (a typo is an error, not a silent no-op).

Names and tags follow the cloud's rules, so what the device accepts the cloud accepts too. The target state body
of `/v2/local/target-state` is `iotistic.core.schemas.target_state.TargetState` itself.
"""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

#: The cloud's rule for device names: no control characters, no '/'.
NAME_PATTERN = r"^[^\x00-\x1f/]{1,128}$"
#: The cloud's rule for tag keys (no ':' because its tag filter is key:value); values up to 256 characters.
TAG_KEY_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
MAX_TAGS = 100

TagKey = Annotated[str, StringConstraints(pattern=TAG_KEY_PATTERN)]
TagValue = Annotated[str, StringConstraints(max_length=256, pattern=r"^[^\x00]*$")]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ForceBody(_Body):
    """`{force}`: override update locks (`/v1/update`, `/v1/reboot`, `/v1/shutdown`, app stop/start)."""

    force: bool = False


class AppForceBody(ForceBody):
    """`/v1/restart`: `{appId, force}`."""

    app_id: int = Field(alias="appId", ge=1, le=2**31 - 1)


class ServiceBody(ForceBody):
    """`/v2/applications/{appId}/restart-service|stop-service|start-service`: `{serviceName, force}`."""

    service_name: str = Field(alias="serviceName", min_length=1, max_length=63)


class DeviceNameBody(_Body):
    device_name: str = Field(alias="deviceName", pattern=NAME_PATTERN)


class TagsPatch(_Body):
    """A JSON merge patch of the tags: a string sets a tag, `null` removes it, absent keys stay."""

    tags: dict[TagKey, TagValue | None] = Field(max_length=MAX_TAGS)


class ProvisionBody(_Body):
    cloud_endpoint: str = Field(alias="cloudEndpoint", min_length=1, max_length=2048)
    provisioning_key: str = Field(alias="provisioningKey", min_length=8, max_length=512, pattern=r"^[\x21-\x7e]+$")
    device_name: str | None = Field(default=None, alias="deviceName", pattern=NAME_PATTERN)
    device_type: str | None = Field(default=None, alias="deviceType", min_length=1, max_length=64)

    @field_validator("cloud_endpoint")
    @classmethod
    def _http_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        try:
            parts = urlsplit(value)
            scheme, host, _port = parts.scheme, parts.hostname, parts.port  # .port raises for a bad port
        except ValueError:  # e.g. an invalid IPv6 literal or port
            scheme, host = "", None
        if scheme not in ("http", "https") or not host:
            raise ValueError("must be an http:// or https:// URL, e.g. https://iot.example.com")
        return value


class FactoryResetBody(_Body):
    confirm: Literal[True] = Field(description="must be true: a factory reset removes every workload and the "
                                               "device's identity")
