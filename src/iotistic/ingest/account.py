"""The MQTT service account ingest logs in with.

Production: an admin makes it once (`iotistic ingest create-account`, or the MQTT accounts API) and hands its
credentials to every worker as INGEST_MQTT_USERNAME / INGEST_MQTT_PASSWORD. Without those, ingest keeps an
account of its own: `iotistic-ingest`, whose password lives in a 0600 file under the data dir and is set again
at every start. That suits one worker (the embedded default); several workers must share configured credentials,
or each start would change the password under the others.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from iotistic.cloud.models import MqttAccount, MqttAccountKind, MqttAclRule
from iotistic.cloud.services import mqtt_accounts
from iotistic.core.acl import Access
from iotistic.core.security import mosquitto_password_hash
from iotistic.core.settings import CloudSettings
from iotistic.core.topics import INGEST_READ_FILTER

LOCAL_ACCOUNT = "iotistic-ingest"
PASSWORD_FILE = "ingest-mqtt-password"


async def create_account(engine: AsyncEngine, username: str) -> str:
    """A new service account that may read every device topic; returns its generated password (shown once)."""
    async with async_sessionmaker(engine)() as session:
        _account, password = await mqtt_accounts.create_account(
            session, username=username, kind=MqttAccountKind.service, password=None,
            rules=[(INGEST_READ_FILTER, Access.read)])
        await session.commit()
    assert password is not None
    return password


def _local_password(data_dir: Path) -> str:
    path = data_dir / PASSWORD_FILE
    if path.exists():
        password = path.read_text().strip()
        if len(password) >= 32:
            return password
    data_dir.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(32)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(fd, "w") as handle:
        handle.write(password)
    os.replace(tmp, path)
    return password


async def ensure_local_account(engine: AsyncEngine, data_dir: Path) -> tuple[str, str]:
    """The local account (made or repaired: active, the read rule, the file's password)."""
    password = _local_password(data_dir)
    async with async_sessionmaker(engine)() as session:
        account = await session.scalar(select(MqttAccount).where(MqttAccount.username == LOCAL_ACCOUNT))
        if account is None:
            account = MqttAccount(username=LOCAL_ACCOUNT, kind=MqttAccountKind.service, device_id=None,
                                  is_active=True, password_hash=mosquitto_password_hash(password))
            account.rules = [MqttAclRule(topic=INGEST_READ_FILTER, access="read")]
            session.add(account)
        else:
            account.is_active = True
            account.password_hash = mosquitto_password_hash(password)
            if not any(r.topic == INGEST_READ_FILTER and r.access in ("read", "readwrite") for r in account.rules):
                account.rules.append(MqttAclRule(topic=INGEST_READ_FILTER, access="read"))
        await session.commit()
    return LOCAL_ACCOUNT, password


async def credentials(settings: CloudSettings, engine: AsyncEngine) -> tuple[str, str]:
    if settings.ingest_mqtt_username and settings.ingest_mqtt_password:
        return settings.ingest_mqtt_username, settings.ingest_mqtt_password
    return await ensure_local_account(engine, settings.data_dir)
