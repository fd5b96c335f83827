"""The MQTT service account the exporter reads the broker's message count with (read on `$SYS/broker/#` only:
it sees the broker's statistics, never a device's data)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from iotistic.cloud.models import MqttAccountKind
from iotistic.cloud.services import mqtt_accounts
from iotistic.core.acl import Access
from iotistic.exporter.broker import ACL_FILTER


async def create_account(engine: AsyncEngine, username: str) -> str:
    """A new service account that may read the broker's $SYS tree; returns its generated password (shown once)."""
    async with async_sessionmaker(engine)() as session:
        _account, password = await mqtt_accounts.create_account(
            session, username=username, kind=MqttAccountKind.service, password=None, rules=[(ACL_FILTER, Access.read)])
        await session.commit()
    assert password is not None
    return password
