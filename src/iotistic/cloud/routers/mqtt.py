from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from iotistic.cloud.deps import Admin, RowId, Session, Viewer
from iotistic.cloud.models import MqttAccount, MqttAccountKind
from iotistic.cloud.schemas import (
    MqttAccountCreate,
    MqttAccountCreated,
    MqttAccountOut,
    MqttAccountPage,
    MqttAccountUpdate,
    MqttAccountUpdated,
    MqttRuleIn,
    MqttRuleOut,
)
from iotistic.cloud.services import audit, mqtt_accounts

router = APIRouter(prefix="/api/v1/mqtt/accounts", tags=["mqtt"])


def account_out(account: MqttAccount) -> MqttAccountOut:
    return MqttAccountOut(
        id=account.id, username=account.username, kind=MqttAccountKind(account.kind),
        device_uuid=mqtt_accounts.device_uuid_of(account), is_active=account.is_active,
        created_at=account.created_at, rules=[MqttRuleOut.model_validate(r) for r in account.rules],
    )


@router.get("", response_model=MqttAccountPage)
async def list_accounts(
    _: Viewer, session: Session,
    kind: MqttAccountKind | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> MqttAccountPage:
    rows, total = await mqtt_accounts.list_accounts(session, kind=kind, limit=limit, offset=offset)
    return MqttAccountPage(items=[account_out(a) for a in rows], total=total, limit=limit, offset=offset)


@router.post("", response_model=MqttAccountCreated, status_code=201)
async def create_account(body: MqttAccountCreate, principal: Admin, session: Session) -> MqttAccountCreated:
    """A service or integration account. Without `password` one is generated and returned only here."""
    account, password = await mqtt_accounts.create_account(
        session, username=body.username, kind=MqttAccountKind(body.kind), password=body.password,
        rules=[(r.topic, r.access) for r in body.rules],
    )
    audit.record(session, actor=principal.name, action="mqtt_account.created", target_type="mqtt_account",
                 target_id=account.id, ip=principal.ip,
                 details={"username": account.username, "kind": account.kind,
                          "rules": [f"{r.access} {r.topic}" for r in account.rules]})
    await session.commit()
    return MqttAccountCreated(**account_out(account).model_dump(), password=password)


@router.get("/{account_id}", response_model=MqttAccountOut)
async def get_account(account_id: RowId, _: Viewer, session: Session) -> MqttAccountOut:
    return account_out(await mqtt_accounts.get_account(session, account_id))


@router.patch("/{account_id}", response_model=MqttAccountUpdated)
async def update_account(account_id: RowId, body: MqttAccountUpdate, principal: Admin,
                         session: Session) -> MqttAccountUpdated:
    """Enable or disable the account, or replace its password (`resetPassword` generates one, shown only here).
    Device accounts follow their device and refuse both."""
    account = await mqtt_accounts.get_account(session, account_id)
    changed, password = await mqtt_accounts.update_account(
        session, account, is_active=body.is_active, reset_password=body.reset_password, password=body.password)
    if changed:
        audit.record(session, actor=principal.name, action="mqtt_account.updated", target_type="mqtt_account",
                     target_id=account.id, details={"username": account.username, **changed}, ip=principal.ip)
    await session.commit()
    return MqttAccountUpdated(**account_out(account).model_dump(), password=password)


@router.delete("/{account_id}", status_code=204)
async def delete_account(account_id: RowId, principal: Admin, session: Session) -> None:
    """Removes a service or integration account with its rules. A device's account goes with the device."""
    account = await mqtt_accounts.get_account(session, account_id)
    await mqtt_accounts.delete_account(session, account)
    audit.record(session, actor=principal.name, action="mqtt_account.deleted", target_type="mqtt_account",
                 target_id=account_id, details={"username": account.username, "kind": account.kind},
                 ip=principal.ip)
    await session.commit()


@router.get("/{account_id}/rules", response_model=list[MqttRuleOut])
async def list_rules(account_id: RowId, _: Viewer, session: Session) -> list[MqttRuleOut]:
    account = await mqtt_accounts.get_account(session, account_id)
    return [MqttRuleOut.model_validate(r) for r in account.rules]


@router.post("/{account_id}/rules", response_model=MqttRuleOut, status_code=201)
async def add_rule(account_id: RowId, body: MqttRuleIn, principal: Admin, session: Session) -> MqttRuleOut:
    """A topic filter (`+`, `#`; whole levels `%u` and `%c` stand for the username and client id) with read,
    write or readwrite access."""
    account = await mqtt_accounts.get_account(session, account_id)
    rule = await mqtt_accounts.add_rule(session, account, body.topic, body.access)
    audit.record(session, actor=principal.name, action="mqtt_rule.created", target_type="mqtt_account",
                 target_id=account.id, ip=principal.ip,
                 details={"username": account.username, "ruleId": rule.id, "topic": rule.topic,
                          "access": rule.access})
    await session.commit()
    return MqttRuleOut.model_validate(rule)


@router.delete("/{account_id}/rules/{rule_id}", status_code=204)
async def delete_rule(account_id: RowId, rule_id: RowId, principal: Admin, session: Session) -> None:
    account = await mqtt_accounts.get_account(session, account_id)
    rule = await mqtt_accounts.delete_rule(session, account, rule_id)
    audit.record(session, actor=principal.name, action="mqtt_rule.deleted", target_type="mqtt_account",
                 target_id=account.id, ip=principal.ip,
                 details={"username": account.username, "ruleId": rule_id, "topic": rule.topic,
                          "access": rule.access})
    await session.commit()
