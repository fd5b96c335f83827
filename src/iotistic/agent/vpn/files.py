"""The VPN configuration on disk. It holds the device's private key: mode 0600 from the first byte, replaced
atomically (a crash leaves the old file or the new one, never half of either), and never logged."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any

from iotistic.agent.vpn.config import VpnConfigError, prepare

log = logging.getLogger(__name__)


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` (mode 0600) through a temporary file in the same folder and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        temp.unlink()  # left over by a crash of this same pid number
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with open(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself survives a power cut
    finally:
        os.close(dir_fd)


def read_config(path: Path) -> str | None:
    """The stored configuration's text, or None when there is none."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


def save_config(path: Path, text: str) -> None:
    """Check the text (as the supervisor will before running it) and store it. Raises VpnConfigError."""
    prepare(text)
    write_private(path, text)


def save_from_registration(path: Path, vpn: Any) -> bool:
    """Store the configuration of a registration reply's `vpn` block, when it carries one. A bad one is logged and
    skipped: registration must not fail over it (the supervisor asks the cloud again). True when stored."""
    if not isinstance(vpn, dict) or not isinstance(vpn.get("config"), str):
        return False
    try:
        save_config(path, vpn["config"])
    except (VpnConfigError, OSError) as exc:
        log.error("VPN configuration from registration not stored: %s", exc)
        return False
    log.info("VPN configuration stored in %s", path)
    return True
