"""MQTT accounts kept in the database (the broker is made to enforce them by a later sync)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from iotistic.cloud.models import Device, MqttAccount, MqttAclRule
from iotistic.core.security import mosquitto_password_hash, new_token
from iotistic.core.topics import device_acl_filter


async def issue_device_account(session: AsyncSession, device: Device) -> tuple[str, str]:
    """Create or reset the device's account (username = uuid) with a fresh random password.

    Returns (username, password); the old password, if any, stops working in the same transaction.
    """
    password = new_token(nbytes=24)
    account = await session.scalar(select(MqttAccount).where(MqttAccount.device_id == device.id))
    if account is None:
        account = MqttAccount(username=device.uuid, kind="device", device_id=device.id,
                              password_hash=mosquitto_password_hash(password), is_active=True)
        account.rules = [MqttAclRule(topic=device_acl_filter(device.uuid), access="readwrite")]
        session.add(account)
    else:
        account.password_hash = mosquitto_password_hash(password)
        account.is_active = True
    return account.username, password


async def set_device_account_active(session: AsyncSession, device: Device, active: bool) -> None:
    account = await session.scalar(select(MqttAccount).where(MqttAccount.device_id == device.id))
    if account is not None:
        account.is_active = active
