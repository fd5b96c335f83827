"""The agent's local database: identity and credentials, last target and state, the outbox.

Plain `sqlite3` (no ORM): the agent must stay small on a 256 MB device. The file is created with mode 0600
(and its folder 0700) because it holds the device API key. Every write commits at once, so a power cut loses
at most the write in flight, never the identity.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from iotistic.agent.settings import AgentSettings

SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    size INTEGER NOT NULL
);
"""


@dataclass
class Identity:
    """Who this device is to the cloud. `provisioning_key` is kept only until the key exchange succeeds."""

    # Secrets are left out of repr(), so an identity in a log line or a traceback shows none of them.
    uuid: str
    device_api_key: str = field(repr=False)
    local_api_key: str = field(repr=False)
    device_name: str | None = None
    device_type: str | None = None
    provisioning_key: str | None = field(default=None, repr=False)
    device_id: int | None = None
    #: MQTT credentials and broker URL from the registration reply (stored like the API keys: mode 0600).
    mqtt_username: str | None = None
    mqtt_password: str | None = field(default=None, repr=False)
    mqtt_broker: str | None = None
    registered: bool = False
    key_exchanged: bool = False
    #: A replacement device API key being rotated in: saved before the cloud is asked, so a lost reply can be
    #: recovered (whichever key the cloud accepts wins).
    pending_device_api_key: str | None = field(default=None, repr=False)

    @property
    def provisioned(self) -> bool:
        return self.registered and self.key_exchanged

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Identity:
        """Tolerant of fields written by a newer agent (ignored) and of fields it lacks (defaults)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class OutboxFull(Exception):
    """Raised only for a single item larger than the whole outbox."""


class AgentStore:
    def __init__(self, path: Path, *, outbox_max_items: int = 10_000, outbox_max_bytes: int = 20 * 1024 * 1024):
        self.path = path
        self.outbox_max_items = outbox_max_items
        self.outbox_max_bytes = outbox_max_bytes
        path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
        if not path.exists():
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        os.chmod(path, 0o600)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        # Deleted secrets (the provisioning key, a rotated API key) are overwritten, not left in free pages.
        self._db.execute("PRAGMA secure_delete=ON")
        self._db.executescript(SCHEMA)
        for suffix in ("-wal", "-shm"):
            side = Path(str(path) + suffix)
            if side.exists():
                os.chmod(side, 0o600)

    @classmethod
    def for_settings(cls, settings: AgentSettings) -> AgentStore:
        """The store at `AGENT_DATA_DIR/agent.db` with the configured outbox bounds."""
        return cls(settings.store_path, outbox_max_items=settings.outbox_max_items,
                   outbox_max_bytes=settings.outbox_max_bytes)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # key/value -------------------------------------------------------------------------------------------------
    def get(self, key: str, default: Any = None) -> Any:
        with self._lock:
            row = self._db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def set(self, key: str, value: Any) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO kv (key, value) VALUES (?, ?) "
                       "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, json.dumps(value)))

    def delete(self, *keys: str) -> None:
        with self._tx() as db:
            db.executemany("DELETE FROM kv WHERE key = ?", [(k,) for k in keys])

    # identity --------------------------------------------------------------------------------------------------
    def identity(self) -> Identity | None:
        data = self.get("identity")
        return Identity.from_dict(data) if data else None

    def save_identity(self, identity: Identity) -> None:
        self.set("identity", identity.to_dict())

    def scrub(self) -> None:
        """Make deleted data unrecoverable from the files: with secure_delete on, only the write-ahead log can
        still hold old page images, so fold it into the database and truncate it."""
        with self._lock:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    # outbox: bounded, persistent, in order ----------------------------------------------------------------------
    def enqueue(self, kind: str, payload: Any) -> int:
        """Append; when full, the oldest items are dropped (and counted) so the newest state always fits."""
        text = json.dumps(payload, separators=(",", ":"))
        size = len(text.encode())
        if size > self.outbox_max_bytes:
            raise OutboxFull(f"item of {size} bytes exceeds the outbox ({self.outbox_max_bytes} bytes)")
        with self._tx() as db:
            db.execute("INSERT INTO outbox (kind, payload, size) VALUES (?, ?, ?)", (kind, text, size))
            dropped = 0
            while True:
                count, total = db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM outbox").fetchone()
                if count <= self.outbox_max_items and total <= self.outbox_max_bytes:
                    break
                db.execute("DELETE FROM outbox WHERE id = (SELECT MIN(id) FROM outbox)")
                dropped += 1
            if dropped:
                row = db.execute("SELECT value FROM kv WHERE key = 'outbox_dropped'").fetchone()
                total_dropped = (json.loads(row[0]) if row else 0) + dropped
                db.execute("INSERT INTO kv (key, value) VALUES ('outbox_dropped', ?) "
                           "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (json.dumps(total_dropped),))
        return dropped

    def peek(self, limit: int = 100, kind: str | None = None) -> list[tuple[int, str, Any]]:
        """The oldest items, in order, without removing them: (id, kind, payload)."""
        with self._lock:
            if kind is None:
                rows = self._db.execute("SELECT id, kind, payload FROM outbox ORDER BY id LIMIT ?", (limit,))
            else:
                rows = self._db.execute("SELECT id, kind, payload FROM outbox WHERE kind = ? ORDER BY id LIMIT ?",
                                        (kind, limit))
            return [(i, k, json.loads(p)) for i, k, p in rows.fetchall()]

    def ack(self, ids: list[int]) -> None:
        """Remove delivered items."""
        with self._tx() as db:
            db.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in ids])

    def outbox_size(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def outbox_bytes(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COALESCE(SUM(size), 0) FROM outbox").fetchone()[0])

    def outbox_dropped(self) -> int:
        """How many items were dropped, oldest first, because the outbox was full (since the last wipe)."""
        return int(self.get("outbox_dropped", 0))

    def clear_outbox(self) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM outbox")

    def wipe(self) -> None:
        """Forget everything (factory reset), leaving nothing recoverable in the files."""
        with self._tx() as db:
            db.execute("DELETE FROM kv")
            db.execute("DELETE FROM outbox")
        with self._lock:
            self._db.execute("VACUUM")
        self.scrub()
