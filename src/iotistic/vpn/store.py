"""Files of the PKI directory: the index of issued certificates (JSON), atomic writes, the writers' lock.

The index is rewritten whole on every change, through a temporary file and a rename, so a reader (or a crash)
sees the old or the new index, never half of one. Writers (`iotistic vpn serve` and the `iotistic vpn ...`
commands) take an exclusive flock on `.lock` for each read-modify-write, so they may run side by side on one
machine; the directory must not be shared by replicas on different hosts (the service is single-writer).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

INDEX_VERSION = 1


class CertStatus(StrEnum):
    valid = "valid"
    revoked = "revoked"


class CertRecord(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    serial: str  # lower-case hex
    device_id: str
    customer_id: str
    common_name: str
    address: str
    not_before: dt.datetime
    not_after: dt.datetime
    status: CertStatus = CertStatus.valid
    revoked_at: dt.datetime | None = None
    reason: str | None = None


class Index(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    version: int = INDEX_VERSION
    crl_number: int = 0
    customer_blocks: dict[str, list[int]] = Field(default_factory=dict)
    certificates: list[CertRecord] = Field(default_factory=list)

    def active(self, device_id: str) -> CertRecord | None:
        """The device's certificate that is not revoked (at most one exists)."""
        for record in self.certificates:
            if record.device_id == device_id and record.status is CertStatus.valid:
                return record
        return None


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace `path` with `data` in one rename; the file has `mode` from its first byte (never briefly wider)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)  # O_CREAT's mode is cut by the umask; the intended mode is exact
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_index(path: Path) -> Index:
    return Index.model_validate_json(path.read_bytes())


def write_index(path: Path, index: Index) -> None:
    write_atomic(path, index.model_dump_json(by_alias=True, indent=1).encode(), 0o600)


@contextlib.contextmanager
def locked(lock_path: Path) -> Iterator[None]:
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock
