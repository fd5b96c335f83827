"""What devices report: current state with metrics, and log lines."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from iotistic.core.schemas.target_state import check_plain_json


class _Open(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)


class ServiceReport(_Open):
    service_name: str = Field(alias="serviceName", max_length=64)
    service_id: int | None = Field(default=None, alias="serviceId")
    image: str | None = Field(default=None, max_length=512)
    status: str = Field(max_length=32, description="running, stopped, paused, exited, downloading, ...")
    container_id: str | None = Field(default=None, alias="containerId", max_length=128)
    error: str | None = Field(default=None, max_length=4000)
    restart_count: int | None = Field(default=None, alias="restartCount", ge=0)


class AppReport(_Open):
    app_id: int | None = Field(default=None, alias="appId")
    app_name: str | None = Field(default=None, alias="appName", max_length=64)
    services: list[ServiceReport] = Field(default_factory=list, max_length=64)


class Metrics(_Open):
    cpu: float | None = Field(default=None, ge=0, le=100, description="CPU use, percent")
    memory: float | None = Field(default=None, ge=0, description="memory used, bytes")
    memory_total: float | None = Field(default=None, alias="memoryTotal", ge=0)
    storage: float | None = Field(default=None, ge=0, description="storage used, bytes")
    storage_total: float | None = Field(default=None, alias="storageTotal", ge=0)
    temperature: float | None = Field(default=None, ge=-100, le=200, description="degrees Celsius")
    uptime: float | None = Field(default=None, ge=0, description="seconds")
    recorded_at: AwareDatetime | None = Field(
        default=None, alias="recordedAt",
        description="when the device measured it (samples queued during an outage keep their time); default: now",
    )


class DeviceReport(_Open):
    apps: dict[str, AppReport] | None = None
    config: dict[str, Any] | None = None
    applied_version: int | None = Field(default=None, alias="appliedVersion", ge=0)
    status: str | None = Field(default=None, max_length=32, description="idle, applying, error, ...")
    metrics: Metrics | None = None
    os_version: str | None = Field(default=None, alias="osVersion", max_length=128)
    agent_version: str | None = Field(default=None, alias="agentVersion", max_length=64)
    ip_address: str | None = Field(default=None, alias="ipAddress", max_length=64)

    @model_validator(mode="after")
    def _plain_json(self) -> DeviceReport:
        check_plain_json(self.model_dump(mode="python", by_alias=True))
        return self


class LogLine(_Open):
    timestamp: dt.datetime
    message: str = Field(max_length=16_000)
    service_name: str | None = Field(default=None, alias="serviceName", max_length=64)
    is_stderr: bool = Field(default=False, alias="isStderr")
