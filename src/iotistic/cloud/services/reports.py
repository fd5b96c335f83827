"""What devices report (current state, metrics, logs) and how users read it back."""

from __future__ import annotations

import datetime as dt
import json

from pydantic import ValidationError
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from iotistic.cloud.errors import ApiError
from iotistic.cloud.models import Device, DeviceCurrentState, DeviceLog, DeviceMetric
from iotistic.core.db import utcnow
from iotistic.core.schemas.reports import DeviceReport, LogLine

MAX_LOG_LINES = 5_000
# Device clocks drift; a sample this far ahead of ours is still believed.
CLOCK_SKEW = dt.timedelta(minutes=5)


async def save_report(session: AsyncSession, device: Device, report: DeviceReport) -> None:
    now = utcnow()
    state_fields = report.model_dump(mode="json", by_alias=True, exclude_none=True,
                                     exclude={"metrics", "os_version", "agent_version", "ip_address"})
    if state_fields:
        current = await session.get(DeviceCurrentState, device.id)
        if current is None:
            session.add(DeviceCurrentState(device_id=device.id, document=state_fields, reported_at=now))
        else:
            # Partial reports are allowed: what is not reported keeps its last value.
            current.document = {**current.document, **state_fields}
            current.reported_at = now
    if report.metrics is not None:
        m = report.metrics
        recorded_at = now
        if m.recorded_at is not None:
            if m.recorded_at > now + CLOCK_SKEW:
                raise ApiError(422, "validation_error", "metrics.recordedAt lies in the future; check the device clock")
            recorded_at = m.recorded_at
        session.add(DeviceMetric(device_id=device.id, recorded_at=recorded_at, cpu=m.cpu, memory=m.memory,
                                 memory_total=m.memory_total, storage=m.storage, storage_total=m.storage_total,
                                 temperature=m.temperature, uptime=m.uptime))
    for field in ("os_version", "agent_version", "ip_address"):
        value = getattr(report, field)
        if value is not None:
            setattr(device, field, value)


def parse_ndjson(body: bytes) -> list[LogLine]:
    """Every line must be valid, or none is stored: the error names the first bad line."""
    lines: list[LogLine] = []
    for number, raw in enumerate(body.splitlines(), start=1):
        if not raw.strip():
            continue
        if len(lines) >= MAX_LOG_LINES:
            raise ApiError(413, "payload_too_large", f"at most {MAX_LOG_LINES} log lines per request")
        try:
            lines.append(LogLine.model_validate(json.loads(raw)))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ApiError(400, "bad_request", f"line {number}: not JSON ({exc})") from None
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "line"
            raise ApiError(422, "validation_error", f"line {number}: {where}: {first['msg']}") from None
    return lines


async def save_logs(session: AsyncSession, device: Device, lines: list[LogLine]) -> int:
    if not lines:
        return 0
    now = utcnow()
    await session.execute(insert(DeviceLog), [
        {"device_id": device.id, "timestamp": line.timestamp if line.timestamp.tzinfo else
         line.timestamp.replace(tzinfo=dt.UTC), "service_name": line.service_name, "message": line.message,
         "is_stderr": line.is_stderr, "received_at": now}
        for line in lines
    ])
    return len(lines)


async def current_state(session: AsyncSession, device: Device) -> DeviceCurrentState | None:
    return await session.get(DeviceCurrentState, device.id)


async def logs(session: AsyncSession, device: Device, *, service: str | None, since: dt.datetime | None,
               limit: int) -> list[DeviceLog]:
    query = select(DeviceLog).where(DeviceLog.device_id == device.id)
    if service:
        query = query.where(DeviceLog.service_name == service)
    if since:
        query = query.where(DeviceLog.timestamp >= since)
    rows = await session.scalars(query.order_by(DeviceLog.timestamp.desc(), DeviceLog.id.desc()).limit(limit))
    return list(reversed(rows.all()))


async def metrics(session: AsyncSession, device: Device, *, since: dt.datetime | None, until: dt.datetime | None,
                  limit: int) -> list[DeviceMetric]:
    query = select(DeviceMetric).where(DeviceMetric.device_id == device.id)
    if since:
        query = query.where(DeviceMetric.recorded_at >= since)
    if until:
        query = query.where(DeviceMetric.recorded_at <= until)
    rows = await session.scalars(query.order_by(DeviceMetric.recorded_at.desc()).limit(limit))
    return list(reversed(rows.all()))
