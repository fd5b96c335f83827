"""One agent per data folder: an instance lock, and where the running agent can be reached.

The running agent holds an exclusive `flock` on `AGENT_DATA_DIR/agent.pid` for its whole life, and writes its pid
and its Device API address into the file. So:

* a second agent on the same data folder refuses to start (two executors on one device would fight over the
  containers, and two cloud syncs over the outbox);
* `iotistic agent status|apply|deprovision|factory-reset` know for certain whether an agent runs (the kernel
  drops the lock when the process dies, even on SIGKILL: no stale pid file), and where its Device API listens;
* when none runs, those commands take the lock themselves while they work on the store and the containers, so
  an agent starting meanwhile waits for them instead of racing them.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path
from typing import Any

LOCK_FILE = "agent.pid"


class InstanceLock:
    """The exclusive lock on `<data_dir>/agent.pid` (see the module doc)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / LOCK_FILE
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, **info: Any) -> bool:
        """Take the lock without waiting; False when another process holds it. `info` is written to the file
        (with this process's pid) for `holder()` to read."""
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        self.update(**info)
        return True

    def update(self, **info: Any) -> None:
        """Rewrite what the file says about this process (e.g. the Device API address once bound)."""
        if self._fd is None:
            return
        data = json.dumps({"pid": os.getpid(), **info}).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)  # closing the descriptor releases the flock

    def holder(self) -> dict[str, Any] | None:
        """What the process holding the lock wrote (at least `pid`), or None when no process holds it."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                raw = os.pread(fd, 4096, 0)
                try:
                    info = json.loads(raw) if raw else {}
                except ValueError:
                    info = {}
                return info if isinstance(info, dict) and info else {"pid": None}
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def __enter__(self) -> InstanceLock:
        return self

    def __exit__(self, *_: object) -> None:
        self.release()
