"""Writing the broker's files (atomic, owner and mode) and signalling it, without a database or broker."""

from __future__ import annotations

import grp
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from iotistic.broker.sync import (
    BrokerTarget,
    FileOwnership,
    SignalOutcome,
    accounts_from_rows,
    resolve_ownership,
    signal_broker,
    write_if_changed,
)


def test_files_belong_to_the_broker_group_mode_0640(tmp_path):
    # As root (production, CI): root:mosquitto. Otherwise the sync's own user and one of its groups.
    as_root = os.geteuid() == 0
    group = "mosquitto" if as_root else grp.getgrgid(os.getegid()).gr_name
    path = tmp_path / "passwd"
    assert write_if_changed(path, "a:b\n", resolve_ownership(group))
    st = path.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (0 if as_root else os.geteuid(), grp.getgrnam(group).gr_gid,
                                                          0o640)
    assert path.read_text() == "a:b\n"


def test_without_a_group_files_are_private(tmp_path):
    path = tmp_path / "acl"
    assert write_if_changed(path, "x\n", resolve_ownership(None))
    assert path.stat().st_mode & 0o777 == 0o600


def test_numeric_and_unknown_groups():
    assert resolve_ownership(str(os.getegid())).gid == os.getegid()
    with pytest.raises(ValueError, match="no group"):
        resolve_ownership("no-such-group-here")


def test_unchanged_content_is_not_rewritten_and_a_change_replaces_the_file(tmp_path):
    path = tmp_path / "acl"
    own = FileOwnership(-1, -1, 0o600)
    assert write_if_changed(path, "one\n", own)
    inode = path.stat().st_ino
    assert not write_if_changed(path, "one\n", own)
    assert path.stat().st_ino == inode
    assert write_if_changed(path, "two\n", own)
    assert path.stat().st_ino != inode  # renamed over, never rewritten in place
    assert path.read_text() == "two\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["acl"]  # no temporary file left behind


def test_a_wrong_mode_is_repaired_even_when_the_content_is_equal(tmp_path):
    path = tmp_path / "acl"
    own = FileOwnership(-1, -1, 0o600)
    write_if_changed(path, "one\n", own)
    path.chmod(0o644)
    assert write_if_changed(path, "one\n", own)
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "passwd"
    own = FileOwnership(-1, -1, 0o600)
    write_if_changed(path, "old\n", own)

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="No space"):
        write_if_changed(path, "new\n", own)
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["passwd"]


def test_missing_folders_are_created(tmp_path):
    path = tmp_path / "etc" / "mosquitto" / "passwd"
    assert write_if_changed(path, "x\n", FileOwnership(-1, -1, 0o600))
    assert path.read_text() == "x\n"


def test_rows_are_grouped_into_accounts():
    rows = [(1, "a", "h1", "device", True, "iot/device/a/#", "readwrite"),
            (2, "svc", "h2", "service", 1, "x/#", "read"), (2, "svc", "h2", "service", 1, "y", "write"),
            (3, "norules", "h3", "integration", False, None, None)]
    accounts = accounts_from_rows(rows)
    assert [(a.username, a.active, [(r.topic, r.access) for r in a.rules]) for a in accounts] == [
        ("a", True, [("iot/device/a/#", "readwrite")]), ("svc", True, [("x/#", "read"), ("y", "write")]),
        ("norules", False, [])]
    assert accounts_from_rows([]) == []


# Signalling ----------------------------------------------------------------------------------------------------

def _started(process: subprocess.Popen[bytes], name: str) -> None:
    """Wait until the child has exec'd (right after fork it still carries our own name)."""
    comm = Path(f"/proc/{process.pid}/comm")
    deadline = time.monotonic() + 5
    while comm.read_text().strip() != name and time.monotonic() < deadline:
        time.sleep(0.005)


def test_no_pid_file_means_the_broker_is_not_running(tmp_path):
    outcome, detail = signal_broker(BrokerTarget(pid_file=tmp_path / "none.pid"))
    assert outcome == SignalOutcome.not_running and "reads the files at start" in detail


def test_a_pid_file_without_a_pid_is_refused(tmp_path):
    (tmp_path / "m.pid").write_text("garbage\n")
    assert signal_broker(BrokerTarget(pid_file=tmp_path / "m.pid"))[0] == SignalOutcome.refused
    assert signal_broker(BrokerTarget(pid=1, pid_file=None))[0] == SignalOutcome.refused


def test_a_stale_pid_is_not_running(tmp_path):
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    (tmp_path / "m.pid").write_text(f"{process.pid}\n")
    assert signal_broker(BrokerTarget(pid_file=tmp_path / "m.pid"))[0] == SignalOutcome.not_running


def test_a_pid_that_is_not_the_broker_is_never_signalled(tmp_path):
    sleeper = subprocess.Popen(["sleep", "30"])
    _started(sleeper, "sleep")
    try:
        outcome, detail = signal_broker(BrokerTarget(pid=sleeper.pid, pid_file=None))
        assert outcome == SignalOutcome.refused and "'sleep'" in detail
        time.sleep(0.1)
        assert sleeper.poll() is None  # SIGHUP would have ended it
    finally:
        sleeper.kill()
        sleeper.wait()


def test_the_broker_named_in_the_pid_file_gets_sighup(tmp_path):
    fake = tmp_path / "mosquitto"  # a process whose name is `mosquitto`; SIGHUP ends it
    shutil.copy(shutil.which("sleep") or "/bin/sleep", fake)
    process = subprocess.Popen([str(fake), "30"])
    try:
        (tmp_path / "m.pid").write_text(f"{process.pid}\n")
        _started(process, "mosquitto")
        outcome, detail = signal_broker(BrokerTarget(pid_file=tmp_path / "m.pid"))
        assert outcome == SignalOutcome.sent, detail
        assert process.wait(5) == -signal.SIGHUP
    finally:
        process.kill()
        process.wait()
