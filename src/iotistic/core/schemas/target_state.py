"""The declarative target state: what a device should run.

The same document travels from the dashboard (staged target), through the cloud (deployed, versioned) to the
agent (planned and reconciled). Unknown fields are refused so a typo is an error, not a silently ignored key.
"""

from __future__ import annotations

import math
import re
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

_NAME = r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$"
_PORT = re.compile(
    r"^(?:(?P<ip>\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-fA-F:]+\]):)?(?:(?P<host>\d{1,5}):)?(?P<container>\d{1,5})(?:/(?P<proto>tcp|udp))?$"
)
_MEMORY = re.compile(r"^\d+(?:[bkmg])?$", re.IGNORECASE)
_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
_IMAGE = r"^[^\s]+$"


def must_match(pattern: str, message: str) -> AfterValidator:
    """Refuse a string with `message` (people read it next to the field in the dashboard) instead of pydantic's
    "String should match pattern '<regex>'"; the schema keeps documenting the pattern."""
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise PydanticCustomError("string_pattern_mismatch", message)
        return value

    return AfterValidator(check)


Name = Annotated[str, Field(json_schema_extra={"pattern": _NAME}), must_match(
    _NAME, "use letters, digits, '.', '_' and '-', starting with a letter or digit (at most 63 characters)")]
EnvName = Annotated[str, Field(json_schema_extra={"pattern": _ENV_NAME}), must_match(
    _ENV_NAME, "an environment variable name uses letters, digits and '_' and does not start with a digit")]
Image = Annotated[str, Field(min_length=1, max_length=512, json_schema_extra={"pattern": _IMAGE}), must_match(
    _IMAGE, "an image reference has no spaces (e.g. nginx:1.27 or registry.example.com/app:2)")]


def check_plain_json(value: Any, where: str = "") -> None:
    """Refuse what JSON or a database cannot carry faithfully: NaN and Infinity, text that is not valid Unicode
    (lone surrogates) and NUL characters (PostgreSQL text and JSONB cannot hold them). Raises ValueError."""
    stack: list[tuple[Any, str]] = [(value, where)]
    while stack:
        item, at = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                raise ValueError(f"{at or 'text'}: NUL characters are not allowed")
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError(f"{at or 'text'}: not valid Unicode text") from None
        elif isinstance(item, float) and not math.isfinite(item):
            raise ValueError(f"{at or 'number'}: NaN and Infinity are not JSON numbers")
        elif isinstance(item, dict):
            for key, child in item.items():
                stack.append((key, f"{at}.{key}" if at else "key"))
                stack.append((child, f"{at}.{key}" if at else str(key)))
        elif isinstance(item, list | tuple):
            stack.extend((child, f"{at}[{i}]") for i, child in enumerate(item))


class ServiceState(StrEnum):
    running = "running"
    stopped = "stopped"
    paused = "paused"


class RestartPolicy(StrEnum):
    no = "no"
    always = "always"
    on_failure = "on-failure"
    unless_stopped = "unless-stopped"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Resources(_Strict):
    cpus: float | None = Field(default=None, gt=0, le=256, description="CPU cores, e.g. 0.5")
    memory: str | None = Field(default=None, description="memory limit, e.g. 256m or 1g")

    @field_validator("memory")
    @classmethod
    def _memory(cls, value: str | None) -> str | None:
        if value is not None and not _MEMORY.match(value):
            raise ValueError("memory must be a number with an optional unit b, k, m or g (e.g. 256m)")
        return value


class Probe(_Strict):
    command: list[str] | None = Field(default=None, min_length=1)
    http_path: str | None = Field(default=None, alias="httpPath", pattern=r"^/")
    port: int | None = Field(default=None, ge=1, le=65535)
    interval_seconds: int = Field(default=30, alias="intervalSeconds", ge=1, le=3600)
    timeout_seconds: int = Field(default=5, alias="timeoutSeconds", ge=1, le=600)
    retries: int = Field(default=3, ge=1, le=100)

    @model_validator(mode="after")
    def _one_check(self) -> Probe:
        if (self.command is None) == (self.http_path is None):
            raise ValueError("a probe needs exactly one of command or httpPath")
        if self.http_path is not None and self.port is None:
            raise ValueError("an httpPath probe needs a port")
        return self


class Probes(_Strict):
    liveness: Probe | None = None
    readiness: Probe | None = None


class ServiceConfig(_Strict):
    image: Image
    command: list[str] | str | None = None
    entrypoint: list[str] | str | None = None
    environment: dict[EnvName, str] = Field(default_factory=dict)
    ports: list[str] = Field(default_factory=list, description='"[ip:]host:container[/tcp|udp]"')
    volumes: list[str] = Field(default_factory=list, description='"name:/path[:ro]" or "/host/path:/path[:ro]"')
    networks: list[Name] = Field(default_factory=list)
    restart: RestartPolicy = RestartPolicy.unless_stopped
    labels: dict[str, str] = Field(default_factory=dict)
    resources: Resources | None = None
    probes: Probes | None = None

    @field_validator("ports")
    @classmethod
    def _ports(cls, values: list[str]) -> list[str]:
        for value in values:
            match = _PORT.match(value)
            if not match:
                raise ValueError(f"port {value!r} must look like [ip:]host:container[/tcp|udp]")
            for part in ("host", "container"):
                number = match.group(part)
                if number is not None and not 1 <= int(number) <= 65535:
                    raise ValueError(f"port {value!r}: {number} is not between 1 and 65535")
        return values

    @field_validator("volumes")
    @classmethod
    def _volumes(cls, values: list[str]) -> list[str]:
        for value in values:
            parts = value.split(":")
            if len(parts) not in (2, 3) or not parts[0] or not parts[1].startswith("/"):
                raise ValueError(f"volume {value!r} must look like name:/path or /host/path:/path[:ro|rw]")
            if len(parts) == 3 and parts[2] not in ("ro", "rw"):
                raise ValueError(f"volume {value!r}: mode must be ro or rw")
            if not parts[0].startswith("/") and not re.match(_NAME, parts[0]):
                raise ValueError(f"volume {value!r}: {parts[0]!r} is not a valid volume name")
        return values


class Service(_Strict):
    service_id: int = Field(alias="serviceId", ge=1)
    service_name: Name = Field(alias="serviceName")
    image_name: str | None = Field(default=None, alias="imageName", max_length=512)
    state: ServiceState = ServiceState.running
    config: ServiceConfig

    @model_validator(mode="after")
    def _image_name(self) -> Service:
        if self.image_name is None:
            self.image_name = self.config.image
        return self


class App(_Strict):
    app_id: int = Field(alias="appId", ge=1)
    app_name: Name = Field(alias="appName")
    services: list[Service] = Field(default_factory=list, max_length=64)

    @field_validator("services")
    @classmethod
    def _unique_services(cls, services: list[Service]) -> list[Service]:
        names = [s.service_name for s in services]
        ids = [s.service_id for s in services]
        if len(set(names)) != len(names):
            raise ValueError("service names must be unique within an app")
        if len(set(ids)) != len(ids):
            raise ValueError("serviceId values must be unique within an app")
        return services


class TargetState(_Strict):
    """`{apps: {<appId>: App}, config: {...}}`: the document users edit and devices apply."""

    apps: dict[str, App] = Field(default_factory=dict, max_length=32)
    config: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _keys_match(self) -> TargetState:
        for key, app in self.apps.items():
            if key != str(app.app_id):
                raise ValueError(f"apps key {key!r} must equal its appId ({app.app_id})")
        check_plain_json(self.model_dump(mode="python", by_alias=True))
        return self

    def document(self) -> dict[str, Any]:
        """The canonical JSON form (aliases, defaults filled), as stored and as sent to devices."""
        return self.model_dump(mode="json", by_alias=True)
