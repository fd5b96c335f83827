"""Make Mosquitto enforce the MQTT accounts and ACLs in the database: render its files, swap them in, SIGHUP.

Why files + SIGHUP rather than the dynamic-security plugin (figures from the project's MQTT notes, measured on
this machine): a reload re-reads 20,000 users in about 0.07 s; it refuses removed users at once and drops their
live connections, drops users whose password changed, keeps every other client connected and applies ACL changes
to live connections. The plugin kicks a client faster (2 ms) but rewrites its whole JSON file on every change
(64 ms per change at 10,000 clients, not atomically), hashes with 101 PBKDF2 iterations and would make its JSON,
not the database, the broker's state. With files, the database stays the only source of truth and the broker
needs nothing but its stock configuration.

Change detection (the long-lived mode must make a change effective within 2 seconds): a cheap marker is polled
every `interval` (0.5 s by default) and the accounts are only read, rendered and compared when it moves:
- PostgreSQL: `count(*)` and `sum(xmin)` of mqtt_accounts and mqtt_acl_rules, one round trip. Every insert or
  update gives the row the writing transaction's id, larger than any id already in the table, and a delete lowers
  the count, so any committed change moves the marker (benchmarks/broker_sync.py times it at 10,000 accounts).
  LISTEN/NOTIFY would need triggers in the schema, or every writer of these tables to remember to notify.
- SQLite: `PRAGMA data_version` on a connection held open, which changes whenever another connection commits.
Whatever the marker says, a full pass runs every `resync_seconds` (60 s) so hand edits or a lost file are
repaired. Files are rewritten, and the broker signalled, only when their content (or mode) differs.

The files are written to a temporary file in the same folder, fsynced, given their owner and mode, and renamed
over the old ones (a reader sees the old file or the new one, never half of one). Mosquitto started as root runs
as user `mosquitto` and re-reads them as that user: they are 0640 root:mosquitto (0640 <sync user>:mosquitto when
the sync is not root; 0600 when no group is configured, for a sync running as the broker's own user).
Passwords and hashes are never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import logging
import math
import os
import signal
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from iotistic.broker.files import AclRule, BrokerAccount, RenderedFiles, Skipped, render
from iotistic.cloud.models import MqttAccount, MqttAclRule

log = logging.getLogger(__name__)

DEFAULT_PASSWORD_FILE = Path("/etc/mosquitto/iotistic/passwd")
DEFAULT_ACL_FILE = Path("/etc/mosquitto/iotistic/acl")
DEFAULT_PID_FILE = Path("/run/mosquitto/mosquitto.pid")
DEFAULT_GROUP = "mosquitto"
DEFAULT_INTERVAL = 0.5
RESYNC_SECONDS = 60.0

_PG_MARKER = (
    "SELECT (SELECT count(*) || ':' || coalesce(sum(xmin::text::bigint), 0) FROM mqtt_accounts)"
    " || '/' || (SELECT count(*) || ':' || coalesce(sum(xmin::text::bigint), 0) FROM mqtt_acl_rules)"
)


@dataclass(frozen=True)
class BrokerTarget:
    """Where the broker reads its files and how to reach it."""

    password_file: Path = DEFAULT_PASSWORD_FILE
    acl_file: Path = DEFAULT_ACL_FILE
    pid_file: Path | None = DEFAULT_PID_FILE  # read at every signal: a restarted broker is found again
    pid: int | None = None  # instead of a pid file
    group: str | None = DEFAULT_GROUP  # group (name or number) that may read the files; None: owner only
    process_name: str | None = "mosquitto"  # /proc/<pid>/comm must say this before a signal is sent


class SignalOutcome(StrEnum):
    sent = "sent"
    not_running = "not_running"  # no pid file or no such process: the broker reads the files when it starts
    refused = "refused"  # a pid that is not the broker's, or not ours to signal


@dataclass(frozen=True)
class SyncResult:
    changed: bool  # a file was rewritten
    accounts: int  # accounts that can log in
    user_blocks: int
    skipped: tuple[Skipped, ...]
    signal: SignalOutcome | None  # None: no signal was needed
    signal_detail: str
    load_seconds: float
    render_seconds: float
    write_seconds: float


# Reading the database ----------------------------------------------------------------------------------------------

async def load_accounts(engine: AsyncEngine) -> list[BrokerAccount]:
    """Every MQTT account with its rules (rules in creation order)."""
    query = (
        select(MqttAccount.id, MqttAccount.username, MqttAccount.password_hash, MqttAccount.kind,
               MqttAccount.is_active, MqttAclRule.topic, MqttAclRule.access)
        .outerjoin(MqttAclRule, MqttAclRule.account_id == MqttAccount.id)
        .order_by(MqttAccount.id, MqttAclRule.id)
    )
    async with engine.execution_options(read_only=True).connect() as conn:
        rows = (await conn.execute(query)).all()
    return accounts_from_rows(rows)


def accounts_from_rows(rows: Iterable[Sequence[Any]]) -> list[BrokerAccount]:
    """(id, username, hash, kind, active, topic, access) rows, grouped by id, into accounts."""
    accounts: list[BrokerAccount] = []
    current: list[Any] | None = None
    rules: list[AclRule] = []

    def flush() -> None:
        if current is not None:
            accounts.append(BrokerAccount(username=current[1], password_hash=current[2], kind=current[3],
                                          active=bool(current[4]), rules=tuple(rules)))

    for row in rows:
        if current is None or row[0] != current[0]:
            flush()
            current, rules = list(row), []
        if row[5] is not None:
            rules.append(AclRule(topic=row[5], access=row[6]))
    flush()
    return accounts


class ChangeMarker:
    """A cheap value that changes whenever the accounts or rules may have changed (see the module docstring)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine.execution_options(read_only=True)
        self._conn: AsyncConnection | None = None

    async def read(self) -> str:
        if self._conn is None:
            self._conn = await self._engine.connect()
        try:
            if self._conn.dialect.name == "postgresql":
                value = (await self._conn.exec_driver_sql(_PG_MARKER)).scalar()
            else:
                value = (await self._conn.exec_driver_sql("PRAGMA data_version")).scalar()
            await self._conn.rollback()
        except BaseException:
            await self.close()
            raise
        return str(value)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()


# Writing the files ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FileOwnership:
    uid: int  # -1: leave as created (the sync's own user)
    gid: int
    mode: int


def resolve_ownership(group: str | None) -> FileOwnership:
    """root:<group> 0640 as root, <self>:<group> 0640 otherwise, 0600 without a group."""
    if not group:
        return FileOwnership(-1, -1, 0o600)
    if group.isdigit():
        gid = int(group)
    else:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            raise ValueError(f"no group {group!r} on this system (the group the broker runs as)") from None
    return FileOwnership(0 if os.geteuid() == 0 else -1, gid, 0o640)


def _in_place(path: Path, data: bytes, ownership: FileOwnership) -> bool:
    try:
        st = path.stat()
        current = path.read_bytes()
    except FileNotFoundError:
        return False
    return (current == data and (st.st_mode & 0o777) == ownership.mode
            and ownership.gid in (-1, st.st_gid) and ownership.uid in (-1, st.st_uid))


def write_if_changed(path: Path, content: str, ownership: FileOwnership) -> bool:
    """Atomically replace `path` with `content` unless it already holds it. Returns whether it wrote."""
    data = content.encode("utf-8")
    if _in_place(path, data, ownership):
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # mode 0600
    try:
        with os.fdopen(fd, "wb") as handle:
            if ownership.uid != -1 or ownership.gid != -1:
                os.fchown(handle.fileno(), ownership.uid, ownership.gid)
            os.fchmod(handle.fileno(), ownership.mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself survives a crash
    finally:
        os.close(dir_fd)
    return True


def write_files(target: BrokerTarget, rendered: RenderedFiles) -> bool:
    """Both files (the ACLs first, so no new login exists before its rules). Returns whether either changed."""
    ownership = resolve_ownership(target.group)
    acl_changed = write_if_changed(target.acl_file, rendered.acl_file, ownership)
    password_changed = write_if_changed(target.password_file, rendered.password_file, ownership)
    return acl_changed or password_changed


# Signalling the broker -------------------------------------------------------------------------------------------

def signal_broker(target: BrokerTarget) -> tuple[SignalOutcome, str]:
    """SIGHUP the broker: it reloads password_file and acl_file. Checks first that the pid is the broker's."""
    pid = target.pid
    if pid is None:
        if target.pid_file is None:
            return SignalOutcome.not_running, "no broker pid configured"
        try:
            text = target.pid_file.read_text().strip()
        except FileNotFoundError:
            return SignalOutcome.not_running, f"no pid file {target.pid_file} (the broker reads the files at start)"
        except OSError as exc:
            return SignalOutcome.refused, f"cannot read the pid file {target.pid_file}: {exc.strerror or exc}"
        if not text.isdigit():
            return SignalOutcome.refused, f"the pid file {target.pid_file} holds no pid"
        pid = int(text)
    if pid <= 1:
        return SignalOutcome.refused, f"pid {pid} is not a broker"
    if target.process_name and Path("/proc/self").is_dir():
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
        except FileNotFoundError:
            return SignalOutcome.not_running, f"no process {pid} (stale pid file?)"
        except OSError as exc:
            return SignalOutcome.refused, f"cannot check process {pid}: {exc.strerror or exc}"
        if name != target.process_name:
            return SignalOutcome.refused, f"process {pid} is {name!r}, not {target.process_name!r}: not signalled"
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        return SignalOutcome.not_running, f"no process {pid}"
    except PermissionError:
        return SignalOutcome.refused, f"not allowed to signal process {pid}"
    return SignalOutcome.sent, f"broker (pid {pid}) reloaded"


# The sync ----------------------------------------------------------------------------------------------------------

class BrokerSync:
    """Keeps a broker's files equal to the database: `sync_once()`, or `run()` until stopped."""

    def __init__(self, engine: AsyncEngine, target: BrokerTarget, *, interval: float = DEFAULT_INTERVAL,
                 resync_seconds: float = RESYNC_SECONDS) -> None:
        self.engine = engine
        self.target = target
        self.interval = interval
        self.resync_seconds = resync_seconds
        self._reported: frozenset[Skipped] = frozenset()
        self._last_problem: str | None = None
        self.passes = 0  # full passes (read + render + compare) since start

    async def sync_once(self, *, signal_anyway: bool = False) -> SyncResult:
        """Read, render, write what changed, and SIGHUP the broker when something did (or when asked)."""
        start = time.perf_counter()
        accounts = await load_accounts(self.engine)
        loaded = time.perf_counter()
        rendered = render(accounts)
        rendered_at = time.perf_counter()
        self._report_skipped(rendered.skipped)
        changed = await asyncio.to_thread(write_files, self.target, rendered)
        written = time.perf_counter()
        outcome: SignalOutcome | None = None
        detail = "files unchanged"
        if changed or signal_anyway:
            outcome, detail = signal_broker(self.target)
        self.passes += 1
        return SyncResult(changed, rendered.accounts, rendered.user_blocks, rendered.skipped, outcome, detail,
                          loaded - start, rendered_at - loaded, written - rendered_at)

    def _report_skipped(self, skipped: tuple[Skipped, ...]) -> None:
        """Warn about each refused account or rule once (not again at every pass while it stays refused)."""
        current = frozenset(skipped)
        for item in skipped:
            if item not in self._reported:
                log.warning("%s", item.describe())
        self._reported = current

    def _problem(self, message: str | None, *, unexpected: bool = False) -> None:
        """Log a problem when it starts or changes, and its end; not at every poll."""
        if message == self._last_problem:
            return
        if message is None:
            log.info("broker sync recovered")
        else:
            log.warning("%s", message, exc_info=unexpected)
        self._last_problem = message

    async def run(self, stop: asyncio.Event) -> None:
        """Poll the change marker every `interval` until `stop` is set; a full pass when it moves."""
        marker = ChangeMarker(self.engine)
        seen: str | None = None
        last_full = -math.inf
        pending_signal = True  # a broker that ran before us may hold older files: reload it once
        log.info("broker sync started", extra={"password_file": str(self.target.password_file),
                                               "acl_file": str(self.target.acl_file), "interval": self.interval})
        try:
            while not stop.is_set():
                try:
                    value = await marker.read()
                    if value != seen or time.monotonic() - last_full >= self.resync_seconds:
                        result = await self.sync_once()
                        seen, last_full = value, time.monotonic()
                        if result.changed:
                            log.info("broker files updated", extra={
                                "accounts": result.accounts, "user_blocks": result.user_blocks,
                                "skipped": len(result.skipped), "signal": result.signal_detail})
                            pending_signal = result.signal != SignalOutcome.sent
                    if pending_signal:
                        outcome, detail = signal_broker(self.target)
                        pending_signal = outcome != SignalOutcome.sent
                        if outcome == SignalOutcome.refused:
                            raise _SignalRefused(detail)
                    self._problem(None)
                except _SignalRefused as exc:
                    self._problem(f"broker not signalled: {exc}")
                except Exception as exc:  # the database unreachable or not migrated, an unwritable folder...
                    self._problem(f"broker sync pass failed, the broker keeps enforcing its last files: "
                                  f"{_describe(exc)}", unexpected=not isinstance(exc, _EXPECTED_ERRORS))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.interval)
        finally:
            await marker.close()
            log.info("broker sync stopped")


class _SignalRefused(Exception):
    pass


_EXPECTED_ERRORS: tuple[type[BaseException], ...] = (SQLAlchemyError, OSError, ValueError)


def _describe(exc: BaseException) -> str:
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    text = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
    return f"{type(cause).__name__}: {text}" if text else type(cause).__name__


async def run_service(database_url: str, target: BrokerTarget, *, interval: float = DEFAULT_INTERVAL) -> None:
    """The long-lived sync as a process: runs until SIGTERM or SIGINT."""
    from iotistic.core.db import make_engine

    engine = make_engine(database_url, pool_size=2, max_overflow=2) if not database_url.startswith("sqlite") \
        else make_engine(database_url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await BrokerSync(engine, target, interval=interval).run(stop)
    finally:
        await engine.dispose()


async def sync_once(database_url: str, target: BrokerTarget) -> SyncResult:
    """One pass for `iotistic broker sync --once`: the broker is always signalled, so afterwards it enforces
    the database even if an earlier sync wrote the files and died before signalling."""
    from iotistic.core.db import make_engine

    engine = make_engine(database_url)
    try:
        return await BrokerSync(engine, target).sync_once(signal_anyway=True)
    finally:
        await engine.dispose()
