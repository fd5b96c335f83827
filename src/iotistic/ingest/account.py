"""The MQTT service account ingest logs in with (see `iotistic.cloud.services.service_accounts`).

Production: an admin makes it once (`iotistic ingest create-account`, or the MQTT accounts API) and hands its
credentials to every worker as INGEST_MQTT_USERNAME / INGEST_MQTT_PASSWORD. Without those, ingest keeps an
account of its own: `iotistic-ingest`, whose password lives in a 0600 file under the data dir and is set again
at every start. That suits one worker (the embedded default); several workers must share configured credentials,
or each start would change the password under the others.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from iotistic.cloud.services import service_accounts
from iotistic.core.settings import CloudSettings
from iotistic.core.topics import INGEST_READ_FILTER

LOCAL_ACCOUNT = "iotistic-ingest"
PASSWORD_FILE = "ingest-mqtt-password"


async def create_account(engine: AsyncEngine, username: str) -> str:
    """A new service account that may read every device topic; returns its generated password (shown once)."""
    return await service_accounts.create_account(engine, username, INGEST_READ_FILTER)


async def ensure_local_account(engine: AsyncEngine, data_dir: Path) -> tuple[str, str]:
    """The local account (made or repaired: active, the read rule, the file's password)."""
    return await service_accounts.ensure_local_account(engine, data_dir, username=LOCAL_ACCOUNT,
                                                       password_file=PASSWORD_FILE, read_filter=INGEST_READ_FILTER)


async def credentials(settings: CloudSettings, engine: AsyncEngine) -> tuple[str, str]:
    if settings.ingest_mqtt_username and settings.ingest_mqtt_password:
        return settings.ingest_mqtt_username, settings.ingest_mqtt_password
    return await ensure_local_account(engine, settings.data_dir)
