"""MQTT accounts and their ACL rules, kept in the database (the broker is made to enforce them by a sync).

Device accounts (username = device uuid, rule `iot/device/<uuid>/#`) live and die with their device: they are
created at registration, follow the device's status and are deleted with it (foreign key cascade). Admins manage
service and integration accounts and any account's extra rules. Passwords are stored only as Mosquitto `$7$`
hashes; the clear text is returned once, when it is set.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from iotistic.cloud.errors import ApiError, conflict, not_found
from iotistic.cloud.models import Device, MqttAccount, MqttAccountKind, MqttAclRule
from iotistic.core.acl import Access, AccountAcl, AclRule
from iotistic.core.security import GENERATED_SECRET_PBKDF2_ITERATIONS, mosquitto_password_hash, new_token
from iotistic.core.topics import device_acl_filter

MIN_PASSWORD_LENGTH = 16
MAX_RULES_PER_ACCOUNT = 1000


# Device accounts ----------------------------------------------------------------------------------------------------

async def issue_device_account(session: AsyncSession, device: Device) -> tuple[str, str]:
    """Create or reset the device's account (username = uuid) with a fresh random password.

    Returns (username, password); the old password, if any, stops working in the same transaction.
    """
    password = new_token(nbytes=24)
    account = await session.scalar(select(MqttAccount).where(MqttAccount.device_id == device.id))
    if account is None:
        if await session.scalar(select(MqttAccount.id).where(MqttAccount.username == device.uuid)) is not None:
            raise conflict(f"uuid {device.uuid} is already the username of an MQTT service or integration account; "
                           "choose another uuid")
        account = MqttAccount(username=device.uuid, kind=MqttAccountKind.device, device_id=device.id,
                              password_hash=_generated_hash(password), is_active=True)
        account.rules = [MqttAclRule(topic=device_acl_filter(device.uuid), access=Access.readwrite)]
        session.add(account)
    else:
        account.password_hash = _generated_hash(password)
        account.is_active = True
    return account.username, password


def _generated_hash(password: str) -> str:
    return mosquitto_password_hash(password, iterations=GENERATED_SECRET_PBKDF2_ITERATIONS)


async def set_device_account_active(session: AsyncSession, device: Device, active: bool) -> None:
    account = await session.scalar(select(MqttAccount).where(MqttAccount.device_id == device.id))
    if account is not None:
        account.is_active = active


def device_uuid_of(account: MqttAccount) -> str | None:
    """A device account's username is its device's uuid (set at registration; a device's uuid never changes)."""
    return account.username if account.kind == MqttAccountKind.device else None


def _is_device_own_rule(account: MqttAccount, rule: MqttAclRule) -> bool:
    return account.kind == MqttAccountKind.device and rule.topic == device_acl_filter(account.username)


def _refuse_for_device(account: MqttAccount, what: str) -> None:
    if account.kind == MqttAccountKind.device:
        raise conflict(f"{what}: account {account.username} belongs to a device and follows it "
                       f"(use /api/v1/devices/{account.username}: disable or delete the device)")


# Service and integration accounts -----------------------------------------------------------------------------------

def check_password(password: str) -> None:
    """Policy for a password an admin chooses (generated ones have 192 random bits)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ApiError(422, "weak_password", f"password must have at least {MIN_PASSWORD_LENGTH} characters")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in password):
        raise ApiError(422, "invalid_password", "password must not contain control characters")
    if len(set(password)) < 6:
        raise ApiError(422, "weak_password", "password is too simple (use at least 6 different characters)")


def _new_password(chosen: str | None) -> tuple[str, str | None]:
    """(password, the generated one to show or None if it was chosen)."""
    if chosen is not None:
        check_password(chosen)
        return chosen, None
    generated = new_token(nbytes=24)
    return generated, generated


async def create_account(
    session: AsyncSession, *, username: str, kind: MqttAccountKind, password: str | None,
    rules: Iterable[tuple[str, Access]] = (),
) -> tuple[MqttAccount, str | None]:
    """A service or integration account. Returns it and its password if generated (shown once)."""
    if kind == MqttAccountKind.device:
        raise ApiError(422, "device_account", "device accounts are created by registering the device")
    if await session.scalar(select(Device.id).where(Device.uuid == username)) is not None:
        raise conflict(f"{username} is the uuid of a device, whose account uses it as its username")
    if await session.scalar(select(MqttAccount.id).where(MqttAccount.username == username)) is not None:
        raise conflict(f"an MQTT account named {username} exists")
    clear, shown = _new_password(password)
    account = MqttAccount(username=username, kind=kind, device_id=None, is_active=True,
                          password_hash=mosquitto_password_hash(clear))
    account.rules = []
    for topic, access in dict.fromkeys(rules):  # the same rule twice is one rule
        account.rules.append(MqttAclRule(topic=topic, access=access))
    session.add(account)
    try:
        await session.flush()
    except IntegrityError:  # a concurrent request took the name between the check and the insert
        raise conflict(f"an MQTT account named {username} exists") from None
    return account, shown


async def list_accounts(session: AsyncSession, *, kind: MqttAccountKind | None, limit: int,
                        offset: int) -> tuple[list[MqttAccount], int]:
    count = select(func.count()).select_from(MqttAccount)
    query = select(MqttAccount).order_by(MqttAccount.id)
    if kind is not None:
        count = count.where(MqttAccount.kind == kind)
        query = query.where(MqttAccount.kind == kind)
    total = int(await session.scalar(count) or 0)
    return list((await session.scalars(query.limit(limit).offset(offset))).all()), total


async def get_account(session: AsyncSession, account_id: int) -> MqttAccount:
    account = await session.get(MqttAccount, account_id)
    if account is None:
        raise not_found("MQTT account")
    return account


async def update_account(session: AsyncSession, account: MqttAccount, *, is_active: bool | None,
                         reset_password: bool, password: str | None) -> tuple[dict[str, object], str | None]:
    """Returns what changed (for the audit log, never a password) and the new password if generated."""
    if reset_password and password is not None:
        raise ApiError(422, "validation_error", "give either password or resetPassword, not both")
    changed: dict[str, object] = {}
    shown = None
    if is_active is not None and is_active != account.is_active:
        _refuse_for_device(account, "cannot enable or disable this account here")
        account.is_active = is_active
        changed["isActive"] = is_active
    if reset_password or password is not None:
        _refuse_for_device(account, "cannot set this account's password here (the device receives its "
                           "credentials when it registers)")
        clear, shown = _new_password(password)
        account.password_hash = mosquitto_password_hash(clear)
        changed["password"] = "generated" if shown else "set"
    await session.flush()
    return changed, shown


async def delete_account(session: AsyncSession, account: MqttAccount) -> None:
    _refuse_for_device(account, "cannot delete this account here")
    await session.delete(account)


# Rules ----------------------------------------------------------------------------------------------------------------

async def add_rule(session: AsyncSession, account: MqttAccount, topic: str, access: Access) -> MqttAclRule:
    """`topic` is already valid (core.acl.validate_rule_topic, done by the request schema)."""
    if any(r.topic == topic and r.access == access for r in account.rules):
        raise conflict(f"account {account.username} already has the rule {access.value} {topic}")
    if len(account.rules) >= MAX_RULES_PER_ACCOUNT:
        raise ApiError(422, "too_many_rules", f"an account has at most {MAX_RULES_PER_ACCOUNT} rules")
    rule = MqttAclRule(topic=topic, access=access)
    account.rules.append(rule)
    await session.flush()
    return rule


async def delete_rule(session: AsyncSession, account: MqttAccount, rule_id: int) -> MqttAclRule:
    rule = next((r for r in account.rules if r.id == rule_id), None)
    if rule is None:
        raise not_found("ACL rule")
    if _is_device_own_rule(account, rule):
        raise conflict("this is the device's own rule; it goes when the device is deleted")
    account.rules.remove(rule)
    await session.flush()
    return rule


# The broker's view ----------------------------------------------------------------------------------------------------

async def load_acl_snapshot(session: AsyncSession) -> list[AccountAcl]:
    """Every account with its password hash, active flag and rules, read in one statement (one consistent
    snapshot on either backend), sorted by username. Inactive accounts are included: the caller decides.

    Each item is an `AccountAcl(username, password_hash, is_active, rules=[AclRule(topic, access)])` (named
    tuples, so `for username, password_hash, is_active, rules in ...` works); rules are in creation order and
    keep `%u` / `%c` as stored. Device accounts carry their stored `iot/device/<uuid>/#` rule like any other.
    """
    rows = await session.execute(
        select(MqttAccount.id, MqttAccount.username, MqttAccount.password_hash, MqttAccount.is_active,
               MqttAclRule.topic, MqttAclRule.access)
        .outerjoin(MqttAclRule, MqttAclRule.account_id == MqttAccount.id)
        .order_by(MqttAccount.id, MqttAclRule.id)
    )
    accounts: dict[int, AccountAcl] = {}
    for account_id, username, password_hash, is_active, topic, access in rows:
        acl = accounts.get(account_id)
        if acl is None:
            acl = accounts[account_id] = AccountAcl(username, password_hash, bool(is_active), [])
        if topic is not None:
            acl.rules.append(AclRule(topic, access))
    return sorted(accounts.values(), key=lambda a: a.username)
