"""The MQTT service account the exporter reads the broker's message count with: read on `$SYS/broker/#` only, so
it sees the broker's statistics and never a device's data.

Either an admin makes one (`iotistic exporter create-account`, or the MQTT accounts API) and hands it over as
EXPORTER_MQTT_USERNAME / EXPORTER_MQTT_PASSWORD, or the exporter keeps an account of its own, as ingest does:
`iotistic-exporter`, whose password lives in a 0600 file under the data dir and is set again at every start.
One exporter runs per instance, so no other process depends on that password; the broker sync makes the broker
know it within a second or two.
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
from iotistic.exporter.broker import ACL_FILTER
from iotistic.exporter.settings import ExporterSettings

LOCAL_ACCOUNT = "iotistic-exporter"
PASSWORD_FILE = "exporter-mqtt-password"


async def create_account(engine: AsyncEngine, username: str) -> str:
    """A new service account that may read the broker's $SYS tree; returns its generated password (shown once)."""
    async with async_sessionmaker(engine)() as session:
        _account, password = await mqtt_accounts.create_account(
            session, username=username, kind=MqttAccountKind.service, password=None, rules=[(ACL_FILTER, Access.read)])
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
    """The exporter's own account, made or repaired: active, the $SYS read rule, the file's password."""
    password = _local_password(data_dir)
    async with async_sessionmaker(engine)() as session:
        account = await session.scalar(select(MqttAccount).where(MqttAccount.username == LOCAL_ACCOUNT))
        if account is None:
            account = MqttAccount(username=LOCAL_ACCOUNT, kind=MqttAccountKind.service, device_id=None,
                                  is_active=True, password_hash=mosquitto_password_hash(password))
            account.rules = [MqttAclRule(topic=ACL_FILTER, access=Access.read)]
            session.add(account)
        else:
            account.is_active = True
            account.password_hash = mosquitto_password_hash(password)
            if not any(r.topic == ACL_FILTER and Access(r.access).can_read for r in account.rules):
                account.rules.append(MqttAclRule(topic=ACL_FILTER, access=Access.read))
        await session.commit()
    return LOCAL_ACCOUNT, password


async def credentials(settings: ExporterSettings, engine: AsyncEngine) -> tuple[str, str] | None:
    """The configured account, else the exporter's own (unless EXPORTER_MQTT_LOCAL_ACCOUNT is off: then None, and
    the broker is not asked)."""
    if settings.mqtt_username is not None and settings.mqtt_password is not None:
        return settings.mqtt_username, settings.mqtt_password.get_secret_value()
    if not settings.mqtt_local_account:
        return None
    return await ensure_local_account(engine, settings.data_dir)
