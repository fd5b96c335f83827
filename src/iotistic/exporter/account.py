"""The MQTT service account the exporter reads the broker's message count with: read on `$SYS/broker/#` only, so
it sees the broker's statistics and never a device's data (see `iotistic.cloud.services.service_accounts`).

Either an admin makes one (`iotistic exporter create-account`, or the MQTT accounts API) and hands it over as
EXPORTER_MQTT_USERNAME / EXPORTER_MQTT_PASSWORD, or the exporter keeps an account of its own, as ingest does:
`iotistic-exporter`, whose password lives in a 0600 file under the data dir and is set again at every start.
One exporter runs per instance, so no other process depends on that password.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from iotistic.cloud.services import service_accounts
from iotistic.exporter.broker import ACL_FILTER
from iotistic.exporter.settings import ExporterSettings

LOCAL_ACCOUNT = "iotistic-exporter"
PASSWORD_FILE = "exporter-mqtt-password"


async def create_account(engine: AsyncEngine, username: str) -> str:
    """A new service account that may read the broker's $SYS tree; returns its generated password (shown once)."""
    return await service_accounts.create_account(engine, username, ACL_FILTER)


async def ensure_local_account(engine: AsyncEngine, data_dir: Path) -> tuple[str, str]:
    """The exporter's own account, made or repaired: active, the $SYS read rule, the file's password."""
    return await service_accounts.ensure_local_account(engine, data_dir, username=LOCAL_ACCOUNT,
                                                       password_file=PASSWORD_FILE, read_filter=ACL_FILTER)


async def credentials(settings: ExporterSettings, engine: AsyncEngine) -> tuple[str, str] | None:
    """The configured account, else the exporter's own (unless EXPORTER_MQTT_LOCAL_ACCOUNT is off: then None, and
    the broker is not asked)."""
    if settings.mqtt_username is not None and settings.mqtt_password is not None:
        return settings.mqtt_username, settings.mqtt_password.get_secret_value()
    if not settings.mqtt_local_account:
        return None
    return await ensure_local_account(engine, settings.data_dir)
