"""What one running cloud API holds: settings, database, licence state. Built once by `create_app`."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from iotistic.cloud.services.device_cache import DeviceAuthCache, DeviceChangeListener
from iotistic.cloud.services.license import LicenseService
from iotistic.cloud.services.presence import PresenceTracker
from iotistic.core.settings import CloudSettings
from iotistic.ingest.live import LiveBus
from iotistic.ingest.service import IngestService


@dataclass
class CloudContext:
    settings: CloudSettings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    read_sessions: async_sessionmaker[AsyncSession]  # for work that never writes
    jwt_secret: str
    licenses: LicenseService
    device_cache: DeviceAuthCache
    presence: PresenceTracker
    device_listener: DeviceChangeListener | None
    live: LiveBus  # fresh readings for /ws (in-process, or Redis Streams when REDIS_URL is set)
    ingest: IngestService | None = None  # when ingest runs inside the API (INGEST_IN_API), once it started
