"""The sync against the real database (SQLite and PostgreSQL), without a broker: what it reads, when it notices."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import delete, insert, update
from sqlalchemy.ext.asyncio import AsyncEngine

from iotistic.broker.sync import BrokerSync, BrokerTarget, ChangeMarker, load_accounts
from iotistic.broker.testing import until
from iotistic.cloud.models import LoginFailure, MqttAccount, MqttAclRule
from iotistic.core.db import make_engine
from iotistic.core.security import mosquitto_password_hash


@pytest.fixture
async def engine(app: Any) -> AsyncIterator[AsyncEngine]:
    """A separate engine on the app's migrated database, as the sync process has (tables emptied afterwards)."""
    engine = make_engine(app.state.ctx.settings.sqlalchemy_url)
    yield engine
    await engine.dispose()


async def add_account(app: Any, username: str, *rules: tuple[str, str], kind: str = "service") -> None:
    async with app.state.ctx.sessions() as session:
        account = MqttAccount(username=username, password_hash=mosquitto_password_hash("pw"), kind=kind,
                              is_active=True)
        account.rules = [MqttAclRule(topic=topic, access=access) for topic, access in rules]
        session.add(account)
        await session.commit()


async def execute(app: Any, statement: Any) -> None:
    async with app.state.ctx.sessions() as session:
        await session.execute(statement)
        await session.commit()


async def test_accounts_are_read_with_their_rules_in_order(app, engine):
    await add_account(app, "svc", ("b/#", "read"), ("a/#", "write"))
    await add_account(app, "bare")
    accounts = {a.username: a for a in await load_accounts(engine)}
    assert [(r.topic, r.access) for r in accounts["svc"].rules] == [("b/#", "read"), ("a/#", "write")]
    assert accounts["bare"].rules == () and accounts["bare"].kind == "service" and accounts["bare"].active


async def test_the_change_marker_moves_on_every_kind_of_change(app, engine):
    marker = ChangeMarker(engine)
    try:
        values = [await marker.read()]

        async def moved() -> bool:
            values.append(await marker.read())
            return values[-1] != values[-2]

        assert not await moved()  # nothing happened
        await add_account(app, "svc", ("a/#", "read"))
        assert await moved()  # insert
        await execute(app, update(MqttAccount).where(MqttAccount.username == "svc")
                      .values(password_hash=mosquitto_password_hash("other")))
        assert await moved()  # update in place (same row count)
        await execute(app, update(MqttAclRule).values(access="readwrite"))
        assert await moved()  # a rule alone
        async with app.state.ctx.sessions() as session:  # delete one account and insert another in one transaction
            await session.execute(delete(MqttAccount).where(MqttAccount.username == "svc"))
            session.add(MqttAccount(username="svc2", password_hash=mosquitto_password_hash("pw"), kind="service",
                                    is_active=True))
            await session.commit()
        assert await moved()
        assert not await moved()
    finally:
        await marker.close()


async def test_changes_elsewhere_never_rewrite_the_files(app, engine, tmp_path):
    """On PostgreSQL a commit to another table does not even move the marker; on SQLite (data_version moves on
    any commit) it costs one pass, which finds the files unchanged."""
    target = BrokerTarget(password_file=tmp_path / "passwd", acl_file=tmp_path / "acl", pid_file=None, group=None)
    sync = BrokerSync(engine, target, interval=0.05)
    stop = asyncio.Event()
    task = asyncio.create_task(sync.run(stop))
    try:
        assert await until(lambda: sync.passes == 1)
        inode = target.password_file.stat().st_ino
        await execute(app, insert(LoginFailure).values(email="x@example.com", ip="127.0.0.1"))
        await asyncio.sleep(0.3)
        assert sync.passes == (1 if engine.dialect.name == "postgresql" else 2)
        assert target.password_file.stat().st_ino == inode
        await add_account(app, "svc", ("a/#", "read"))
        assert await until(lambda: "svc:" in target.password_file.read_text())
    finally:
        stop.set()
        await task


async def test_a_hand_edited_file_is_repaired_at_the_next_full_pass(app, engine, tmp_path):
    await add_account(app, "svc", ("a/#", "read"))
    target = BrokerTarget(password_file=tmp_path / "passwd", acl_file=tmp_path / "acl", pid_file=None, group=None)
    sync = BrokerSync(engine, target, interval=0.05, resync_seconds=0.3)
    stop = asyncio.Event()
    task = asyncio.create_task(sync.run(stop))
    try:
        assert await until(lambda: target.acl_file.exists() and "svc" in target.acl_file.read_text())
        good = target.acl_file.read_text()
        target.acl_file.write_text("topic readwrite #\n")
        assert await until(lambda: target.acl_file.read_text() == good, within=3)
    finally:
        stop.set()
        await task


async def test_an_unreachable_database_is_reported_once_and_the_files_stay(tmp_path, caplog):
    target = BrokerTarget(password_file=tmp_path / "passwd", acl_file=tmp_path / "acl", pid_file=None, group=None)
    target.password_file.write_text("kept:$7$...\n")
    engine = make_engine("postgresql+asyncpg://nobody@127.0.0.1:9/none")  # nothing listens on port 9
    sync = BrokerSync(engine, target, interval=0.05)
    stop = asyncio.Event()
    caplog.set_level(logging.INFO, logger="iotistic.broker.sync")
    task = asyncio.create_task(sync.run(stop))
    try:
        await asyncio.sleep(0.6)
    finally:
        stop.set()
        await task
        await engine.dispose()
    problems = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(problems) == 1 and "keeps enforcing its last files" in problems[0]
    assert target.password_file.read_text() == "kept:$7$...\n"
