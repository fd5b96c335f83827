"""MQTT service accounts that a platform process logs in with (ingest, the usage exporter), each allowed to read one
topic filter.

Either an admin makes one (`iotistic ingest|exporter create-account`, or the MQTT accounts API) and hands its
credentials to the process, or the process keeps an account of its own: a fixed username whose password lives in a
0600 file under the data dir and is set again at every start (the broker sync makes the broker know it within a
second or two). That suits one process per data dir; several processes must share configured credentials, or each
start would change the password under the others.
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


async def create_account(engine: AsyncEngine, username: str, read_filter: str) -> str:
    """A new service account that may read `read_filter`; returns its generated password (shown once)."""
    async with async_sessionmaker(engine)() as session:
        _account, password = await mqtt_accounts.create_account(
            session, username=username, kind=MqttAccountKind.service, password=None,
            rules=[(read_filter, Access.read)])
        await session.commit()
    assert password is not None
    return password


def local_password(data_dir: Path, file_name: str) -> str:
    """The password in `data_dir/file_name`, made (random, 0600, written atomically) when missing or too short."""
    path = data_dir / file_name
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


async def ensure_local_account(engine: AsyncEngine, data_dir: Path, *, username: str, password_file: str,
                               read_filter: str) -> tuple[str, str]:
    """The process's own account, made or repaired: active, the read rule, the file's password."""
    password = local_password(data_dir, password_file)
    async with async_sessionmaker(engine)() as session:
        account = await session.scalar(select(MqttAccount).where(MqttAccount.username == username))
        if account is None:
            account = MqttAccount(username=username, kind=MqttAccountKind.service, device_id=None,
                                  is_active=True, password_hash=mosquitto_password_hash(password))
            account.rules = [MqttAclRule(topic=read_filter, access=Access.read)]
            session.add(account)
        else:
            account.is_active = True
            account.password_hash = mosquitto_password_hash(password)
            if not any(r.topic == read_filter and Access(r.access).can_read for r in account.rules):
                account.rules.append(MqttAclRule(topic=read_filter, access=Access.read))
        await session.commit()
    return username, password
