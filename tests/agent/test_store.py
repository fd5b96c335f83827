"""The agent's local store: private files, identity, the bounded persistent outbox, and nothing left after a wipe."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from iotistic.agent.store import AgentStore, Identity, OutboxFull


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _raw(path: Path) -> bytes:
    """Everything SQLite keeps on disk for this database: the file, its write-ahead log and shared memory."""
    return b"".join(Path(str(path) + s).read_bytes() for s in ("", "-wal", "-shm") if Path(str(path) + s).exists())


@pytest.fixture
def store(tmp_path: Path):
    s = AgentStore(tmp_path / "data" / "agent.db")
    yield s
    s.close()


def _identity(**kw: object) -> Identity:
    return Identity(uuid="u" * 32, device_api_key="dk_" + "a" * 40, local_api_key="lk_" + "b" * 40, **kw)  # type: ignore[arg-type]


def test_file_is_0600_and_folder_0700_even_with_a_permissive_umask(tmp_path: Path):
    old = os.umask(0)
    try:
        s = AgentStore(tmp_path / "fresh" / "agent.db")
        s.set("k", "v")
        s.enqueue("report", {"a": 1})
    finally:
        os.umask(old)
    try:
        assert _mode(tmp_path / "fresh") == 0o700
        for suffix in ("", "-wal", "-shm"):
            side = tmp_path / "fresh" / f"agent.db{suffix}"
            if side.exists():
                assert _mode(side) == 0o600, side
    finally:
        s.close()


def test_an_existing_store_is_tightened_on_open(tmp_path: Path):
    folder = tmp_path / "loose"
    AgentStore(folder / "agent.db").close()
    os.chmod(folder, 0o755)
    os.chmod(folder / "agent.db", 0o644)
    AgentStore(folder / "agent.db").close()
    assert _mode(folder) == 0o700
    assert _mode(folder / "agent.db") == 0o600


def test_key_values_and_identity_survive_reopening(tmp_path: Path):
    path = tmp_path / "agent.db"
    s = AgentStore(path)
    s.set("target", {"version": 3, "document": {"apps": {}}})
    s.save_identity(_identity(device_name="pi", registered=True))
    s.close()

    s = AgentStore(path)
    assert s.get("target") == {"version": 3, "document": {"apps": {}}}
    assert s.get("missing", 7) == 7
    identity = s.identity()
    assert identity is not None and identity.device_name == "pi" and identity.registered
    assert not identity.provisioned
    s.delete("target")
    assert s.get("target") is None
    s.close()


def test_identity_from_a_newer_agent_loads(store: AgentStore):
    store.set("identity", {**_identity().to_dict(), "some_future_field": 1})
    identity = store.identity()
    assert identity is not None and identity.uuid == "u" * 32


def test_outbox_keeps_order_until_acked_and_across_reopening(tmp_path: Path):
    path = tmp_path / "agent.db"
    s = AgentStore(path)
    dropped = [s.enqueue("report", {"n": n}) for n in range(5)]
    assert dropped == [0] * 5
    items = s.peek(limit=3)
    assert [p["n"] for _, _, p in items] == [0, 1, 2]
    s.ack([items[0][0], items[1][0]])
    s.close()

    s = AgentStore(path)
    assert [p["n"] for _, _, p in s.peek()] == [2, 3, 4]
    s.enqueue("logs", [{"message": "x"}])
    assert [k for _, k, _ in s.peek()] == ["report", "report", "report", "logs"]
    assert [k for _, k, _ in s.peek(kind="logs")] == ["logs"]
    assert s.outbox_size() == 4
    s.close()


def test_outbox_drops_the_oldest_items_when_full_and_counts_them(tmp_path: Path):
    s = AgentStore(tmp_path / "agent.db", outbox_max_items=3)
    dropped = [s.enqueue("report", {"n": n}) for n in range(5)]
    assert dropped == [0, 0, 0, 1, 1]
    assert [p["n"] for _, _, p in s.peek()] == [2, 3, 4]
    assert s.outbox_dropped() == 2
    s.close()


def test_outbox_is_bounded_in_bytes_too(tmp_path: Path):
    s = AgentStore(tmp_path / "agent.db", outbox_max_bytes=1000)
    for n in range(10):
        s.enqueue("logs", {"n": n, "pad": "x" * 300})
    assert s.outbox_bytes() <= 1000
    assert [p["n"] for _, _, p in s.peek()] == [7, 8, 9]
    assert s.outbox_dropped() == 7
    with pytest.raises(OutboxFull):
        s.enqueue("logs", {"pad": "x" * 2000})
    assert [p["n"] for _, _, p in s.peek()] == [7, 8, 9]  # a refused item changes nothing
    s.close()


def test_deleted_secrets_do_not_stay_in_the_files(store: AgentStore):
    secret = "prov_" + "S3cr3t" * 8
    store.save_identity(_identity(provisioning_key=secret))
    store.scrub()
    assert secret.encode() in _raw(store.path)

    identity = store.identity()
    assert identity is not None
    identity.provisioning_key = None
    store.save_identity(identity)
    store.scrub()
    assert secret.encode() not in _raw(store.path)


def test_wipe_forgets_everything(store: AgentStore):
    store.save_identity(_identity())
    store.set("target", {"version": 1})
    store.enqueue("report", {"secret": "dk_" + "a" * 40})
    store.enqueue("report", {"n": 1})
    store.wipe()
    assert store.identity() is None
    assert store.get("target") is None
    assert store.outbox_size() == 0 and store.outbox_dropped() == 0
    assert b"dk_" + b"a" * 40 not in _raw(store.path)
    # Still usable afterwards.
    store.set("k", 1)
    assert store.get("k") == 1


def test_store_for_settings_uses_the_configured_folder_and_bounds(tmp_path: Path):
    from iotistic.agent.settings import load_agent_settings

    settings = load_agent_settings(AGENT_DATA_DIR=str(tmp_path / "agent"), OUTBOX_MAX_ITEMS=10, OUTBOX_MAX_MB=1)
    s = AgentStore.for_settings(settings)
    try:
        assert s.path == tmp_path / "agent" / "agent.db"
        assert (s.outbox_max_items, s.outbox_max_bytes) == (10, 1024 * 1024)
    finally:
        s.close()
